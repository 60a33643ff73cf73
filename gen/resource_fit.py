"""Coefficients of the resource model (:mod:`nnaccel.gen.resources`), LUT4 and FF per quantity.

Written by ``python -m nnaccel.bench.fit`` (non-negative least squares against yosys
``synth_ecp5`` per layer on the bench designs); do not edit by hand.
"""

COEFFICIENTS = {
    "ecp5": {
        "lut4": {"layer": 115.8077,
                 "xnor": 4.7465,
                 "lane_bits": 1.7935,
                 "tree": 3.1068,
                 "acc": 0.282,
                 "stage": 0.0,
                 "stream": 0.4136,
                 "rom": 0.8841,
                 "ram": 0.0,
                 "dsp": 0.0,
                 "window": 228.4622,
                 "window_bits": 1.2477,
                 "pe": 345.5133,
                 "cell": 0.8726},
        "ff": {"layer": 83.1639,
                 "xnor": 5.1941,
                 "lane_bits": 0.0,
                 "tree": 3.1628,
                 "acc": 2.7878,
                 "stage": 0.0,
                 "stream": 0.7237,
                 "rom": 0.1568,
                 "ram": 0.0,
                 "dsp": 17.9248,
                 "window": 60.7052,
                 "window_bits": 1.208,
                 "pe": 0.0,
                 "cell": 2.9372},
    },
}
