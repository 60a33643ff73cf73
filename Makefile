# Every target installs into .venv first if needed, then calls the nnaccel CLI (or pytest).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: asic-tools install demo demo-full test test-long test-fast formal fuzz mutate bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e '.[dev,onnx,sweep]' && touch $@

demo: $(STAMP)
	$(BIN)/nnaccel demo -o out/demo --force

demo-full: $(STAMP)
	$(BIN)/nnaccel demo --full -o out/demo-full --force

# ASIC flow (OpenSTA, OSU 0.18 um cells; qflow's graywolf and qrouter for --place-route):
# apt-get installs them when missing and run as root; otherwise the ASIC tests skip.
# By hand: sudo apt-get install -y opensta qflow qflow-tech-osu018
asic-tools:
	@if ! command -v sta >/dev/null || ! command -v graywolf >/dev/null || ! command -v qrouter >/dev/null || [ ! -f /usr/share/qflow/tech/osu018/osu018_stdcells.lib ]; then if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq opensta qflow qflow-tech-osu018 || echo "apt-get failed: the ASIC tests will skip"; else echo "ASIC tests skip: sudo apt-get install -y opensta qflow qflow-tech-osu018"; fi; fi

test: $(STAMP) asic-tools
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not formal_long and not long" --durations=25

test-long: $(STAMP) asic-tools
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "formal_long or long"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow and not verilator"

formal: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests/formal

fuzz: $(STAMP)
	NNACCEL_FUZZ=1 $(BIN)/python -m pytest -n 2 tests/test_fuzz_models.py

mutate: $(STAMP)
	$(BIN)/python tests/mutation/harness.py

bench: $(STAMP)
	$(BIN)/nnaccel bench -o out/bench

lint: $(STAMP)
	$(BIN)/ruff check nnaccel hw gen sim boards tests

clean:
	rm -rf out build .pytest_cache
