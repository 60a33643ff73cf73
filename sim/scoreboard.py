"""Scoreboard: compare hardware outputs with the numpy reference, exactly."""

import numpy as np

__all__ = ["compare"]


def compare(expected, actual, what="outputs"):
    """Check that ``actual`` equals ``expected`` element for element.

    Parameters
    ----------
    expected, actual : array_like, shape (B, M) (any shape works)
        Integers (mathematical values or bit patterns, the same kind on both sides). They are
        compared as Python integers, so mixing signed and unsigned numpy dtypes is exact.
    what : str
        What is compared, for the message (e.g. ``"fc3 logits"``).

    Returns
    -------
    int
        Number of elements checked.

    Raises
    ------
    AssertionError
        The shapes differ, or an element differs; the message names the first mismatching
        vector and element with the expected and actual values, and how many differ.
    """
    exp = np.asarray(expected)
    act = np.asarray(actual)
    if exp.shape != act.shape:
        raise AssertionError(f"{what}: shape {act.shape} differs from the expected {exp.shape}")
    exp_o, act_o = exp.astype(object), act.astype(object)
    differ = np.asarray(exp_o != act_o, dtype=bool)
    if differ.any():
        first = tuple(int(i) for i in np.argwhere(differ)[0])
        if len(first) == 2:
            where = f"vector {first[0]}, element {first[1]}"
        else:
            where = f"element {first[0]}" if len(first) == 1 else f"index {first}"
        raise AssertionError(
            f"{what}: {int(differ.sum())} of {differ.size} elements differ; first at {where}: "
            f"expected {exp_o[first]}, got {act_o[first]}")
    return int(exp.size)
