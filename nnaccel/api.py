"""The Python API: load a model, generate a design, predict, save and re-open it.

>>> m = nnaccel.load("models/tiny")            # a model directory or an .onnx file
>>> d = m.generate(max_lanes=16)
>>> y = d.predict(x, backend="verilator")      # numpy array, bit-exact to m.predict(x)
>>> d.save("out/tiny"); d2 = nnaccel.open("out/tiny")

Options and inputs are checked exactly as the command line checks them (the same code): bad
ones raise the typed errors of :mod:`nnaccel.gen.errors` (``UsageError``, ``ModelError``), which
the command line turns into exit status 2. Nothing here imports torch or cocotb until a call
needs them.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from .gen.errors import UsageError

__all__ = ["Model", "Design", "load", "from_onnx", "open"]

#: The file :meth:`Design.save` writes beside the Verilog and manifest, to re-open the design.
SOURCE = "nnaccel-source.json"
_SOURCE_FORMAT = "nnaccel-source/1"


def _shape(shape):
    return "x".join(str(int(d)) for d in shape)


def load(path):
    """Load a model directory (``model.json`` + ``weights.npz``) or an ONNX/QONNX file.

    Parameters
    ----------
    path : str or Path
        A model directory, or a file whose name ends in ``.onnx`` (imported as ``nnaccel
        import`` would, named after the file's stem).

    Returns
    -------
    Model

    Raises
    ------
    ModelError, UsageError
        The model is not valid; the message names the layer and the field.
    """
    from . import cli

    return Model(cli._read(path), path=Path(path))


def from_onnx(path):
    """Import an ONNX/QONNX file (Brevitas, FINN, onnxruntime int8) as a :class:`Model`."""
    if not str(path).lower().endswith(".onnx"):
        raise UsageError(f"field 'path': {str(path)!r} is not an .onnx file")
    return load(path)


def _fold_text(value):
    return value if isinstance(value, str) else "x".join(str(int(v)) for v in value)


def _options(model, *, target_cycles=None, max_lanes=None, batch=1, folds=None,
             engines=None, storage=None, arrays=None, sparse=None, board=None, fill=None):
    """Options for ``model`` from keyword arguments, validated by the command line's parser of
    the same options (so both refuse the same things with the same messages)."""
    from . import cli

    for flag, value, largest in (("target_cycles", target_cycles, cli._MAX_COUNT),
                                 ("max_lanes", max_lanes, cli._MAX_COUNT),
                                 ("batch", batch, cli.MAX_BATCH)):
        if value is None and flag != "batch":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
                1 <= value <= largest):
            raise UsageError(f"{flag}: expected a positive integer up to {largest}, not "
                             f"{value!r}")
    if sum(v is not None for v in (target_cycles, max_lanes, fill)) > 1:
        raise UsageError("target_cycles, max_lanes and fill: give at most one of them")
    if fill is not None:
        fill = cli._fill_value("fill", fill)

    def items(flag, table):
        if table is None:
            return ()
        if not isinstance(table, dict):
            raise UsageError(f"{flag}: expected a dict from layer names to values")
        return table.items()

    args = argparse.Namespace(
        target_cycles=target_cycles, max_lanes=max_lanes, batch=int(batch), board=board,
        fill=fill,
        fold=[f"{k}={_fold_text(v)}" for k, v in items("folds", folds)],
        engine=[f"{k}={getattr(v, 'value', v)}" for k, v in items("engines", engines)],
        weight_storage=[f"{k}={getattr(v, 'value', v)}" if k != "*" else str(
            getattr(v, "value", v)) for k, v in items("storage", storage)],
        array=[f"{k}={v}" if isinstance(v, str) else
               f"{k}={int(v[0])}x{int(v[1])}" + (f",{getattr(v[2], 'value', v[2])}"
                                                 if len(v) > 2 and v[2] else "")
               for k, v in items("arrays", arrays)],
        sparse=[f"{k}={v}" if isinstance(v, str) else
                f"{k}={','.join(str(int(n)) for n in (v if isinstance(v, tuple) else (v,)))}"
                for k, v in items("sparse", sparse)])
    return cli._options(args, model)


class Model:
    """A validated integer model (SPEC section 2) with its numpy reference.

    Attributes
    ----------
    ir : nnaccel.gen.ir.Model
        The model's IR (layers, weights, dtypes).
    path : Path or None
        Where it was loaded from.
    """

    def __init__(self, ir, *, path=None):
        self.ir = ir
        self.path = None if path is None else Path(path)

    @property
    def name(self):
        return self.ir.name

    @property
    def input_shape(self):
        return tuple(self.ir.input_shape)

    @property
    def output_shape(self):
        return tuple(self.ir.out_shape)

    def __repr__(self):
        return (f"<nnaccel.Model {self.name!r}: input {self.ir.input_dtype} x "
                f"{_shape(self.input_shape)} -> {self.ir.output_dtype} x "
                f"{_shape(self.output_shape)}, {len(self.ir.layers)} layers>")

    def predict(self, x, *, float_io=False):
        """The numpy reference on a batch.

        Parameters
        ----------
        x : array_like
            Integers of shape ``(B, *input_shape)`` (feature maps in C, H, W order) in the
            model's input dtype; integral floats are accepted.
        float_io : bool
            ``x`` holds real values: quantize them as the source graph's input quantizer does
            and return real outputs (the model's float boundary, docs/FORMAT.md; an imported
            model has it).

        Returns
        -------
        numpy.ndarray
            ``(B, *output_shape)`` int64, the exact outputs (SPEC section 2); float64 real
            values with ``float_io``.
        """
        y = np.asarray(self.ir.forward(self.quantize(x) if float_io else self._check(x)),
                       dtype=np.int64)
        return self.dequantize(y) if float_io else y

    def _check(self, x):
        from . import cli

        return cli.check_input(np.asarray(x), self.ir)

    def quantize(self, x_real):
        """The integer inputs of real inputs ``(B, *input_shape)``, as the source graph's
        first quantizer computes them (UsageError when the model has no input quantizer)."""
        from . import cli

        return self._check(cli.float_io(self.ir, outputs=False).quantize(x_real, self.ir))

    def dequantize(self, y):
        """Real values ``scale * y + offset`` of integer outputs ``y`` (float64)."""
        from . import cli

        return cli.float_io(self.ir, outputs=False).dequantize(y, self.ir)

    def generate(self, *, max_lanes=None, target_cycles=None, batch=1, folds=None,
                 engines=None, storage=None, arrays=None, sparse=None, board=None, fill=None):
        """Compile the model into a :class:`Design`, as ``nnaccel generate`` does.

        Parameters
        ----------
        max_lanes, target_cycles : int, optional
            The budget: fastest folding within ``max_lanes`` lanes, or the fewest lanes that
            reach ``target_cycles`` cycles per inference (at most one; default 64 lanes).
        board, fill : str and float, optional
            Instead: the folding of most estimated throughput within ``fill`` (0 < fill <= 1)
            of ``board``'s LUT4, block RAM and DSP (the resource model,
            :mod:`nnaccel.gen.resources`), as ``--board NAME --fill F``.
        batch : int
            Vectors per batch (dense layers then prefer the systolic engine).
        folds : dict, optional
            ``{layer: (pe, simd)}`` or ``{layer: "PExSIMD"}``.
        engines : dict, optional
            ``{layer: "mvu" | "sparse" | "systolic"}``.
        storage : dict, optional
            ``{layer or "*": "auto" | "bram" | "logic"}``.
        arrays : dict, optional
            ``{layer: (rows, cols[, "ws" | "os"])}`` for systolic layers.
        sparse : dict, optional
            ``{layer: pes}`` or ``{layer: (pes, depth)}`` for sparse layers.

        Raises
        ------
        UsageError, ModelError
            The options are refused (a layer the model lacks, a fold that does not divide...).
        """
        from .gen.generate import generate

        options = _options(self.ir, max_lanes=max_lanes, target_cycles=target_cycles,
                           batch=batch, folds=folds, engines=engines, storage=storage,
                           arrays=arrays, sparse=sparse, board=board, fill=fill)
        recorded = {"max_lanes": max_lanes, "target_cycles": target_cycles, "batch": batch,
                    "folds": {k: _fold_text(v) for k, v in (folds or {}).items()},
                    "engines": {k: str(getattr(v, "value", v)) for k, v in
                                (engines or {}).items()},
                    "storage": {k: str(getattr(v, "value", v)) for k, v in
                                (storage or {}).items()},
                    "arrays": {k: v if isinstance(v, str) else
                               [getattr(e, "value", e) for e in v]
                               for k, v in (arrays or {}).items()},
                    "sparse": {k: v if isinstance(v, (str, int)) else list(v)
                               for k, v in (sparse or {}).items()}}
        return Design(generate(self.ir, options), model=self, options=recorded)


class Design:
    """A generated accelerator.

    Attributes
    ----------
    model : Model
        The model it computes.
    manifest : dict
        The manifest (``manifest.json``): IO, per-layer engine, fold, lanes, cycles.
    """

    def __init__(self, design, *, model, options):
        self._design = design
        self.model = model
        self.options = options
        self._verilog = None
        #: The :class:`~nnaccel.sim.verilator.SimResult` of the last Verilator ``predict``
        #: (cycles per inference, latency, idle and back-pressure cycles), or None.
        self.last_simulation = None

    @property
    def name(self):
        return self._design.name

    @property
    def manifest(self):
        return self._design.manifest

    @property
    def verilog(self):
        """The Verilog text of the AXI4-Stream top level (generated once, then kept)."""
        if self._verilog is None:
            self._verilog = self._design.verilog()
        return self._verilog

    def __repr__(self):
        m = self.manifest
        return (f"<nnaccel.Design {self.name!r}: {len(m['layers'])} layers, {m['lanes']} "
                f"lanes, {m['expected_cycles_per_inference']} cycles per inference>")

    def report(self, *, as_text=True, board="ulx3s-85f"):
        """The per-layer table: engine, fold (PE x SIMD), lanes, expected cycles and the
        resource model's estimates on ``board``'s device (LUT4, FF, BRAM, DSP, Fmax; each
        layer's input FIFO included), as ``nnaccel generate --report`` prints it.

        Returns
        -------
        str or list of dict
            The table as text (``as_text=True``), else one dict per layer with the keys
            ``layer``, ``engine``, ``fold``, ``lanes``, ``expected_cycles``, ``lut4``, ``ff``,
            ``bram``, ``dsp``, ``fmax_mhz``.
        """
        from .boards.platforms import get_board
        from .gen.resources import design_report, device_for, format_design_report

        report = design_report(self._design, device_for(get_board(board).device))
        if as_text:
            return format_design_report(report)
        return [{**{k: v for k, v in r.items() if k != "cycles"},
                 "expected_cycles": r["cycles"]} for r in report["layers"]]

    def predict(self, x, backend="numpy", stress=False, seed=0, *, float_io=False):
        """Outputs of the design on a batch.

        Parameters
        ----------
        x : array_like
            ``(B, *input_shape)`` integers (feature maps in C, H, W order).
        backend : {"numpy", "verilator"}
            ``numpy``: the reference model; ``verilator``: simulate this design's Verilog.
        stress : bool
            Verilator: random idle input cycles and output back-pressure (as ``run
            --stress``), seeded with ``seed``.
        float_io : bool
            ``x`` holds real values, quantized by the model's input quantizer; the outputs are
            real values (``run --float``; see :meth:`Model.predict`).

        Returns
        -------
        numpy.ndarray
            ``(B, *output_shape)`` int64 (float64 with ``float_io``). A Verilator run also
            sets :attr:`last_simulation` (its measured cycles).

        Raises
        ------
        UsageError
            A bad input or backend.
        AssertionError
            The simulated hardware differs from the numpy reference (a bug in nnaccel).
        """
        from . import cli

        if backend not in ("numpy", "verilator"):
            raise UsageError(f"backend: expected 'numpy' or 'verilator', not {backend!r}")
        X = self.model.quantize(x) if float_io else self.model._check(x)
        if backend == "numpy":
            y = self.model.predict(X)
        else:
            from .sim.design import simulate

            p = cli.STRESS if stress else 0.0
            outputs, self.last_simulation = simulate(self._design, X, idle=p, stall=p,
                                                     seed=seed, check=True)
            y = np.asarray(outputs, dtype=np.int64)
        return self.model.dequantize(y) if float_io else y

    def build(self, board, outdir=None, *, force=False, log=None):
        """Synthesis, place and route and bitstream of this design for ``board``, as ``nnaccel
        build`` does (yosys + nextpnr; minutes to an hour).

        Parameters
        ----------
        board : str
            A board name, e.g. ``"ulx3s-85f"`` or ``"icebreaker"``.
        outdir : path-like, optional
            The build directory; default ``build/<name>-<board>``. Written complete or not at
            all, never over a user's directory; an earlier build is replaced only with
            ``force``.
        log : callable or text stream, optional
            Progress (stderr when None).

        Returns
        -------
        dict
            The report (``resources``, ``fmax_mhz``, ``timing_met``, ``bitstream`` path, ...,
            see :func:`nnaccel.boards.build.build`) with ``manifest`` and
            ``inferences_per_second_at_fmax`` added; also in ``outdir/report.json``.

        Raises
        ------
        UsageError
            An unknown board or an output directory that may not be written.
        ToolError
            A tool is missing or failed.
        """
        from .boards.build import build
        from .boards.platforms import get_board
        from .gen.atomic import output_policy

        get_board(board)
        outdir = Path(outdir) if outdir is not None else Path("build") / f"{self.name}-{board}"
        cycles = self.manifest["expected_cycles_per_inference"]

        def finish(report):
            report["manifest"] = self.manifest
            report["inferences_per_second_at_fmax"] = report["fmax_mhz"] * 1e6 / cycles
            return {"manifest.json": json.dumps(self.manifest, indent=2) + "\n"}

        inputs = () if self.model.path is None else (self.model.path,)
        with output_policy(command="build", force=force, inputs=inputs):
            io = self.manifest["io"]
            return build(self._design.network, board, outdir, name=self.name, log=log,
                         finish=finish, in_beats=io["input"]["beats"],
                         out_beats=io["output"]["beats"])

    def save(self, path, *, force=False):
        """Write ``<name>.v``, ``manifest.json`` and :data:`SOURCE` (the model's absolute path
        and the options) to the directory ``path``, as ``nnaccel generate`` writes: complete or
        absent, never over anything but an earlier output of ``generate`` (and that only with
        ``force``). Returns ``path`` as a Path."""
        from .gen.atomic import output_policy

        if self.model.path is None:
            raise UsageError("save: the model was not loaded from a path; nnaccel.open could "
                             "not find it again")
        source = {"format": _SOURCE_FORMAT, "model": str(self.model.path.resolve()),
                  "options": self.options}
        with output_policy(command="generate", force=force, inputs=(self.model.path,)):
            return self._design.write(path, extra={
                SOURCE: json.dumps(source, indent=2) + "\n"})


def open(path):  # noqa: A001 - nnaccel.open, as the brief names it
    """Re-open a design written by :meth:`Design.save`.

    The design is regenerated from the model at the absolute path recorded in :data:`SOURCE`
    with the recorded options, and its manifest is compared with the saved one: a model changed
    since (or a different nnaccel) is refused rather than silently giving another design.

    Raises
    ------
    UsageError
        ``path`` is not a saved design, its model is gone, or the design differs.
    """
    path = Path(path)
    try:
        source = json.loads((path / SOURCE).read_text())
        saved = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{str(path)!r} is not a design saved by nnaccel's Design.save: "
                         f"{e}") from None
    if not isinstance(source, dict) or source.get("format") != _SOURCE_FORMAT:
        raise UsageError(f"{str(path / SOURCE)!r}: not format {_SOURCE_FORMAT!r}")
    options = source["options"]
    model = load(source["model"])
    design = model.generate(**options)
    if design.manifest != saved:
        raise UsageError(f"{str(path)!r}: regenerating from {source['model']!r} gives a "
                         "different design (the model or nnaccel changed since it was saved)")
    return design
