"""Build a board design at the highest PLL clock that meets timing, or at the user's clock.

:func:`build_clocked` runs :func:`nnaccel.boards.build.build` with a PLL setting
(:mod:`nnaccel.boards.pll`) and the host link at the board's fastest bit rate that the clock can
make (:data:`nnaccel.boards.top.LINK_BAUDS`):

* ``clock_mhz`` given: the legal setting closest below it;
* otherwise: a first build at :data:`FIRST_GUESS_MHZ`, then builds at a setting between
  ``FLOOR`` and ``MARGIN`` times the previous build's Fmax (nextpnr's figure varies from one
  placement to the next), until one meets timing within 10% of its Fmax or :data:`MAX_PASSES`
  were made.

Among the settings in that window, the one that allows the fastest link wins, then the fastest
clock; when none is in it, the fastest setting below the limit.
"""

import json
import shutil
from pathlib import Path

from ..gen.atomic import check_output, publish
from ..gen.errors import UsageError
from .build import build
from .platforms import Board, get_board
from .pll import ecp5_settings, ice40_settings
from .top import BAUD_TOLERANCE, link_bauds

__all__ = ["FIRST_GUESS_MHZ", "MARGIN", "FLOOR", "choose_clock", "build_clocked"]

#: Clock of the exploratory first build per FPGA family.
FIRST_GUESS_MHZ = {"ecp5": 100.0, "ice40": 48.0}

#: The final build aims at this fraction of the first build's Fmax.
MARGIN = 0.97

#: A pass whose clock is at least this fraction of its Fmax, with timing met, is kept; on the
#: first pass, settings down to this fraction of the guess compete on link speed.
WINDOW = 0.9

#: After a pass, settings down to this fraction of its Fmax compete on link speed: a little
#: above WINDOW, so that the next pass's Fmax may come out a little higher and the clock still
#: be within 10% of it.
FLOOR = 0.91

#: Most builds of one ``--clock auto``: nextpnr's Fmax rises with a tighter constraint, so a
#: pass can land more than 10% below its own Fmax twice in a row (the demo's int8 MLP at 64
#: lanes on the ECP5-85F: 75 MHz for 85.75, then 82.14 MHz for 92.52).
MAX_PASSES = 5


def _baud_ok(clock_hz, baud):
    divisor = round(clock_hz / baud)
    return divisor >= 4 and abs(clock_hz / divisor - baud) / baud <= BAUD_TOLERANCE


def choose_clock(spec, limit_hz, floor_hz=None):
    """``(setting, baud)``: the PLL setting at most ``limit_hz`` and the link's bit rate.

    Settings from ``floor_hz`` (default: :data:`WINDOW` times the fastest usable setting) to
    ``limit_hz`` compete on link rate, then on clock.

    Raises
    ------
    UsageError
        No setting at or below ``limit_hz`` makes any of the board's bit rates.
    """
    table = {"ecp5": ecp5_settings, "ice40": ice40_settings}[spec.family](spec.clock_hz)
    bauds = link_bauds(spec.name)
    usable = []
    for setting in table:
        if setting.f_out > limit_hz:
            continue
        rank = next((i for i, b in enumerate(bauds) if _baud_ok(setting.f_out, b)), None)
        if rank is not None:
            usable.append((setting, rank))
    if not usable:
        raise UsageError(f"--clock: no {spec.family} PLL setting at or below "
                         f"{limit_hz / 1e6:g} MHz makes a link rate of {spec.name} "
                         f"({', '.join(f'{b:,}' for b in bauds)} baud)")
    top = max(s.f_out for s, _ in usable)
    floor = WINDOW * top if floor_hz is None else min(floor_hz, top)
    near = [(s, r) for s, r in usable if s.f_out >= floor]
    setting, rank = min(near, key=lambda item: (item[1], -item[0].f_out))
    return setting, bauds[rank]


def build_clocked(network, board, outdir, *, name, clock_mhz=None, log=print, finish=None,
                  **options):
    """Build for ``board`` from its PLL; the report gains ``clock_passes``.

    Parameters are those of :func:`~nnaccel.boards.build.build` (``baud`` is chosen here),
    plus ``clock_mhz`` (float or None: see the module's description). ``log`` takes lines.
    Without ``clock_mhz`` every pass builds into a scratch directory beside ``outdir``; the
    kept pass (timing met, its clock within 10% of its Fmax, else the last that met timing,
    else the last) becomes ``outdir``.
    """
    spec = board if isinstance(board, Board) else get_board(board)
    if clock_mhz is not None:
        if not isinstance(clock_mhz, (int, float)) or clock_mhz <= 0:
            raise UsageError(f"--clock must be a positive number of MHz, not {clock_mhz!r}")
        setting, baud = choose_clock(spec, clock_mhz * 1e6 * 1.000001)
        log(f"clock: {setting.mhz:g} MHz from the PLL ({dict(setting.dividers)}), link at "
            f"{baud:,} baud")

        def finishing(report):
            report["clock_passes"] = [_pass(report)]
            return finish(report) if finish is not None else None

        return build(network, spec, outdir, name=name, baud=baud, log=log, pll=setting,
                     finish=finishing, **options)

    outdir = Path(outdir).absolute()
    check_output(outdir, command="build")
    limit, floor = FIRST_GUESS_MHZ[spec.family] * 1e6, None
    passes, kept, scratches = [], None, []
    try:
        for number in range(1, MAX_PASSES + 1):
            setting, baud = choose_clock(spec, limit, floor)
            if any(p["clock_mhz"] == round(setting.mhz, 4) for p in passes):
                break                   # the same setting again: nothing new to learn
            scratch = outdir.parent / f".{outdir.name}.clock-pass-{number}"
            shutil.rmtree(scratch, ignore_errors=True)
            scratches.append(scratch)
            log(f"clock: pass {number} at {setting.mhz:g} MHz ({dict(setting.dividers)}), "
                f"link at {baud:,} baud")
            report = build(network, spec, scratch, name=name, baud=baud, log=log, pll=setting,
                           finish=finish, **options)
            passes.append(_pass(report))
            verdict = "met" if report["timing_met"] else "NOT met"
            log(f"clock: pass {number}: Fmax {report['fmax_mhz']:.2f} MHz at "
                f"{report['clock_mhz']:g} MHz, timing {verdict}")
            if report["timing_met"] or kept is None or not kept[1]["timing_met"]:
                kept = (scratch, report)
            if report["timing_met"] and report["clock_mhz"] >= WINDOW * report["fmax_mhz"]:
                break
            limit, floor = MARGIN * report["fmax_mhz"] * 1e6, FLOOR * report["fmax_mhz"] * 1e6
        scratch, report = kept
        report["clock_passes"] = passes
        report["bitstream"] = str(outdir / Path(report["bitstream"]).name)
        report["outdir"] = str(outdir)
        (scratch / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        publish(scratch, outdir, command="build")
    finally:
        for scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def _pass(report):
    return {"clock_mhz": report["clock_mhz"], "fmax_mhz": report["fmax_mhz"],
            "timing_met": report["timing_met"]}
