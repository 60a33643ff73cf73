"""The compression report: storage of every layer and accuracy after every pass.

Storage of a layer is counted the way the generator would store it by default (SPEC 2.3):

* ``sparse`` (density <= 0.35, not bipolar): EIE's interleaved CSC over ``pe`` PEs
  (:mod:`nnaccel.hw.sparse.format`): every entry (value + relative row index, padding entries
  included) and every column pointer, with the relative index width that minimises the total
  (:func:`~nnaccel.hw.sparse.format.choose_index_bits`); values are codes into the stored
  codebook (zero first) for a shared layer, else ``weight_dtype`` integers;
* ``dense``: ``M * K`` values of ``value_bits`` each (codes when shared).

A shared layer also stores its codebook, ``len(stored codebook) * weight bits``. The compression
ratio compares with the float32 dense weight matrix (``32 * M * K`` bits); biases, scales and
thresholds are not counted on either side.
"""

import json

import numpy as np

from ...hw.sparse.format import choose_index_bits, stored_codebook
from ..ir import DTypeKind
from ..passes.engines import SPARSE_DENSITY

__all__ = ["layer_storage", "build_report", "format_report", "report_json"]


def layer_storage(layer, pe=1):
    """Storage statistics of one integer layer (:class:`nnaccel.gen.ir.Layer` or
    :class:`~nnaccel.gen.ir.Conv2d`, whose ``(M, C/G*KH*KW)`` weight matrix is counted), a
    dict."""
    weight = layer.weight.reshape(layer.weight.shape[0], -1)
    m, k = weight.shape
    weights = m * k
    nonzeros = int(np.count_nonzero(layer.weight))
    density = nonzeros / weights
    wbits = layer.weight_dtype.bits
    codebook = None
    codebook_bits = 0
    if layer.codebook is not None:
        codebook = stored_codebook(layer.codebook)
        value_bits = max((len(codebook) - 1).bit_length(), 1)
        codebook_bits = len(codebook) * wbits
    else:
        value_bits = wbits
    sparse = density <= SPARSE_DENSITY and layer.weight_dtype.kind is not DTypeKind.BIPOLAR
    index_bits = None
    if sparse:
        pe = max(1, min(pe, m))
        if codebook is not None:
            choice = choose_index_bits(weight, pe, codebook=layer.codebook)
        else:
            choice = choose_index_bits(weight, pe, value_bits=wbits)
        index_bits = choice.index_bits
        stored = choice.storage_bits + codebook_bits
    else:
        stored = weights * value_bits + codebook_bits
    return {
        "name": layer.name, "shape": [m, k], "weights": weights, "nonzeros": nonzeros,
        "density": density, "weight_dtype": str(layer.weight_dtype),
        "shared_values": None if codebook is None else len(codebook),
        "format": "sparse" if sparse else "dense", "pe": pe if sparse else None,
        "value_bits": value_bits, "index_bits": index_bits, "codebook_bits": codebook_bits,
        "stored_bits": stored, "bits_per_weight": stored / weights,
        "bits_per_nonzero": stored / max(nonzeros, 1), "float32_bits": 32 * weights,
        "compression_ratio": 32 * weights / stored,
    }


def build_report(state, samples, pe=1):
    """The report of a finished pipeline (``state.model`` set), a JSON-able dict."""
    layers = [layer_storage(layer, pe) for layer in state.model.layers
              if getattr(layer, "weight", None) is not None]
    weights = sum(s["weights"] for s in layers)
    stored = sum(s["stored_bits"] for s in layers)
    nonzeros = sum(s["nonzeros"] for s in layers)
    history = [r.dump() for r in state.history]
    return {
        "model": state.model.name,
        "accuracy_measure": ("accuracy against the labels" if samples.labelled
                             else "agreement with the float model's argmax"),
        "samples": len(samples.x_eval),
        "calibration": ("synthetic inputs, uniform over the input dtype" if samples.synthetic
                        else f"{len(samples.x_train)} given inputs"),
        "float_accuracy": history[0]["accuracy"] if history else None,
        "accuracy": history[-1]["accuracy"] if history else None,
        "passes": history,
        "layers": layers,
        "total": {"weights": weights, "nonzeros": nonzeros, "density": nonzeros / weights,
                  "stored_bits": stored, "bits_per_weight": stored / weights,
                  "bits_per_nonzero": stored / max(nonzeros, 1), "float32_bits": 32 * weights,
                  "compression_ratio": 32 * weights / stored},
    }


def _row(cells, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), "  ".join("-" * w for w in widths)]
    return lines + [_row(r, widths) for r in rows]


def format_report(report):
    """The report as text: a table of passes and a table of layers."""
    passes = [[p["pass"], f"{100 * p['accuracy']:.2f}", f"{p['density']:.4f}",
               f"{p['seconds']:.1f}"] for p in report["passes"]]
    lines = [f"{report['model']}: {report['accuracy_measure']} on {report['samples']} samples"]
    lines += _table(["pass", "accuracy %", "density", "seconds"], passes)
    rows = []
    for s in [*report["layers"], dict(report["total"], name="total", shape=None)]:
        rows.append([
            s["name"], "" if s["shape"] is None else "x".join(map(str, s["shape"])),
            f"{s['density']:.4f}", s.get("format", ""), s.get("value_bits", ""),
            "" if s.get("index_bits") is None else s["index_bits"],
            s["stored_bits"], f"{s['bits_per_nonzero']:.2f}", f"{s['compression_ratio']:.1f}x"])
    lines.append("")
    lines += _table(["layer", "shape", "density", "format", "value bits", "index bits",
                     "stored bits", "bits/nonzero", "vs float32"], rows)
    return "\n".join(lines)


def report_json(report):
    """The report as JSON text (numpy scalars converted)."""
    return json.dumps(report, indent=2, default=lambda o: o.item()) + "\n"
