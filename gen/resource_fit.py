"""Coefficients of the resource model (:mod:`nnaccel.gen.resources`), LUT4 and FF per quantity.

Written by ``python -m nnaccel.bench.fit`` from yosys ``synth_ecp5`` on the bench designs; the
first version holds hand-set starting values until that fit has been run.
"""

COEFFICIENTS = {
    "ecp5": {
        "lut4": {"layer": 60.0, "xnor": 1.0, "lane_bits": 1.0, "tree": 1.0, "acc": 1.0,
                 "stage": 1.0, "stream": 0.5, "rom": 1.0, "ram": 1.0, "dsp": 2.0},
        "ff": {"layer": 60.0, "xnor": 0.3, "lane_bits": 0.0, "tree": 0.5, "acc": 1.0,
               "stage": 1.0, "stream": 1.0, "rom": 0.0, "ram": 1.0, "dsp": 0.0},
    },
}
