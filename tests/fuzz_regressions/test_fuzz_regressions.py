"""Saved cases of the model fuzzer (tests/test_fuzz_models.py), replayed on every ``make test``.

Each ``cases/*.json`` holds one model: ``model_json`` (the text of model.json; ``@DEEP<n>@``
expands to ``n`` nested lists, ``@DIGITS<n>@`` to an ``n``-digit integer, to keep the files
small), ``arrays`` (``{name: {"dtype": ..., "data": nested lists}}``) or ``npz_hex`` (raw bytes
of weights.npz), ``expect`` (``"refused"``: exit 2, one message naming a field, no traceback,
nothing written; ``"accepted"``: read and generated, exit 0) and ``why``. A case that still
fails has ``xfail`` with the reason (a known bug, not yet fixed). To save a new failing case,
write its file here: the name of the file is the name of the test.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from ..test_fuzz_models import NPZ_BYTES, check_refused, run_cli, write_raw

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))


def _expand(text):
    text = re.sub(r'"?@DEEP(\d+)@"?', lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)
    return re.sub(r'"?@DIGITS(\d+)@"?', lambda m: "1" + "0" * (int(m[1]) - 1), text)


def load(path):
    case = json.loads(path.read_text())
    arrays = {name: np.array(a["data"], dtype=a["dtype"])
              for name, a in case.get("arrays", {}).items()}
    if "npz_hex" in case:
        arrays = {NPZ_BYTES: bytes.fromhex(case["npz_hex"])}
    return case, _expand(case["model_json"]), arrays


def _param(path):
    case = json.loads(path.read_text())
    marks = [pytest.mark.xfail(reason=case["xfail"], strict=False)] if case.get("xfail") else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in CASES])
def test_saved_case(path, tmp_path):
    case, text, arrays = load(path)
    if case["expect"] == "refused":
        check_refused(None, arrays, text)
        return
    model = write_raw(tmp_path / "m", None, arrays, text)
    status, _out, err = run_cli(["generate", str(model), "-o", str(tmp_path / "out")])
    assert status == 0, err
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_cases_exist():
    assert len(CASES) >= 5
