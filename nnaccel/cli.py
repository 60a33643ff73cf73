"""The ``nnaccel`` command line (../shared/SPEC.md section 4)."""

import argparse
import contextlib
import functools
import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

from .gen.atomic import check_output, output_policy
from .gen.errors import NnaccelError, UsageError
from .gen.names import name_problem, safe_name

__all__ = ["main", "build_parser"]

# (numbers of at most 9 digits: sizes, never thousands of digits that int() refuses)
_FOLD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([0-9]{1,9})x([0-9]{1,9})\Z")
_ASSIGN = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]*)=)?([a-z]+)\Z")
_ARRAY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([0-9]{1,9})x([0-9]{1,9})(?:,([a-z]+))?\Z")
_SPARSE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([0-9]{1,9})(?:,([0-9]{1,9}))?\Z")
#: The largest count an option takes (cycles, lanes, batch, ...).
_MAX_COUNT = (1 << 31) - 1


def log(message):
    """Progress and notes go to stderr, so stdout stays for results (``--json``)."""
    print(message, file=sys.stderr, flush=True)


def _positive(text, largest=_MAX_COUNT):
    try:
        value = int(text) if len(text) <= 20 else 0
    except ValueError:
        value = 0
    if not 1 <= value <= largest:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {largest}, not "
                                         f"{text[:40]!r}{'...' if len(text) > 40 else ''}")
    return value


#: The largest ``--batch``: generation time grows with it (65536 takes seconds, 2**20 minutes).
MAX_BATCH = 1 << 16


def _batch(text):
    return _positive(text, MAX_BATCH)


def _period(text):
    try:
        value = float(text) if len(text) <= 20 else 0.0
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"expected a clock period in ns (> 0), not "
                                         f"{text[:40]!r}")
    return value


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), not {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), not {text!r}")
    return value


def _fill_value(flag, value):
    """``value`` as a fraction in (0, 1], else UsageError naming ``flag``."""
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = None
    if isinstance(value, bool) or fraction is None or not 0 < fraction <= 1:
        raise UsageError(f"{flag}: expected a fraction in (0, 1], not {str(value)[:40]!r}")
    return fraction


def _fill(text):
    try:
        return _fill_value("--fill", text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None


def _add_generate_options(p):
    g = p.add_argument_group("generation (shared by generate, run and build)")
    budget = g.add_mutually_exclusive_group()
    budget.add_argument("--target-cycles", type=_positive, metavar="N",
                        help="fold every layer to at most N cycles per inference, with the "
                             "fewest lanes")
    budget.add_argument("--max-lanes", type=_positive, metavar="N",
                        help="fastest folding using at most N lanes (multipliers or XNOR "
                             "lanes) in all; the default is 64")
    budget.add_argument("--fill", type=_fill, metavar="F",
                        help="with --board: the folding of most estimated throughput whose "
                             "estimated LUT4, block RAM and DSP stay within F (0 < F <= 1) of "
                             "the board's device (the resource model, generate --report)")
    g.add_argument("--fold", action="append", default=[], metavar="LAYER=PExSIMD",
                   help="force a layer's folding, e.g. fc1=4x8 (repeatable)")
    g.add_argument("--engine", action="append", default=[], metavar="LAYER=ENGINE",
                   help="force a layer's engine: mvu, sparse or systolic (repeatable)")
    g.add_argument("--weight-storage", action="append", default=[], metavar="[LAYER=]WHERE",
                   help="auto (default: constants when a layer is fully unfolded, else block "
                        "RAM), bram or logic; for all layers or one (repeatable)")
    g.add_argument("--batch", type=_batch, default=1, metavar="B",
                   help="generate for batches of B vectors (dense layers prefer the systolic "
                        "engine); run pads its input to a multiple of B")
    g.add_argument("--array", action="append", default=[], metavar="LAYER=RxC[,ws|os]",
                   help="force a systolic layer's array (rows x cols) and dataflow, e.g. "
                        "fc2=8x8,ws (repeatable)")
    g.add_argument("--sparse", action="append", default=[], metavar="LAYER=N[,D]",
                   help="force a sparse layer's PEs N and queue depth D (default 8), e.g. "
                        "fc1=16 (repeatable)")
    g.add_argument("--fifo-sizing", choices=("rule", "simulation"), default="rule",
                   help="a graph's join FIFOs: 'rule' (default) the closed-form bound; "
                        "'simulation' the least depths that keep the rate without deadlock, "
                        "measured on the graph's own schedule in amaranth.sim (slower)")


def _options(args, model):
    from .gen.folding import Fold
    from .gen.plan import ArrayChoice, Engine, Options, SparseChoice
    from .hw.common.memory import Storage
    from .hw.systolic.params import Dataflow

    names = {layer.name for layer in model.layers}

    def known(layer, flag):
        if layer not in names:
            raise UsageError(f"{flag} names layer {layer!r}, which the model does not have "
                             f"(layers: {', '.join(layer.name for layer in model.layers)})")
        return layer

    folds = []
    for text in args.fold:
        m = _FOLD.match(text)
        if not m or int(m.group(2)) < 1 or int(m.group(3)) < 1:
            raise UsageError(f"--fold {text!r}: expected LAYER=PExSIMD, e.g. fc1=4x8")
        folds.append((known(m.group(1), "--fold"), Fold(int(m.group(2)), int(m.group(3)))))
    engines = []
    for text in args.engine:
        m = _ASSIGN.match(text)
        if not m or not m.group(1):
            raise UsageError(f"--engine {text!r}: expected LAYER=ENGINE, e.g. fc1=mvu")
        try:
            engines.append((known(m.group(1), "--engine"), Engine(m.group(2))))
        except ValueError:
            raise UsageError(f"--engine {text!r}: unknown engine {m.group(2)!r} "
                             "(mvu, sparse, systolic)") from None
    storage = []
    for text in args.weight_storage:
        m = _ASSIGN.match(text)
        try:
            where = Storage(m.group(2)) if m else None
        except ValueError:
            where = None
        if where is None:
            raise UsageError(f"--weight-storage {text!r}: expected [LAYER=]auto|bram|logic")
        storage.append((known(m.group(1), "--weight-storage") if m.group(1) else "*", where))
    arrays = []
    for text in args.array:
        m = _ARRAY.match(text)
        if not m or int(m.group(2)) < 1 or int(m.group(3)) < 1:
            raise UsageError(f"--array {text!r}: expected LAYER=RxC[,ws|os], e.g. fc2=8x8,ws")
        try:
            flow = Dataflow(m.group(4)) if m.group(4) else None
        except ValueError:
            raise UsageError(f"--array {text!r}: unknown dataflow {m.group(4)!r} (ws, os)"
                             ) from None
        arrays.append((known(m.group(1), "--array"),
                       ArrayChoice(int(m.group(2)), int(m.group(3)), flow)))
    sparse = []
    for text in args.sparse:
        m = _SPARSE.match(text)
        if not m or int(m.group(2)) < 1 or (m.group(3) and int(m.group(3)) < 1):
            raise UsageError(f"--sparse {text!r}: expected LAYER=N[,D] with positive N and D, "
                             "e.g. fc1=16,8")
        depth = int(m.group(3)) if m.group(3) else 8
        sparse.append((known(m.group(1), "--sparse"), SparseChoice(int(m.group(2)), depth)))
    device = None
    if args.fill is not None:
        device = _board_device(args)
    return Options(target_cycles=args.target_cycles, max_lanes=args.max_lanes,
                   batch=args.batch, folds=tuple(folds), engines=tuple(engines),
                   storage=tuple(storage), arrays=tuple(arrays), sparse=tuple(sparse),
                   board=device, fill=args.fill,
                   fifo_sizing=getattr(args, "fifo_sizing", "rule"))


def _board_device(args, default=None):
    """The resource model's Device of ``--board`` (``default`` board name when not given)."""
    from .boards.platforms import get_board
    from .gen.resources import device_for

    name = getattr(args, "board", None) or default
    if name is None:
        raise UsageError("--fill: needs --board NAME (the device whose resources it fills)")
    return device_for(get_board(name).device)


def validate_options(model, options):
    """Refuse ``options`` that ``generate`` would refuse for ``model`` (a layer that does not
    exist, a fold that does not divide, an engine that cannot run a layer), without lowering
    the design to hardware: the numpy backend of ``run`` checks its options with it."""
    from .gen.generate import generate

    generate(model, options, stop_after="folding")


#: The file of a generated directory that records how it was generated: the generation
#: options; the model itself is copied into the directory's ``model/`` (model.json +
#: weights.npz), so that ``run DIR`` and ``build DIR`` use exactly the generated design.
SOURCE = "nnaccel-source.json"
SOURCE_FORMAT = "nnaccel-source/1"


def _generation_defaults():
    parser = argparse.ArgumentParser(add_help=False)
    _add_generate_options(parser)
    return vars(parser.parse_args([]))


def generation_record(args):
    """The generation options of ``args`` (every option of :func:`_add_generate_options`, and
    the ``board`` that ``--fill`` fills) as a JSON-able dict, the form a generated directory
    records."""
    return {**{k: getattr(args, k, v) for k, v in _generation_defaults().items()},
            "board": getattr(args, "board", None)}


def source_files(model, record):
    """The files (``Design.write``'s ``extra``) that make a generated directory reproducible:
    :data:`SOURCE` with ``record`` and a copy of ``model`` in ``model/``."""
    import io

    from .gen.model_io import model_to_json

    doc, arrays = model_to_json(model)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    source = {"format": SOURCE_FORMAT, "model": "model", "options": record}
    return {SOURCE: json.dumps(source, indent=2) + "\n",
            "model/model.json": json.dumps(doc, indent=2) + "\n",
            "model/weights.npz": buf.getvalue()}


def is_generated(path):
    """True when ``path`` is a directory written by ``generate`` (or ``Design.save``)."""
    path = Path(path)
    return path.is_dir() and (path / SOURCE).is_file() and (path / "manifest.json").is_file()


def open_generated(path):
    """``(model, record, manifest)`` of the generated directory ``path``.

    Raises
    ------
    UsageError
        ``path`` is not a generated directory, or its files are damaged.
    """
    from .gen.model_io import read_model

    path = Path(path)
    try:
        source = json.loads((path / SOURCE).read_text())
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{str(path)!r} is not a directory written by nnaccel generate: "
                         f"{e}") from None
    defaults = {**_generation_defaults(), "board": None}
    if (not isinstance(source, dict) or source.get("format") != SOURCE_FORMAT
            or not isinstance(source.get("options"), dict)
            or not isinstance(source.get("model"), str)
            or not set(source["options"]) <= set(defaults)):
        raise UsageError(f"{str(path / SOURCE)!r}: not a {SOURCE_FORMAT!r} record of nnaccel "
                         "generate")
    model = read_model(path / source["model"])
    return model, {**defaults, **source["options"]}, manifest


def regenerate(path, model, record, manifest):
    """The design of the generated directory ``path``, generated again from its model copy
    and recorded options, and checked to be the one written there (manifest and Verilog)."""
    from .gen.generate import generate

    design = generate(model, _options(argparse.Namespace(**record), model))
    if "board" in manifest:
        design.manifest["board"] = manifest["board"]
    path = Path(path)
    verilog = path / f"{design.name}.v"
    if (design.manifest != manifest or not verilog.is_file()
            or verilog.read_text() != design.verilog()):
        raise UsageError(f"{str(path)!r}: generating it again from its model copy and "
                         "recorded options gives a different design (its files were edited, or "
                         "nnaccel changed since): generate it again")
    return design


def _refuse_conflicts(args, record, path):
    """Generation options given to ``run`` or ``build`` of a generated directory must be its
    recorded ones (or absent)."""
    for key, default in _generation_defaults().items():
        given = getattr(args, key, default)
        if given != default and given != record.get(key):
            raise UsageError(f"--{key.replace('_', '-')}: {str(path)!r} is a generated design, "
                             f"used exactly as generated (with {key} {record.get(key)!r}); "
                             "give its model to generate another")


def _source(args):
    """``(model, manifest, make_design)`` for ``run`` and ``build``: a generated directory
    gives its recorded design (conflicting generation options refused, manifest its own), a
    model the design of the options given (manifest None)."""
    if is_generated(args.model):
        model, record, manifest = open_generated(args.model)
        _refuse_conflicts(args, record, args.model)
        return model, manifest, lambda: regenerate(args.model, model, record, manifest)
    model = _read(args.model)
    return model, None, lambda: _design(args, model)


def _read(path):
    """A model directory, or an ONNX/QONNX file imported on the fly (nnaccel.gen.onnx), named
    after its file's stem -- made an acceptable name, with a note, if it is not one."""
    from .gen.model_io import read_model

    if str(path).lower().endswith(".onnx"):
        return _import(path, name=_stem_name(path)).model
    return read_model(path)


def _stem_name(path):
    """None when the stem of ``path`` names a model, else an acceptable name made from it (and
    a note on stderr saying so)."""
    stem = Path(path).stem
    if name_problem(stem) is None:
        return None
    name = safe_name(stem)
    log(f"note: the model is named {name!r}: the file's stem {stem!r} cannot name it "
        f"({name_problem(stem)}); nnaccel import --name chooses another")
    return name


@contextlib.contextmanager
def _writing(args, command, *inputs):
    """Check ``args.output`` before any work (SPEC section 5: a path that is not absent, empty
    or this command's earlier output is refused, untouched), and make every output directory
    written within the block one of ``command``'s."""
    with output_policy(command=command, force=args.force, inputs=inputs):
        if args.output is not None:
            check_output(args.output)
        yield


def _import(path, name=None):
    from .gen.onnx import import_onnx

    imported = import_onnx(path, name=name)
    for layer, eps in imported.max_error_lsb.items():
        log(f"note: {layer}: integer scales approximate onnxruntime's float ones; before "
            f"rounding it is off by at most {eps:.2g} LSB (outputs within 1 LSB)")
    return imported


def cmd_import(args):
    from .gen.model_io import write_model

    if args.name is not None and name_problem(args.name) is not None:
        raise UsageError(f"--name: {name_problem(args.name)}")
    with _writing(args, "import", args.file):
        imported = _import(args.file, name=args.name or _stem_name(args.file))
        model = imported.model
        path = write_model(model, args.output)
    if args.json:
        print(json.dumps(_import_summary(imported, path)))
        log(f"wrote {path / 'model.json'} and {path / 'weights.npz'}")
        return 0
    shape = "x".join(str(d) for d in model.input_shape)
    print(f"imported {model.name}: input {model.input_dtype} x {shape}, "
          f"{'exact' if imported.exact else 'int8 requant (within 1 LSB)'}")
    for layer in model.layers:
        shapes = " + ".join("x".join(map(str, model.shape_of(src))) for src in layer.inputs)
        weights = f", weights {layer.weight_dtype}" if hasattr(layer, "weight_dtype") else ""
        output = (f"output {layer.output.kind.value} {layer.output.dtype}"
                  if layer.output is not None else f"output {layer.out_dtype}")
        print(f"  {layer.name}: {layer.op.value} {shapes} -> "
              f"{'x'.join(map(str, layer.out_shape))}{weights}, {output}")
    log(f"wrote {path / 'model.json'} and {path / 'weights.npz'}")
    return 0


def _import_summary(imported, path):
    """``import --json``: the imported model's layers, one JSON object."""
    model = imported.model
    layers = []
    for layer in model.layers:
        layers.append({
            "name": layer.name, "op": layer.op.value, "inputs": list(layer.inputs),
            "in_shapes": [list(model.shape_of(src)) for src in layer.inputs],
            "out_shape": list(layer.out_shape),
            "weight_dtype": (str(layer.weight_dtype) if hasattr(layer, "weight_dtype")
                             else None),
            "output": None if layer.output is None else layer.output.kind.value,
            "out_dtype": str(layer.out_dtype)})
    return {"name": model.name, "output": str(path),
            "input": {"shape": list(model.input_shape), "dtype": str(model.input_dtype)},
            "exact": bool(imported.exact), "layers": layers}


def _design(args, model):
    from .gen.generate import generate

    return generate(model, _options(args, model))


def cmd_generate(args):
    if args.stop_after and args.stop_after != "check":  # prints the IR, writes nothing
        args.output = None
    with _writing(args, "generate", args.model):
        return _generate(args)


def _generate(args):
    from .gen.generate import generate
    from .plots import check_figure_path

    for flag, path in (("--diagram", args.diagram), ("--plot", args.plot)):
        if path is not None:
            check_figure_path(path, flag)
    model = _read(args.model)
    if args.board is not None:
        from .boards.platforms import get_board

        get_board(args.board)
    options = _options(args, model)
    if args.stop_after and args.stop_after != "check":
        plan = generate(model, options, stop_after=args.stop_after)
        print(json.dumps(plan.dump(), indent=2))
        return 0
    design = generate(model, options)
    if args.board is not None:
        design.manifest["board"] = args.board
    extra = {"ir.json": json.dumps(design.plan.dump(), indent=2) + "\n"} if args.dump_ir else {}
    extra.update(source_files(model, generation_record(args)))
    log(f"generating {design.name}: {len(model.layers)} layers, "
        f"{design.manifest['lanes']} lanes, "
        f"{design.manifest['expected_cycles_per_inference']} cycles per inference")
    out = design.write(args.output, extra=extra)
    log(f"wrote {out / (design.name + '.v')} and {out / 'manifest.json'}")
    if args.diagram is not None or args.plot is not None:
        from .plots import block_diagram, budget_plot

        if args.diagram is not None:
            log(f"wrote the block diagram {block_diagram(model, design.manifest, args.diagram)}")
        if args.plot is not None:
            log(f"wrote the cycles and lanes plot {budget_plot(design.manifest, args.plot)}")
    report = None
    if args.report:
        from .gen.resources import design_report, format_design_report

        report = design_report(design, _board_device(args, "ulx3s-85f"))
        if not args.json:
            print(format_design_report(report))
    if args.json:
        print(json.dumps({"output": str(out), "verilog": str(out / (design.name + ".v")),
                          "manifest": design.manifest,
                          **({"report": report} if report is not None else {})}))
    return 0


def _load_input(path, model, real=False):
    """The batch in ``path`` as the model's integer inputs; ``real``: real values, quantized
    by the model's input quantizer (``run --float``)."""
    from .gen.safeio import read_npy

    path = Path(path)
    X = read_npy(path, lambda message: UsageError(f"field 'input': {message}"))
    if real:
        X = float_io(model).quantize(X, model)
    return check_input(X, model, path)


def float_io(model, outputs=True):
    """The model's float boundary, refused (UsageError) when the model lacks the input
    quantizer or (``outputs``) the output scale."""
    from .gen.boundary import FloatIO

    fio = model.float_io or FloatIO()
    if fio.input is None:
        raise UsageError("field 'input': the model has no input quantizer (input.quantizer in "
                         "model.json, kept by nnaccel import); give integer inputs")
    if outputs and fio.output_scale is None:
        raise UsageError("field 'output': the model has no output scale (output.scale in "
                         "model.json, kept by nnaccel import)")
    return fio


def check_input(X, model, what="the input"):
    """``X`` as int64 if it is a batch ``(B, *model.input_shape)``, B >= 1, of integers in the
    model's input dtype (integral floats accepted); else a UsageError naming ``what``."""
    path = what
    shape = tuple(model.input_shape)
    if X.ndim != len(shape) + 1 or tuple(X.shape[1:]) != shape or len(X) == 0:
        raise UsageError(f"field 'input': {path} has shape {X.shape}; expected (B, "
                         f"{', '.join(map(str, shape))}) with B >= 1")
    if np.issubdtype(X.dtype, np.floating):
        if not np.all(np.isfinite(X)) or not np.all(X == np.round(X)):
            raise UsageError(f"field 'input': {path} holds non-integer values")
    elif not (np.issubdtype(X.dtype, np.integer) or X.dtype == np.bool_):
        raise UsageError(f"field 'input': {path} holds {X.dtype}, not integers")
    # compare before converting: a uint64 or a large float must not wrap into range
    dtype = model.input_dtype
    bad = X[(X < dtype.lo) | (X > dtype.hi) | ((X == 0) & (dtype.kind.value == "bipolar"))]
    if bad.size:
        raise UsageError(f"field 'input': value {int(bad.flat[0])} is outside the model's "
                         f"input dtype {dtype}")
    return X.astype(np.int64)


def _save_atomic(path, array):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_run_output(path, inputs):
    """``run --output``: a new file, or an existing .npy file that is not an input."""
    path = Path(path)
    if os.path.islink(path):
        raise UsageError(f"--output {str(path)!r} is a symbolic link; refusing to replace it")
    if path.exists():
        if not path.is_file():
            raise UsageError(f"--output {str(path)!r} exists and is not a regular file")
        for given in inputs:
            if Path(given).resolve() == path.resolve():
                raise UsageError(f"--output {str(path)!r} is the input {given!r}; refusing to "
                                 "overwrite it")
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise UsageError(f"--output {str(path)!r} exists and is not a .npy file; "
                                 "refusing to overwrite it")


#: ``run --stress``: the probabilities of an idle input cycle and of output back-pressure.
STRESS = 0.3


def cmd_run(args):
    if args.output:
        _check_run_output(args.output, (args.input, args.model))
    model, manifest, make_design = _source(args)
    if args.float:
        float_io(model)
    X = _load_input(args.input, model, real=args.float)
    result = {"backend": args.backend, "model": model.name, "vectors": len(X)}
    status = 0
    if args.backend == "numpy":
        from .gen.plan import Options

        options = Options() if manifest is not None else _options(args, model)
        if options != Options():       # nothing to refuse without generation options
            validate_options(model, options)
        try:
            outputs = model.forward(X)
        except MemoryError:
            raise UsageError(f"field 'input': {len(X)} vectors through {model.name} do not fit "
                             "in memory; run fewer at a time") from None
    elif args.backend == "board":
        outputs = _run_board(args, make_design(), X, result)
    else:
        from .sim.design import first_mismatch, simulate

        design = make_design()
        idle, stall = (STRESS, STRESS) if args.stress else (args.idle, args.stall)
        log(f"generated {design.name}: {design.manifest['lanes']} lanes, "
            f"{design.manifest['expected_cycles_per_inference']} cycles per inference "
            f"expected; simulating with idle {idle}, back-pressure {stall}")
        outputs, sim = simulate(design, X, idle=idle, stall=stall, seed=args.seed,
                                check=False)
        mismatch = first_mismatch(model.forward(X), outputs)
        result.update(cycles_total=sim.cycles_total,
                      cycles_per_inference=sim.cycles_per_inference,
                      latency_cycles=sim.latency_cycles,
                      expected_cycles_per_inference=design.manifest[
                          "expected_cycles_per_inference"],
                      idle=idle, stall=stall,
                      matches_reference=mismatch is None)
        if mismatch is not None:
            result["first_mismatch"] = mismatch
            print(f"nnaccel: error: the hardware's outputs differ from the numpy reference: "
                  f"vector {mismatch['vector']}, element {mismatch['element']}: hardware "
                  f"{mismatch['hardware']}, reference {mismatch['reference']}",
                  file=sys.stderr, flush=True)
            status = 1
    outputs = np.asarray(outputs).astype(np.int64)
    if args.float:  # the integers and their real values
        result["outputs_int"] = outputs.reshape(len(outputs), -1).tolist()
        outputs = float_io(model).dequantize(outputs, model)
    if args.output:
        _check_run_output(args.output, (args.input, args.model))
        _save_atomic(args.output, outputs)
    if args.json:
        # one list per input: a feature map (C, H, W) flattened in (C, H, W) order
        result["outputs"] = outputs.reshape(len(outputs), -1).tolist()
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "outputs_int":
                print(f"{key}: {value}")
        print(f"outputs{' (real values)' if args.float else ''}: array of shape "
              f"{outputs.shape}" + (f", written to {args.output}" if args.output else ""))
        for row in outputs.reshape(len(outputs), -1)[:8]:
            print("  " + " ".join(f"{v:.6g}" if args.float else str(v) for v in row))
        if len(outputs) > 8:
            print(f"  ... ({len(outputs) - 8} more)")
    return status


def _run_board(args, design, X, result):
    """``run --backend board``: the batch over the board's framed serial link (nnaccel.board);
    the outputs are checked against numpy unless ``--no-check``."""
    from .board import link_baud, run_on_board
    from .boards.host import BoardLink
    from .boards.platforms import get_board

    if args.board is None or args.port is None:
        raise UsageError("--board and --port: both required with --backend board (e.g. "
                         "--board ulx3s-85f --port /dev/ttyUSB0, or the pty nnaccel board-sim "
                         "prints)")
    spec = get_board(args.board)
    clock_mhz, baud = spec.clock_hz / 1e6, link_baud(args.board)
    if args.build:
        report = _build_report(args.build)
        clock_mhz, baud = report.get("clock_mhz", clock_mhz), report.get("baud", baud)
    clock_mhz, baud = args.clock or clock_mhz, args.baud or baud
    with BoardLink(args.port, baudrate=baud, timeout=args.reply_timeout,
                   byte_seconds=args.byte_time) as link:
        outputs, measured = run_on_board(design, X, link, clock_hz=clock_mhz * 1e6,
                                         check=not args.no_check)
    result.update(measured)
    rate = measured["link_vectors_per_second"]
    busy = measured["busy_cycles_per_vector"]
    log(f"link: {rate:,.0f} vectors/s at {baud:,} baud ({measured['device_cycles']} device "
        f"cycles at {clock_mhz:g} MHz; {measured['retries']} frames resent); on chip: "
        f"{busy:.1f} busy cycles per vector")
    return outputs


def _build_report(build_dir):
    """The report.json of a ``nnaccel build`` directory (``run --build``)."""
    path = Path(build_dir) / "report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--build: {str(build_dir)!r} is not a build directory ({exc})") from None


def cmd_board_sim(args):
    """``board-sim``: the whole board top under Verilator behind a pty, until Ctrl-C or
    ``--seconds``."""
    from .board import BoardSim

    _model, _manifest, make_design = _source(args)
    design = make_design()
    with BoardSim(design, board=args.board, corrupt=args.corrupt, seed=args.seed,
                  selftest=args.self_test) as sim:
        if args.json:  # printed once the port exists, so a script can read it and connect
            print(json.dumps({"design": design.name, "board": args.board, "baud": sim.baud,
                              "clock_hz": sim.clock_hz, "port": sim.port,
                              "self_test": args.self_test}), flush=True)
        print(f"board-sim: {design.name} on a simulated {args.board}: {sim.baud:,} baud, "
              f"clock {sim.clock_hz / 1e6:g} MHz (PLL bypassed), serial port {sim.port}",
              file=sys.stderr if args.json else sys.stdout, flush=True)
        print(f"try: nnaccel run {args.model} --input X.npy --backend board --board "
              f"{args.board} --port {sim.port} --clock {sim.clock_hz / 1e6:g} "
              f"--reply-timeout 2 --byte-time 0.002",
              file=sys.stderr if args.json else sys.stdout, flush=True)
        try:
            if args.seconds:
                sim.wait(args.seconds)
            else:
                sim.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _clock(text):
    """``build --clock``: auto, oscillator, or a positive number of MHz."""
    if text in ("auto", "oscillator"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be auto, oscillator or MHz > 0, not {text!r}")
    return value


def cmd_program(args):
    from .board import program

    argv = program(args.build_dir, cable=args.cable, flash=args.flash)
    if args.json:
        print(json.dumps({"programmed": True, "build_dir": str(args.build_dir),
                          "flash": args.flash, "command": argv}))
    else:
        print(f"programmed: {' '.join(argv)}")
    return 0


def cmd_build(args):
    with _writing(args, "build", args.model):
        return _build(args)


def _build(args):
    from .boards.build import build, format_report
    from .boards.platforms import get_board

    if args.target == "asic":
        return _build_asic(args)
    if args.place_route:
        raise UsageError("--place-route: applies to --target asic only")
    model, manifest, make_design = _source(args)
    recorded = (manifest or {}).get("board")
    if args.board is not None and recorded is not None and args.board != recorded:
        raise UsageError(f"--board: {args.model!r} was generated for {recorded!r}, not "
                         f"{args.board!r}; generate it again for {args.board!r}")
    args.board = args.board or recorded
    if args.board is None:
        raise UsageError("--board: required with --target fpga (e.g. ulx3s-85f, icebreaker)")
    get_board(args.board)
    outdir = Path(args.output or Path("build") / f"{model.name}-{args.board}")
    check_output(outdir)
    design = make_design()
    log(f"building {design.name} for {args.board} in {outdir}")
    cycles = design.manifest["expected_cycles_per_inference"]

    def finish(report):  # written into the build directory before it is put in place
        report["manifest"] = design.manifest
        report["inferences_per_second_at_fmax"] = report["fmax_mhz"] * 1e6 / cycles
        return {"manifest.json": json.dumps(design.manifest, indent=2) + "\n"}

    io = design.manifest["io"]
    options = dict(name=design.name, log=log, finish=finish, in_beats=io["input"]["beats"],
                   out_beats=io["output"]["beats"])
    if args.self_test:
        from .board import selftest_beats

        options["selftest"] = selftest_beats(design, args.self_test)
    if args.clock == "oscillator":
        report = build(design.network, args.board, outdir, **options)
    else:
        from .boards.clocking import build_clocked

        clock = None if args.clock == "auto" else args.clock
        report = build_clocked(design.network, args.board, outdir, clock_mhz=clock, **options)
    if args.json:  # the report of report.json, on stdout
        print(json.dumps(report, default=str))
        return 0
    print(format_report(report))
    if report.get("layers"):
        from .gen.resources import design_report, format_measured

        print(format_measured(report["layers"], design_report(design, _board_device(args))))
    print(f"throughput at Fmax: {report['inferences_per_second_at_fmax']:,.0f} inferences/s "
          f"({cycles} cycles per inference)")
    return 0


def _build_asic(args):
    """``build --target asic``: standard-cell synthesis and static timing (boards/asic.py) of
    the design's AXI4-Stream top level; ``--board`` is refused (it names an FPGA board)."""
    from .boards.asic import build_asic, find_liberty, format_asic_report

    if args.board is not None:
        raise UsageError("--board: applies to --target fpga only; --target asic takes --lib")
    find_liberty(args.lib)
    if args.place_route:
        from .boards.asic_place import find_place_route_tools

        find_place_route_tools(args.lib)
    model, _, make_design = _source(args)
    outdir = Path(args.output or Path("build") / f"{model.name}-{args.lib}")
    check_output(outdir)
    design = make_design()
    log(f"building {design.name} for {args.lib} standard cells in {outdir}")
    cycles = design.manifest["expected_cycles_per_inference"]

    def finish(report):
        report["manifest"] = design.manifest
        report["inferences_per_second_at_fmax"] = report["fmax_mhz"] * 1e6 / cycles
        return {"manifest.json": json.dumps(design.manifest, indent=2) + "\n"}

    report = build_asic(design.verilog(), outdir, name=design.name, lib=args.lib,
                        period_ns=args.period, place_route=args.place_route, log=log,
                        finish=finish)
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    print(format_asic_report(report))
    print(f"throughput at Fmax: {report['inferences_per_second_at_fmax']:,.0f} inferences/s "
          f"({cycles} cycles per inference)")
    return 0


def cmd_zoo(args):
    """``zoo``: list the zoo, or write one of its models (and sample inputs)."""
    from .gen.zoo.catalog import ZOO

    if args.name is None:
        if args.json:
            print(json.dumps({name: e.summary for name, e in ZOO.items()}))
        else:
            for name, entry in ZOO.items():
                print(f"{name:12} {entry.summary}")
        return 0
    if args.output is None:
        raise UsageError("--output: required with a model name (the model directory to write)")
    if args.inputs is not None:
        _check_run_output(args.inputs, ())
    from .gen.model_io import write_model

    entry = ZOO[args.name]
    with _writing(args, "zoo"):
        model = entry.make(args.seed)
        X = entry.inputs(model, args.count, args.seed) if args.inputs is not None else None
        path = write_model(model, args.output)
    if X is not None:
        _save_atomic(args.inputs, np.asarray(X, dtype=np.int64))
    shape = "x".join(str(d) for d in model.input_shape)
    summary = {"name": model.name, "output": str(path),
               "input": {"shape": list(model.input_shape), "dtype": str(model.input_dtype)},
               "layers": len(model.layers),
               "inputs": None if X is None else str(args.inputs)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{model.name}: input {model.input_dtype} x {shape}, {len(model.layers)} layers, "
              f"written to {path}" + (f"; {len(X)} sample inputs in {args.inputs}"
                                      if X is not None else ""))
    return 0


@contextlib.contextmanager
def _results_only(json_output):
    """With ``--json``, what a long command prints on stdout goes to stderr instead, so that
    stdout holds only the one JSON object printed after it."""
    if not json_output:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _json_file(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def cmd_demo(args):
    from .demo import run_demo

    with _writing(args, "demo"), _results_only(args.json):
        status = run_demo(args.output, full=args.full, vectors=args.vectors, board=args.board,
                          synthesis=not args.no_synthesis, log=log)
    if args.json:  # summary.json: the table's rows and each step's time
        print(json.dumps({"status": status, "output": str(args.output),
                          "summary": _json_file(Path(args.output) / "summary.json")}))
    return status


#: ``bench --json``: where each suite writes its summary, below the output directory.
_BENCH_SUMMARIES = {"mvu": "bench.json", "systolic": "systolic/systolic.json",
                    "sparse": "sparse/sparse.json", "cnv": "cnv/cnv.json",
                    "resnet8": "resnet8/resnet8.json", "mobilenet": "mobilenet/mobilenet.json"}


def cmd_bench(args):
    with _results_only(args.json):
        status = _bench(args)
    if args.json:
        print(json.dumps({"status": status, "output": str(args.output), "suites": {
            suite: _json_file(Path(args.output) / path)
            for suite, path in _BENCH_SUMMARIES.items() if args.suite in ("all", suite)}}))
    return status


def _bench(args):
    """The MVU networks in ``OUTPUT``, the systolic and sparse tables in its subdirectories;
    exit status 1 when a check or target of any suite failed."""
    from pathlib import Path

    from .bench.asic import run_asic_bench
    from .bench.cnv import run_cnv_bench
    from .bench.mvu import run_bench
    from .bench.resnet import run_graph_bench
    from .bench.sparse import run_sparse_bench
    from .bench.systolic import run_systolic_bench

    out, synthesis, status = Path(args.output), not args.no_synthesis, 0
    if args.suite in ("all", "mvu"):
        status = run_bench(out, quick=args.quick, synthesis=synthesis, log=log)
    if args.suite in ("all", "systolic"):
        run_systolic_bench(out / "systolic", quick=args.quick, synthesis=synthesis, log=log)
        status |= _missed_targets(out / "systolic" / "systolic.json")
    if args.suite in ("all", "sparse"):
        run_sparse_bench(out / "sparse", quick=args.quick, synthesis=synthesis, log=log)
        status |= _missed_targets(out / "sparse" / "sparse.json")
    if args.suite in ("all", "cnv"):
        status |= run_cnv_bench(out / "cnv", quick=args.quick, synthesis=synthesis, log=log)
    if args.suite in ("all", "asic") and synthesis:
        status |= run_asic_bench(out / "asic", log=log)
    if args.suite in ("all", "resources") and synthesis:
        from .bench.fit import main as compare_resources  # estimate vs yosys, no refit

        status |= compare_resources(["-o", str(out / "resources"), "--no-write"], log=log)
    for suite in ("resnet8", "mobilenet"):
        if args.suite in ("all", suite):
            status |= run_graph_bench(out / suite, suite, quick=args.quick, synthesis=synthesis,
                                      log=log)
    return status


def cmd_sweep(args):
    """Every point of the ``--grid`` generated, measured under Verilator and built, as Ray
    tasks (nnaccel/sweep.py); the table on stdout; exit status 1 when a point failed."""
    from .sweep import format_table, sweep

    with _writing(args, "sweep", args.model):
        result = sweep(args.model, args.grid, board=args.board, target=args.target,
                       lib=args.lib, period_ns=args.period, build=not args.no_build,
                       vectors=args.vectors, seed=args.seed, address=args.address,
                       cpus=args.cpus, cache=args.cache, retries=args.retries,
                       output=args.output, force=args.force, log=log)
    if args.json:  # the table goes to stderr, the points (as in results.json) to stdout
        log(format_table(result.points))
        print(json.dumps({"points": result.points, "computed": result.computed,
                          "cached": result.cached, "failed": result.failed,
                          "output": None if result.output is None else str(result.output)},
                         default=str))
    else:
        print(format_table(result.points))
    return int(result.failed > 0)


def _missed_targets(summary_path):
    """1 when a bench summary lists a target not met (0 otherwise)."""
    import json

    targets = json.loads(summary_path.read_text()).get("targets", {})
    return int(any(not check["met"] for check in targets.values()))


_LAYER_VALUE = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]*)=)?([^=]+)\Z")


def _per_layer(flag, texts, convert, what):
    """Repeatable ``[LAYER=]VALUE`` options as ``((layer or "*", value), ...)``."""
    out = []
    for text in texts:
        m = _LAYER_VALUE.match(text)
        try:
            value = convert(m.group(2)) if m else None
        except ValueError:
            value = None
        if value is None:
            raise UsageError(f"{flag} {text!r}: expected [LAYER=]{what}")
        out.append((m.group(1) or "*", value))
    return tuple(out)


def cmd_compress(args):
    prune = _per_layer("--prune", args.prune, float, "FRACTION")
    quality = _per_layer("--quality", args.quality, float, "Q")
    share = _per_layer("--share", args.share, int, "BITS")
    if args.name is not None and name_problem(args.name) is not None:
        raise UsageError(f"--name: {name_problem(args.name)}")
    with _writing(args, "compress", args.float_model):
        return _compress(args, prune, quality, share)


def _compress(args, prune, quality, share):
    from .gen.compress import (
        CompressConfig,
        compress,
        format_report,
        read_float_model,
        write_compressed,
    )
    from .gen.compress.report import report_json

    float_model, data = read_float_model(args.float_model)
    if args.name is not None:
        float_model = float_model.but(name=args.name)
    try:
        config = CompressConfig(
            prune=prune, quality=quality, prune_steps=args.prune_steps, pe=args.pe,
            share=share, weight_bits=args.bits, per_channel=not args.per_tensor,
            act_bits=args.act_bits, act_percentile=args.act_percentile,
            retrain_epochs=args.retrain_epochs, binarize=args.binarize,
            binarize_epochs=args.binarize_epochs, seed=args.seed, log=log)
    except (TypeError, ValueError) as e:
        raise UsageError(f"compress: {e}") from None
    result = compress(float_model, data, config)
    path = write_compressed(result, args.output)
    if args.json:
        print(report_json(result.report), end="")
    else:
        print(format_report(result.report))
    log(f"wrote {path / 'model.json'}, {path / 'weights.npz'} and {path / 'report.json'}")
    return 0


def _add_compress_parser(sub):
    p = sub.add_parser("compress", help="prune, share, quantize or binarize a float model "
                                        "into a model directory")
    p.add_argument("float_model", help="float model .npz (layout: nnaccel.gen.compress."
                                       "floatmodel)")
    p.add_argument("-o", "--output", required=True,
                   help="model directory to write (model.json, weights.npz, report.json)")
    p.add_argument("--prune", action="append", default=[], metavar="[LAYER=]FRACTION",
                   help="remove this fraction of the weights, smallest first, e.g. 0.9 "
                        "(repeatable: a default and per-layer values)")
    p.add_argument("--quality", action="append", default=[], metavar="[LAYER=]Q",
                   help="instead remove weights with |w| <= Q * std(W) (Deep Compression)")
    p.add_argument("--prune-steps", type=_positive, default=1, metavar="N",
                   help="prune in N rounds, each followed by retraining (default 1)")
    p.add_argument("--pe", type=_positive, default=1, metavar="N",
                   help="balance pruning over N PEs with interleaved rows; also the PE count "
                        "of the sparse storage in the report (default 1)")
    p.add_argument("--share", action="append", default=[], metavar="[LAYER=]BITS",
                   help="share weights among 2**BITS values by k-means, code 0 = zero")
    p.add_argument("--bits", type=int, default=8, metavar="N",
                   help="integer weight bits (default 8)")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per layer instead of one per output channel")
    p.add_argument("--act-bits", type=int, default=8,
                   help="hidden activation bits, uintN (default 8)")
    p.add_argument("--act-percentile", type=float, default=99.9, metavar="P",
                   help="calibration percentile mapped to the largest activation (default "
                        "99.9)")
    p.add_argument("--retrain-epochs", type=int, default=30, metavar="N",
                   help="retraining epochs after pruning and after sharing (default 30; 0: "
                        "none)")
    p.add_argument("--binarize", action="store_true",
                   help="binarize instead: bipolar weights and activations, batch-norm "
                        "folded into thresholds")
    p.add_argument("--binarize-epochs", type=_positive, default=40, metavar="N",
                   help="training epochs of the binarized network (default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed of retraining (default 0)")
    p.add_argument("--name", help="model name (default: the float model's)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON instead of tables")
    _add_force(p)
    p.set_defaults(func=cmd_compress)


def _add_force(p):
    p.add_argument("--force", action="store_true",
                   help="replace the output directory if it holds this command's complete "
                        "earlier output (never anything else: a directory holding other files "
                        "is refused with or without --force)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="nnaccel", formatter_class=_HelpFormatter,
        description="Compressed neural networks to verified Verilog accelerators, with open "
                    "tools.")
    parser.add_argument("--version", action="version", version=f"nnaccel {_version()}",
                        help="print the installed version and exit")
    # every subcommand's help shows its options' defaults
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of these; nnaccel COMMAND --help shows its options",
                                parser_class=functools.partial(argparse.ArgumentParser,
                                                               formatter_class=_HelpFormatter))

    p = sub.add_parser("generate", help="write the Verilog and manifest of a model")
    p.add_argument("model", help="model directory (model.json + weights.npz) or .onnx file")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--board", help="board the design is meant for (checked, recorded)")
    p.add_argument("--stop-after", choices=["engines", "configure", "folding", "check"],
                   help="stop the compiler after this pass and print its IR as JSON")
    p.add_argument("--dump-ir", action="store_true", help="also write ir.json")
    p.add_argument("--diagram", metavar="FILE",
                   help="also draw the dataflow graph as a block diagram (FILE.svg or .png)")
    p.add_argument("--plot", metavar="FILE",
                   help="also plot each layer's cycles and lanes against the budget (FILE.svg "
                        "or .png)")
    p.add_argument("--report", action="store_true",
                   help="print the per-layer table: engine, fold, lanes, cycles and the "
                        "resource model's LUT4, FF, BRAM, DSP and Fmax estimates (on --board, "
                        "default ulx3s-85f)")
    p.add_argument("--json", action="store_true",
                   help="print the output directory and the manifest as one JSON object")
    _add_force(p)
    _add_generate_options(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="run inference with numpy or on simulated hardware")
    p.add_argument("model", help="model directory, .onnx file, or a directory written by "
                                 "generate (its design exactly as generated)")
    p.add_argument("--input", required=True, help="X.npy of shape (B, *input.shape)")
    p.add_argument("--output", help="write the outputs to this .npy")
    p.add_argument("--float", action="store_true",
                   help="the input holds real values: quantize them with the model's input "
                        "quantizer and print real outputs (scale * y + offset), as the source "
                        "graph of an imported model does")
    p.add_argument("--backend", choices=["numpy", "verilator", "board"], default="numpy",
                   help="numpy: the bit-exact reference model; verilator: generate the design "
                        "and simulate its Verilog, checked against the reference; board: over "
                        "the serial link of a board built from it (--board, --port)")
    p.add_argument("--port", help="board: the serial port (/dev/ttyUSB0, or board-sim's pty)")
    p.add_argument("--baud", type=int, help="board: bit rate (default the board's link rate)")
    p.add_argument("--clock", type=float, help="board: the clock of the board's network in MHz, "
                                                "the report's clock_mhz (default the board's "
                                                "oscillator)")
    p.add_argument("--reply-timeout", type=float, default=0.1,
                   help="board: seconds to wait for a reply beyond its transfer (default 0.1)")
    p.add_argument("--byte-time", type=float,
                   help="board: seconds allowed per byte (default twice the byte's time)")
    p.add_argument("--no-check", action="store_true",
                   help="board: do not compare the outputs with numpy")
    p.add_argument("--build", help="board: the build directory the board was programmed from "
                                   "(its report gives the clock and the link rate)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--idle", type=_probability, default=0.0,
                   help="verilator: probability of an idle input cycle (default 0)")
    p.add_argument("--stall", type=_probability, default=0.0,
                   help="verilator: probability of output backpressure (default 0)")
    p.add_argument("--stress", action="store_true",
                   help=f"verilator: random idle input cycles and output back-pressure, each "
                        f"with probability {STRESS} (instead of --idle/--stall)")
    p.add_argument("--seed", type=int, default=0, help="seed of the idle/stall patterns")
    p.add_argument("--board", help="the board whose device --fill fills")
    _add_generate_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("build", help="synthesis, place and route and bitstream for a board, "
                                     "or (--target asic) standard-cell area and timing")
    p.add_argument("model", help="model directory, .onnx file, or a directory written by "
                                 "generate (its design exactly as generated, for its board)")
    p.add_argument("--target", choices=["fpga", "asic"], default="fpga",
                   help="fpga: a bitstream for --board; asic: yosys on standard cells (--lib) "
                        "and OpenSTA timing (default fpga)")
    p.add_argument("--board", help="fpga: e.g. ulx3s-85f, icebreaker (required)")
    p.add_argument("--lib", default="osu018",
                   help="asic: standard-cell library (default osu018, OSU 0.18 um)")
    p.add_argument("--period", type=_period, default=10.0,
                   help="asic: clock period of the timing constraint in ns (default 10)")
    p.add_argument("--place-route", action="store_true",
                   help="asic: also place (graywolf) and route (qrouter) the netlist: die "
                        "area, wire length (needs Debian's qflow)")
    p.add_argument("--clock", type=_clock, default="auto",
                   help="fpga: auto: build at a first guess, read nextpnr's Fmax and build "
                        "again from the PLL just below it; MHz: that PLL clock; oscillator: "
                        "the board's oscillator, link at 115200 baud (default auto)")
    p.add_argument("--self-test", type=_positive, default=0, metavar="N",
                   help="fpga: store N random input vectors and their numpy outputs in block "
                        "RAM; run --backend board runs them back to back at full clock and "
                        "reports cycles and mismatches")
    p.add_argument("-o", "--output", help="build directory (default build/<name>-<board> or "
                                          "build/<name>-<lib>)")
    p.add_argument("--json", action="store_true",
                   help="print the report (report.json) as one JSON object instead of tables")
    _add_force(p)
    _add_generate_options(p)
    p.set_defaults(func=cmd_build)

    _add_compress_parser(sub)

    p = sub.add_parser("board-sim", help="simulate a board (UART pins, framed link, network) "
                                         "under Verilator behind a pseudo-terminal")
    p.add_argument("model", help="model directory, .onnx file, or a generated directory")
    p.add_argument("--board", required=True, help="the board whose link rate is modelled")
    p.add_argument("--corrupt", type=_probability, default=0.0,
                   help="probability that a byte on the simulated wire has a bit flipped")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption")
    p.add_argument("--seconds", type=float, default=0,
                   help="stop after this many seconds (default: serve until Ctrl-C)")
    p.add_argument("--self-test", type=_positive, default=0, metavar="N",
                   help="build in a self-test of N random vectors and their numpy outputs")
    p.add_argument("--json", action="store_true",
                   help="print the simulated board (serial port, baud, clock) as one JSON "
                        "object on stdout once it is up; the notes go to stderr")
    _add_generate_options(p)
    p.set_defaults(func=cmd_board_sim)

    p = sub.add_parser("program", help="load a build's bitstream with openFPGALoader")
    p.add_argument("build_dir", help="a directory written by nnaccel build")
    p.add_argument("--cable", help="openFPGALoader cable name (default: the board's)")
    p.add_argument("--flash", action="store_true", help="write the SPI flash (persistent)")
    p.add_argument("--json", action="store_true",
                   help="print the openFPGALoader command run as one JSON object on stdout")
    p.set_defaults(func=cmd_program)

    p = sub.add_parser("import", help="translate an ONNX/QONNX file (Brevitas, FINN, "
                                      "onnxruntime int8) into a model directory")
    p.add_argument("file", help="the .onnx file")
    p.add_argument("-o", "--output", required=True, help="model directory to write")
    p.add_argument("--name", help="model name (default: the file's stem)")
    p.add_argument("--json", action="store_true",
                   help="print the imported model's layers as one JSON object")
    _add_force(p)
    p.set_defaults(func=cmd_import)

    from .gen.zoo.catalog import ZOO

    p = sub.add_parser("zoo", help="list the example models, or write one as a model directory")
    p.add_argument("name", nargs="?", choices=list(ZOO), metavar="NAME",
                   help=f"the model: {', '.join(ZOO)} (without it: list them)")
    p.add_argument("-o", "--output", help="model directory to write (required with NAME)")
    p.add_argument("--inputs", metavar="X.npy", help="also write sample inputs to this .npy")
    p.add_argument("--count", type=_positive, default=8, metavar="N",
                   help="how many sample inputs --inputs writes")
    p.add_argument("--seed", type=int, default=0, help="seed of training or random weights")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_force(p)
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("demo", help="train, compress, generate, simulate and synthesise the "
                                    "digits models end to end")
    p.add_argument("-o", "--output", default="out/demo", help="artefact directory")
    p.add_argument("--vectors", type=_positive, help="simulate only this many test vectors")
    p.add_argument("--board", default="ulx3s-85f", help="board of the synthesis report")
    p.add_argument("--no-synthesis", action="store_true", help="skip yosys/nextpnr")
    p.add_argument("--json", action="store_true",
                   help="print the summary (summary.json) as one JSON object on stdout; the "
                        "tables and progress go to stderr")
    p.add_argument("--full", action="store_true",
                   help="also the sparse design (about half an hour more of place and route)")
    _add_force(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="measure cycles and resources of benchmark networks")
    p.add_argument("-o", "--output", default="out/bench", help="results directory")
    p.add_argument("--quick", action="store_true",
                   help="16 vectors per network instead of 128, and no synthesis of the large "
                        "SFC network (its fold then rests on a first Fmax guess)")
    p.add_argument("--no-synthesis", action="store_true", help="skip yosys/nextpnr")
    p.add_argument("--suite", choices=("all", "mvu", "systolic", "sparse", "cnv", "asic",
                                       "resnet8", "mobilenet", "resources"),
                   default="all",
                   help="which tables: the MVU networks, the systolic GEMMs, the sparse layer, "
                        "FINN's CNV-W1A1, MLPerf Tiny's ResNet-8, MobileNet-v1-style blocks "
                        "(default all; the full run takes hours on two cores)")
    p.add_argument("--json", action="store_true",
                   help="print every suite's summary as one JSON object on stdout; the tables "
                        "and progress go to stderr")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("sweep", help="generate, measure (Verilator) and build every point of "
                                     "a grid of options, as Ray tasks, cached")
    p.add_argument("model", help="model directory or .onnx file")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a swept option and its values (repeatable; the sweep is the product): "
                        "max-lanes, target-cycles, batch, storage[.LAYER], fold.LAYER, "
                        "engine.LAYER, array.LAYER, sparse.LAYER; ':' stands for an option's "
                        "own comma, e.g. array.fc1=4x4:ws,8x8:os")
    p.add_argument("--board", help="fpga: the board every point is built for")
    p.add_argument("--target", choices=["fpga", "asic"], default="fpga",
                   help="fpga: build for --board; asic: standard cells (--lib, --period)")
    p.add_argument("--lib", default="osu018", help="asic: standard-cell library")
    p.add_argument("--period", type=_period, default=10.0,
                   help="asic: clock period of the timing constraint in ns")
    p.add_argument("--no-build", action="store_true",
                   help="generate and measure cycles under Verilator only")
    p.add_argument("--vectors", type=functools.partial(_positive, largest=1 << 16), default=8,
                   help="random input vectors simulated per point")
    p.add_argument("--seed", type=int, default=0, help="seed of the input vectors")
    p.add_argument("--address", help="join this Ray cluster (e.g. 10.0.0.1:6379 or auto) "
                                     "instead of starting Ray on this machine")
    p.add_argument("--cpus", type=functools.partial(_positive, largest=1024), metavar="N",
                   help="local Ray: run at most N points at a time (default: all CPUs)")
    p.add_argument("--cache", help="directory of finished points (default "
                                   "$NNACCEL_CACHE/sweep, i.e. ~/.cache/nnaccel/sweep)")
    p.add_argument("--retries", type=int, choices=range(0, 11), default=2, metavar="N",
                   help="retries of a point whose Ray worker died")
    p.add_argument("-o", "--output", help="write results.json, results.csv and the Pareto "
                                          "plot pareto.png/.svg to this directory")
    p.add_argument("--json", action="store_true",
                   help="print the points (as in results.json) and the counts of computed, "
                        "cached and failed points as one JSON object on stdout; the table "
                        "goes to stderr")
    _add_force(p)
    p.set_defaults(func=cmd_sweep)
    return parser


class _HelpFormatter(argparse.HelpFormatter):
    """Help text with each option's default appended, unless the text already states it or
    there is none to state (None, False, an empty list)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        nothing = (default is None or default is False or default is argparse.SUPPRESS
                   or (isinstance(default, list) and not default))
        if "default" in text or nothing or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnaccel")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


class Terminated(BaseException):
    """SIGTERM, raised wherever the program is (like KeyboardInterrupt for Ctrl-C), so that
    every ``finally`` and staging-directory cleanup runs."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough; let the cleanup finish
    raise Terminated


def main(argv=None):
    """Run the command line ``argv``; return the exit status: 0, 1 for a failed check (a
    hardware mismatch, a missed target) or an internal error (a bug), 2 for bad input, 3 for a
    failed tool, 130 after Ctrl-C, 143 after SIGTERM."""
    from .gen import progress

    parser = build_parser()
    args = parser.parse_args(argv)
    progress.disable(getattr(args, "json", False))  # bars on stderr, never with --json
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return _dispatch(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args):
    try:
        return args.func(args)
    except NnaccelError as e:
        print(f"nnaccel: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("nnaccel: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("nnaccel: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:  # e.g. `nnaccel run ... | head`
        sys.stderr.close()
        return 0
    except OSError as e:  # e.g. an output path below a file, or without permission
        where = f": {e.filename}" if e.filename is not None else ""
        print(f"nnaccel: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print("nnaccel: error: out of memory; the model or input is too large for this "
              "machine (see NNACCEL_MAX_BYTES in docs/ARCHITECTURE.md)", file=sys.stderr)
        return 2
    except RecursionError:
        print("nnaccel: error: an input is nested too deeply", file=sys.stderr)
        return 2
    except Exception as e:
        if os.environ.get("NNACCEL_DEBUG"):
            raise
        text = " ".join(str(e).split())[:300]
        print(f"nnaccel: internal error (a bug in nnaccel; please report it, with "
              f"NNACCEL_DEBUG=1 for the traceback): {type(e).__name__}: {text}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


def _entry():
    """Console-script entry point: exit with main()'s status."""
    sys.exit(main())
