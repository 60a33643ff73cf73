"""The float boundary of a model: real inputs to the integer input, integer outputs to reals.

A model computes on integers (SPEC section 2). A model imported from a quantized graph (Brevitas'
QONNX, onnxruntime's int8) stands for a real-valued network whose first quantizer turns real
inputs into those integers and whose output integers map back to reals by a scale. Both are
kept, optionally, in ``model.json`` (docs/FORMAT.md, "The float boundary"):

* ``input.quantizer``: how ``x_real`` becomes the model's integer input ``q``, computed in
  float32 as the source graph's quantizer computes it;
* ``output``: ``real = scale * y + offset`` per output channel.

:class:`FloatIO` holds both; :func:`from_json` and :func:`to_json` read and write the fields,
with the reader's checks (a :class:`~nnaccel.gen.errors.ModelError` naming the field).
"""

from dataclasses import dataclass

import numpy as np

from .errors import ModelError

__all__ = ["FloatIO", "InputQuantizer", "KINDS", "ROUNDINGS", "from_json", "to_json"]


def _sym(f):
    return lambda v: np.sign(v) * f(np.abs(v))


#: ``rounding`` of a ``quant`` quantizer: QONNX's ``rounding_mode`` names, as qonnx computes
#: them (ROUND and HALF_EVEN round halves to even).
ROUNDINGS = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
    "UP": _sym(np.ceil), "DOWN": np.fix, "ROUND_TO_ZERO": np.fix,
    "HALF_UP": _sym(lambda v: np.floor(v + np.float32(0.5))),
    "HALF_DOWN": _sym(lambda v: np.ceil(v - np.float32(0.5))),
}

#: The quantizer kinds: QONNX ``Quant`` (scale, add the zero point, clamp, round), ONNX
#: ``QuantizeLinear`` (scale, round half to even, add the zero point, saturate) and QONNX
#: ``BipolarQuant`` (+1 where ``x >= 0``, else -1).
KINDS = ("quant", "quantize_linear", "bipolar")


@dataclass(frozen=True)
class InputQuantizer:
    """``q = quantize(x_real)`` for the model input; see :meth:`FloatIO.quantize`."""

    kind: str
    scale: float
    zero_point: tuple   # one per channel (per element of a vector), or one for all
    rounding: str = "ROUND"
    lo: int | None = None  # the clamp; None: the input dtype's limit
    hi: int | None = None


@dataclass(frozen=True)
class FloatIO:
    """The float boundary of a model (either half may be None).

    ``output_scale`` and ``output_offset`` are tuples of floats, one per output channel (the
    channels of a feature map, the elements of a vector) or one for all.
    """

    input: InputQuantizer | None = None
    output_scale: tuple | None = None
    output_offset: tuple = (0.0,)

    def quantize(self, x, model):
        """The model's integer input for real inputs ``x`` of shape ``(B, *input_shape)``:
        float32 arithmetic, as the source graph's first quantizer does it.

        Raises
        ------
        UsageError
            No input quantizer, a shape that is not ``(B, *input_shape)``, or a value that is
            not finite.
        """
        from .errors import UsageError

        q = self.input
        if q is None:
            raise UsageError("field 'input': the model has no input quantizer (input.quantizer "
                             "in model.json); give integer inputs")
        x = np.asarray(x)
        shape = tuple(model.input_shape)
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or len(x) == 0:
            raise UsageError(f"field 'input': float inputs of shape {x.shape}; expected (B, "
                             f"{', '.join(map(str, shape))}) with B >= 1")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise UsageError(f"field 'input': float inputs hold {x.dtype}, not numbers")
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise UsageError("field 'input': float inputs hold a value that is not finite")
        if q.kind == "bipolar":
            return np.where(x >= 0, 1, -1).astype(np.int64)
        flat = x.reshape(len(x), _channels(shape), -1)  # channels (vector elements) on axis 1
        zp = np.asarray(q.zero_point, dtype=np.float32).reshape(1, -1, 1)
        lo = model.input_dtype.lo if q.lo is None else q.lo
        hi = model.input_dtype.hi if q.hi is None else q.hi
        with np.errstate(over="ignore"):
            y = flat / np.float32(q.scale)
            if q.kind == "quant":
                y = ROUNDINGS[q.rounding](np.clip(y + zp, np.float32(lo), np.float32(hi)))
            else:
                y = np.clip(np.rint(y) + zp, np.float32(lo), np.float32(hi))
        return y.astype(np.int64).reshape(x.shape)

    def dequantize(self, y, model):
        """Real outputs ``scale * y + offset`` (float64) of integer outputs ``y``."""
        from .errors import UsageError

        if self.output_scale is None:
            raise UsageError("field 'output': the model has no output scale (output.scale in "
                             "model.json)")
        y = np.asarray(y, dtype=np.float64)
        flat = y.reshape(len(y), model.out_shape[0], -1)
        s = np.asarray(self.output_scale, dtype=np.float64).reshape(1, -1, 1)
        o = np.asarray(self.output_offset, dtype=np.float64).reshape(1, -1, 1)
        return (flat * s + o).reshape(y.shape)


def _fail(field_, message):
    raise ModelError(None, field_, message)


def _numbers(field_, value, count, *, integer, positive=False):
    """A number or a list of ``count`` numbers, as a tuple."""
    values = value if isinstance(value, list) else [value]
    kinds = (int,) if integer else (int, float)
    if (not values or any(isinstance(v, bool) or not isinstance(v, kinds) for v in values)
            or (len(values) != 1 and len(values) != count)):
        what = "integer" if integer else "number"
        _fail(field_, f"expected a {what} or a list of {count} {what}s (one per channel), not "
                      f"{str(value)[:60]}")
    out = tuple(int(v) if integer else float(v) for v in values)
    if not all(np.isfinite(out)) or (positive and min(out) <= 0):
        _fail(field_, f"expected {'positive ' if positive else ''}finite values, not "
                      f"{str(value)[:60]}")
    return out


def _channels(shape):
    return int(shape[0]) if len(shape) == 3 else int(np.prod(shape))


def _input_from_json(spec, shape, dtype):
    f = "input.quantizer"
    if not isinstance(spec, dict):
        _fail(f, "expected an object")
    unknown = set(spec) - {"kind", "scale", "zero_point", "rounding", "min", "max"}
    if unknown:
        _fail(f"{f}.{sorted(unknown)[0]}", "unknown field")
    kind = spec.get("kind")
    if kind not in KINDS:
        _fail(f"{f}.kind", f"expected one of {', '.join(KINDS)}, not {kind!r}")
    if "scale" not in spec:
        _fail(f"{f}.scale", "missing")
    scale = _numbers(f"{f}.scale", spec["scale"], 1, integer=False, positive=True)[0]
    zp = _numbers(f"{f}.zero_point", spec.get("zero_point", 0), _channels(shape), integer=True)
    rounding = spec.get("rounding", "ROUND")
    if rounding not in ROUNDINGS:
        _fail(f"{f}.rounding", f"expected one of {', '.join(ROUNDINGS)}, not {rounding!r}")
    if kind != "quant" and rounding != "ROUND":
        _fail(f"{f}.rounding", f"only a 'quant' quantizer has a rounding mode, not {kind!r}")
    if kind == "bipolar" and (dtype.kind.value != "bipolar" or any(zp)):
        _fail(f"{f}.kind", "a bipolar quantizer needs a bipolar input and zero point 0")
    if kind != "bipolar" and dtype.kind.value == "bipolar":
        _fail(f"{f}.kind", "a bipolar input is quantized by a 'bipolar' quantizer")
    limits = []
    for key, default in (("min", dtype.lo), ("max", dtype.hi)):
        value = spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not (
                dtype.lo <= value <= dtype.hi):
            _fail(f"{f}.{key}", f"expected an integer of the input dtype {dtype}, not {value!r}")
        limits.append(value)
    if limits[0] > limits[1]:
        _fail(f"{f}.min", f"min {limits[0]} is above max {limits[1]}")
    lo = None if limits[0] == dtype.lo else limits[0]
    hi = None if limits[1] == dtype.hi else limits[1]
    return InputQuantizer(kind=kind, scale=scale, zero_point=zp, rounding=rounding, lo=lo, hi=hi)


def from_json(inp, out, input_shape, input_dtype, out_shape):
    """The :class:`FloatIO` of ``model.json``'s ``input.quantizer`` (``inp``) and ``output``
    (``out``) objects (None when absent); None when both are absent."""
    if inp is None and out is None:
        return None
    quantizer = None if inp is None else _input_from_json(inp, input_shape, input_dtype)
    scale, offset = None, (0.0,)
    if out is not None:
        if not isinstance(out, dict):
            _fail("output", "expected an object {\"scale\": ..., \"offset\": ...}")
        unknown = set(out) - {"scale", "offset"}
        if unknown:
            _fail(f"output.{sorted(unknown)[0]}", "unknown field")
        if "scale" not in out:
            _fail("output.scale", "missing")
        n = _channels(out_shape)
        scale = _numbers("output.scale", out["scale"], n, integer=False)
        offset = _numbers("output.offset", out.get("offset", 0.0), n, integer=False)
    return FloatIO(input=quantizer, output_scale=scale, output_offset=offset)


def _compact(values):
    values = [v for v in values]
    return values[0] if all(v == values[0] for v in values) else values


def to_json(fio):
    """``(input.quantizer, output)`` objects of ``fio`` for ``model.json`` (None: absent)."""
    if fio is None:
        return None, None
    inp = None
    q = fio.input
    if q is not None:
        inp = {"kind": q.kind, "scale": q.scale}
        if any(q.zero_point):
            inp["zero_point"] = _compact(list(q.zero_point))
        if q.rounding != "ROUND":
            inp["rounding"] = q.rounding
        if q.lo is not None:
            inp["min"] = q.lo
        if q.hi is not None:
            inp["max"] = q.hi
    out = None
    if fio.output_scale is not None:
        out = {"scale": _compact(list(fio.output_scale))}
        if any(fio.output_offset):
            out["offset"] = _compact(list(fio.output_offset))
    return inp, out
