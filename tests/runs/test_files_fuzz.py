"""Property-based: whatever a run folder's files hold (random bytes, random JSON, one value swapped for
junk, deep nesting, a broken CSV), ``cnnlab runs`` still lists the folders (the broken one as skipped,
with the reason) and ``cnnlab evaluate`` ends in exactly one ``cnnlab: error:`` line or a result:
never a traceback.

The run is the built-in demo's (shipped with the package: no training, and its saved test predictions
mean evaluate reads no images); each example damages one file of a copy and puts it back afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.cli.main import main
from cnnlab.runs.builtin import resolve_run_path

JSON_FILES = ["model/model.json", "metrics.json", "data.json", "env.json"]
CSV_FILES = ["split.csv", "history.csv", "predictions.csv"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
)
FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """runs/broken (damaged by each example, restored after it) and runs/intact, copies of the demo run."""
    root = tmp_path_factory.mktemp("runs")
    demo = resolve_run_path("demo:mnist")
    for name in ("broken", "intact", "pristine"):
        shutil.copytree(demo, root / name if name != "pristine" else root.parent / "pristine")
    return root


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _damage_and_check(root: Path, rel: str, content: bytes) -> None:
    target = root / "broken" / rel
    pristine = root.parent / "pristine" / rel
    try:
        target.write_bytes(content)
        code, out, err = _cli(["runs", "--runs-root", str(root)])
        assert code == 0 and "Traceback" not in err and "cnnlab: error:" not in err, err
        assert "intact" in out  # one bad folder never hides the others
        listed = any(line.startswith("broken ") for line in out.splitlines())
        assert listed or "note: skipped broken" in out, out
        code, out, err = _cli(["evaluate", str(root / "broken"), "--json", "-"])
        assert "Traceback" not in err, err
        if code != 0:
            assert code == 1 and sum(line.startswith("cnnlab: error:") for line in err.splitlines()) == 1, err
        else:
            assert "accuracy" in json.loads(out)
    finally:
        shutil.copyfile(pristine, target)
        for extra in (root / "broken").glob("eval-*.json"):
            extra.unlink()


def _swap_one_value(data, junk, pick: int):
    """``data`` (parsed JSON) with one value, chosen by ``pick`` among all nested values, replaced by ``junk``."""
    slots = []

    def walk(node):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            slots.append((node, key))
            walk(value)

    walk(data)
    if slots:
        node, key = slots[pick % len(slots)]
        node[key] = junk
    return data


@FUZZ
@given(
    rel=st.sampled_from(JSON_FILES),
    junk=st.one_of(
        st.binary(max_size=200).map(lambda b: ("raw", b)),
        JSON_VALUES.map(lambda v: ("json", v)),
        st.integers(30, 100_000).map(lambda n: ("raw", b"[" * n + b"]" * n)),
        st.tuples(JSON_VALUES, st.integers(0, 10_000)).map(lambda t: ("swap", t)),
    ),
)
def test_any_json_file_content_is_one_error_line_or_a_result(runs_root, rel, junk):
    kind, value = junk
    if kind == "raw":
        content = value
    elif kind == "json":
        content = json.dumps(value).encode()
    else:
        original = json.loads((runs_root.parent / "pristine" / rel).read_text())
        if rel == "model/model.json":  # what a swapped metadata value means is the model-file validator's
            return  # to judge (tests/runs/test_model_file.py); here: structure only
        content = json.dumps(_swap_one_value(original, *value)).encode()
    _damage_and_check(runs_root, rel, content)


@FUZZ
@given(
    rel=st.sampled_from(CSV_FILES),
    junk=st.one_of(
        st.binary(max_size=300),
        st.lists(st.lists(st.text(max_size=8), max_size=5), max_size=5).map(
            lambda rows: "\n".join(",".join(r) for r in rows).encode()
        ),
        st.tuples(st.integers(0, 100_000), st.text(max_size=12)).map(lambda t: ("cell", t)),
    ),
)
def test_any_csv_file_content_is_one_error_line_or_a_result(runs_root, rel, junk):
    if isinstance(junk, tuple):  # one cell of the real file replaced
        pick, text = junk[1]
        lines = (runs_root.parent / "pristine" / rel).read_text().splitlines()
        row = pick % len(lines)
        cells = lines[row].split(",")
        cells[pick % len(cells)] = text.replace(",", ";").replace("\n", " ")
        lines[row] = ",".join(cells)
        junk = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    _damage_and_check(runs_root, rel, junk)


def test_a_bad_run_folder_is_listed_as_skipped_with_the_reason(runs_root):
    _damage_and_check(runs_root, "metrics.json", b'{"accuracy": ' + b"[" * 5000)
    target = runs_root / "broken" / "metrics.json"
    target.write_text('{"accuracy": "high", "train_seconds": [1]}')  # numbers that are not numbers: shown as '-'
    try:
        code, out, err = _cli(["runs", "--runs-root", str(runs_root)])
        assert code == 0 and any(line.startswith("broken ") and " - " in line for line in out.splitlines()), out
        target.write_bytes(b"\xff\xfe")
        code, out, err = _cli(["runs", "--runs-root", str(runs_root)])
        assert code == 0 and "note: skipped broken" in out and "metrics.json is not UTF-8" in out, out
    finally:
        shutil.copyfile(runs_root.parent / "pristine" / "metrics.json", target)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("test,0,99999999999999999999", "the label '99999999999999999999' is not a class index"),  # was OverflowError
        ("test,0,-5", "the label '-5' is not a class index"),  # was scored as if it were a class
        ("test,0,10", "holds label 10, but the run has 10 classes"),  # was an IndexError in the metrics
        ("test,99999999999,0", "names sample '99999999999', which is not an index"),  # was IndexError
    ],
)
def test_split_csv_values_that_were_tracebacks(runs_root, row, message):
    rel = "split.csv"
    lines = (runs_root.parent / "pristine" / rel).read_text().splitlines()
    lines[1] = row
    target = runs_root / "broken" / rel
    try:
        target.write_text("\n".join(lines) + "\n")
        code, _, err = _cli(["evaluate", str(target.parent), "--json", "-"])
        assert code == 1 and message in err and "Traceback" not in err, err
    finally:
        shutil.copyfile(runs_root.parent / "pristine" / rel, target)
