"""The Python API behind ``cnnlab train``, ``cv``, ``evaluate`` and ``lr-find``, usable from a notebook::

    import cnnlab
    result = cnnlab.train(data="mnist-sample", model="seed_cnn", epochs=3)
    print(result.metrics["accuracy"], result.run_dir)
    metrics = cnnlab.evaluate(result.run_dir)
    folds = cnnlab.cv(data="digits", folds=5, epochs=3)  # 5 runs; folds.summary["mean"]["accuracy"]

``train`` follows the data flow of docs/architecture.md: config -> dataset -> split and
normalisation -> loaders -> model -> optimiser/schedule/loss -> Trainer -> best weights -> test
metrics -> run folder (config, env, split, history, metrics, model file, checkpoints, plots).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import crossval
from cnnlab.config import RUNTIME_KEYS, SHORT_KEYS, Config, apply_overrides, load_config, to_dict
from cnnlab.data.datasets import ArrayDataset
from cnnlab.devices import resolve_device
from cnnlab.engine.distributed import shutdown
from cnnlab.engine.trainer import ended_on_its_own
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.metrics import classification_metrics, format_report, softmax
from cnnlab.runs import read_history_csv, read_json, write_json
from cnnlab.runs.builtin import output_dir, resolve_run_path
from cnnlab.runs.index import flatten
from cnnlab.runs.model_file import load_model, read_meta
from cnnlab.runs.predictions import Predictions
from cnnlab.runs.run import Run, is_run, open_run
from cnnlab.workflow import (
    build_parts,
    check_config,
    describe,
    finish,
    load_data,
    make_trainer,
    new_run_folder,
    resume_trainer,
    start_session,
)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # test metrics of the best checkpoint
    history: list[dict[str, float]]
    config: Config


def make_config(
    config: Config | str | Path | None = None, overrides: dict[str, Any] | None = None, **short: Any
) -> Config:
    """Config from a Config/YAML path, dotted overrides (``{"optim.lr": 0.01}``) and short names
    (``epochs=3, lr=0.01, data="cifar10"``; see ``config.SHORT_KEYS``)."""
    cfg = config if isinstance(config, Config) else load_config(config)
    unknown = [k for k in short if k not in SHORT_KEYS]
    if unknown:
        raise CnnlabError(f"unknown argument(s) {unknown}; use one of {sorted(SHORT_KEYS)} or overrides={{'a.b': v}}")
    merged = {SHORT_KEYS[k]: v for k, v in short.items() if v is not None}
    merged.update(overrides or {})
    return apply_overrides(cfg, merged)


def train(
    config: Config | str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: str | Path | None = None,
    log=print,
    callbacks: list | None = None,
    **short: Any,
) -> TrainResult:
    """Train a model and write a run folder. See the module docstring for an example.

    Args:
        config: a Config, a YAML file, or None for the defaults (seed recipe on the MNIST sample).
        overrides: dotted keys, e.g. ``{"optim.name": "sgd", "optim.lr": 0.05}``.
        resume: a run folder to continue from its ``checkpoints/last.pt`` with its saved config; only
            ``config.RUNTIME_KEYS`` (progress bar, device, threads, workers) may be given with it. A
            finished run is left as it is: its result is returned and nothing is written.
        log: where progress lines go (``print``; ``lambda s: None`` for silence).
        callbacks: functions ``cb(trainer, row)`` called after every epoch (see engine.trainer.Trainer).
        **short: short names as on the command line: data, data_root, model, epochs, lr, batch_size, seed, ...
    """
    if resume is not None:
        cfg = _resume_config(resume, config, overrides, short)
        if is_finished(resume, cfg):
            return _finished_result(Path(resume), cfg, log)
    else:
        cfg = make_config(config, overrides, **short)
    session = start_session(cfg, log)
    ds, data = load_data(session)
    parts = build_parts(session, data)
    run_dir = Path(resume) if resume is not None else new_run_folder(session, ds, data)
    trainer = make_trainer(session, parts, data, run_dir, callbacks)
    if resume is not None:
        resume_trainer(session, trainer, parts, run_dir)
    describe(session, data, parts)
    history = trainer.fit()
    metrics = finish(session, trainer, data, run_dir) if session.dist.main else {}  # rank 0 writes
    shutdown(session.dist)
    return TrainResult(run_dir=run_dir, metrics=metrics, history=history, config=session.cfg)  # as resolved


def _resume_config(run_dir: str | Path, config=None, overrides=None, short=None) -> Config:
    """The run's saved config with the runtime keys given (progress, device, threads, workers) applied;
    any other option is refused, since a resumed run continues exactly what was started."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        if (run_dir / crossval.CONFIG_FILE).is_file():
            raise CnnlabError(
                f"{run_dir} is a cross-validation folder; continue it with 'cnnlab cv --resume {run_dir}'"
            )
        raise CnnlabError(f"{run_dir} is not a run folder (no config.yaml); give the folder printed by 'cnnlab train'")
    return apply_overrides(load_config(run_dir / "config.yaml"), _runtime_overrides(config, overrides, short, "a run"))


def _runtime_overrides(config, overrides, short, what: str) -> dict[str, Any]:
    """The options given with ``resume``, as dotted keys; any beyond ``RUNTIME_KEYS`` is refused."""
    given = {**{SHORT_KEYS.get(k, k): v for k, v in (short or {}).items() if v is not None}, **(overrides or {})}
    fixed = sorted(k for k in given if k not in RUNTIME_KEYS)
    if config is not None or fixed:
        raise CnnlabError(
            f"--resume continues {what} with its saved config; drop the other options "
            f"({', '.join(fixed) or 'the config file'}). Only {', '.join(RUNTIME_KEYS)} (e.g. --no-progress) "
            "may change; start a new one for other settings"
        )
    return given


def is_finished(run_dir: str | Path, cfg: Config) -> bool:
    """Whether a resume has nothing left to do: training wrote the model file and either trained every
    epoch ``cfg`` asks for or ended on its own (early stopping, a non-finite loss). A finished run whose
    config.yaml was edited to ask for more epochs continues from its last checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "model" / "model.json").is_file():
        return False
    history = _saved_history(run_dir)
    return not history or len(history) >= cfg.train.epochs or ended_on_its_own(history, cfg.train)


def _saved_history(run_dir: Path) -> list[dict[str, float]]:
    """history.csv's rows, or none when training ended before its first epoch was recorded."""
    return read_history_csv(run_dir / "history.csv") if (run_dir / "history.csv").is_file() else []


def _finished_result(run_dir: Path, cfg: Config, log) -> TrainResult:
    """A finished run resumed: said so, and its result read back without writing anything."""
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    history = _saved_history(run_dir)
    acc = f", test accuracy {metrics['accuracy']:.4f}" if "accuracy" in metrics else ""
    log(
        f"{run_dir} is finished ({len(history)} epoch{'s' if len(history) != 1 else ''} trained{acc}); "
        "nothing to resume and nothing was changed. To train longer, train a new run (e.g. with "
        f"--pretrained {run_dir} to start from its weights)"
    )
    return TrainResult(run_dir=run_dir, metrics=metrics, history=history, config=cfg)


@dataclass
class CVResult:
    parent: Path  # the folder holding fold-1 .. fold-K, cv-config.yaml, cv.json and cv.md
    runs: list[Path]  # the fold runs: ordinary run folders
    summary: dict[str, Any]  # cv.json: each fold's test metrics, their mean and sample std


def cv(
    config: Config | str | Path | None = None,
    folds: int | None = None,
    overrides: dict[str, Any] | None = None,
    resume: str | Path | None = None,
    log=print,
    **short: Any,
) -> CVResult:
    """Stratified K-fold cross-validation: K ordinary runs, fold k the test split of run ``fold-k``.

    Calling it again with the same config (or ``resume=PARENT``) skips the finished folds and resumes
    an interrupted one from its last checkpoint; another config for the same folder is refused.

    Args:
        config, overrides, **short: as for :func:`train`.
        folds: K (default: ``data.folds`` of the config, else 5).
        resume: a parent folder written by ``cv``, continued with its saved config.
        log: where progress lines go.
    """
    base, parent, lock = _cv_start(config, folds, overrides, resume, short)
    try:
        runs = [_cv_fold(base, parent, k, log) for k in range(1, base.data.folds + 1)]
        summary = crossval.summarize(parent, base)
        crossval.write_summary(parent, summary)
    finally:
        lock.release()
    return CVResult(parent=parent, runs=runs, summary=summary)


def _cv_start(config, folds, overrides, resume, short) -> tuple[Config, Path, Any]:
    """The config all folds share (data.folds set; checked as train checks it, before any folder is
    made) and the parent folder, locked for this process and created or checked."""
    if resume is not None:
        parent = Path(resume)
        if not (parent / crossval.CONFIG_FILE).is_file():
            raise CnnlabError(
                f"{parent} is not a cross-validation folder (no {crossval.CONFIG_FILE}); "
                "give a folder that 'cnnlab cv' printed"
            )
        given = _runtime_overrides(config, overrides, short, "a cross-validation")
        base = check_config(apply_overrides(load_config(parent / crossval.CONFIG_FILE), given))
        return base, parent, crossval.claim_parent(parent, base, resume=True)
    cfg = make_config(config, overrides, **short)
    k = (cfg.data.folds or 5) if folds is None else folds
    if k < 2:
        raise CnnlabError(f"--folds {k}: cross-validation needs at least 2 folds (each one tests, the rest train)")
    base = check_config(apply_overrides(cfg, {"data.folds": k, "data.fold": 1}))
    parent = crossval.parent_folder(base)
    return base, parent, crossval.claim_parent(parent, base)


def _cv_fold(base: Config, parent: Path, fold: int, log) -> Path:
    """Fold ``fold``: skipped when done, resumed when interrupted, else trained."""
    run_dir, of = parent / f"fold-{fold}", f"{fold}/{base.data.folds}"
    state = crossval.fold_state(run_dir)
    if state == "done":
        log(f"fold {of}: already trained ({run_dir}), skipped")
        return run_dir
    if state == "interrupted":
        log(f"fold {of}: continuing the interrupted run {run_dir}")
        runtime = {k: v for k, v in flatten(to_dict(base)).items() if k in RUNTIME_KEYS}
        return train(resume=run_dir, overrides=runtime, log=log).run_dir
    if run_dir.exists():  # stopped before its first checkpoint: nothing there to keep
        shutil.rmtree(run_dir)
    log(f"fold {of}: training {run_dir}")
    return train(crossval.fold_config(base, parent, fold), log=log).run_dir


def evaluate(
    run_or_model: str | Path,
    data: str | None = None,
    data_root: str | None = None,
    split: str = "test",
    batch_size: int = 1000,
    device: str = "auto",
    save: bool = True,
    tta: str | None = None,
    on_bad_image: str = "fail",
) -> dict[str, Any]:
    """Evaluate a trained model (a run folder or a model folder) on a dataset split.

    Without ``data``, a run is scored on its own split: the exact samples of its split.csv (skipped
    files stay skipped), from the test predictions training saved when ``split`` is "test". With
    ``data``, the model predicts that dataset's ``split``; a folder of class folders without split
    folders is one split, scored whole ("all"). Its classes are matched to the model's by name (a
    subset in any order is fine; an unknown name is an error). ``on_bad_image`` "skip" leaves
    unreadable files out (listed under "skipped"). ``tta`` is the test-time augmentation; None means
    the run's own (``train.tta``, what its validation and test metrics used), "none" for a model folder.
    """
    from cnnlab.data.tta import TTA

    path = resolve_run_path(run_or_model)  # a folder, or a built-in name such as demo:mnist
    run = open_run(path) if is_run(path) else None
    own_tta = run.tta if run is not None else "none"
    tta = own_tta if tta is None else tta
    TTA.get(tta)  # an unknown name is refused before any data is read
    dev = resolve_device(device)
    if run is not None and data is None:
        if split == "test" and tta == own_tta:
            preds, _ = run.test_predictions(dev)
        else:
            examples = run.examples(split, data_root)
            logits = run.logits(examples, dev, batch_size, tta=tta)
            preds = Predictions(examples.ids, examples.labels, softmax(logits))
        metrics = predictions_metrics(preds, run.classes)
        name, run_dir = run.dataset, run.path
    else:
        name = data or read_meta(path).get("dataset")
        if name is None:
            raise CnnlabError(f"{path}: say which data to evaluate on with --data")
        metrics = _evaluate_on(run or path, name, data_root, split, dev, batch_size, tta, on_bad_image)
        split = metrics.pop("split")
        run_dir = path if run is not None else None
    metrics.update({"data": name, "split": split, "tta": tta})
    if save and run_dir is not None:  # a built-in run's go to runs/demo-NAME (the package may be read-only)
        own = data is None and split == "test" and tta == own_tta
        tag = "metrics.json" if own else f"eval-{_slug(name)}-{split}{'' if tta == own_tta else '-tta-' + tta}.json"
        target = output_dir(run_dir) / tag
        write_json(target, {**(read_json(target) if target.is_file() else {}), **metrics})
    return metrics


def predictions_metrics(preds: Predictions, classes: list[str]) -> dict[str, Any]:
    """Test metrics from saved predictions (log-probabilities stand in for logits: same softmax and loss)."""
    return classification_metrics(preds.targets, preds.preds, preds.log_probs(), classes)


def _evaluate_on(
    source: Run | Path, name: str, data_root: str | None, split: str, dev, batch_size: int, tta: str, on_bad: str
) -> dict[str, Any]:
    """A model (an opened run, or a model folder) on another dataset's split, read from that dataset;
    the metrics say which split was scored (``split``) and which files were left out (``skipped``)."""
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import class_index, eval_loader, eval_split
    from cnnlab.engine.loop import predict

    if isinstance(source, Run):
        model, meta = source.torch_model(dev, "evaluating on other data"), source.meta
    else:
        model, meta = load_model(source, dev)[0], read_meta(source)
    # skip: every unreadable file is left out (and listed); copies are scored as they are
    ds = load_dataset(name, root=data_root, on_bad_image=on_bad, max_bad_fraction=1.0, clashes=False)
    class_index(list(ds.classes), list(meta["classes"]), name)  # unknown classes fail before any prediction
    scored = eval_split(ds, split)
    logits, targets = predict(model, eval_loader(ds, split, meta, dev, batch_size=batch_size), tta=tta)
    metrics = classification_metrics(targets, logits.argmax(1), logits, meta["classes"])
    metrics["split"] = scored
    if getattr(ds, "skipped", None):
        metrics["skipped"] = [list(s) for s in ds.skipped]
    own = isinstance(source, Run) and source.is_folder and scored == "all"
    if own and Path(ds.root).resolve() == source.data_folder().resolve():
        metrics["warnings"] = [
            f"{name} is the folder {source.name} trained on: these scores include its training images; "
            f"'cnnlab evaluate {source.path}' scores its own test split"
        ]
    return metrics


def lr_find(
    config: Config | str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    progress: bool = False,
    log=print,
    **short: Any,
):
    """``cnnlab lr-find`` from Python: the learning-rate range test on a training config.

    The config is built as for :func:`train` (same short names and overrides, the same data, model,
    optimiser and loss steps); the model is not saved. Returns the ``LRFindResult`` (``lrs``,
    ``losses``, ``smoothed``, ``suggestion``, ``reason``); ``cnnlab.viz.training_plots.plot_lr_find``
    draws it.

    Example::

        r = cnnlab.lr_find(data="digits", model="seed_cnn", steps=50)
        r.suggestion
    """
    from cnnlab.engine.lr_find import lr_find as range_test

    session = start_session(make_config(config, overrides, **short), log)
    _, data = load_data(session)
    parts = build_parts(session, data, find_lr=False)  # --pretrained, --finetune, --balance, the loss: as in training
    return range_test(
        parts.model,
        data.train,
        parts.optimizer,
        parts.loss_fn,
        start,
        end,
        steps,
        generators=[data.generator],
        progress=progress,
    )


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")[:60]


__all__ = [
    "train",
    "cv",
    "evaluate",
    "lr_find",
    "TrainResult",
    "CVResult",
    "make_config",
    "format_report",
    "ArrayDataset",
]
