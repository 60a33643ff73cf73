"""PLL settings for the board clock: ECP5 EHXPLLL and iCE40 SB_PLL40, and the clock domain they
drive.

The divider search follows the datasheet equations:

ECP5 EHXPLLL (Lattice FPGA-TN-02200, "ECP5 and ECP5-5G sysCLOCK PLL/DLL Design and Usage
Guide"), feedback from CLKOP::

    f_pfd = f_in / CLKI_DIV                         3.125 .. 400 MHz
    f_out = f_in * CLKFB_DIV / CLKI_DIV             3.125 .. 400 MHz
    f_vco = f_out * CLKOP_DIV                        400 .. 800 MHz
    CLKI_DIV 1..128, CLKFB_DIV 1..80, CLKOP_DIV 1..128

iCE40 SB_PLL40 (Lattice "iCE40 sysCLOCK PLL Design and Usage Guide"), SIMPLE feedback::

    f_pfd = f_in / (DIVR + 1)                         10 .. 133 MHz
    f_vco = f_pfd * (DIVF + 1)                       533 .. 1066 MHz
    f_out = f_vco / 2**DIVQ                           16 .. 275 MHz
    DIVR 0..15, DIVF 0..127, DIVQ 1..6, FILTER_RANGE from f_pfd
"""

from dataclasses import dataclass

from amaranth import ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from ..gen.errors import UsageError

__all__ = ["PLLSetting", "ecp5_settings", "ice40_settings", "best_setting", "PLLClock"]


@dataclass(frozen=True)
class PLLSetting:
    """One legal divider setting.

    Attributes
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    f_in, f_out, f_vco, f_pfd : float
        Input, output, VCO and phase-detector frequencies in Hz.
    dividers : dict
        The primitive's parameters (ECP5: ``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV``; iCE40:
        ``DIVR``, ``DIVF``, ``DIVQ``, ``FILTER_RANGE``).
    """

    family: str
    f_in: float
    f_out: float
    f_vco: float
    f_pfd: float
    dividers: tuple

    @property
    def mhz(self):
        return self.f_out / 1e6


def ecp5_settings(f_in):
    """Every distinct output frequency the EHXPLLL makes from ``f_in`` (Hz), with the
    setting of highest VCO for each, sorted by output frequency."""
    best = {}
    for clki in range(1, 129):
        pfd = f_in / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            if not 3.125e6 <= out <= 400e6:
                continue
            for clkop in range(1, 129):
                vco = out * clkop
                if vco > 800e6:
                    break
                if vco < 400e6:
                    continue
                key = round(out)
                if key not in best or vco > best[key].f_vco:
                    best[key] = PLLSetting("ecp5", f_in, out, vco, pfd, (
                        ("CLKI_DIV", clki), ("CLKFB_DIV", clkfb), ("CLKOP_DIV", clkop)))
    return sorted(best.values(), key=lambda s: s.f_out)


def _ice40_filter(pfd):
    for bound, value in ((17e6, 1), (26e6, 2), (44e6, 3), (66e6, 4), (101e6, 5)):
        if pfd < bound:
            return value
    return 6


def ice40_settings(f_in):
    """Every distinct output frequency SB_PLL40 (SIMPLE feedback) makes from ``f_in`` (Hz),
    sorted by output frequency."""
    best = {}
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if not 16e6 <= out <= 275e6:
                    continue
                key = round(out)
                if key not in best:
                    best[key] = PLLSetting("ice40", f_in, out, vco, pfd, (
                        ("DIVR", divr), ("DIVF", divf), ("DIVQ", divq),
                        ("FILTER_RANGE", _ice40_filter(pfd))))
    return sorted(best.values(), key=lambda s: s.f_out)


def best_setting(family, f_in, limit_hz, *, usable=None):
    """The legal setting of highest output frequency at most ``limit_hz`` for which
    ``usable(f_out)`` holds (e.g. the UART's baud rate can be made from it).

    Raises
    ------
    UsageError
        No setting qualifies.
    """
    table = {"ecp5": ecp5_settings, "ice40": ice40_settings}[family](f_in)
    for setting in reversed(table):
        if setting.f_out <= limit_hz and (usable is None or usable(setting.f_out)):
            return setting
    raise UsageError(f"--clock: no {family} PLL setting from {f_in / 1e6:g} MHz at or below "
                     f"{limit_hz / 1e6:g} MHz suits the link")


class PLLClock(Elaboratable):
    """Drives the ``sync`` domain (which the parent defines) from the board's PLL fed by its
    default clock resource, and holds it in reset until the PLL locks.

    Parameters
    ----------
    setting : PLLSetting
    """

    def __init__(self, setting):
        self.setting = setting

    def elaborate(self, platform):
        m = Module()
        s = self.setting
        clk_in = platform.request(platform.default_clk, dir="-")
        locked, clk = Signal(), Signal()
        m.d.comb += ClockSignal("sync").eq(clk)
        params = dict(s.dividers)
        if s.family == "ecp5":
            m.submodules.clk_buffer = buf = io.Buffer("i", clk_in)
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{s.f_in / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{s.f_out / 1e6:g}",
                p_CLKI_DIV=params["CLKI_DIV"], p_CLKFB_DIV=params["CLKFB_DIV"],
                p_CLKOP_DIV=params["CLKOP_DIV"], p_CLKOP_ENABLE="ENABLED",
                p_CLKOP_CPHASE=params["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
                p_FEEDBK_PATH="CLKOP", p_OUTDIVIDER_MUXA="DIVA",
                i_CLKI=buf.i, i_CLKFB=clk, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0,
                i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clk, o_LOCK=locked)
        else:
            # the iCE40's PLL input pin feeds the PLL directly (no SB_IO in between)
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=params["DIVR"], p_DIVF=params["DIVF"],
                p_DIVQ=params["DIVQ"], p_FILTER_RANGE=params["FILTER_RANGE"],
                i_PACKAGEPIN=clk_in.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk, o_LOCK=locked)
        platform.add_clock_constraint(clk, s.f_out)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        return m
