"""What the terminal shows a new user: folded warnings, top-k, tables, epoch counts, names."""

from __future__ import annotations

import numpy as np

from cnnlab.cli._text import shorten
from cnnlab.cli.evaluate import confusion_table
from cnnlab.data.doctor import Issue, _issue_lines
from cnnlab.evaluation.metrics import classification_metrics
from cnnlab.models.summary import summary
from cnnlab.runs.folder import default_run_name
from cnnlab.runs.index import _metric_cell


def test_warnings_that_change_what_to_do_are_never_folded():
    issues = [Issue("near_duplicate", f"a{i}.jpg ~ b{i}.jpg") for i in range(5)]
    issues.append(Issue("imbalance", "rose has 12 images, daisy 39: consider --balance weights"))
    lines = _issue_lines("WARNINGS", issues, max_lines=2)
    assert any("imbalance" in line for line in lines)
    assert lines[-1].startswith("  ... and 4 more")


def test_top5_only_when_there_are_more_than_five_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 50)
    four = classification_metrics(y, y, rng.normal(size=(50, 4)), [str(i) for i in range(4)])
    ten = classification_metrics(y, y, rng.normal(size=(50, 10)), [str(i) for i in range(10)])
    assert "top5_accuracy" not in four and "top5_accuracy" in ten


def test_confusion_table_has_column_headers_and_ellipses():
    text = confusion_table(["cat", "a_very_long_class_name"], [[3, 1], [0, 12]])
    lines = text.splitlines()
    assert "[0]" in lines[1] and "[1]" in lines[1]  # the columns are numbered like the rows
    assert "a_very_long…" in text and lines[3].split()[-2:] == ["0", "12"]
    assert shorten("train/rose/IMG_0001.jpg", 13, keep="end") == "…IMG_0001.jpg"


def test_compare_prints_epochs_as_whole_numbers():
    assert _metric_cell("epochs", 4.0, 2.0) == "4 (+2)"
    assert _metric_cell("test accuracy", 0.91234, 0.9) == "0.9123 (+0.0123)"
    assert _metric_cell("seconds", float("nan")) == "-"


def test_summary_prints_as_a_table_and_says_when_rf_exceeds_the_input():
    s = summary("seed_cnn", (3, 32, 32))
    assert str(s) == s.table()
    assert "(>32: whole input)" in str(s)  # the dense layers see more than the 32-pixel input


def test_tune_study_and_run_names_use_a_folders_own_name(tmp_path):
    from types import SimpleNamespace

    cfg = SimpleNamespace(data=SimpleNamespace(name=f"folder:{tmp_path / 'photos'}"), model=SimpleNamespace(name="x"))
    assert default_run_name(cfg) == "photos-x"


def test_no_progress_bar_when_output_is_not_a_terminal():
    from cnnlab.engine.trainer import _progress

    assert _progress(10, "epoch 1/1", enabled=True) is None  # pytest captures stdout: not a terminal
