"""Hyperparameter search with Optuna: grid, random and Bayesian (TPE) samplers over config keys.

Seed 002 ("Hyperparameter Tuning") lists the methods: grid search tries every combination of
given values (cost grows as the product of the list lengths), random search samples combinations
(usually better, because few hyperparameters matter much), and Bayesian optimisation uses the
results so far to choose the next point. Optuna provides all three (``GridSampler``,
``RandomSampler``, ``TPESampler``) plus pruning: each trial reports its validation metric after
every epoch, and a ``MedianPruner`` stops a trial whose value is below the median of earlier trials
at the same epoch.

A *space* maps dotted config keys to distributions (YAML)::

    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, values: [1.0e-3, 1.0e-2]}
    optim.name: {type: categorical, choices: [adam, sgd]}
    data.batch_size: {type: int, low: 32, high: 256, log: true, values: [64, 128]}
    model.kwargs.dropout: {type: float, low: 0.0, high: 0.5}

``values`` lists are what the grid sampler tries (categorical ``choices`` serve as both). Every
trial is an ordinary ``cnnlab.api.train`` run whose folder is kept under the study folder and
recorded as the trial's ``run_dir`` attribute. The study lives in an SQLite file, so a second call
with the same storage and study name continues where the first stopped.
"""

from __future__ import annotations

import math
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.config import SHORT_KEYS, Config, apply_overrides, leaf_fields, load_config, save_config, to_dict
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.files import atomic, tables
from cnnlab.readers import read_yaml
from cnnlab.runs import default_run_name

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
_KWARGS = "model.kwargs."  # model builder arguments are tunable too: model.kwargs.dropout


# ---- search spaces ---------------------------------------------------------------------------
def load_space(space: str | Path | dict) -> dict[str, dict[str, Any]]:
    """Read and check a search space (a YAML file or a dict); returns ``{key: normalised spec}``."""
    if isinstance(space, dict):
        raw, where = space, "search space"
    else:
        path = Path(space)
        if not path.is_file():
            raise CnnlabError(f"search space file {path} does not exist (examples: configs/spaces/*.yaml)")
        raw = read_yaml(path, "search space") or {}
        where = f"search space {path}"
    if not isinstance(raw, dict) or not raw:
        raise CnnlabError(f"{where} must map dotted config keys to distributions, e.g. 'optim.lr: {{type: float}}'")
    leaves = leaf_fields()
    out = {}
    for key, spec in raw.items():
        key = str(key)
        if key not in leaves and not key.startswith(_KWARGS):
            raise CnnlabError(f"{where}: unknown config key {key!r}.{did_you_mean(key, list(leaves))}")
        if key == "model.kwargs":
            raise CnnlabError(f"{where}: tune single builder arguments as 'model.kwargs.NAME', not {key!r}")
        out[key] = _normalise_spec(key, spec)
        _check_types(key, out[key])
    return out


def _normalise_spec(key: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, list):  # shorthand: a bare list is a categorical choice
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise CnnlabError(f"search space key {key!r}: give a mapping with 'type' (float, int or categorical)")
    kind = spec["type"]
    allowed = {"float": {"low", "high", "log", "step", "values"}, "int": {"low", "high", "log", "step", "values"}}
    allowed["categorical"] = {"choices"}
    if kind not in allowed:
        raise CnnlabError(f"search space key {key!r}: type {kind!r} is not one of float, int, categorical")
    extra = set(spec) - allowed[kind] - {"type"}
    if extra:
        raise CnnlabError(f"search space key {key!r}: unknown field(s) {sorted(extra)} for type {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise CnnlabError(f"search space key {key!r}: categorical needs a non-empty 'choices' list")
        if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in choices):
            raise CnnlabError(f"search space key {key!r}: choices must be numbers, strings, booleans or null")
        return {"type": kind, "choices": choices}
    num = float if kind == "float" else int
    try:  # YAML 1.1 reads 1e-4 (no dot) as a string, so convert explicitly
        out = {"type": kind, "low": num(float(spec["low"])), "high": num(float(spec["high"]))}
        out["log"] = bool(spec.get("log", False))
        out["step"] = None if spec.get("step") is None else num(float(spec["step"]))
        out["values"] = None if spec.get("values") is None else [num(float(v)) for v in spec["values"]]
    except KeyError as exc:
        raise CnnlabError(f"search space key {key!r}: type {kind} needs {exc.args[0]!r}") from None
    except (TypeError, ValueError):
        raise CnnlabError(f"search space key {key!r}: low/high/step/values must be numbers") from None
    if not out["low"] < out["high"] or (out["log"] and out["low"] <= 0):
        raise CnnlabError(f"search space key {key!r}: need low < high (and low > 0 with log: true)")
    return out


def _check_types(key: str, spec: dict[str, Any]) -> None:
    """Apply every candidate value to the default config so type errors surface before any trial."""
    if key.startswith(_KWARGS):
        return  # builder arguments are checked by the model builder itself
    samples = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"], *(spec["values"] or [])]
    for v in samples:
        try:
            apply_overrides(Config(), {key: v})
        except CnnlabError as exc:
            raise CnnlabError(f"search space key {key!r}: value {v!r} does not fit the config ({exc})") from None


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ask ``trial`` for one value per key; returns the dotted overrides."""
    params = {}
    for key, s in space.items():
        if s["type"] == "categorical":
            params[key] = trial.suggest_categorical(key, s["choices"])
        elif s["type"] == "float":
            params[key] = trial.suggest_float(key, s["low"], s["high"], log=s["log"], step=s["step"])
        else:
            params[key] = trial.suggest_int(key, s["low"], s["high"], log=s["log"], step=s["step"] or 1)
    return params


def grid_of(space: dict[str, dict[str, Any]]) -> dict[str, list]:
    """The grid sampler's search space: categorical choices and numeric ``values`` lists."""
    grid = {}
    for key, s in space.items():
        values = s["choices"] if s["type"] == "categorical" else s["values"]
        if values is None:
            raise CnnlabError(
                f"search space key {key!r}: the grid sampler needs a 'values' list (e.g. values: [0.001, 0.01, 0.1])"
            )
        grid[key] = list(values)
    return grid


def baseline_params(base: Config, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The base config's value of each key in the space (keys it cannot express are left to the sampler).

    ``auto``/null values count as what training makes of them (``optim.lr: null`` is 1e-3 without the
    fine-tune recipe, AdamW's 2e-3 under it; where the recipe's LR finder would pick, with SGD, the
    choice is unknown here, so the sampler picks)."""
    from cnnlab.finetune.recipe import resolve_recipe

    base = resolve_recipe(base, log=lambda line: None)
    flat = {**_flatten(to_dict(base)), **{_KWARGS + k: v for k, v in base.model.kwargs.items()}}
    out = {}
    for key, s in space.items():
        v = flat.get(key)
        if v is None or (s["type"] == "categorical" and v not in s["choices"]):
            continue
        out[key] = v
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def to_overrides(params: dict[str, Any], base: Config) -> dict[str, Any]:
    """Suggested params -> overrides for ``apply_overrides``; ``model.kwargs.X`` merge into one dict."""
    out = {k: v for k, v in params.items() if not k.startswith(_KWARGS)}
    kwargs = {k[len(_KWARGS) :]: v for k, v in params.items() if k.startswith(_KWARGS)}
    if kwargs:
        out["model.kwargs"] = {**base.model.kwargs, **kwargs}
    return out


# ---- samplers, pruners and the per-epoch report ----------------------------------------------
def make_sampler(name: str, space: dict[str, dict[str, Any]], seed: int | None):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, len(space) * 2)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_of(space), seed=seed)
    raise CnnlabError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, n_startup_trials: int = 2, n_warmup_steps: int = 0):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise CnnlabError(f"unknown pruner {name!r}; use one of {', '.join(PRUNERS)}")


class PruningCallback:
    """Trainer callback: report ``metric`` after each epoch and stop the trial when the pruner says so.

    Raising ``optuna.TrialPruned`` inside a callback ends ``cnnlab.api.train``; Optuna records the
    trial as PRUNED with its last reported value.
    """

    def __init__(self, trial, metric: str = "val_acc"):
        self.trial, self.metric = trial, metric

    def __call__(self, trainer, row: dict) -> None:
        import optuna

        value = _metric_of(row, self.metric)
        self.trial.report(value, step=int(row["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}: {self.metric} {value:.4f}")


def _metric_of(row: dict, metric: str) -> float:
    if metric in row:
        return float(row[metric])
    alt = metric.replace("val_", "train_")  # no validation split: the trainer watches training metrics
    if alt in row:
        return float(row[alt])
    raise CnnlabError(f"metric {metric!r} is not in the training history; use one of {sorted(row)}")


def direction_of(metric: str) -> str:
    return "minimize" if metric.endswith("loss") else "maximize"


# ---- the study ---------------------------------------------------------------------------------
@dataclass
class TuneResult:
    study: Any  # optuna.Study
    out_dir: Path  # study folder: best.yaml, trials.csv, plots/, trials/<run folders>
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Config | None
    best_run_dir: Path | None


def tune(
    config: Config | str | Path | None = None,
    space: str | Path | dict | None = None,
    trials: int = 20,
    sampler: str = "tpe",
    storage: str | None = None,
    study_name: str | None = None,
    metric: str = "val_acc",
    epochs: int | None = None,
    pruner: str = "median",
    pruner_startup: int = 2,
    pruner_warmup: int = 0,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    fail_running: bool = True,
    enqueue: list[dict[str, Any]] | None = None,
    baseline: bool = False,
    log=print,
    **short: Any,
) -> TuneResult:
    """Run (or continue) an Optuna study until ``trials`` trials have finished (COMPLETE or PRUNED).

    Args:
        config: base config (Config, YAML path or None for the defaults); ``overrides`` apply on top.
        space: search space (YAML path or dict), see the module docstring.
        trials: total number of finished trials wanted, counting those of earlier calls.
        sampler: tpe (Bayesian), random or grid.
        storage: Optuna storage URL; default ``sqlite:///<out_dir>/study.db``.
        study_name: default ``<data>-<model>``; the study folder is ``<output.root>/tune-<study_name>``.
        metric: history column to optimise (best epoch's value); ``*loss`` is minimised.
        epochs: epochs per trial (default: the config's ``train.epochs``).
        pruner: median (stop trials below the median of earlier ones at the same epoch) or none.
        pruner_startup, pruner_warmup: trials that finish before pruning starts; epochs a trial
            always gets before it can be pruned.
        fail_running: mark trials left RUNNING by an interrupted process as FAIL before continuing
            (leave False when several processes work on one study at the same time).
        enqueue: parameter sets ``{key: value}`` to try first (before the sampler's own choices).
        baseline: try the base config's own values first, so the study shows the default's score.
        **short: short names as for ``cnnlab.train`` (``data="digits"``, ``model="seed_cnn"``, ...),
            applied to the base config like ``cnnlab tune --data digits``.
    """
    if space is None:
        raise CnnlabError("tune needs a search space: space='configs/spaces/lr_optimizer.yaml' or a dict")
    optuna = _import_optuna()
    space = load_space(space)
    base = config if isinstance(config, Config) else load_config(config)
    unknown = sorted(set(short) - set(SHORT_KEYS))
    if unknown:
        raise CnnlabError(f"unknown argument(s) {unknown}; use one of {sorted(SHORT_KEYS)} or overrides={{'a.b': v}}")
    given = {SHORT_KEYS[k]: v for k, v in short.items() if v is not None}
    base = apply_overrides(base, {**given, **(overrides or {}), **({"train.epochs": epochs} if epochs else {})})
    if not metric.startswith(("val_", "train_")):
        raise CnnlabError(f"--metric {metric!r}: use a history column such as val_acc, val_loss or val_macro_f1")
    from cnnlab.workflow import check_config  # training's checks: every trial would fail on these anyway

    check_config(base)  # names and model.kwargs, before the study folder is made
    study_name = study_name or _slug(default_run_name(base))  # a folder's own name, not its path
    out = Path(out_dir) if out_dir else Path(base.output.root) / f"tune-{_slug(study_name)}"
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').as_posix()}"
    _make_sqlite_parent(storage)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        direction=direction_of(metric),
        sampler=None,  # set below, seeded by how far the study has got (a resumed TPE must not repeat itself)
        pruner=make_pruner(pruner, n_startup_trials=pruner_startup, n_warmup_steps=pruner_warmup),
    )
    if study.user_attrs.get("metric", metric) != metric:
        raise CnnlabError(
            f"study {study_name!r} optimises {study.user_attrs['metric']!r}, not {metric!r}; use another --study"
        )
    study.set_user_attr("metric", metric)
    if fail_running:
        _fail_stale(study, log)
    done = _finished(study)
    study.sampler = make_sampler(sampler, space, None if seed is None else seed + len(study.trials))
    todo = max(0, trials - done)
    first = ([baseline_params(base, space)] if baseline else []) + list(enqueue or [])
    for params in first if todo else []:
        if sampler == "grid":
            log("the grid sampler ignores enqueued/baseline trials; add those values to the grid instead")
            break
        study.enqueue_trial(params, skip_if_exists=True)
    if sampler == "grid":  # a finished grid has nothing new to try
        todo = min(todo, max(0, math.prod(len(v) for v in grid_of(space).values()) - done))
    log(f"study {study_name!r} in {storage}: {done} finished trial(s), running {todo} more ({sampler}, {pruner})")
    if todo:
        objective = _Objective(base, space, metric, out / "trials", log)
        study.optimize(objective, n_trials=todo, gc_after_trial=True)
    return _finish(study, base, space, out, log)


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise CnnlabError("hyperparameter search needs Optuna: pip install 'cnnlab[tune]'") from None
    return optuna


def _make_sqlite_parent(storage: str) -> None:
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _fail_stale(study, log) -> None:
    """A process killed mid-trial leaves that trial RUNNING forever; record it as FAIL instead."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        log(f"trial {t.number} was left RUNNING by an interrupted run; marked FAIL")


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class _Objective:
    """One trial = one ordinary training run with the suggested overrides."""

    def __init__(self, base: Config, space: dict, metric: str, trials_dir: Path, log):
        self.base, self.space, self.metric, self.trials_dir, self.log = base, space, metric, trials_dir, log

    def __call__(self, trial) -> float:
        import optuna

        from cnnlab.api import train
        from cnnlab.engine.loop import NonFiniteLossError

        params = suggest(trial, self.space)
        fixed = {"output.root": str(self.trials_dir), "output.name": f"trial-{trial.number:03d}"}
        fixed.update({"output.progress": False, "output.plots": False})
        cfg = apply_overrides(self.base, {**to_overrides(params, self.base), **fixed})
        self.log(f"trial {trial.number}: {_fmt(params)}")
        run_dir = {}

        def remember(trainer, row):  # the run folder exists once the first epoch is done
            if "path" not in run_dir:
                run_dir["path"] = str(trainer.run_dir)
                trial.set_user_attr("run_dir", run_dir["path"])

        try:
            result = train(cfg, log=lambda s: None, callbacks=[remember, PruningCallback(trial, self.metric)])
        except optuna.TrialPruned as exc:
            self.log(f"trial {trial.number}: {exc}")
            raise
        except NonFiniteLossError as exc:  # a diverging trial is hopeless, not broken: prune it
            trial.set_user_attr("diverged", True)
            self.log(f"trial {trial.number}: diverged ({str(exc).split('.')[0]}); pruned")
            raise optuna.TrialPruned("diverged") from None
        trial.set_user_attr("run_dir", str(result.run_dir))
        values = [_metric_of(r, self.metric) for r in result.history]
        value = min(values) if direction_of(self.metric) == "minimize" else max(values)
        trial.set_user_attr("epochs", len(result.history))
        if "accuracy" in result.metrics:  # for information only; never used to choose
            trial.set_user_attr("test_accuracy", float(result.metrics["accuracy"]))
        self.log(f"trial {trial.number}: {self.metric} {value:.4f} ({len(result.history)} epochs)")
        return value


def _finish(study, base: Config, space: dict, out: Path, log) -> TuneResult:
    """Write best.yaml, trials.csv and plots; return the summary."""
    from optuna.trial import TrialState

    _write_trials_csv(study, out / "trials.csv")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    from cnnlab.viz.tuning_plots import write_plots

    plots = write_plots(study, out / "plots", log)
    if not complete:
        log(f"no trial completed yet; see {out / 'trials.csv'}")
        return TuneResult(study, out, None, {}, None, None)
    best = study.best_trial
    params = {k: v for k, v in best.params.items() if k in space}
    cfg = apply_overrides(base, {**to_overrides(params, base), "output.name": None})
    save_config(cfg, out / "best.yaml")
    run = best.user_attrs.get("run_dir")
    log(
        f"best trial {best.number}: {study.user_attrs.get('metric', 'value')} {best.value:.4f} with {_fmt(params)}\n"
        f"best config: {out / 'best.yaml'} (cnnlab train --config {out / 'best.yaml'}); plots: {', '.join(plots)}"
    )
    return TuneResult(study, out, float(best.value), params, cfg, Path(run) if run else None)


def _write_trials_csv(study, path: Path) -> None:
    keys = sorted({k for t in study.trials for k in t.params})
    with atomic.atomic_write(path, "w", newline="") as f:
        w = tables.writer(f)
        w.writerow(["number", "state", "value", *keys, "seconds", "run_dir"])
        for t in study.trials:
            secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            value = t.value if t.value is not None else (t.intermediate_values.get(t.last_step) if t.last_step else "")
            row = [t.number, t.state.name, value, *[t.params.get(k, "") for k in keys], secs]
            w.writerow([*row, t.user_attrs.get("run_dir", "")])


def _fmt(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "study"


class _CallableModule(types.ModuleType):
    """``cnnlab.tune(...)`` calls :func:`tune` even once ``cnnlab.tune`` names this module (importing a
    submodule sets the package attribute to the module, which would hide the lazily exported function)."""

    def __call__(self, *args: Any, **kwargs: Any) -> TuneResult:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
