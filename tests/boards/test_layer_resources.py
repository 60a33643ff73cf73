"""Per-layer resources of a synthesised design, read from the cell lists yosys writes
(boards/build.py: cell_list_script, layer_cells, layer_resources), and their table beside the
resource model's estimates."""

from nnaccel.boards.build import cell_list_script, layer_resources
from nnaccel.gen.resources import format_measured


def test_cell_list_script_lists_every_counted_type():
    script = cell_list_script("d.cells")
    assert "tee -q -o d.cells.LUT4.txt select -list t:LUT4" in script.splitlines()
    assert len(script.splitlines()) == 6
    assert "select -list t:SB_DFF*" in cell_list_script("d.cells", "ice40")


def test_cells_go_to_the_layer_their_module_path_names(tmp_path):
    lists = {
        "LUT4": ["top/network.layer0_fc1.core.tree_LUT4_Z", "top/network.fifo1_fc2.fifo.x_LUT4_Z",
                 "top/network.layer1_fc2.stage.y", "top/m_axis_tlast_LUT4_Z",
                 "top/network.layer10_fc11.core.z"],
        "CCU2C": ["top/network.layer0_fc1.core.acc_CCU2C"] * 3,
        "TRELLIS_DPR16X4": ["top/network.gear1_fc2.mem"],
        "TRELLIS_FF": ["top/network.layer0_fc1.skid.q", "top/s_axis_tready_FF"],
        "DP16KD": ["top/network.layer1_fc2.core.weights.mem.0.0"],
        "MULT18X18D": [],
    }
    for cell, names in lists.items():
        (tmp_path / f"d.cells.{cell}.txt").write_text("\n".join(names) + "\n")
    manifest = {"layers": [{"name": "fc1"}, {"name": "fc2"}]}
    rows = layer_resources(tmp_path, "d.cells", "ecp5", manifest)
    assert rows == [
        {"layer": "fc1", "lut4": 1 + 2 * 3, "ff": 1, "bram": 0, "dsp": 0, "lutram": 0},
        {"layer": "fc2", "lut4": 2 + 6, "ff": 0, "bram": 1, "dsp": 0, "lutram": 1},
        {"layer": 10, "lut4": 1, "ff": 0, "bram": 0, "dsp": 0, "lutram": 0},
    ]


def test_measured_table_beside_the_estimates():
    measured = [{"layer": 0, "lut4": 393, "ff": 483, "bram": 0, "dsp": 15}]
    report = {"layers": [{"layer": "fc1", "lut4": 403, "ff": 251, "bram": 0, "dsp": 15}]}
    text = format_measured(measured, report).splitlines()
    assert text[1].split() == ["layer", "lut4", "(est.)", "ff", "(est.)", "bram", "(est.)",
                               "dsp", "(est.)"]
    assert text[2].split() == ["fc1", "393", "403", "483", "251", "0", "0", "15", "15"]
