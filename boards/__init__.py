"""Boards: from board names to bitstreams with a UART host link.

* :mod:`nnaccel.boards.platforms`: board names -> amaranth-boards platforms (``get_board``).
* :mod:`nnaccel.boards.uart`: ``UARTRx`` / ``UARTTx`` stream components.
* :mod:`nnaccel.boards.link`: ``BytesToBeats`` / ``BeatsToBytes`` and the wire protocol.
* :mod:`nnaccel.boards.top`: ``BoardTop``, a network behind the board's UART.
* :mod:`nnaccel.boards.build`: ``build`` (yosys + nextpnr + packer) and ``format_report``.
"""
