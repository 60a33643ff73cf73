"""numpy model of the sparse engine: its arithmetic and its cycle-level timing.

Imports only numpy. The arithmetic is SPEC 2.1 on the weight the format encodes
(``acc = X @ W.T + bias``, then the output stage of :mod:`nnaccel.hw.common.reference`); the
engine's raw sums are ``X @ W.T``.

Timing (:func:`cycle_model`) is a token-level statement of the hardware of :mod:`.engine`, exact
when the input is presented back to back and the output is never stalled. Every cycle number
counts from the cycle the first input beat is accepted (cycle 0):

* **Leading non-zero detector.** An input register holds each beat as accepted; beat 0 is
  taken from it at cycle :data:`TAKE`. Input beat ``b`` is taken at cycle ``a[b]`` and its
  non-zero activations (tokens) move into the token register at cycles ``>= a[b] + 1``, each
  no earlier than the cycle its predecessor leaves, and leave from the cycle after, at most one
  per cycle.
  The next beat is taken in the cycle the beat's last token moves; a beat without any non-zero
  is dropped, so the next is taken one cycle after it. The vector's last token ends it; if its
  last beat holds no non-zero, a token without work does.
* **Broadcast.** A token goes to every PE at once (cycle ``t``). Every token a PE takes holds
  one of its ``S = queue_depth + IN_FLIGHT`` slots (the queue, the tokens in flight and
  :data:`BROADCAST_SLACK`), from cycle ``t + 1`` until its *release*: ``t + LOOKUP + 1`` when
  the PE does not need it (its pointer lookup drops it), else one cycle after it is popped.
  Each PE's ready is registered, and so is their AND, which the broadcast waits on: a token
  can go at ``t`` only when every PE held fewer than ``S - 1`` slots at ``t - 1`` (of the
  tokens broadcast before ``t - 1``, fewer than ``S - 1`` are released after ``t - 1``).
* **PE p** needs a token when its column holds entries for it (``n = counts[p, col]``) or when
  the token ends a vector (``n = 0``). Such a token, broadcast at ``t``, is written into the
  queue at ``w = t + LOOKUP``; it is popped at ``c = max(w + QUEUE_TO_POP, c_prev + n_prev,
  bank free)`` and occupies the iterator ``max(n, 1)`` cycles. The last token of vector ``v``
  leaves the iterator at ``f``; the bank is done at ``f + ISSUE_TO_DONE``.
* **Banks and read-out.** Two accumulator banks alternate between vectors. Vector ``v`` is read
  out, one row (of every PE) every ``out_step`` cycles (1, or more for an output stage
  narrower than the PEs), from ``s = max(all PEs done, previous read-out end + out_step)`` to
  ``s + (rows_per_pe - 1) * out_step``; its bank is free again ``READ_TO_FREE`` cycles after
  (the release, sent as the PEs read the last row, reaching them). Its last output beat is
  valid ``out_latency`` cycles after its last row is read.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["TAKE", "ISSUE_TO_DONE", "LOOKUP", "QUEUE_TO_POP", "BROADCAST_SLACK", "IN_FLIGHT",
           "READ_TO_FREE",
           "raw_bounds", "raw_sums",
           "performed_macs", "broadcast_tokens", "CycleReport", "cycle_model"]

#: From the cycle the first input beat is accepted to the cycle the leading non-zero detector
#: takes it (its input register).
TAKE = 1
#: From the cycle the last entry of a vector is issued to the first cycle its bank may be read
#: out (the PE's ``done``, then the collector's register of every PE's).
ISSUE_TO_DONE = 9
#: From a token's broadcast to its queue write (the pointer read, its output register, then a
#: register near the logic).
LOOKUP = 3
#: From a queue write to the earliest pop (the queue memory's read, then its head register).
QUEUE_TO_POP = 3
#: Slots a PE keeps for the broadcast's registered ready, which sees the PEs a cycle late: one
#: for a token sent as the PE fills, one for a slot released in the cycle it is seen; with
#: them no vector ended later than with a ready seen at once in 300 random layers and the
#: digits layers (a third slot, for a cycle releasing two, would widen the slot counter and
#: the queue of the usual 8-deep PE for nothing measured).
BROADCAST_SLACK = 2
#: Tokens a PE holds beyond its queue: the ``LOOKUP`` registers, the queue memory's read, the
#: head register and the broadcast's slack.
IN_FLIGHT = LOOKUP + QUEUE_TO_POP - 1 + BROADCAST_SLACK
#: From the read of a bank's last row (the collector's command) to the first cycle a PE may
#: pop into that bank again (the release, registered in the collector, then in the PE).
READ_TO_FREE = 2


def raw_bounds(weight, in_lo, in_hi):
    """Worst-case ``(lo, hi)`` of every partial sum of ``W @ x`` (0 included), any legal x.

    Each term ``W[m, k] * x[k]`` ranges over an interval holding 0 (every input dtype holds 0 or
    is symmetric), so partial sums stay within the bounds of the full sums.
    """
    w = np.asarray(weight).astype(object)
    a, b = w * int(in_lo), w * int(in_hi)
    lo = np.minimum(a, b).sum(axis=1) if w.size else np.zeros(1, dtype=object)
    hi = np.maximum(a, b).sum(axis=1) if w.size else np.zeros(1, dtype=object)
    return min(int(np.min(lo)), 0), max(int(np.max(hi)), 0)


def performed_macs(weight, x):
    """Mean multiply-accumulates per vector the engine performs on the batch ``x`` (B, K): the
    non-zero weights of the columns whose activation is non-zero (zero activations are
    skipped, padding entries are not work)."""
    per_column = np.count_nonzero(np.asarray(weight), axis=0)
    return float(((np.asarray(x) != 0) @ per_column).mean())


def raw_sums(weight, x):
    """The engine's raw sums ``X @ W.T`` for a batch ``x`` (B, K), as exact integers."""
    w = np.asarray(weight).astype(object)
    return (np.asarray(x).astype(object) @ w.T).astype(object)


def broadcast_tokens(active, in_beat):
    """The broadcast of one vector: per input beat, the columns of its tokens.

    ``active`` is the (K,) boolean mask of non-zero activations. Returns a list with one list of
    ``(column, work, last)`` per beat; a beat without non-zeros has no token, except the
    vector's last beat, which then has one ``(-1, False, True)`` token.
    """
    active = np.asarray(active, dtype=bool)
    k = len(active)
    beats = []
    starts = range(0, k, in_beat)
    for b, start in enumerate(starts):
        cols = [start + j for j in np.flatnonzero(active[start:start + in_beat])]
        final = b == len(starts) - 1
        toks = [(c, True, final and n == len(cols) - 1) for n, c in enumerate(cols)]
        if final and not toks:
            toks = [(-1, False, True)]
        beats.append(toks)
    return beats


@dataclass(frozen=True)
class CycleReport:
    """What :func:`cycle_model` predicts for a batch.

    Attributes
    ----------
    vector_end : (B,) array
        Cycle of the last output beat of each vector (counted from the first input beat).
    cycles_total : int
        ``vector_end[-1]``: from the first input beat to the last output beat.
    cycles_per_inference : float
        ``(vector_end[-1] - vector_end[0]) / (B - 1)`` (the latency when B == 1).
    compute_cycles : int
        From the first broadcast to the last entry issued, inclusive.
    busy, entries : (N,) arrays
        Iterator cycles each PE was busy, and the entries (non-zeros and padding) it issued.
    idle : (N,) array
        ``compute_cycles - busy``.
    efficiency : float
        Load-balance efficiency, ``1 - idle.sum() / (N * compute_cycles)``.
    broadcast_stalls : int
        Cycles a token waited because some PE's queue was full.
    """

    vector_end: np.ndarray
    cycles_total: int
    cycles_per_inference: float
    compute_cycles: int
    busy: np.ndarray
    entries: np.ndarray
    idle: np.ndarray
    efficiency: float
    broadcast_stalls: int

    @property
    def entries_per_pe_cycle(self):
        """Entries issued per PE per compute cycle."""
        return float(self.entries.sum()) / (len(self.entries) * max(self.compute_cycles, 1))


def _broadcast_cycle(held, earliest, last_bcast, last_slot):
    """The first cycle from ``earliest`` at which every PE (row of ``held``: its slots' release
    cycles) held fewer than ``S - 1`` slots in the cycle before; the token broadcast at
    ``last_bcast`` (in slot ``last_slot`` of each PE) counts only from the cycle after."""
    slots = held.shape[1]
    if earliest == last_bcast + 1:
        busy = held > earliest - 1
        busy[np.arange(len(held)), last_slot] = False
        if (busy.sum(axis=1) < slots - 1).all():
            return earliest
    # from last_bcast + 2 on: two slots of every PE released by t - 1
    second = np.partition(held, 1, axis=1)[:, 1]
    return max(earliest, last_bcast + 2, int(second.max()) + 1)


def cycle_model(counts, active, *, in_beat, queue_depth, rows_per_pe, out_latency,
                out_step=1):
    """Cycle-level model of the sparse engine on a batch (see the module docstring).

    Parameters
    ----------
    counts : (N, K) integer array
        Entries (non-zeros and padding) of each PE in each column
        (``SparseMatrix.column_counts()``).
    active : (B, K) boolean array
        Non-zero activations of each input vector (all True for bipolar inputs).
    in_beat, queue_depth, rows_per_pe : int
        As in :class:`~nnaccel.hw.sparse.params.SparseParams`.
    out_latency : int
        Cycles from a vector's last row read out to its last output beat
        (:attr:`~nnaccel.hw.sparse.params.SparseParams.out_latency`).
    out_step : int
        Cycles between two rows read out (:attr:`~nnaccel.hw.sparse.params.SparseParams.out_step`).

    Returns
    -------
    CycleReport
    """
    counts = np.asarray(counts, dtype=np.int64)
    active = np.atleast_2d(np.asarray(active, dtype=bool))
    n_pe, k = counts.shape
    if active.shape[1] != k:
        raise ValueError(f"active has {active.shape[1]} columns, counts {k}")
    depth = int(queue_depth)
    pes = np.arange(n_pe)
    held = np.full((n_pe, depth + IN_FLIGHT), -(1 << 40), dtype=np.int64)  # slot releases
    next_pop = np.zeros(n_pe, dtype=np.int64)  # earliest pop: iterator free
    busy = np.zeros(n_pe, dtype=np.int64)
    entries = np.zeros(n_pe, dtype=np.int64)
    released, vector_end = [], []
    load, last_bcast, first_bcast, stalls = TAKE, -1, None, 0
    last_slot = np.zeros(n_pe, dtype=np.int64)
    last_issue = np.zeros(n_pe, dtype=np.int64)

    for v, row in enumerate(active):
        bank_free = released[v - 2] + READ_TO_FREE if v >= 2 else 0
        for toks in broadcast_tokens(row, in_beat):
            if not toks:
                load += 1
                continue
            for col, work, last in toks:
                # moved into the token register once the beat is held and the token before
                # leaves (or has left); broadcast from the cycle after
                moved = max(load + 1, last_bcast)
                earliest = moved + 1
                t = _broadcast_cycle(held, earliest, last_bcast, last_slot)
                stalls += t - earliest
                first_bcast = t if first_bcast is None else first_bcast
                n = counts[:, col] if work else np.zeros(n_pe, dtype=np.int64)
                need = (n > 0) | last
                c = np.maximum.reduce([np.full(n_pe, t + LOOKUP + QUEUE_TO_POP), next_pop,
                                       np.full(n_pe, bank_free)])
                cost = np.maximum(n, 1)
                slot = last_slot = held.argmin(axis=1)
                release = np.where(need, c + 1, t + LOOKUP + 1)
                held[pes, slot] = np.maximum(held[pes, slot], release)
                next_pop = np.where(need, c + cost, next_pop)
                last_issue = np.where(need, c + cost - 1, last_issue)
                busy += np.where(need, cost, 0)
                entries += np.where(need, n, 0)
                last_bcast = t
            load = moved
        done = int(last_issue.max()) + ISSUE_TO_DONE
        start = max(done, released[-1] + out_step) if released else done
        released.append(start + (rows_per_pe - 1) * out_step)
        vector_end.append(released[-1] + out_latency)

    vector_end = np.array(vector_end, dtype=np.int64)
    batch = len(vector_end)
    span = int(last_issue.max()) - first_bcast + 1
    per = (vector_end[-1] - vector_end[0]) / (batch - 1) if batch > 1 else float(vector_end[0])
    idle = span - busy
    return CycleReport(vector_end=vector_end, cycles_total=int(vector_end[-1]),
                       cycles_per_inference=float(per), compute_cycles=span, busy=busy,
                       entries=entries, idle=idle,
                       efficiency=1.0 - float(idle.sum()) / (n_pe * span),
                       broadcast_stalls=int(stalls))
