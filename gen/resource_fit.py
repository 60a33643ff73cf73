"""Coefficients of the resource model (:mod:`nnaccel.gen.resources`), LUT4 and FF per quantity.

Written by ``python -m nnaccel.bench.fit`` (non-negative least squares against yosys
``synth_ecp5`` per layer on the bench designs); do not edit by hand.
"""

COEFFICIENTS = {
    "ecp5": {
        "lut4": {"layer": 113.6268,
                 "xnor": 4.6475,
                 "lane_bits": 2.5168,
                 "tree": 2.4683,
                 "acc": 0.2774,
                 "stage": 0.0,
                 "stream": 0.4664,
                 "rom": 1.0225,
                 "ram": 0.0,
                 "dsp": 4.508,
                 "window": 240.7715,
                 "window_bits": 0.0,
                 "pe": 333.6935,
                 "cell": 0.6088},
        "ff": {"layer": 90.277,
                 "xnor": 5.362,
                 "lane_bits": 0.0,
                 "tree": 3.3526,
                 "acc": 3.3442,
                 "stage": 0.0,
                 "stream": 0.5313,
                 "rom": 0.1684,
                 "ram": 0.0,
                 "dsp": 22.7411,
                 "window": 109.8269,
                 "window_bits": 0.9629,
                 "pe": 0.0,
                 "cell": 3.3369},
    },
}
