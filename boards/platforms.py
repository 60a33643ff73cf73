"""Board names and the amaranth-boards platforms behind them.

A thin table: each name maps to an amaranth-boards platform class, and :class:`Board` records
the facts the build flow and its report need (FPGA family, device, package, default clock). The
platforms are used unchanged, except the OrangeCrab, which has no UART resource of its own: nnaccel
adds one on the Feather header pins marked 0 (RX, into the FPGA) and 1 (TX, out of the FPGA).
"""

from dataclasses import dataclass

from amaranth.build import Attrs
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform, OrangeCrabR0_2_85FPlatform
from amaranth_boards.resources import UARTResource
from amaranth_boards.ulx3s import (
    ULX3S_12F_Platform,
    ULX3S_25F_Platform,
    ULX3S_45F_Platform,
    ULX3S_85F_Platform,
)

from ..gen.errors import UsageError

__all__ = ["Board", "BOARDS", "board_names", "get_board"]


def _orangecrab(platform_class):
    class Platform(platform_class):
        resources = [
            *platform_class.resources,
            UARTResource(0, rx="0", tx="1", conn=("io", 0), attrs=Attrs(IO_TYPE="LVCMOS33")),
        ]
    Platform.__name__ = Platform.__qualname__ = f"{platform_class.__name__}WithUART"
    return Platform


@dataclass(frozen=True)
class Board:
    """One supported board.

    Attributes
    ----------
    name : str
        The name used on the command line (``--board``).
    platform_class : type
        The amaranth-boards platform (a ``TemplatedPlatform`` subclass).
    family : str
        ``"ecp5"`` or ``"ice40"``.
    device, package : str
        As the platform names them (e.g. ``"LFE5U-85F"``, ``"BG381"``).
    clock : str
        Name of the platform's default clock resource; the whole design runs on it.
    clock_hz : float
        Its frequency, which is also the timing constraint nextpnr checks.
    description : str
        One line for listings.
    """

    name: str
    platform_class: type
    family: str
    device: str
    package: str
    clock: str
    clock_hz: float
    description: str

    def platform(self):
        """A fresh platform instance (each build needs its own)."""
        return self.platform_class()


def _board(name, platform_class, description):
    platform = platform_class()
    return Board(name=name, platform_class=platform_class, family=platform.family.lower(),
                 device=platform.device, package=platform.package, clock=platform.default_clk,
                 clock_hz=float(platform.default_clk_frequency), description=description)


#: Every supported board by name, in the order listings show them.
BOARDS = {board.name: board for board in [
    _board("ulx3s-12f", ULX3S_12F_Platform, "Radiona ULX3S, ECP5 LFE5U-12F"),
    _board("ulx3s-25f", ULX3S_25F_Platform, "Radiona ULX3S, ECP5 LFE5U-25F"),
    _board("ulx3s-45f", ULX3S_45F_Platform, "Radiona ULX3S, ECP5 LFE5U-45F"),
    _board("ulx3s-85f", ULX3S_85F_Platform, "Radiona ULX3S, ECP5 LFE5U-85F"),
    _board("icebreaker", ICEBreakerPlatform, "1BitSquared iCEBreaker, iCE40 UP5K"),
    _board("orangecrab", _orangecrab(OrangeCrabR0_2_25FPlatform),
           "OrangeCrab r0.2, ECP5 LFE5U-25F; UART on Feather pins 0 (RX) / 1 (TX)"),
    _board("orangecrab-85f", _orangecrab(OrangeCrabR0_2_85FPlatform),
           "OrangeCrab r0.2, ECP5 LFE5U-85F; UART on Feather pins 0 (RX) / 1 (TX)"),
]}


def board_names():
    """The supported board names, in listing order."""
    return list(BOARDS)


def get_board(name):
    """The :class:`Board` called ``name``.

    Raises
    ------
    UsageError
        If no board has that name; the message lists the known boards.
    """
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown board {name!r}; known boards: "
                         f"{', '.join(board_names())}") from None
