# Every target installs into .venv first if needed, then calls the nnaccel CLI (or pytest).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-full test test-fast formal fuzz mutate bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e '.[dev,onnx]' && touch $@

demo: $(STAMP)
	$(BIN)/nnaccel demo -o out/demo --force

demo-full: $(STAMP)
	$(BIN)/nnaccel demo --full -o out/demo-full --force

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

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
