"""Every notebook in notebooks/ runs top to bottom, and its exercise-check cells tell a right answer from
a missing one (the right answers are in each notebook's metadata, for this test only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

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


def test_there_is_a_notebook_per_core_chapter():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01-convolution", "04-pooling", "06-softmax-cross-entropy", "07-backprop", "08-optimizers"} <= names
    assert {"10-training", "11-evaluation", "17-augmentation", "18-transfer-learning", "19-interpretation"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_check_cells_work(path, tmp_path):
    """One run: the first exercise answered correctly (its check must say "correct"), the others left as
    shipped (theirs must say "not answered yet"), so both paths of the check cells are exercised."""
    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    answers = nb.metadata["cnnlab"]["answers"]
    first, value = next(iter(answers.items()))
    for cell in nb.cells:
        cell.source = cell.source.replace(f"{first} = None  # your value", f"{first} = {value!r}")
    printed = _run(nb, tmp_path)
    assert sum(line.endswith(": correct") for line in printed) == 1, printed
    assert sum("not answered yet" in line for line in printed) == len(answers) - 1, printed
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
