"""The mutation list is current, and (slow) a few mutations are caught by their tests.

``make mutate`` runs every mutation (tests/mutation/harness.py); the slow tests here run a few
through the same harness, on a copy of ``HEAD``, never on the repository's own files.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _load_harness():
    name = "nnaccel_mutation_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "mutation" / "harness.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    return sys.modules[name]


harness = _load_harness()
mutations = harness  # the list is re-exported: MUTATIONS, Mutation, by_name

#: One per engine or block family: a mask, a stall, a counter, a rounding, the cycle model.
FEW = ["mvu-addsub-padding-mask", "sparse-padding-mask", "systolic-model-forgets-prologue",
       "skid-always-ready", "requant-rounds-down"]
#: The one of them ``make test`` runs (13 s; the others took 14 to 41 s each on a loaded machine).
QUICK = "requant-rounds-down"


def test_every_mutation_applies_once_to_the_current_sources():
    names = [m.name for m in mutations.MUTATIONS]
    assert len(names) == len(set(names))
    for m in mutations.MUTATIONS:
        text = (REPO / m.path).read_text()
        assert text.count(m.original) == 1, f"{m.name}: original text not found once"
        assert m.original != m.replacement and m.tests
        for test in m.tests:
            assert (REPO / test.split("::")[0]).is_file(), f"{m.name}: no {test}"


def test_by_name():
    assert [m.name for m in mutations.by_name(FEW)] == FEW
    assert len(mutations.by_name([])) == len(mutations.MUTATIONS)
    with pytest.raises(KeyError, match="unknown mutation"):
        mutations.by_name(["no-such-mutation"])


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    made = harness.make_copy(tmp_path_factory.mktemp("mutate") / "tree")
    made.check_imports()
    return made


@pytest.mark.slow
def test_copy_is_what_gets_imported(copy):
    files = copy.imported_from()
    assert len(files) == 1 + len(harness.SUBPACKAGES)
    assert all(f.absolute().is_relative_to(copy.root) for f in files)
    assert not any(f.absolute().is_relative_to(REPO) for f in files)


@pytest.mark.slow
def test_a_mutation_whose_text_is_missing_is_refused(copy):
    bad = mutations.Mutation("bad", "hw/mvu/engine.py", "no such text", "x", ("tests",))
    with pytest.raises(ValueError, match="occurs 0 times"):
        harness.run_mutation(copy, bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", [  # make test runs the quickest; make test-long all five
    pytest.param(n, marks=[] if n == QUICK else [pytest.mark.long]) for n in FEW])
def test_mutation_is_caught(copy, name):
    (m,) = mutations.by_name([name])
    before = (copy.root / m.path).read_text()
    outcome = harness.run_mutation(copy, m)
    assert outcome.caught, f"{name} survived:\n{outcome.tail}"
    assert (copy.root / m.path).read_text() == before  # restored
    assert (REPO / m.path).read_text().count(m.original) == 1  # the repository untouched
