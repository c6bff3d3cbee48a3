"""Optuna search on the digits data: space checks, pruning, interruption and resume, best.yaml, CLI."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from cnnlab.api import train  # noqa: E402
from cnnlab.cli import tune as tune_cli  # noqa: E402
from cnnlab.config import load_config  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.tune import PruningCallback, baseline_params, grid_of, load_space, tune  # noqa: E402

LR_OPT = {
    "optim.lr": {"type": "float", "low": "1e-4", "high": 0.05, "log": True},
    "optim.name": {"type": "categorical", "choices": ["adam", "sgd"]},
}


@pytest.fixture
def quick(tmp_path) -> dict:
    """Per-trial config: a small MLP on 8x8 digits, one thread, 2 epochs at most."""
    return {
        "data.name": "digits",
        "model.name": "plain_mlp",
        "data.batch_size": 64,
        "train.threads": 1,
        "output.root": str(tmp_path / "runs"),
    }


def run_cli(argv: list[str]) -> int:
    """Parse and run with this subcommand alone (cli.main wires it the same way)."""
    parser = argparse.ArgumentParser()
    tune_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_space_errors_name_the_key():
    with pytest.raises(CnnlabError, match="optim.lrr.*optim.lr"):
        load_space({"optim.lrr": {"type": "float", "low": 0.1, "high": 1}})
    with pytest.raises(CnnlabError, match="data.batch_size"):
        load_space({"data.batch_size": {"type": "float", "low": 0.5, "high": 1.5}})  # int field
    with pytest.raises(CnnlabError, match="low < high"):
        load_space({"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}})
    with pytest.raises(CnnlabError, match="values"):
        grid_of(load_space({"optim.lr": {"type": "float", "low": 0.001, "high": 0.1}}))
    space = load_space({"optim.name": ["adam", "sgd"], "model.kwargs.dropout": {"type": "float", "low": 0, "high": 1}})
    assert space["optim.name"] == {"type": "categorical", "choices": ["adam", "sgd"]}
    assert baseline_params(load_config(), load_space(LR_OPT)) == {"optim.lr": 1e-3, "optim.name": "adam"}


def test_pruning_callback_reports_and_prunes():
    class FakeTrial:
        def __init__(self, prune_after):
            self.reports, self.prune_after = [], prune_after

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= self.prune_after

    trial = FakeTrial(prune_after=2)
    cb = PruningCallback(trial, "val_acc")
    cb(None, {"epoch": 1, "val_acc": 0.5, "train_acc": 0.4})
    with pytest.raises(optuna.TrialPruned):
        cb(None, {"epoch": 2, "val_acc": 0.25})
    assert trial.reports == [(1, 0.5), (2, 0.25)]


def test_hopeless_trial_is_pruned(quick, tmp_path):
    # Trial 0 learns (lr 1e-2); trial 1 (lr 1e-6) barely moves, so after epoch 1 it is under the median.
    space = {"optim.lr": {"type": "float", "low": 1e-6, "high": 0.1, "log": True}}
    res = tune(
        None,
        space,
        trials=2,
        sampler="random",
        epochs=2,
        overrides=quick,
        pruner_startup=1,
        enqueue=[{"optim.lr": 1e-2}, {"optim.lr": 1e-6}],
        log=lambda s: None,
    )
    states = [t.state for t in res.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert res.best_params == {"optim.lr": pytest.approx(1e-2)}
    pruned = res.study.trials[1]
    assert list(pruned.intermediate_values) == [1]  # stopped after its first epoch
    assert (tmp_path / "runs" / "tune-digits-plain_mlp" / "trials" / "trial-001" / "history.csv").is_file()


@pytest.mark.slow
def test_interrupted_study_resumes_from_sqlite(quick, tmp_path):
    db = f"sqlite:///{tmp_path / 'tune.db'}"
    kw = dict(space=LR_OPT, storage=db, study_name="s", epochs=1, overrides=quick, pruner="none", log=lambda s: None)
    first = tune(None, trials=2, sampler="random", **kw)
    assert len(first.study.trials) == 2
    # A process killed mid-trial leaves a RUNNING trial behind in the database.
    optuna.load_study(study_name="s", storage=db).ask()
    lines = []
    kw["log"] = lines.append
    res = tune(None, trials=4, sampler="tpe", **kw)
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=db).trials]
    assert states.count("COMPLETE") == 4 and states[2] == "FAIL" and len(states) == 5
    assert any("left RUNNING" in s for s in lines)
    for t in res.study.trials:
        if t.state.name == "COMPLETE":  # each trial's run folder is recorded and complete
            run = Path(t.user_attrs["run_dir"])
            assert run.name == f"trial-{t.number:03d}" and (run / "metrics.json").is_file()
    out = res.out_dir
    assert (out / "plots" / "history.png").stat().st_size > 0
    assert (out / "plots" / "importance.png").stat().st_size > 0  # 2 parameters, 4 completed trials
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 5
    # best.yaml is a full config that trains as it stands.
    cfg = load_config(out / "best.yaml")
    assert cfg.optim.lr == pytest.approx(res.best_params["optim.lr"])
    assert cfg.optim.name == res.best_params["optim.name"]
    assert cfg.output.name is None and cfg.train.epochs == 1
    again = train(cfg, log=lambda s: None, overrides={"output.progress": False})
    assert again.history[-1]["epoch"] == 1 and 0.0 <= again.metrics["accuracy"] <= 1.0


def test_cli_grid_tries_each_point_once(quick, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, values: [1.0e-3, 1.0e-2]}\n")
    args = ["tune", "--space", str(space), "--sampler", "grid", "--trials", "5", "--epochs", "1", "--study", "g"]
    args += [f"--set={k}={v}" for k, v in quick.items()]
    assert run_cli(args) == 0
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'runs' / 'tune-g' / 'study.db'}")
    assert sorted(t.params["optim.lr"] for t in study.trials) == [1e-3, 1e-2]  # the grid, not 5 trials
    assert "study folder:" in capsys.readouterr().out
    with pytest.raises(CnnlabError, match="optim.nam"):
        run_cli(["tune", "--space", str(space), "--set", "optim.nam=adam"])


def test_a_base_config_training_would_refuse_is_refused_before_the_study_folder(tmp_path):
    # An unknown optimiser or a misspelt model argument used to create the study folder and its
    # database first, then fail in trial 0 after its data had been read.
    space = {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}
    for bad, message in (
        ({"optim.name": "adamm"}, "unknown optimizer 'adamm'"),
        ({"model.kwargs": {"dropuot": 0.1}}, "has no argument 'dropuot'"),
    ):
        with pytest.raises(CnnlabError, match=message):
            tune(None, space, trials=1, overrides={"output.root": str(tmp_path), **bad}, log=lambda s: None)
        assert not list(tmp_path.iterdir())
