"""``nnaccel build MODEL --target asic --place-route``: graywolf placement and qrouter routing
(boards/asic_place.py). The routed-DEF reader is checked on a DEF written here; the whole flow,
on the smallest design, needs OpenSTA, the cells and qflow (else skipped, saying so)."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from nnaccel import cli
from nnaccel.boards import asic_place
from nnaccel.boards.asic_place import PLACE_ROUTE_HINT, read_routed_def

from .test_asic import LIBERTY, dot_dir, liberty_areas, mlp_dir

#: A routed DEF of three nets at 100 units per um: ``a`` routed (a 300-unit horizontal run,
#: then a via and a 200-unit vertical one; a NEW piece of 50), ``b`` with two pins and no
#: route, ``c`` with one pin (nothing to route).
DEF = """VERSION 5.6 ;
DESIGN t ;
UNITS DISTANCE MICRONS 100 ;
DIEAREA ( -100 -50 ) ( 900 350 ) ;
COMPONENTS 2 ;
- INVX1_1 INVX1 + PLACED ( 0 0 ) N ;
- INVX1_2 INVX1 + PLACED ( 400 0 ) N ;
END COMPONENTS
NETS 3 ;
- a
  ( INVX1_1 Y )
  ( INVX1_2 A )
+ ROUTED metal1 ( 100 100 ) ( 400 * ) M2_M1
  NEW metal2 ( 400 100 ) ( * 300 )
  NEW metal1 ( 10 10 ) ( 60 * ) ;
- b
  ( INVX1_1 A )
  ( INVX1_2 Y )
;
- c
  ( PIN c )
;
END NETS
END DESIGN
"""

TOOLS_MISSING = [t for t in ("graywolf", "qrouter", "tclsh") if not shutil.which(t)] + [
    p for p in (str(asic_place.QFLOW_SCRIPTS / "blif2cel.tcl"), asic_place.LAYOUT["osu018"][0],
                LIBERTY) if not Path(p).is_file()] + ([] if shutil.which("sta") else ["sta"])
needs_layout = pytest.mark.skipif(bool(TOOLS_MISSING),
                                  reason=f"{', '.join(TOOLS_MISSING)} missing: "
                                         f"`{PLACE_ROUTE_HINT} opensta`")


def test_routed_def_figures():
    fig = read_routed_def(DEF)
    assert (fig["die_width_um"], fig["die_height_um"], fig["die_area_um2"]) == (10, 4, 40)
    assert fig["components"] == 2 and fig["nets"] == 3
    assert fig["wire_length_um"] == pytest.approx((300 + 200 + 50) / 100)
    assert fig["unrouted_nets"] == ["b"]


def test_place_route_without_the_tools_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(asic_place, "QFLOW_SCRIPTS", tmp_path / "no-qflow")
    model = mlp_dir(tmp_path / "mlp484")
    out = tmp_path / "out"
    assert cli.main(["build", str(model), "--target", "asic", "--place-route",
                     "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert PLACE_ROUTE_HINT in err and "blif2cel.tcl" in err and "Traceback" not in err
    assert err.count("\n") <= 2, err
    assert not out.exists()


def test_place_route_is_for_asic_only(tmp_path, capsys):
    model = mlp_dir(tmp_path / "mlp484")
    assert cli.main(["build", str(model), "--board", "icebreaker", "--place-route",
                     "-o", str(tmp_path / "out")]) == 2
    assert "--place-route" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@needs_layout
@pytest.mark.slow
def test_tiny_design_places_and_routes(tmp_path):
    """The one-layer dot product placed and routed: a die at least as large as its cells,
    every cell placed, every net routed."""
    model = dot_dir(tmp_path / "dot2")
    out = tmp_path / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["build", str(model), "--target", "asic", "--place-route",
                         "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    layout = report["place_route"]
    cells = sum(liberty_areas()[c] * n for c, n in report["cells"].items())
    assert layout["die_area_um2"] > cells > 1000
    assert layout["die_area_um2"] == pytest.approx(
        layout["die_width_um"] * layout["die_height_um"], rel=1e-6)
    assert layout["die_area_mm2"] == pytest.approx(layout["die_area_um2"] / 1e6, rel=1e-4)
    assert 0 < layout["utilization"] < 1
    assert layout["components"] == report["cell_count"]
    assert layout["failed_nets"] == 0 and layout["unrouted_nets"] == []
    assert layout["qrouter_failed"] == 0
    assert layout["nets"] > 10 and layout["wire_length_um"] > layout["die_width_um"]
    routed = (out / layout["routed_def"]).read_text()
    assert read_routed_def(routed)["die_area_um2"] == layout["die_area_um2"]
    assert [s["step"] for s in report["steps"]] == [
        "synthesis", "static timing", "placement", "routing", "post-route timing"]
    # the same netlist with the routed wires' delays and loads: slower, not by 10x
    post = layout["post_route"]
    assert report["fmax_mhz"] / 10 < post["fmax_mhz"] < report["fmax_mhz"]
    assert post["fmax_mhz"] == pytest.approx(1e3 / (10.0 - post["slack_ns"]), rel=1e-3)
    log = (out / "dot2.post.sta.rpt").read_text()
    assert f"Endpoint: {post['critical_path']['endpoint']}" in log and "read_sdf" not in log
    assert "die (placed, routed)" in stdout.getvalue() and "0 failed" in stdout.getvalue()
    assert "Fmax after routing" in stdout.getvalue()
