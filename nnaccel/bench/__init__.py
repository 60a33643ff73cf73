"""``nnaccel bench``: the benchmarks, each building its designs through ``generate()`` and the
simulate and build API a user calls (no second path to Verilog).

* :mod:`.mvu`: networks on the matrix-vector unit (cycles, utilisation, resources, Fmax);
* :mod:`.systolic`: GEMMs on the systolic array against SCALE-Sim's closed forms;
* :mod:`.sparse`: a pruned, weight-shared layer on the sparse engine;
* :mod:`.cnv`: FINN's CNV-W1A1 convolutional network on the dataflow engine;
* :mod:`.asic`: the designs on OSU 0.18 um standard cells, beside EIE and Gemmini;
* :mod:`.report`: writing, formatting and plotting shared by the suites.

The models come from :mod:`nnaccel.gen.zoo`.
"""

from .asic import run_asic_bench
from .cnv import run_cnv_bench
from .mvu import run_bench
from .sparse import run_sparse_bench
from .systolic import run_systolic_bench

__all__ = ["run_asic_bench", "run_cnv_bench", "run_bench", "run_sparse_bench", "run_systolic_bench"]
