"""The compression pipeline: an explicit ordered list of passes over a :class:`State`.

    fold_bn -> prune -> retrain_pruned -> share -> retrain_shared -> quantize
    binarize                                   (instead of all of the above, when asked)

Passes that the options do not ask for are left out (:func:`plan`); iterative pruning repeats
``prune_<j> -> retrain_pruned_<j>`` for ``j = 1 .. prune_steps``. The accuracy is measured
after every pass on the samples (the float network until ``quantize``, then the integer SPEC
model), and the pipeline can stop after any pass (``stop_after``) with its IR in
``State.dump()``.
"""

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..atomic import atomic_directory
from ..model_io import model_to_json
from .batchnorm import fold_bn_pass
from .binarize_net import binarize_net_pass
from .prune import prune_pass
from .quantize import quantize_pass
from .report import build_report, report_json
from .retrain import retrain_pass
from .share import share_pass
from .state import CompressConfig, PassRecord, State, prepare_samples

__all__ = ["PASSES", "Compression", "plan", "compress", "write_compressed"]

PASSES = (("fold_bn", fold_bn_pass), ("prune", prune_pass), ("retrain_pruned", retrain_pass),
          ("share", share_pass), ("retrain_shared", retrain_pass),
          ("quantize", quantize_pass), ("binarize", binarize_net_pass))


def plan(float_model, config):
    """The passes that run for ``config``, in order: a list of ``(name, pass)``."""
    steps = dict(PASSES)
    if config.binarize:
        return [("binarize", steps["binarize"])]
    names = [layer.name for layer in float_model.layers]
    out = []
    if any(layer.bn is not None for layer in float_model.layers):
        out.append(("fold_bn", steps["fold_bn"]))
    if any(config.prune_for(n) is not None for n in names):
        rounds = config.prune_steps
        for j in range(1, rounds + 1):
            suffix = "" if rounds == 1 else f"_{j}"
            out.append((f"prune{suffix}", partial(steps["prune"], step=j)))
            if config.retrain_epochs:
                out.append((f"retrain_pruned{suffix}", steps["retrain_pruned"]))
    if any(config.share_for(n) is not None for n in names):
        out.append(("share", steps["share"]))
        if config.retrain_epochs:
            out.append(("retrain_shared", steps["retrain_shared"]))
    out.append(("quantize", steps["quantize"]))
    return out


@dataclass(frozen=True, eq=False)
class Compression:
    """The result of :func:`compress`.

    Attributes
    ----------
    state : State
        The final IR (``state.model`` is the SPEC model unless stopped before quantizing).
    samples : Samples
    report : dict or None
        :func:`~.report.build_report`, when there is an integer model.
    """

    state: State
    samples: object
    report: dict | None

    @property
    def model(self):
        return self.state.model


def compress(float_model, data=None, config=None, *, stop_after=None):
    """Run the pipeline on ``float_model`` with its sample ``data``.

    Parameters
    ----------
    float_model : FloatModel
    data : Data or None
        Calibration / training inputs and labels, and test ones (see :class:`.Samples` for what
        stands in for missing ones).
    config : CompressConfig
    stop_after : str, optional
        Stop after this pass (a name :func:`plan` gives, or one of :data:`PASSES`: a pass that
        does not run for this config does not stop the pipeline).

    Raises
    ------
    UsageError
        An option names a layer the model does not have.
    ModelError
        The model cannot be quantized as asked (see :func:`.quantize.quantize_mlp`).
    """
    config = config or CompressConfig()
    steps = plan(float_model, config)
    known = [name for name, _ in PASSES] + [name for name, _ in steps]
    if stop_after is not None and stop_after not in known:
        raise ValueError(f"unknown pass {stop_after!r}; passes: {', '.join(known)}")
    config.check_layers(float_model)
    log = config.log
    samples = prepare_samples(float_model, data, config.seed)
    state = State(original=float_model, float_model=float_model)
    state = state.but(history=(PassRecord("float", state.accuracy(samples), 0.0,
                                          state.density()),))
    if log is not None:
        log(f"{float_model.name}: float accuracy {state.history[0].accuracy:.4f}")
    for name, step in steps:
        t0 = time.perf_counter()
        state = step(state, config, samples)
        record = PassRecord(name, state.accuracy(samples), time.perf_counter() - t0,
                            state.density())
        state = state.but(history=state.history + (record,))
        if log is not None:
            log(f"{float_model.name}: {name}: accuracy {record.accuracy:.4f}, density "
                f"{record.density:.4f} ({record.seconds:.1f} s)")
        if name == stop_after:
            break
    report = build_report(state, samples, config.pe) if state.model is not None else None
    return Compression(state=state, samples=samples, report=report)


def write_compressed(compression, path):
    """Write the model directory ``path`` (``model.json`` and ``weights.npz`` as
    :func:`~nnaccel.gen.model_io.write_model` writes them, and ``report.json``), atomically: it
    appears complete or not at all. An existing ``path`` is replaced only if it is empty or a
    complete earlier output of this command (:mod:`nnaccel.gen.atomic`)."""
    if compression.model is None:
        raise ValueError("the pipeline stopped before there was an integer model")
    path = Path(path)
    doc, arrays = model_to_json(compression.model)
    with atomic_directory(path) as tmp:
        (tmp / "model.json").write_text(json.dumps(doc, indent=2) + "\n")
        with open(tmp / "weights.npz", "wb") as f:
            np.savez_compressed(f, **arrays)
        (tmp / "report.json").write_text(report_json(compression.report))
    return path
