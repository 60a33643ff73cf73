"""The Verilator build cache stays bounded: compile-only files are removed from a finished build,
the least recently used builds are evicted over ``$NNACCEL_CACHE_MAX``, never a build in use or
used in the last hour, and temporary directories of killed builds go after a day.

The builds here are stand-in directories of known sizes (no Verilator); that a pruned build
still simulates is checked by every Verilator test, which runs from such builds."""

import fcntl
import os
import time

import pytest

from nnaccel.sim import runner

HOUR = 3600
NOW = time.time()


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NNACCEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NNACCEL_CACHE_MAX", raising=False)
    root = runner.cache_dir()
    root.mkdir(parents=True)
    return root


def fake_build(root, name, size, hours_ago, top="top"):
    """A cached build of ``size`` bytes last used ``hours_ago`` hours before NOW."""
    build = root / name
    build.mkdir()
    (build / top).write_bytes(b"x" * size)
    marker = build / "last-used"
    marker.touch()
    os.utime(marker, (NOW - hours_ago * HOUR, NOW - hours_ago * HOUR))
    (root / f"{name}.lock").touch()
    return build


def names(paths):
    return [p.name for p in paths]


def test_least_recently_used_go_first_until_under_the_bound(cache):
    for name, hours in [("a", 5), ("b", 9), ("c", 2), ("d", 7)]:
        fake_build(cache, name, 1000, hours)
    removed = runner.evict(2500, now=NOW)
    assert names(removed) == ["b", "d"]  # oldest first, then the bound (2,000 <= 2,500) holds
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == ["a", "c"]
    assert not (cache / "b.lock").exists() and (cache / "a.lock").exists()


def test_bound_from_the_environment(cache, monkeypatch):
    for i in range(10):
        fake_build(cache, f"k{i}", 3000, 2 + i)
    monkeypatch.setenv("NNACCEL_CACHE_MAX", "10000")
    assert runner.cache_max() == 10000
    runner.evict(now=NOW)
    left = [p for p in cache.iterdir() if p.is_dir()]
    assert sum((p / "top").stat().st_size for p in left) <= 10000
    assert sorted(p.name for p in left) == ["k0", "k1", "k2"]  # the three most recent
    monkeypatch.setenv("NNACCEL_CACHE_MAX", "lots")
    assert runner.cache_max() == runner.DEFAULT_CACHE_MAX


def test_build_in_use_or_recent_or_kept_is_not_removed(cache):
    held = fake_build(cache, "held", 1000, 10)
    fake_build(cache, "old", 1000, 8)
    kept = fake_build(cache, "runtime-x", 1000, 9)
    recent = fake_build(cache, "recent", 1000, 0.5)
    with open(cache / "held.lock", "a") as lock:  # another process simulates it
        fcntl.flock(lock, fcntl.LOCK_SH)
        removed = runner.evict(0, now=NOW, keep=[kept])
    assert names(removed) == ["old"]
    assert (held / "top").is_file() and (recent / "top").is_file() and (kept / "top").is_file()
    assert names(runner.evict(0, now=NOW, keep=[kept])) == ["held"]  # released: now it goes


def test_simulation_holds_its_build_against_eviction(cache, monkeypatch):
    build = fake_build(cache, "sim", 1000, 10)
    seen = []

    def simulate(build_dir, top, *args):
        seen.append(runner.evict(0, now=NOW + 2 * HOUR))  # another worker's build evicts
        return 1

    monkeypatch.setattr(runner, "_test", simulate)
    assert runner.test(build, "top", "tb") == 1
    assert seen == [[]] and (build / "top").is_file()
    assert (build / "last-used").stat().st_mtime > NOW - HOUR  # the use touched it
    assert names(runner.evict(0, now=NOW + 2 * HOUR)) == ["sim"]


def test_stale_temporary_directories_are_swept(cache):
    for name, hours in [("abc.tmp-old", 30), ("abc.tmp-new", 3), ("runtime.tmp-old", 25)]:
        tmp = cache / name
        tmp.mkdir()
        (tmp / "Vtop.o").write_bytes(b"o")
        os.utime(tmp, (NOW - hours * HOUR, NOW - hours * HOUR))
    fake_build(cache, "b", 10, 5)
    removed = runner.evict(10**9, now=NOW)
    assert sorted(names(removed)) == ["abc.tmp-old", "runtime.tmp-old"]
    assert (cache / "abc.tmp-new").is_dir() and (cache / "b").is_dir()


def test_finished_build_keeps_only_what_the_simulation_runs(tmp_path):
    compile_only = ["Vtop__pch.h.fast.gch", "Vtop__pch.h.slow.gch", "Vtop__ALL.a", "Vtop.o",
                    "Vtop___024root__0.cpp", "Vtop.h", "Vtop.mk", "Vtop.d", "design.v",
                    "verilated.o"]
    for name in [*compile_only, "design", "build.log"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "design").chmod(0o755)  # the simulator
    (tmp_path / "obj").mkdir()
    runner._remove_compile_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.log", "design"]


def test_builds_of_the_old_layout_lose_their_compile_files(cache):
    old = cache / "old"
    old.mkdir()
    (old / "top").write_bytes(b"x" * 100)
    (old / "top").chmod(0o755)
    (old / "Vtop__pch.h.fast.gch").write_bytes(b"x" * 5000)
    os.utime(old, (NOW - 3 * HOUR, NOW - 3 * HOUR))
    runtime = cache / "runtime-abc"  # the run-time objects are what it keeps: untouched
    runtime.mkdir()
    (runtime / "verilated.o").write_bytes(b"x" * 300)
    assert runner.evict(500, now=NOW, keep=[runtime]) == []  # the bound holds once pruned
    assert sorted(p.name for p in old.iterdir()) == ["last-used", "top"]
    assert (old / "last-used").stat().st_mtime == pytest.approx(NOW - 3 * HOUR)  # not a use
    assert (runtime / "verilated.o").is_file()
