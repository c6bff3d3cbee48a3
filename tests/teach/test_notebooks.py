"""Every notebook in notebooks/ runs top to bottom with every exercise answered (the short answers from
each notebook's metadata, the coding exercises from ``exercise_solutions``), and every check and grader
says "correct"; the check cells and graders also tell a missing or wrong answer from a right one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from exercise_solutions import SOLUTIONS  # noqa: E402  (tests/teach is on the path under pytest)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _run(nb, tmp_path) -> list[str]:
    """Execute ``nb`` with src/ on the kernel's path; return every printed line."""
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO / "src"), env_path] if p)
    try:
        nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
    return [line for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
            for line in out.get("text", "").splitlines()]  # fmt: skip


def _answer(nb) -> int:
    """Fill in every short answer and every coding exercise; return how many checks should say correct."""
    answers = nb.metadata["cnnlab"]["answers"]
    n = len(answers)
    for cell in nb.cells:
        for name, value in answers.items():
            cell.source = cell.source.replace(f"{name} = None  # your value", f"{name} = {value!r}")
        first = cell.source.split("\n", 1)[0]
        if first.startswith("# exercise: "):
            cell.source = "import numpy as np\n\n" + SOLUTIONS[first.removeprefix("# exercise: ")]
            n += 1
    return n


def test_there_is_a_notebook_per_core_chapter():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01-convolution", "04-pooling", "06-softmax-cross-entropy", "07-backprop", "08-optimizers"} <= names
    assert {"10-training", "11-evaluation", "17-augmentation", "18-transfer-learning", "19-interpretation"} <= names
    assert {"00-why-cnns", "21-diagnosing-training", "22-roc-and-imbalance"} <= names


def test_four_notebooks_ask_for_code():
    stubs = {c.source.split("\n", 1)[0] for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells}
    assert {f"# exercise: {name}" for name in SOLUTIONS} <= stubs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.slow
def test_notebook_runs_and_every_answer_checks_out(path, tmp_path):
    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    expected = _answer(nb)
    printed = _run(nb, tmp_path)
    assert sum(line.endswith(": correct") for line in printed) == expected, printed
    assert not [line for line in printed if "not quite" in line or "not answered" in line], printed
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")


def test_a_check_cell_tells_missing_wrong_and_right_answers(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", REPO / "notebooks" / "build_notebooks.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for value, said in ((None, "not answered yet"), (3.5, "not quite"), (3.0, "correct")):
        exec(build.check(1, "1.5 * 2"), {"answer_1": value})
        assert said in capsys.readouterr().out
