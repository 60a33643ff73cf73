"""The R x C grid of multiply-accumulate cells, weight-stationary or output-stationary.

Every cell multiplies two registered operands into a registered product (so synthesis can map
it onto a DSP block with input and output registers: ECP5 ``MULT18X18D``, iCE40 ``SB_MAC16``),
then accumulates. Operands are injected skewed: row ``r`` of a step enters ``r`` cycles after row
0 (and, output-stationary, column ``c`` of the weights ``c`` cycles after column 0), so that the
operands of one step meet in cell ``(r, c)`` ``r + c`` cycles after entering. The grid has no
flow control: it is a fixed-latency pipeline that takes a step every cycle; the caller's
sequencer decides which cycles carry real work.
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.arith import cdiv, delay
from ..common.lanes import logic_product
from ..common.memory import output_register
from ..common.stream import check_positive
from .params import MUL_LATENCY, Dataflow

__all__ = ["MUL_LATENCY", "WSCell", "OSCell", "SystolicArray"]


class WSCell(wiring.Component):
    """Weight-stationary cell: ``psum_out = psum_in + x * w`` with a stationary weight.

    The input ``x`` (with its ``first`` flag) passes right through a register; the partial sum
    passes down through a register. Two weight registers: ``shadow`` is written from ``w_load``
    when ``load_in`` is high (``load`` passes right through a register, so a row load sweeps
    across the row one column per cycle), and ``active`` copies ``shadow`` when a step flagged
    ``first`` enters the cell. The multiplier has registers of its own on both operands and on
    the product (:data:`MUL_LATENCY` cycles, see ``_multiply``), so that no fabric logic and
    little routing adds to the delay of its DSP block. Latency: ``psum_out`` shows the step
    ``MUL_LATENCY + 1`` cycles after its ``x`` is in ``x_out``.
    """

    def __init__(self, x_shape, w_shape, psum_shape, *, dsp=True):
        self._shapes = x_shape, w_shape
        self.dsp = dsp
        super().__init__({
            "x_in": In(x_shape), "first_in": In(1), "x_out": Out(x_shape), "first_out": Out(1),
            "load_in": In(1), "load_out": Out(1), "w_load": In(w_shape),
            "psum_in": In(psum_shape), "psum_out": Out(psum_shape),
        })

    def elaborate(self, platform):
        m = Module()
        x_shape, w_shape = self._shapes
        shadow = Signal(w_shape)
        active = Signal(w_shape)
        m.d.sync += [self.x_out.eq(self.x_in), self.first_out.eq(self.first_in),
                     self.load_out.eq(self.load_in)]
        with m.If(self.load_in):
            m.d.sync += shadow.eq(self.w_load)
        with m.If(self.first_in):
            m.d.sync += active.eq(shadow)
        product = _multiply(m, self.x_out, active, dsp=self.dsp)
        m.d.sync += self.psum_out.eq(self.psum_in + product)
        return m


def _multiply(m, a, b, *, dsp=True):
    """``a * b``, :data:`MUL_LATENCY` cycles late.

    With ``dsp`` the product is an inferred multiplication (a DSP block) between two registers
    on each operand and two on the product, so that placement can put a register next to the
    DSP block on either side; the ones next to it have no reset, so that the ECP5 flow folds
    them into the MULT18X18D's own input and output registers. Otherwise it is a shift-and-add
    of the partial products of ``b``'s bits (look-up tables and carry chains) after one
    register on each operand, summed in pairs in one stage and completed in the next.
    """
    a_reg, b_reg = Signal(a.shape(), name="mul_a"), Signal(b.shape(), name="mul_b")
    shape = (a_reg * b_reg).shape()
    m.d.sync += [a_reg.eq(a), b_reg.eq(b)]
    if dsp:
        a_reg = output_register(m, a_reg, name="mul_a_d0")
        b_reg = output_register(m, b_reg, name="mul_b_d0")
        product = output_register(m, a_reg * b_reg, name="mul_p")
        return delay(m, product, MUL_LATENCY - 3, "mul_q")
    product = Signal(shape, name="mul_p")
    m.d.sync += product.eq(logic_product(m, a_reg, b_reg, "mul"))
    return delay(m, product, MUL_LATENCY - 3, "mul_q")


class OSCell(wiring.Component):
    """Output-stationary cell: ``acc = sum x * w`` over the steps of a tile.

    ``x`` with its control (``valid``, ``first``, ``last``) passes right, ``w`` passes down,
    each through a register. A valid step flagged ``first`` restarts the sum. ``final`` is high
    for the one cycle in which ``acc`` holds the finished sum of a tile (``MUL_LATENCY + 1``
    cycles after the operands of the step flagged ``last`` are in ``x_out``/``w_out``); the next
    tile overwrites it in the next cycle. The multiplier is registered as in :class:`WSCell`.
    """

    Control = data.StructLayout({"valid": 1, "first": 1, "last": 1})

    def __init__(self, x_shape, w_shape, acc_shape, *, dsp=True):
        self.dsp = dsp
        super().__init__({
            "x_in": In(x_shape), "ctl_in": In(self.Control), "x_out": Out(x_shape),
            "ctl_out": Out(self.Control), "w_in": In(w_shape), "w_out": Out(w_shape),
            "acc": Out(acc_shape), "final": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.x_out.eq(self.x_in), self.ctl_out.eq(self.ctl_in),
                     self.w_out.eq(self.w_in)]
        product = _multiply(m, self.x_out, self.w_out, dsp=self.dsp)
        ctl = delay(m, self.ctl_out, MUL_LATENCY, "ctl")
        m.d.sync += self.final.eq(ctl.valid & ctl.last)
        with m.If(ctl.valid):
            m.d.sync += self.acc.eq(Mux(ctl.first, 0, self.acc) + product)
        return m


class SystolicArray(wiring.Component):
    """An R x C grid of :class:`WSCell` or :class:`OSCell`, with skewed injection and
    column outputs.

    Every cycle the caller presents one *step*: ``i_x`` (one value per row), ``i_valid``,
    ``i_first``, ``i_last`` and an opaque ``i_tag`` that comes back with the results.

    Weight-stationary (cells hold the weights of one R x C tile; a step is R inputs of one
    vector): ``i_first`` on the first step of a tile makes each cell switch to the weights
    loaded into its shadow register. Weight rows are loaded through ``i_wl`` (C weights),
    ``i_wl_row`` and ``i_wl_en``: cell ``(r, c)`` of row ``i_wl_row`` takes lane ``c`` ``c``
    cycles later. Loading the next tile's rows in the same cycles as the current tile's steps
    (row ``j`` with step ``j``, from the tile's first step on) is always safe. Column ``c``
    outputs the column sum of a valid step ``R + MUL_LATENCY + 1 + c`` cycles after the step,
    with its tag.

    Output-stationary (cell ``(r, c)`` accumulates output ``c`` of vector ``r``; a step is input
    ``k`` of R vectors and weight ``k`` of C outputs, ``i_w``): the steps of a tile are flagged
    ``first`` ... ``last``; ``i_rows`` masks the rows that hold a vector. Row ``r`` of a tile
    leaves column ``c`` ``MUL_LATENCY + 2 + readout_levels + c + r`` cycles after the tile's
    last step, with
    ``o_row == r`` and the tag of that last step. Tiles must be at least as many steps apart as
    they have rows.

    Outputs (per column ``c``): ``o_valid[c]``, ``o_value[c]`` (``acc_shape``: the column sum
    of one step or the finished sum of one cell), ``o_tag[c]``, ``o_row[c]``.

    The first ``dsp_cells`` cells (row-major; default all) multiply with an inferred multiplier
    that synthesis maps onto a DSP block; the others with look-up tables and carry chains, for
    arrays with more cells than the device has DSP blocks. Both have the same latency.
    """

    def __init__(self, *, dataflow, rows, cols, x_shape, w_shape, acc_shape, tag_shape,
                 dsp_cells=None):
        self.dataflow = Dataflow(dataflow)
        self.rows = check_positive("rows", rows)
        self.cols = check_positive("cols", cols)
        self.dsp_cells = rows * cols if dsp_cells is None else dsp_cells
        self._shapes = x_shape, w_shape, acc_shape, tag_shape
        row_bits = max(1, (rows - 1).bit_length())
        ports = {
            "i_x": In(data.ArrayLayout(x_shape, rows)), "i_valid": In(1), "i_first": In(1),
            "i_last": In(1), "i_tag": In(tag_shape),
            "o_valid": Out(cols), "o_value": Out(data.ArrayLayout(acc_shape, cols)),
            "o_tag": Out(data.ArrayLayout(tag_shape, cols)),
            "o_row": Out(data.ArrayLayout(unsigned(row_bits), cols)),
        }
        if self.dataflow is Dataflow.WS:
            ports.update({"i_wl": In(data.ArrayLayout(w_shape, cols)), "i_wl_row": In(range(rows)),
                          "i_wl_en": In(1)})
        else:
            ports.update({"i_rows": In(rows), "i_w": In(data.ArrayLayout(w_shape, cols))})
        super().__init__(ports)

    def _dsp(self, row, col):
        """Whether cell ``(row, col)`` multiplies in a DSP block (the first ``dsp_cells``
        cells in row-major order do)."""
        return row * self.cols + col < self.dsp_cells

    @property
    def readout_levels(self):
        """Register levels of the output-stationary read-out of a column."""
        n, levels = cdiv(self.rows, 2), 1
        while n > 1:
            n, levels = cdiv(n, 4), levels + 1
        return levels

    def elaborate(self, platform):
        m = Module()
        if self.dataflow is Dataflow.WS:
            self._elaborate_ws(m)
        else:
            self._elaborate_os(m)
        return m

    def _elaborate_ws(self, m):
        x_shape, w_shape, acc_shape, tag_shape = self._shapes
        rows, cols = self.rows, self.cols
        cells = [[WSCell(x_shape, w_shape, acc_shape, dsp=self._dsp(r, c)) for c in range(cols)]
                 for r in range(rows)]
        for r in range(rows):
            first = self.i_first & self.i_valid
            west = (delay(m, self.i_x[r], r, f"x{r}"), delay(m, first, r, f"first{r}"))
            load = self.i_wl_en & (self.i_wl_row == r)
            for c in range(cols):
                cell = cells[r][c]
                m.submodules[f"cell_{r}_{c}"] = cell
                m.d.comb += [cell.x_in.eq(west[0]), cell.first_in.eq(west[1]),
                             cell.load_in.eq(load)]
                m.d.comb += cell.psum_in.eq(cells[r - 1][c].psum_out if r else 0)
                west, load = (cell.x_out, cell.first_out), cell.load_out
        for c in range(cols):
            wl = delay(m, self.i_wl[c], c, f"wl{c}")
            m.d.comb += [cells[r][c].w_load.eq(wl) for r in range(rows)]
            m.d.comb += self.o_value[c].eq(cells[rows - 1][c].psum_out)
        self._tag_path(m, rows + MUL_LATENCY + 1, hold=False)

    def _elaborate_os(self, m):
        x_shape, w_shape, acc_shape, tag_shape = self._shapes
        rows, cols = self.rows, self.cols
        cells = [[OSCell(x_shape, w_shape, acc_shape, dsp=self._dsp(r, c)) for c in range(cols)]
                 for r in range(rows)]
        for r in range(rows):
            ctl = Signal(OSCell.Control, name=f"ctl{r}")
            m.d.comb += [ctl.valid.eq(self.i_valid & self.i_rows[r]), ctl.first.eq(self.i_first),
                         ctl.last.eq(self.i_last)]
            west = (delay(m, self.i_x[r], r, f"x{r}"), delay(m, ctl, r, f"ctl{r}"))
            for c in range(cols):
                cell = cells[r][c]
                m.submodules[f"cell_{r}_{c}"] = cell
                m.d.comb += [cell.x_in.eq(west[0]), cell.ctl_in.eq(west[1])]
                west = (cell.x_out, cell.ctl_out)
        for c in range(cols):
            north = delay(m, self.i_w[c], c, f"w{c}")
            for r in range(rows):
                m.d.comb += cells[r][c].w_in.eq(north)
                north = cells[r][c].w_out
            column = [(cells[r][c].final, Cat(cells[r][c].acc, Const(r, self.o_row[c].shape()),
                                              Const(1, 1))) for r in range(rows)]
            out = self._readout(m, column, f"col{c}")
            m.d.comb += Cat(self.o_value[c], self.o_row[c], self.o_valid[c]).eq(out)
        self._tag_path(m, MUL_LATENCY + 2 + self.readout_levels, hold=True)

    def _readout(self, m, column, name):
        """Pipelined OR of the masked values of a column (at most one row is final per cycle):
        pairs of rows, then groups of four, one register level each."""
        level = []
        for n in range(0, len(column), 2):
            reg = Signal(len(column[0][1]), name=f"{name}_l0_{n // 2}")
            m.d.sync += reg.eq(sum_or(Mux(final, value, 0) for final, value in column[n:n + 2]))
            level.append(reg)
        depth = 1
        while len(level) > 1:
            nxt = []
            for n in range(0, len(level), 4):
                reg = Signal(len(level[0]), name=f"{name}_l{depth}_{n // 4}")
                m.d.sync += reg.eq(sum_or(level[n:n + 4]))
                nxt.append(reg)
            level, depth = nxt, depth + 1
        return level[0]

    def _tag_path(self, m, lead, *, hold):
        """Tags (and, weight-stationary, valid flags) along the bottom edge: column ``c`` sees a
        step's tag ``lead + c`` cycles after the step. With ``hold``, each column keeps the tag
        of the last step of a tile from then on (output-stationary read-out)."""
        tag = Signal(self.i_tag.shape())
        flag = Signal()
        m.d.comb += [tag.eq(self.i_tag),
                     flag.eq(self.i_valid & (self.i_last if hold else 1))]
        tag, flag = delay(m, tag, lead - 1, "tag"), delay(m, flag, lead - 1, "tagv")
        for c in range(self.cols):
            col_tag = Signal(self.i_tag.shape(), name=f"tag_c{c}")
            col_flag = Signal(name=f"tagv_c{c}")
            m.d.sync += col_flag.eq(flag)
            if hold:
                with m.If(flag):
                    m.d.sync += col_tag.eq(tag)
            else:
                m.d.sync += col_tag.eq(tag)
                m.d.comb += self.o_valid[c].eq(col_flag)
            m.d.comb += self.o_tag[c].eq(col_tag)
            tag, flag = col_tag, col_flag


def sum_or(values):
    """Bitwise OR of ``values``."""
    values = list(values)
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result
