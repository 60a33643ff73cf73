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

__all__ = ["Model", "Design", "load", "from_onnx", "from_torch", "open", "program"]

#: The file :meth:`Design.save` (and ``nnaccel generate``) writes beside the Verilog and
#: manifest: the generation options (the model is copied into ``model/``).
SOURCE = "nnaccel-source.json"


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


def from_torch(module, example_input, *, name=None):
    """Import a Brevitas-quantized PyTorch module: exported to QONNX with Brevitas'
    ``export_qonnx`` (in eval mode; the module's mode is restored), then read as
    :func:`from_onnx` reads a file.

    Parameters
    ----------
    module : torch.nn.Module
        A network whose input passes through a Brevitas quantizer first (``QuantIdentity``,
        ...) and whose layers are the ones ``nnaccel import`` accepts (docs/FORMAT.md).
    example_input : torch.Tensor or array_like
        One input batch, ``(1, *input_shape)``: it fixes the shapes of the export.
    name : str, optional
        The model's name (default: the module's class name in lower case).

    Returns
    -------
    Model
        With the float boundary of the module's quantizers: ``predict(x, float_io=True)``
        takes and returns the module's real values.

    Raises
    ------
    UsageError
        torch or brevitas is missing, or the export failed.
    OnnxError
        The exported graph cannot be imported (the node and the reason named).
    """
    import tempfile
    import warnings

    from . import cli
    from .gen.names import name_problem, safe_name

    try:
        with warnings.catch_warnings():  # brevitas warns about its own deprecations
            warnings.simplefilter("ignore")
            import torch
            from brevitas.export import export_qonnx
    except ImportError as e:
        raise UsageError(f"from_torch: needs torch and brevitas (pip install -e '.[onnx]'): "
                         f"{e}") from None
    if name is None:
        name = safe_name(type(module).__name__.lower())
    elif name_problem(name) is not None:
        raise UsageError(f"name: {name_problem(name)}")
    x = torch.as_tensor(np.asarray(example_input, dtype=np.float32)) if not isinstance(
        example_input, torch.Tensor) else example_input
    training = module.training
    with tempfile.TemporaryDirectory(prefix="nnaccel-torch-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            module.eval()
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                export_qonnx(module, x, str(path), dynamo=False)
        except Exception as e:  # the module, not nnaccel: bad input
            text = " ".join(str(e).split())[:300]
            raise UsageError(f"from_torch: Brevitas' QONNX export failed: {type(e).__name__}: "
                             f"{text}") from None
        finally:
            module.train(training)
        return Model(cli._import(path, name=name).model)


def _fold_text(value):
    return value if isinstance(value, str) else "x".join(str(int(v)) for v in value)


def _options(model, *, target_cycles=None, max_lanes=None, batch=1, folds=None,
             engines=None, storage=None, arrays=None, sparse=None, board=None, fill=None):
    """``(record, options)`` for ``model`` from keyword arguments: the command line's form of
    them (:func:`nnaccel.cli.generation_record`) and the Options its parser of the same
    options makes (so both refuse the same things with the same messages)."""
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
    return cli.generation_record(args), cli._options(args, model)


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

        recorded, options = _options(self.ir, max_lanes=max_lanes, target_cycles=target_cycles,
                                     batch=batch, folds=folds, engines=engines,
                                     storage=storage, arrays=arrays, sparse=sparse,
                                     board=board, fill=fill)
        return Design(generate(self.ir, options), model=self, options=recorded)

    def sweep(self, grid, **kwargs):
        """Generate, measure under Verilator and build every point of ``grid``, each point a
        Ray task, as ``nnaccel sweep`` does (:func:`nnaccel.sweep.sweep`, whose keyword
        arguments this takes: ``board``, ``target``, ``build``, ``address``, ``cache``,
        ``output``, ...).

        >>> r = nnaccel.load("models/tiny").sweep({"max-lanes": [8, 16]}, build=False)
        >>> [p["cycles_per_inference"] for p in r.points]

        Parameters
        ----------
        grid : dict
            ``{key: [values]}``: ``max-lanes``, ``target-cycles``, ``batch``,
            ``storage[.LAYER]``, ``fold.LAYER``, ``engine.LAYER``, ``array.LAYER``,
            ``sparse.LAYER``.

        Returns
        -------
        nnaccel.sweep.SweepResult
            ``points`` (one dict per point: options, ``cycles_per_inference``, resources and
            ``fmax_mhz`` when built, ...), and the counts ``computed``, ``cached``, ``failed``.
        """
        from .sweep import sweep

        if self.path is None:
            raise UsageError("sweep: the model was not loaded from a path, which the design "
                             "hash of the cache is taken from")
        return sweep(self.path, grid, **kwargs)


class Design:
    """A generated accelerator.

    Attributes
    ----------
    model : Model
        The model it computes.
    manifest : dict
        The manifest (``manifest.json``): IO, per-layer engine, fold, lanes, cycles.
    options : dict
        The generation options in the command line's form (``{"max_lanes": 16, "fold":
        ["fc1=4x8"], ...}``), recorded by :meth:`save`.
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

    def build(self, board, outdir=None, *, force=False, log=None, clock=None):
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
        clock : None, "auto" or float
            None: the board's oscillator (link at 115200 baud); "auto": build once, read
            nextpnr's Fmax and build again from the PLL just below it; a number: that PLL clock
            in MHz (``nnaccel build --clock``; :mod:`nnaccel.boards.clocking`).

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
            options = dict(name=self.name, log=log, finish=finish,
                           in_beats=io["input"]["beats"], out_beats=io["output"]["beats"])
            if clock is None:
                return build(self._design.network, board, outdir, **options)
            from . import cli
            from .boards.clocking import build_clocked

            if log is None:
                options["log"] = cli.log
            return build_clocked(self._design.network, board, outdir,
                                 clock_mhz=None if clock == "auto" else clock, **options)

    def run_on_board(self, x, port, *, board, clock_mhz=None, check=True, **link_options):
        """Run the batch ``x`` on a board programmed with this design, over its serial link
        (``nnaccel run --backend board``).

        Parameters
        ----------
        x : array_like
            The batch, ``(B, *input_shape)``.
        port : str
            The serial port, or the pty of :meth:`board_sim`.
        board : str
            The board's name (its link rate).
        clock_mhz : float, optional
            The network's clock (the build report's ``clock_mhz``; default the oscillator), to
            turn the device's cycle counts into seconds.
        check : bool
            Compare with numpy; a difference raises ToolError.
        link_options
            Of :class:`nnaccel.boards.host.BoardLink` (``baudrate``, ``timeout``, ...).

        Returns
        -------
        (numpy.ndarray, dict)
            The outputs and the measurements (:func:`nnaccel.board.run_on_board`).
        """
        from . import cli
        from .board import link_baud, run_on_board
        from .boards.host import BoardLink
        from .boards.platforms import get_board

        spec = get_board(board)
        X = cli.check_input(np.asarray(x), self.model.ir)
        clock_hz = (clock_mhz or spec.clock_hz / 1e6) * 1e6
        link_options.setdefault("baudrate", link_baud(board))
        with BoardLink(port, **link_options) as link:
            return run_on_board(self._design, X, link, clock_hz=clock_hz, check=check)

    def board_sim(self, board, *, corrupt=0.0, seed=0):
        """The whole board top under Verilator behind a pty (``nnaccel board-sim``): a context
        manager whose ``port`` any serial program opens; its ``link()`` is a host driver with
        deadlines for simulation speed, ``clock_hz`` the simulated clock."""
        from .board import BoardSim

        return BoardSim(self._design, board=board, corrupt=corrupt, seed=seed)

    def save(self, path, *, force=False):
        """Write ``<name>.v``, ``manifest.json``, :data:`SOURCE` (the options) and a copy of the
        model (``model/``) to the directory ``path``, as ``nnaccel generate`` writes: complete or
        absent, never over anything but an earlier output of ``generate`` (and that only with
        ``force``). ``nnaccel run path``, ``nnaccel build path`` and :func:`open` use exactly
        this design. Returns ``path`` as a Path."""
        from . import cli
        from .gen.atomic import output_policy

        inputs = () if self.model.path is None else (self.model.path,)
        with output_policy(command="generate", force=force, inputs=inputs):
            return self._design.write(path, extra=cli.source_files(self.model.ir,
                                                                   self.options))


def program(build_dir, *, cable=None, flash=False):
    """Load the bitstream of a build directory with openFPGALoader (``nnaccel program``);
    UsageError says what is missing when it cannot run."""
    from .board import program as _program

    return _program(build_dir, cable=cable, flash=flash)


def open(path):  # noqa: A001 - nnaccel.open, as the brief names it
    """Re-open a design written by :meth:`Design.save` or ``nnaccel generate``.

    The design is generated again from the directory's model copy with the recorded options,
    and its manifest and Verilog are compared with the saved ones: edited files (or a different
    nnaccel) are refused rather than silently giving another design.

    Raises
    ------
    UsageError
        ``path`` is not a generated directory, or the design differs.
    """
    from . import cli

    path = Path(path)
    if not cli.is_generated(path):
        raise UsageError(f"{str(path)!r} is not a design written by nnaccel generate or "
                         "Design.save")
    ir, record, manifest = cli.open_generated(path)
    design = cli.regenerate(path, ir, record, manifest)
    return Design(design, model=Model(ir, path=path / "model"), options=record)
