"""FINN's CNV-W1A1 topology with random bipolar weights, for benchmarks (random weights change
neither the cycles nor, to first order, the resources of a binarized design).

* :func:`cnv_model`: CNV-W1A1 on (3, 32, 32) uint8 pixels, or a scaled-down chain of the same
  kind (fewer channels, a smaller map, fewer convolutions);
* :func:`cnv_inputs`: random uint8 images;
* :func:`cnv_macs`: the multiply-accumulates of one image, from the topology alone.

The topology (FINN's ``cnv`` of BNN-PYNQ and finn-examples): six 3x3 convolutions without
padding, stride 1, of 64, 64, 128, 128, 256, 256 channels, a 2x2 max pool (stride 2) after the
second and the fourth, then dense layers 256 -> 512 -> 512 -> 10 on the flatten of the last
256x1x1 map. Every weight is bipolar (+-1); every hidden layer ends in a bipolar threshold
stage (FINN's batch-norm + sign folded into one threshold per channel). The first layer takes
the 8-bit pixels themselves (uint8, as FINN's first layer takes 8-bit input). The last layer's
output is the identity in int32 (the ten class scores; FINN ends in a top-k / argmax node,
which changes neither cycles nor resources noticeably).

Thresholds sit near the median accumulator of each channel, so activations are a mix of +1 and
-1 (a constant map would test little): for the first layer, whose accumulator over uniform
random pixels has mean ``127.5 * sum(w[m])``, that mean rounded plus a small random offset; for
the bipolar layers, whose accumulator has mean 0 over weights independent of the input, a small
random even offset around 0 (a +-1 dot product over an even K is even).
"""

import numpy as np

from ..model_io import model_from_arrays

__all__ = ["CNV_CONVS", "CNV_POOLS_AFTER", "CNV_DENSE", "CNV_INPUT", "cnv_model", "cnv_inputs",
           "cnv_macs", "cnv_shapes"]

#: Output channels of CNV's six 3x3 convolutions.
CNV_CONVS = (64, 64, 128, 128, 256, 256)
#: Indices of the convolutions followed by a 2x2 max pool.
CNV_POOLS_AFTER = (1, 3)
#: Output features of the dense layers (the last one gives the class scores).
CNV_DENSE = (512, 512, 10)
#: The input image: (channels, height, width), uint8 pixels.
CNV_INPUT = (3, 32, 32)


def cnv_shapes(convs=CNV_CONVS, pools_after=CNV_POOLS_AFTER, dense=CNV_DENSE,
               input_shape=CNV_INPUT):
    """The layers of the chain as ``(name, op, in_shape, out_shape)``, computed from the
    topology alone (valid 3x3 convolutions, 2x2 stride-2 pools, flatten into dense).

    Raises ValueError when a map shrinks below a 3x3 convolution's or 2x2 pool's window.
    """
    c, h, w = input_shape
    out = []
    for n, m in enumerate(convs):
        if h < 3 or w < 3:
            raise ValueError(f"conv c{n}: a {h}x{w} map is smaller than its 3x3 window")
        out.append((f"c{n}", "conv2d", (c, h, w), (m, h - 2, w - 2)))
        c, h, w = m, h - 2, w - 2
        if n in pools_after:
            if h < 2 or w < 2:
                raise ValueError(f"pool after c{n}: a {h}x{w} map is smaller than 2x2")
            out.append((f"p{n}", "maxpool2d", (c, h, w), (c, h // 2, w // 2)))
            h, w = h // 2, w // 2
    k = c * h * w
    for n, m in enumerate(dense):
        out.append((f"f{n}", "linear", (k,), (m,)))
        k = m
    return out


def cnv_macs(convs=CNV_CONVS, pools_after=CNV_POOLS_AFTER, dense=CNV_DENSE,
             input_shape=CNV_INPUT):
    """Multiply-accumulates of one image: ``M*OH*OW*C*9`` per convolution, ``M*K`` per dense
    layer (59,461,376 for CNV-W1A1)."""
    total = 0
    for _, op, ins, outs in cnv_shapes(convs, pools_after, dense, input_shape):
        if op == "conv2d":
            total += outs[0] * outs[1] * outs[2] * ins[0] * 9
        elif op == "linear":
            total += outs[0] * ins[0]
    return total


def cnv_model(seed=0, *, convs=CNV_CONVS, pools_after=CNV_POOLS_AFTER, dense=CNV_DENSE,
              input_shape=CNV_INPUT, part=None, name="cnv_w1a1"):
    """CNV-W1A1 (the defaults) or a scaled-down chain of the same kind, random bipolar weights.

    Parameters
    ----------
    seed : int
        Seed of the weights and thresholds.
    convs : sequence of int
        Output channels of the 3x3 valid convolutions, in order.
    pools_after : sequence of int
        Indices into ``convs`` of the convolutions followed by a 2x2 max pool.
    dense : sequence of int
        Output features of the dense layers; the last one has an int32 identity output.
    input_shape : (int, int, int)
        (C, H, W) of the uint8 input image.
    part : (str, str) or None
        The names of a first and a last layer of the chain (``("p1", "p3")``): only the layers
        from the one to the other, on the map the first one takes in the whole chain, bipolar
        unless the first is ``c0`` (a piece of the network at its real shapes, for benchmarks).
    name : str
        The model's name.

    Returns
    -------
    nnaccel.gen.ir.Model
        Validated by the model reader (:func:`~nnaccel.gen.model_io.model_from_arrays`).
    """
    rng = np.random.default_rng(seed)
    arrays, layers = {}, []
    shapes = cnv_shapes(convs, pools_after, dense, input_shape)
    dtype = "uint8"
    if part is not None:
        names = [s[0] for s in shapes]
        shapes = shapes[names.index(part[0]):names.index(part[1]) + 1]
        input_shape, dtype = shapes[0][2], "uint8" if part[0] == "c0" else "bipolar"
    last = shapes[-1][0]
    for lname, op, ins, outs in shapes:
        if op == "maxpool2d":
            layers.append({"name": lname, "op": op, "kernel": [2, 2]})
            continue
        m = outs[0]
        shape = (m, ins[0], 3, 3) if op == "conv2d" else (m, ins[0])
        weight = rng.choice(np.array([-1, 1]), size=shape)
        arrays[f"{lname}.w"] = weight
        if lname == last:
            out = {"kind": "identity", "dtype": "int32"}
        else:
            if lname == "c0":  # uint8 pixels: the mean accumulator is 127.5 * sum(w)
                centre = np.round(127.5 * weight.reshape(m, -1).sum(axis=1))
                t = centre + rng.integers(-64, 64, size=m, endpoint=True)
            else:  # +-1 products: mean 0, even sums over an even K
                t = 2 * rng.integers(-2, 2, size=m, endpoint=True)
            arrays[f"{lname}.t"] = t.astype(np.int64).reshape(m, 1)
            out = {"kind": "threshold", "thresholds": f"{lname}.t", "dtype": "bipolar"}
        layers.append({"name": lname, "op": op, "weight": f"{lname}.w",
                       "weight_dtype": "bipolar", "output": out})
    doc = {"format": "nnaccel-model/1", "name": name,
           "input": {"shape": list(input_shape), "dtype": dtype}, "layers": layers}
    return model_from_arrays(doc, arrays)


def cnv_inputs(model, n, seed=0):
    """``n`` random uint8 images of ``model``'s input shape (B, C, H, W)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(n, *model.input_shape), endpoint=True)
