"""Integer quantization of a float network into a SPEC model with ``requant`` output stages.

Scheme (symmetric weights, unsigned activations after ReLU; every float value is an integer
times a scale):

* inputs: the integers ``x`` of the input dtype, float value ``x * input_scale``;
* weights of layer ``i``: ``int<bits>`` values ``Wq = clip(round(W / s_w), -q, q)`` with
  ``q = 2**(bits-1) - 1`` and ``s_w = max|W| / q`` per output channel (floored at ``1e-3`` of
  the largest channel's, so a dead channel keeps a finite scale) or per layer. A shared layer
  quantizes its codebook with one scale per layer, so ``codebook_q[indices]`` is its weight
  matrix and code 0 stays 0. The last layer always has one scale: its ``identity`` output
  cannot rescale channels, and per-channel scales would change the argmax;
* bias: ``int32`` ``round(b / (s_in * s_w))``, so ``acc = Wq x + bq`` has scale
  ``s_in * s_w``;
* hidden activations: ``uint<act_bits>`` with scale ``s_out = P / (2**act_bits - 1)``, where
  ``P`` is the ``act_percentile`` percentile of the float activations over the calibration
  inputs; ``requant`` with ``relu`` and ``mult / 2**shift ~= s_in * s_w / s_out``
  (:func:`fixed_point`);
* last layer: ``identity`` int32 logits, a positive multiple of the float ones.

So the integer model computes, exactly, the float network with *fake quantization* on this
integer grid: weights and biases rounded to their grids, and every hidden activation
``round(acc * mult / 2**shift)`` clipped to ``0 .. 2**act_bits - 1``.
"""

import numpy as np

from ..errors import ModelError
from ..ir import (
    Conv2d,
    DType,
    DTypeKind,
    Layer,
    Model,
    Op,
    OutputKind,
    OutputStage,
    Pool2d,
    readonly,
)

__all__ = ["REQUANT_MULT_BITS", "ACT_PERCENTILE", "fixed_point", "weight_scale",
           "quantize_weight", "quantize_bias", "activation_scale", "quantize_mlp",
           "quantize_pass"]

#: ``mult`` of a requant stage is below ``2**REQUANT_MULT_BITS``.
REQUANT_MULT_BITS = 16
#: Default percentile of the calibration activations that maps to the largest code.
ACT_PERCENTILE = 99.9

_INT32 = DType.parse("int32")


def fixed_point(ratio, mult_bits=REQUANT_MULT_BITS):
    """Fixed-point approximation ``mult / 2**shift`` of positive real scale ratios.

    For each ratio ``shift`` is the largest value in 0..31 such that
    ``mult = round(ratio * 2**shift)`` (halves up) is below ``2**mult_bits``.

    Parameters
    ----------
    ratio : (M,) array of positive floats
    mult_bits : int
        1..31.

    Returns
    -------
    mult, shift : (M,) int64 arrays
        ``0 < mult < 2**mult_bits``, ``0 <= shift <= 31``,
        ``|mult * 2**-shift - ratio| <= 2**-(shift + 1)`` and the relative error
        ``|mult * 2**-shift / ratio - 1|`` is below ``2**(1 - mult_bits)``.

    Raises
    ------
    ValueError
        When a ratio is not positive, or too large or too small for that precision.
    """
    if not 1 <= mult_bits <= 31:
        raise ValueError(f"mult_bits must lie in 1..31, not {mult_bits!r}")
    top = (1 << mult_bits) - 1
    mults, shifts = [], []
    for r in np.asarray(ratio, dtype=np.float64).reshape(-1):
        r = float(r)
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"scale ratio {r!r} is not a positive number")
        mult = shift = None
        for s in range(31, -1, -1):
            m = int(np.floor(r * 2.0**s + 0.5))
            if m <= top:
                mult, shift = m, s
                break
        if mult is None:
            raise ValueError(f"scale ratio {r!r} needs a mult of {mult_bits}+ bits at shift 0")
        if mult == 0 or abs(mult * 2.0**-shift / r - 1.0) >= 2.0 ** (1 - mult_bits):
            raise ValueError(f"scale ratio {r!r} is too small for {mult_bits}-bit precision")
        mults.append(mult)
        shifts.append(shift)
    return np.array(mults, dtype=np.int64), np.array(shifts, dtype=np.int64)


def weight_scale(weight, bits, per_channel):
    """Symmetric weight scale(s): ``max|W| / (2**(bits-1) - 1)`` per row ((M,) array, each at
    least ``1e-3`` of the largest) or for the whole matrix (a float). An all-zero matrix gets
    scale 1."""
    q = (1 << (bits - 1)) - 1
    w = np.abs(np.asarray(weight, dtype=np.float64))
    if per_channel:
        s = w.max(axis=1) / q
        top = s.max()
        return np.maximum(s, 1e-3 * top) if top > 0 else np.ones(len(s))
    return float(w.max()) / q or 1.0


def quantize_weight(weight, scale, bits):
    """``clip(round(W / scale), -q, q)`` as int64; ``scale`` a float or one per row (output
    channel, axis 0)."""
    q = (1 << (bits - 1)) - 1
    w = np.asarray(weight, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    s = s.reshape((-1,) + (1,) * (w.ndim - 1)) if s.ndim == 1 and w.ndim >= 2 else s
    return np.clip(np.round(w / s), -q, q).astype(np.int64)


def quantize_bias(bias, in_scale, w_scale):
    """``round(b / (in_scale * w_scale))`` as int64 (not clipped: the caller checks int32)."""
    return np.round(np.asarray(bias, dtype=np.float64) / (in_scale * w_scale)).astype(np.int64)


def activation_scale(activations, bits, percentile=ACT_PERCENTILE):
    """Scale of ``uint<bits>`` activations: the ``percentile`` of ``activations`` maps to
    ``2**bits - 1`` (the maximum if that percentile is 0, and 1 / (2**bits - 1) if every
    activation is 0)."""
    hi = (1 << bits) - 1
    a = np.asarray(activations, dtype=np.float64)
    s = float(np.percentile(a, percentile)) / hi
    if s <= 0:
        s = float(a.max()) / hi if a.size and a.max() > 0 else 1.0 / hi
    return s


def _weights(fl, weight_bits, per_channel):
    """Integer weight (and codebook, indices) of a float layer and its scale(s)."""
    codebook = indices = None
    if fl.codebook is not None:
        w_scale = weight_scale(fl.codebook[None, :], weight_bits, False)
        codebook = quantize_weight(fl.codebook, w_scale, weight_bits)
        indices = np.asarray(fl.codes)
        weight = codebook[indices]
    else:
        w_scale = weight_scale(fl.weight_matrix, weight_bits, per_channel)
        weight = quantize_weight(fl.weight, w_scale, weight_bits)
    return weight, codebook, indices, w_scale


def _avgpool(fl, in_dtype, in_scale, mult_bits):
    """``sumpool2d`` with a requant of ``mult / 2**shift ~= 1 / (KH*KW)`` (exact when
    ``KH*KW`` is a power of two) and the scale of its output, chosen so that the integer
    output is the float average on its grid."""
    if in_dtype.kind is DTypeKind.BIPOLAR:
        raise ModelError(fl.name, f"{fl.name}.op",
                         "average pooling of a bipolar input cannot be quantized")
    window = fl.kernel[0] * fl.kernel[1]
    try:
        mult, shift = fixed_point([1.0 / window], mult_bits)
    except ValueError as e:
        raise ModelError(fl.name, "output.mult", str(e)) from None
    mult, shift = int(mult[0]), int(shift[0])
    while mult % 2 == 0 and shift > 0:  # the same ratio with the smallest mult: 1/4 is 1 >> 2
        mult, shift = mult // 2, shift - 1
    mult, shift = np.array([mult]), np.array([shift])
    c = fl.in_shape[0]
    output = OutputStage(OutputKind.REQUANT, in_dtype, mult=readonly(np.repeat(mult, c)),
                         shift=readonly(np.repeat(shift, c)), relu=False)
    layer = Pool2d(name=fl.name, op=Op.SUMPOOL2D, in_dtype=in_dtype, in_shape=fl.in_shape,
                   kernel=fl.kernel, stride=fl.stride, padding=fl.padding, output=output)
    out_scale = in_scale / window * 2.0 ** int(shift[0]) / int(mult[0])
    return layer, out_scale


def quantize_mlp(fm, x_calib, *, weight_bits=8, act_bits=8, per_channel=True,
                 percentile=ACT_PERCENTILE, mult_bits=REQUANT_MULT_BITS, name=None):
    """The integer SPEC model of the float network ``fm`` (module docstring).

    ``conv2d`` layers quantize like ``linear`` ones (per output channel, padding 0 stays 0),
    max pooling keeps its input's grid, and average pooling becomes ``sumpool2d`` with a
    ``requant`` of about ``1 / (KH*KW)`` (:func:`_avgpool`).

    Parameters
    ----------
    fm : FloatModel
        Without batch-norm (fold it first).
    x_calib : (N, K) or (N, *input_shape) integer array
        Calibration inputs of ``fm.input_dtype``.

    Returns
    -------
    model : Model
    scales : tuple of dict
        Per layer: ``in_scale``, ``weight_scale`` (float or (M,) array; None for a pool),
        ``out_scale`` (None for the last layer) and ``ratio`` (what ``mult / 2**shift``
        approximates; None for the last layer and max pooling).

    Raises
    ------
    ModelError
        A bias that does not fit int32, logits that do not fit int32, or a requant ratio out of
        reach of ``mult_bits`` (naming the layer and the field).
    """
    acts = fm.activations(x_calib)
    wdtype = DType(DTypeKind.INT, weight_bits)
    adtype = DType(DTypeKind.UINT, act_bits)
    in_scale, in_dtype = fm.input_scale, fm.input_dtype
    layers, scales = [], []
    n = len(fm.layers)
    for i, fl in enumerate(fm.layers):
        in_shape = tuple(fl.in_shape)
        if fl.weight is None:
            if fl.kind == "max":
                layer = Pool2d(name=fl.name, op=Op.MAXPOOL2D, in_dtype=in_dtype,
                               in_shape=in_shape, kernel=fl.kernel, stride=fl.stride,
                               padding=fl.padding)
                out_scale, ratio = in_scale, None
            else:
                layer, out_scale = _avgpool(fl, in_dtype, in_scale, mult_bits)
                ratio = np.array(layer.output.mult / 2.0 ** layer.output.shift)
            layers.append(layer)
            scales.append({"in_scale": in_scale, "weight_scale": None, "out_scale": out_scale,
                           "ratio": ratio})
            in_scale, in_dtype = out_scale, layer.out_dtype
            continue
        if fl.bn is not None:
            raise ModelError(fl.name, "batch-norm", "fold batch-norm before quantizing")
        last = i == n - 1
        weight, codebook, indices, w_scale = _weights(fl, weight_bits, per_channel and not last)
        bias = None
        if fl.bias is not None:
            bias = quantize_bias(fl.bias, in_scale, w_scale)
            if not _INT32.contains(bias):
                raise ModelError(fl.name, "bias", "the quantized bias does not fit int32 "
                                                  "(the input or weight scale is too small)")
        m = fl.out_features
        if last:
            out_scale = ratio = None
            output = OutputStage(OutputKind.IDENTITY, _INT32)
        else:
            out_scale = activation_scale(acts[i], act_bits, percentile)
            ratio = np.broadcast_to(in_scale * w_scale / out_scale, (m,))
            try:
                mult, shift = fixed_point(ratio, mult_bits)
            except ValueError as e:
                raise ModelError(fl.name, "output.mult", str(e)) from None
            output = OutputStage(OutputKind.REQUANT, adtype, mult=readonly(mult),
                                 shift=readonly(shift), relu=True)
        arrays = {"weight": readonly(weight), "weight_dtype": wdtype, "output": output,
                  "bias": None if bias is None else readonly(bias),
                  "codebook": None if codebook is None else readonly(codebook),
                  "indices": None if indices is None else readonly(indices)}
        if fl.is_conv:
            layer = Conv2d(name=fl.name, in_dtype=in_dtype, in_shape=in_shape,
                           groups=fl.groups, stride=fl.stride, dilation=fl.dilation,
                           padding=fl.padding, **arrays)
        else:
            layer = Layer(name=fl.name, op=Op.LINEAR, in_dtype=in_dtype, in_shape=in_shape,
                          **arrays)
        if last:
            lo, hi = layer.acc_bounds()
            if int(min(lo)) < _INT32.lo or int(max(hi)) > _INT32.hi:
                raise ModelError(fl.name, "output.dtype", "int32 cannot hold the logits")
        layers.append(layer)
        scales.append({"in_scale": in_scale, "weight_scale": w_scale, "out_scale": out_scale,
                       "ratio": None if ratio is None else np.array(ratio)})
        in_scale, in_dtype = out_scale, adtype
    model = Model(name=name or fm.name, input_shape=tuple(fm.input_shape),
                  input_dtype=fm.input_dtype, layers=tuple(layers))
    return model, tuple(scales)


def quantize_pass(state, config, samples):
    """Pipeline pass: the integer model, calibrated on the samples' training inputs."""
    model, scales = quantize_mlp(state.float_model, samples.x_train,
                                 weight_bits=config.weight_bits, act_bits=config.act_bits,
                                 per_channel=config.per_channel,
                                 percentile=config.act_percentile)
    return state.but(model=model, scales=scales)
