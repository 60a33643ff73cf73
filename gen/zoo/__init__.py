"""Small trained example models, returned as SPEC models (:class:`nnaccel.gen.ir.Model`).

Everything here trains on data bundled with scikit-learn: nothing is downloaded, every model is
seeded and deterministic on a given machine, and each one trains in seconds on a laptop CPU.

* :mod:`.digits`: scikit-learn's 8x8 digits, an int8 MLP (``digits_int8``) and a binarized MLP
  (``digits_bnn``).

Benchmark models (random weights of fixed shapes, seeded; no training):

* :mod:`.random_mlp`: FINN's SFC topology (binarized) and an int4 MLP with prime widths;
* :mod:`.sparse_layer`: pruned, weight-shared layers for the sparse engine;
* :mod:`.gemm`: GEMMs as one-layer models for the systolic engine.
"""

from .digits import DigitsResult, binarized_mlp, int8_mlp, load_split, train_all

__all__ = ["DigitsResult", "binarized_mlp", "int8_mlp", "load_split", "train_all"]
