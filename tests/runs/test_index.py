"""`cnnlab runs` lists finished runs and skips unfinished ones; `compare` draws one line per run and diffs configs."""

from __future__ import annotations

import argparse
import shutil

import pytest

from cnnlab.api import train
from cnnlab.cli import runs as runs_cli
from cnnlab.errors import CnnlabError
from cnnlab.runs.index import config_diff, read_run, scan_runs
from cnnlab.viz.training_plots import PANELS, compare_figure


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    base = {
        "data.name": "digits",
        "model.name": "plain_mlp",
        "train.epochs": 2,
        "train.threads": 1,
        "output.root": str(root),
        "output.progress": False,
        "output.plots": False,
    }
    a = train(overrides={**base, "output.name": "adam"}, log=lambda s: None)
    b = train(overrides={**base, "output.name": "sgd", "optim.name": "sgd", "optim.lr": 0.05}, log=lambda s: None)
    return root, a, b


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    runs_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_shows_finished_and_notes_unfinished(two_runs, tmp_path, capsys):
    root, a, b = two_runs
    unfinished = root / "broken"
    if not unfinished.exists():
        shutil.copytree(a.run_dir, unfinished)
        (unfinished / "metrics.json").unlink()
    runs, notes = scan_runs(root)
    assert [r.name for r in runs] == ["adam", "sgd"]
    assert len(notes) == 1 and "broken" in notes[0] and "metrics.json" in notes[0]
    row = runs[0].row()
    assert row["epochs"] == 2 and row["test_acc"] == pytest.approx(a.metrics["accuracy"])
    assert row["best_val_acc"] == pytest.approx(max(r["val_acc"] for r in a.history))
    assert run_cli(["runs", "--runs-root", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "model", "data"]
    assert lines[1].startswith("adam ") and "plain_mlp" in lines[1] and f"{a.metrics['accuracy']:.4f}" in lines[1]
    assert "note: skipped broken" in out


def test_compare_draws_each_run_and_diffs_configs(two_runs, tmp_path, capsys):
    root, a, b = two_runs
    runs = [read_run(a.run_dir), read_run(b.run_dir)]
    assert set(config_diff(runs)) == {"optim.name", "optim.lr", "output.name"}
    fig = compare_figure(runs)
    assert [len(ax.lines) for ax in fig.axes] == [2 * len(keys) for keys in PANELS.values()]
    assert [line.get_label() for line in fig.axes[0].lines] == ["adam", "_adam", "sgd", "_sgd"]
    assert [line.get_linestyle() for line in fig.axes[0].lines] == ["-", "--", "-", "--"]
    valacc = fig.axes[0].lines[0].get_ydata()
    assert list(valacc) == [row["val_acc"] for row in a.history]
    # A run trained without a validation split keeps its training curves (and its legend entry).
    no_val = runs[1]
    no_val.history = [{k: v for k, v in row.items() if not k.startswith("val_")} for row in no_val.history]
    fig = compare_figure(runs)
    assert [line.get_label() for line in fig.axes[0].lines] == ["adam", "_adam", "sgd"]
    assert fig.axes[0].lines[2].get_linestyle() == "--"
    out = tmp_path / "cmp.png"
    assert run_cli(["runs", "--runs-root", str(root), "compare", "adam", str(b.run_dir), "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "optim.name" in text and "sgd" in text and "optim.lr" in text and "train.epochs" not in text
    assert f"{a.metrics['accuracy']:.4f}" in text


def test_compare_refuses_bad_input(two_runs, tmp_path):
    root, a, _ = two_runs
    with pytest.raises(CnnlabError, match="at least two"):
        run_cli(["runs", "compare", str(a.run_dir)])
    with pytest.raises(CnnlabError, match="not a run folder"):
        run_cli(["runs", "compare", str(a.run_dir), str(tmp_path)])
