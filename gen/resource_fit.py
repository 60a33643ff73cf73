"""Coefficients of the resource model (:mod:`nnaccel.gen.resources`), LUT4 and FF per quantity.

Written by ``python -m nnaccel.bench.fit`` (non-negative least squares against yosys
``synth_ecp5`` per layer on the bench designs); do not edit by hand.
"""

COEFFICIENTS = {
    "ecp5": {
        "lut4": {"layer": 163.7957,
                 "xnor": 4.9784,
                 "lane_bits": 5.697,
                 "tree": 0.0,
                 "acc": 0.0,
                 "stage": 0.0,
                 "stream": 0.0,
                 "rom": 1.3395,
                 "ram": 0.0,
                 "dsp": 43.9621},
        "ff": {"layer": 127.7048,
                 "xnor": 5.5587,
                 "lane_bits": 3.6224,
                 "tree": 0.0,
                 "acc": 1.9925,
                 "stage": 0.0,
                 "stream": 0.3979,
                 "rom": 0.309,
                 "ram": 0.0,
                 "dsp": 62.0479},
    },
}
