"""Stratified K-fold cross-validation (``cnnlab cv``): the parent folder, fold states and the summary.

A cross-validation is K ordinary runs. Run ``fold-k`` trains with ``data.folds: K`` and
``data.fold: k``; the split code then makes fold k its test split (``data.splits.assign_folds``,
duplicate groups kept in one fold), so every command that takes a run takes a fold. One parent
folder holds them::

    runs/<name>/cv-config.yaml     the config every fold shares (a rerun with another one is refused)
    runs/<name>/fold-1 .. fold-K   the runs
    runs/<name>/cv.json, cv.md     each fold's test metrics, their mean and sample std (ddof=1)

This module knows that folder; ``cnnlab.api.cv`` trains the folds through ``cnnlab.api.train``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.config import RUNTIME_KEYS, Config, apply_overrides, load_config, save_config, to_dict
from cnnlab.engine.trainer import RunLock
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic
from cnnlab.finetune.recipe import resolve_recipe
from cnnlab.runs import default_run_name, read_json, write_json
from cnnlab.runs.folder import CV_CONFIG_FILE, check_folder_name
from cnnlab.runs.index import flatten

CONFIG_FILE = CV_CONFIG_FILE
LOCK = ".lock"  # the parent folder's RunLock file (engine.trainer.RunLock)
# where and how fast a fold trains, not what it learns: these may differ between calls
_IGNORED = ("output.root", "output.name", *RUNTIME_KEYS)
# the columns of the printed table: metrics.json key -> heading
_COLUMNS = {
    "num_samples": "images",
    "accuracy": "accuracy",
    "macro.f1": "macro-F1",
    "top5_accuracy": "top-5",
    "loss": "loss",
    "best_epoch": "best epoch",
}


def parent_folder(cfg: Config) -> Path:
    """``<output.root>/<output.name>``, by default ``<data>-<model>-cv`` (the same folder for the same command)."""
    return Path(cfg.output.root) / check_folder_name(cfg.output.name or default_run_name(cfg) + "-cv")


def fold_config(base: Config, parent: Path, fold: int) -> Config:
    """The config of run ``parent/fold-<fold>``."""
    return apply_overrides(base, {"data.fold": fold, "output.root": str(parent), "output.name": f"fold-{fold}"})


def claim_parent(parent: Path, cfg: Config, resume: bool = False) -> RunLock:
    """Lock ``parent`` for this process (held until the returned lock is released), then open it.

    One lock on the parent folder for the whole cross-validation: a second ``cnnlab cv`` on the same
    folder is refused at once, instead of deleting the fold folder the first one is training. Then the
    parent is created or checked (:func:`open_parent`; with ``resume`` its saved config is ``cfg``) and
    the folds already there are checked against ``cfg`` (:func:`check_folds`)."""
    if not (parent / CONFIG_FILE).is_file() and parent.is_dir() and any(p.name != LOCK for p in parent.iterdir()):
        raise CnnlabError(f"{parent} exists and is no cross-validation folder (no {CONFIG_FILE}); use another --name")
    parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock(parent, activity="cross-validated")
    lock.acquire()
    try:
        if not resume:
            open_parent(parent, cfg)
        check_folds(parent, cfg)
    except BaseException:
        lock.release()
        raise
    return lock


def open_parent(parent: Path, cfg: Config) -> None:
    """Create ``parent`` with cv-config.yaml, or check that the one there holds this config.

    A parent whose folds have not started yet takes the new config (a first call that stopped at a
    data error must not block the corrected one)."""
    stored = parent / CONFIG_FILE
    started = stored.is_file() and any(parent.glob("fold-*"))
    if started:
        diff = config_differences(load_config(stored), cfg)
        if diff:
            raise CnnlabError(
                f"{parent} holds a cross-validation with another config ({'; '.join(diff[:4])}). Rerun it with "
                f"the same options (or 'cnnlab cv --resume {parent}'), or give this one another --name"
            )
        return
    if not stored.is_file() and parent.is_dir() and any(p.name != LOCK for p in parent.iterdir()):
        raise CnnlabError(f"{parent} exists and is no cross-validation folder (no {CONFIG_FILE}); use another --name")
    parent.mkdir(parents=True, exist_ok=True)
    save_config(cfg, stored)


def check_folds(parent: Path, base: Config) -> None:
    """Refuse a parent whose fold runs were trained with another config than ``base`` (cv-config.yaml
    edited after they started, or a fold's own config.yaml edited): their mean ± std would mix settings.

    Each fold's saved config is compared with the one ``base`` gives it, with the ``auto`` values that
    training resolves without data resolved the same way; values decided from the model or the
    weights (a null learning rate under the fine-tune recipe, the weights' image size) are not compared.
    """
    for run_dir in sorted(parent.glob("fold-*"), key=lambda p: p.name):
        k = run_dir.name.removeprefix("fold-")
        if not k.isdigit() or not (run_dir / "config.yaml").is_file() or not 1 <= int(k) <= base.data.folds:
            continue
        expected = resolve_recipe(fold_config(base, parent, int(k)), log=lambda s: None)
        diff = _differences(load_config(run_dir / "config.yaml"), expected, run_dir.name)
        if diff:
            raise CnnlabError(
                f"{parent / CONFIG_FILE} does not match the folds trained from it ({'; '.join(diff[:4])}): a mean "
                "over folds trained with different settings means nothing. Put the file back as it was, or start a "
                "new cross-validation with another --name"
            )


def _differences(saved: Config, expected: Config, fold: str) -> list[str]:
    """'key: VALUE in fold-k, VALUE in cv-config.yaml' where they differ; keys ``expected`` leaves open
    (null: chosen later from the model or the weights) and where/how fast keys are not compared."""
    a, b = flatten(to_dict(saved)), flatten(to_dict(expected))
    keys = sorted(k for k in set(a) | set(b) if k not in _IGNORED and b.get(k) is not None and a.get(k) != b.get(k))
    return [f"{k}: {json.dumps(a.get(k))} in {fold}, {json.dumps(b.get(k))} in {CONFIG_FILE}" for k in keys]


def config_differences(stored: Config, new: Config) -> list[str]:
    """'key: VALUE there, VALUE here' for every dotted key that differs (where and how fast aside)."""
    a, b = flatten(to_dict(stored)), flatten(to_dict(new))
    keys = sorted(k for k in set(a) | set(b) if k not in _IGNORED and a.get(k) != b.get(k))
    return [f"{k}: {json.dumps(a.get(k))} there, {json.dumps(b.get(k))} here" for k in keys]


def fold_state(run_dir: Path) -> str:
    """'done' (model file and metrics.json), 'interrupted' (a checkpoint to resume from) or 'new'."""
    if (run_dir / "model" / "model.json").is_file() and (run_dir / "metrics.json").is_file():
        return "done"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "interrupted"
    return "new"


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics.json as dotted keys (``macro.f1``); lists (per class, confusion) left out."""
    flat = flatten(metrics)
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def summarize(parent: Path, base: Config) -> dict[str, Any]:
    """cv.json: each fold's numeric test metrics, and the mean and sample std (ddof=1) of each."""
    folds = base.data.folds
    rows = [
        {"fold": k, "run": f"fold-{k}", "metrics": numeric_metrics(read_json(parent / f"fold-{k}" / "metrics.json"))}
        for k in range(1, folds + 1)
    ]
    keys = [key for key in rows[0]["metrics"] if all(key in r["metrics"] for r in rows)]
    values = {key: np.array([r["metrics"][key] for r in rows]) for key in keys}
    scope = read_json(parent / "fold-1" / "data.json").get("cross_validation", {})
    return {
        "folds": folds,
        "data": base.data.name,
        "model": base.model.name,
        "seed": base.train.seed,
        "test_splits": f"{folds} stratified folds of {scope.get('text', 'the training data')}",
        "runs": rows,
        "mean": {key: float(v.mean()) for key, v in values.items()},
        "std": {key: float(v.std(ddof=1)) for key, v in values.items()},  # sample std: K runs, not the population
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The per-fold table and the mean ± std line, as Markdown (cv.md; printed as it is)."""
    cols = [key for key in _COLUMNS if key in summary["mean"]]
    head = ["fold", *(_COLUMNS[key] for key in cols)]
    k = summary["folds"]
    lines = [
        f"# Cross-validation: {summary['model']} on {summary['data']}, {k} folds (seed {summary['seed']})",
        "",
        f"Test splits: {summary['test_splits']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in summary["runs"]:
        lines.append(f"| {r['run']} | " + " | ".join(_number(key, r["metrics"][key]) for key in cols) + " |")
    pm = [f"{_number(key, summary['mean'][key])} ± {_number(key, summary['std'][key])}" for key in cols]
    lines.append("| mean ± std | " + " | ".join(pm) + " |")
    lines += ["", f"Mean ± sample standard deviation (ddof=1) over the {k} folds; cv.json has every metric."]
    return "\n".join(lines) + "\n"


def write_summary(parent: Path, summary: dict[str, Any]) -> None:
    write_json(parent / "cv.json", summary)
    atomic.write_text(parent / "cv.md", format_summary(summary))


def _number(key: str, v: float) -> str:
    if key in ("num_samples", "best_epoch"):  # counts: whole in a fold, a mean may not be
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.4f}"
