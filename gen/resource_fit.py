"""Coefficients of the resource model (:mod:`nnaccel.gen.resources`), LUT4 and FF per quantity.

Written by ``python -m nnaccel.bench.fit`` (non-negative least squares against yosys
``synth_ecp5`` per layer on the bench designs); do not edit by hand.
"""

COEFFICIENTS = {
    "ecp5": {
        "lut4": {"layer": 110.0146,
                 "xnor": 4.4541,
                 "lane_bits": 2.8276,
                 "tree": 2.2619,
                 "acc": 0.0,
                 "stage": 0.0,
                 "stream": 0.6594,
                 "rom": 1.0012,
                 "ram": 0.0,
                 "dsp": 6.3142,
                 "window": 243.5538,
                 "window_bits": 0.0,
                 "pe": 0.0,
                 "pe_bits": 0.8823,
                 "cell": 0.5462},
        "ff": {"layer": 92.5265,
                 "xnor": 5.5624,
                 "lane_bits": 0.0,
                 "tree": 2.8284,
                 "acc": 3.9664,
                 "stage": 0.0,
                 "stream": 0.3485,
                 "rom": 0.0444,
                 "ram": 0.0,
                 "dsp": 32.8921,
                 "window": 108.5709,
                 "window_bits": 0.8691,
                 "pe": 0.0,
                 "pe_bits": 0.6116,
                 "cell": 2.9527},
    },
}
