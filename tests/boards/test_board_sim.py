"""The whole board top (UART pins, framed link, digits MLP, a 16-vector self-test) under
Verilator behind a pty, driven by the pyserial host driver exactly as a board would be
(nnaccel.board, boards/tb_board.py). Every test simulates the same Verilog: one build."""

import pytest

from nnaccel.board import BoardSim, run_on_board
from nnaccel.boards.host import BoardLink, LinkError
from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options
from nnaccel.gen.zoo import digits

pytestmark = [pytest.mark.verilator, pytest.mark.xdist_group("board_sim")]

SELFTEST = 16


@pytest.fixture(scope="module")
def digits_int8():
    trained = digits.int8_mlp(3, epochs=2)
    return generate(trained.model, Options()), trained.x_test


def test_board_sim_outputs_equal_numpy(digits_int8):
    design, x = digits_int8
    with BoardSim(design, board="ulx3s-85f", selftest=SELFTEST) as sim, sim.link() as link:
        assert sim.port.startswith("/dev/")
        outputs, result = run_on_board(design, x[:24], link, clock_hz=sim.clock_hz)
        status = link.status()
    assert result["matches_reference"] and result["retries"] == 0
    # the self-test ran after the batch: 16 vectors back to back, no mismatch, at about the
    # design's expected cycles per inference (the link's pace is far slower)
    expected = design.manifest["expected_cycles_per_inference"]
    assert result["selftest_vectors"] == SELFTEST and result["selftest_mismatches"] == 0
    assert expected <= result["selftest_cycles_per_vector"] <= 1.5 * expected
    assert result["link_vectors_per_second"] < result["selftest_vectors_per_second"] / 10
    assert (status.vectors_done, status.crc_errors, status.timeouts) == (24, 0, 0)
    assert (status.out_level, status.outstanding) == (0, 0)
    assert 0 < status.busy_cycles < status.clock_cycles
    # the device's vector sizes are the manifest's: 64 uint4 in 5 beats of 13 (7 bytes each),
    # 10 int32 outputs in 10 beats of 4 bytes
    assert (status.in_vector_bytes, status.out_vector_bytes) == (35, 40)


def test_board_sim_corrupted_wire_never_gives_a_wrong_output(digits_int8):
    """1% of the bytes on the wire get a bit flipped, both ways: every output still equals
    numpy (run_on_board raises on any difference), through NAKs, timeouts and retries."""
    design, x = digits_int8
    with BoardSim(design, board="icebreaker", corrupt=0.01, seed=3, selftest=SELFTEST) as sim, \
            sim.link(timeout=0.5) as link:
        _, result = run_on_board(design, x[:12], link, clock_hz=sim.clock_hz)
        status = link.status()
    assert result["matches_reference"] and result["vectors_done"] == 12
    assert result["retries"] > 0 and status.crc_errors > 0


def test_board_sim_a_dead_line_is_a_clear_error(digits_int8):
    design, _ = digits_int8
    with BoardSim(design, board="ulx3s-85f", corrupt=0.9, selftest=SELFTEST) as sim, \
            BoardLink(sim.port, baudrate=sim.baud, timeout=0.2, retries=3) as link:
        with pytest.raises(LinkError, match="no good reply"):
            link.status()
