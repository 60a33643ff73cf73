"""Coefficients of the resource model (:mod:`nnaccel.gen.resources`), LUT4 and FF per quantity.

Written by ``python -m nnaccel.bench.fit`` (non-negative least squares against yosys
``synth_ecp5`` per layer on the bench designs); do not edit by hand.
"""

COEFFICIENTS = {
    "ecp5": {
        "lut4": {"layer": 121.766,
                 "xnor": 4.7465,
                 "lane_bits": 1.8667,
                 "tree": 3.142,
                 "acc": 0.0,
                 "stage": 0.0,
                 "stream": 0.4341,
                 "rom": 0.7552,
                 "ram": 0.0,
                 "dsp": 0.0,
                 "window": 235.8212,
                 "window_bits": 1.7448,
                 "pe": 433.5169,
                 "cell": 0.8993},
        "ff": {"layer": 87.1631,
                 "xnor": 5.3969,
                 "lane_bits": 0.0,
                 "tree": 2.9686,
                 "acc": 3.2215,
                 "stage": 0.0,
                 "stream": 0.5577,
                 "rom": 0.0709,
                 "ram": 0.0,
                 "dsp": 20.3601,
                 "window": 61.1016,
                 "window_bits": 0.7688,
                 "pe": 0.0,
                 "cell": 2.8511},
    },
}
