"""``nnaccel sweep`` (nnaccel/sweep.py): the grid, the Pareto front and the outputs without Ray,
then sweeps on a real two-node Ray cluster started here (``ray start --head`` and a second
``ray start --address``, one CPU each): tasks spread over both nodes, a failing point recorded,
a killed worker's task retried, a resumed sweep computing nothing.

The cluster's points share one design: the grid ``max-lanes=18,19,20,21`` gives four points
(four design hashes) that all unfold the 18 multiplies of a 4-3-2 MLP fully, so one cached
Verilator build serves them all and the Ray tests stay short.
"""

import contextlib
import csv
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import nnaccel
from nnaccel import sweep as sweep_mod
from nnaccel.cli import main
from nnaccel.gen.errors import ToolError, UsageError
from nnaccel.gen.model_io import write_model
from nnaccel.gen.zoo.random_mlp import prime_int4_model

LAYERS = ["fc1", "fc2"]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A 4-3-2 int4 MLP (18 multiplies) as a model directory."""
    return write_model(prime_int4_model(widths=(4, 3, 2), name="mlp432"),
                       tmp_path_factory.mktemp("model") / "mlp432")


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- without Ray ---------------------------------------------------------------------------------

def test_grid_is_the_product_in_key_order():
    grid = sweep_mod.parse_grid(["max-lanes=8,16", "engine.fc1=mvu,sparse",
                                 "array.fc2=4x4:ws"])
    points = sweep_mod.grid_points(grid, LAYERS)
    assert points == [
        {"max-lanes": 8, "engine.fc1": "mvu", "array.fc2": "4x4:ws"},
        {"max-lanes": 8, "engine.fc1": "sparse", "array.fc2": "4x4:ws"},
        {"max-lanes": 16, "engine.fc1": "mvu", "array.fc2": "4x4:ws"},
        {"max-lanes": 16, "engine.fc1": "sparse", "array.fc2": "4x4:ws"}]
    assert sweep_mod._argv(points[1], LAYERS) == [
        "--max-lanes", "8", "--engine", "fc1=sparse", "--array", "fc2=4x4,ws"]
    assert sweep_mod._argv({"storage": "bram", "storage.fc1": "logic"}, LAYERS) == [
        "--weight-storage", "bram", "--weight-storage", "fc1=logic"]


@pytest.mark.parametrize("texts, needle", [
    (["max-lanes"], "expected KEY=V1,V2"),
    (["max-lanes=8", "max-lanes=16"], "given twice"),
    (["lanes=8"], "grid key 'lanes'"),
    (["engine=mvu"], "grid key 'engine'"),
    (["max-lanes.fc1=8"], "grid key 'max-lanes.fc1'"),
    (["engine.fc9=mvu"], "names layer 'fc9'"),
])
def test_bad_grids_are_refused(texts, needle):
    with pytest.raises(UsageError, match=needle):
        sweep_mod.grid_points(sweep_mod.parse_grid(texts), LAYERS)


def test_cli_refuses_a_bad_grid_before_anything_runs(mlp, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(mlp), "--grid", "engine.fc7=mvu", "--no-build",
                 "--cache", str(tmp_path / "cache"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "names layer 'fc7'" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "cache").exists()
    assert main(["sweep", str(mlp), "--grid", "max-lanes=8", "--cache",
                 str(tmp_path / "cache")]) == 2
    assert "--board: required" in capsys.readouterr().err


def test_cli_refuses_a_foreign_output_directory(mlp, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["sweep", str(mlp), "--grid", "max-lanes=8", "--no-build", "-o", str(out),
                 "--cache", str(tmp_path / "cache")]) == 2
    assert "is not an earlier output" in capsys.readouterr().err
    assert os.listdir(out) == ["notes.txt"]


def test_points_refused_by_the_generator_are_recorded_without_ray(mlp, tmp_path):
    """Every point refused (an engine that does not exist): recorded as failed, the outputs
    still written, and Ray never started (nothing to run)."""
    result = sweep_mod.sweep(mlp, ["engine.fc1=gpu,tpu"], build=False, cache=tmp_path / "c",
                             output=tmp_path / "out", log=lambda line: None)
    with pytest.raises(UsageError, match="not loaded from a path"):
        nnaccel.Model(nnaccel.load(mlp).ir).sweep({"max-lanes": [8]}, build=False)
    assert (result.computed, result.cached, result.failed) == (0, 0, 2)
    points = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [p["status"] for p in points] == ["failed", "failed"]
    assert "fc1=gpu" in points[0]["error"] and points[0]["options"] == {"engine.fc1": "gpu"}
    rows = _csv(tmp_path / "out" / "results.csv")
    assert [r["grid.engine.fc1"] for r in rows] == ["gpu", "tpu"]
    assert (tmp_path / "out" / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_without_ray_a_sweep_says_how_to_install_it(mlp, tmp_path, monkeypatch):
    """Ray is the optional 'sweep' extra: without it a sweep with points to run is a tool error
    (exit 3) that names the install, instead of a traceback."""
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ToolError, match=r"not installed: pip install -e '\.\[sweep\]'"):
        sweep_mod.sweep(mlp, ["max-lanes=8"], build=False, cache=tmp_path / "c",
                        output=tmp_path / "out", log=lambda line: None)


def test_cli_json(mlp, tmp_path, capsys):
    """sweep --json: stdout is one JSON object, the points as results.json holds them; the
    table goes to stderr."""
    from nnaccel.cli import main

    assert main(["sweep", str(mlp), "--grid", "engine.fc1=gpu", "--no-build", "--cache",
                 str(tmp_path / "c"), "-o", str(tmp_path / "out"), "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["points"] == json.loads((tmp_path / "out" / "results.json").read_text())
    assert (doc["computed"], doc["cached"], doc["failed"]) == (0, 0, 1)
    assert doc["output"] == str(tmp_path / "out") and "engine.fc1" in captured.err


def test_pareto_front():
    costs = [10, 20, 20, 30, 5, 40]
    gains = [1.0, 3.0, 2.0, 3.0, 0.5, 4.0]
    # 2 is dominated by 1 (same cost, less gain), 3 by 1 (more cost, same gain)
    assert sweep_mod.pareto_front(costs, gains) == [4, 0, 1, 5]
    assert sweep_mod.pareto_front([1, 1], [2, 2]) == [0, 1]


def _entry(i, lut4, fmax, cycles):
    return {"point": i, "options": {"max-lanes": 8 * (i + 1)}, "status": "ok", "error": None,
            "cached": False, "cycles_per_inference": cycles, "lanes": 8 * (i + 1),
            "resources": {"lut4": {"used": lut4}, "ff": {"used": lut4 // 2}},
            "fmax_mhz": fmax, "inferences_per_second": fmax * 1e6 / cycles}


def test_outputs_of_a_built_sweep(tmp_path):
    points = [_entry(0, 1000, 50.0, 100.0), _entry(1, 1800, 40.0, 40.0),
              {"point": 2, "options": {"max-lanes": 24}, "status": "failed",
               "error": "ToolError: nextpnr failed", "cached": False}]
    spec = {"vectors": 8, "seed": 0, "build": {"target": "fpga", "board": "ulx3s-85f"}}
    sweep_mod.write_outputs(tmp_path / "o", points, spec=spec, model="m", grid=["max-lanes"])
    rows = _csv(tmp_path / "o" / "results.csv")
    assert [(r["lut4"], r["ff"], r["fmax_mhz"], r["status"]) for r in rows] == [
        ("1000", "500", "50.0", "ok"), ("1800", "900", "40.0", "ok"), ("", "", "", "failed")]
    assert float(rows[1]["inferences_per_second"]) == 1e6
    assert json.loads((tmp_path / "o" / "results.json").read_text()) == points
    table = sweep_mod.format_table(points)
    assert "1,800 LUT4" in table and "FAILED" in table and "1,000,000" in table
    assert (tmp_path / "o" / "pareto.svg").read_text().lstrip().startswith("<?xml")


# -- on a two-node Ray cluster -------------------------------------------------------------------

def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports(ports):
    return [f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}", f"--runtime-env-agent-port={ports[4]}",
            f"--metrics-export-port={ports[5]}"]


def _session_processes(sessions):
    """``{pid: cmdline}`` of the processes in the sessions ``sessions`` (the ``ray start``
    processes were started in sessions of their own; Ray's workers get process groups of their
    own, but stay in the session)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) in sessions:
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
    return found


def _stop(procs):
    """End the ``ray start --block`` processes and everything in their sessions (raylets,
    stores, workers): SIGTERM, then SIGKILL of whatever is left. Never ``ray stop``, which would
    end every Ray on the machine."""
    sessions = {proc.pid for proc in procs}
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in _session_processes(sessions):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and a second node, one CPU and 100 MB of object store each, on free ports and
    in a private temporary directory (short: Ray's socket paths are limited), with a token of
    their own that the clients are given too."""
    tmp = Path(tempfile.mkdtemp(prefix="nnray-", dir="/tmp"))
    ports = _free_ports(13)
    (tmp / "token").write_text(secrets.token_hex(32))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(tmp / "token"))
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--block",
              "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    procs = []

    def start(name, argv):
        log = open(tmp / f"{name}.log", "w")
        procs.append(subprocess.Popen([str(BIN / "ray"), "start", f"--temp-dir={tmp}/{name}",
                                       *argv, *common], stdout=log, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True))
        log.close()

    try:
        start("head", ["--head", f"--port={ports[0]}", "--include-dashboard=false",
                       *_node_ports(ports[1:7])])
        address = f"127.0.0.1:{ports[0]}"
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
                break
            except OSError:
                assert procs[0].poll() is None, (tmp / "head.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        start("worker", [f"--address={address}", *_node_ports(ports[7:13])])
        _wait_for_nodes(address, 2, tmp, env)
        yield {"address": address, "sessions": {p.pid for p in procs}, "env": env}
    finally:
        _stop(procs)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def _wait_for_nodes(address, count, tmp, env):
    code = ("import ray, time, sys\n"
            f"ray.init(address={address!r}, logging_level='ERROR')\n"
            "for _ in range(360):\n"
            "    if sum(n['Alive'] for n in ray.nodes()) >= int(sys.argv[1]): break\n"
            "    time.sleep(0.5)\n"
            "else: sys.exit('the second Ray node did not join')\n")
    run = subprocess.run([sys.executable, "-c", code, str(count)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:] + (tmp / "worker.log").read_text()[-3000:]


def _sweep(cluster, mlp, tmp_path, grid, *extra, name="out"):
    cmd = [str(BIN / "nnaccel"), "sweep", str(mlp), *[a for g in grid for a in ("--grid", g)],
           "--no-build", "--address", cluster["address"], "--cache", str(tmp_path / "cache"),
           "-o", str(tmp_path / name), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cluster["env"])


def _results(path):
    return json.loads((path / "results.json").read_text())


@pytest.mark.verilator
@pytest.mark.xdist_group("ray")
def test_sweep_spreads_over_both_nodes_records_a_failure_and_resumes(ray_cluster, mlp,
                                                                     tmp_path):
    proc = _sweep(ray_cluster, mlp, tmp_path, ["max-lanes=18,19,0,20,21"])
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, err[-3000:]  # one point failed
    points = _results(tmp_path / "out")
    assert [p["options"]["max-lanes"] for p in points] == [18, 19, 0, 20, 21]
    failed = points.pop(2)
    assert failed["status"] == "failed" and "max-lanes" in failed["error"]
    assert all(p["status"] == "ok" and not p["cached"] for p in points), points
    # fully unfolded: one inference per cycle, as the manifest expects, outputs checked exact
    assert [p["cycles_per_inference"] for p in points] == [1.0] * 4
    assert [p["expected_cycles_per_inference"] for p in points] == [1] * 4
    assert len({p["node_id"] for p in points}) == 2, [p["node_id"] for p in points]
    assert "[5/5]" in err and "FAILED" in out
    rows = _csv(tmp_path / "out" / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok", "ok"]

    # resumed, through the Python API: every point is a cache hit, no task runs
    result = nnaccel.load(mlp).sweep({"max-lanes": [18, 19, 0, 20, 21]}, build=False,
                                     address=ray_cluster["address"],
                                     cache=tmp_path / "cache", output=tmp_path / "again",
                                     log=lambda line: None)
    assert (result.computed, result.cached, result.failed) == (0, 4, 1)
    again = _results(tmp_path / "again")
    assert [p["cached"] for p in again] == [True, True, False, True, True]
    for before, after in zip(points, [p for p in again if p["status"] == "ok"], strict=True):
        assert after["design_hash"] == before["design_hash"]
        assert after["node_id"] == before["node_id"]


def _kill_first_task(sessions, found, stop):
    """SIGKILL the first process of the cluster running a sweep task (its title is
    ``ray::measure_point``); record its pid in ``found``."""
    while not stop.is_set():
        for pid, cmdline in _session_processes(sessions).items():
            if cmdline.startswith(b"ray::measure_point"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    found.append(pid)
                    return
        time.sleep(0.02)


@pytest.mark.verilator
@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("retries", [2, 0])
def test_the_task_of_a_killed_worker_is_retried(ray_cluster, mlp, tmp_path, retries):
    """A worker killed in the middle of a point: with retries the point still completes (on
    another worker process); with ``--retries 0`` it is recorded as failed."""
    found, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_task,
                              args=(ray_cluster["sessions"], found, stop))
    killer.start()
    try:
        proc = _sweep(ray_cluster, mlp, tmp_path, ["max-lanes=18"], "--retries", str(retries))
        out, err = proc.communicate(timeout=900)
    finally:
        stop.set()
        killer.join()
    assert found, "no task was seen running"
    (point,) = _results(tmp_path / "out")
    if retries:
        assert proc.returncode == 0, err[-3000:]
        assert point["status"] == "ok" and point["cycles_per_inference"] == 1.0
        assert point["pid"] != found[0]
    else:
        assert proc.returncode == 1
        assert point["status"] == "failed" and "Worker" in point["error"], point
