"""Boards: from board names to bitstreams with a UART host link.

* :mod:`nnaccel.boards.platforms`: board names -> amaranth-boards platforms (``get_board``).
* :mod:`nnaccel.boards.uart`: ``UARTRx`` / ``UARTTx`` stream components.
* :mod:`nnaccel.boards.link`: ``BytesToBeats`` / ``BeatsToBytes``: beats as wire bytes.
* :mod:`nnaccel.boards.frame`: the framed host link protocol (docs/BOARD_LINK.md), host side.
* :mod:`nnaccel.boards.framelink`: ``FrameLink`` and ``SelfTest``, its device side.
* :mod:`nnaccel.boards.host`: ``BoardLink``, the pyserial host driver with retries.
* :mod:`nnaccel.boards.top`: ``BoardTop``, a network behind the board's UART.
* :mod:`nnaccel.boards.pll`: ECP5 / iCE40 PLL settings and ``PLLClock``.
* :mod:`nnaccel.boards.build`: ``build`` (yosys + nextpnr + packer) and ``format_report``.
* :mod:`nnaccel.boards.clocking`: ``build_clocked``: the PLL clock below nextpnr's Fmax.
* :mod:`nnaccel.boards.tb_board`: cocotb testbench serving the board top on a pty.
"""
