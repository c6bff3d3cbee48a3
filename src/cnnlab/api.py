"""The Python API behind ``cnnlab train`` and ``cnnlab evaluate``, usable from a notebook::

    import cnnlab
    result = cnnlab.train(data="mnist-sample", model="seed_cnn", epochs=3)
    print(result.metrics["accuracy"], result.run_dir)
    metrics = cnnlab.evaluate(result.run_dir)

``train`` follows the data flow of docs/architecture.md: config -> dataset -> split and
normalisation -> loaders -> model -> optimiser/schedule/loss -> Trainer -> best weights -> test
metrics -> run folder (config, env, split, history, metrics, model file, checkpoints, plots).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.config import SHORT_KEYS, Config, apply_overrides, load_config
from cnnlab.data.datasets import ArrayDataset
from cnnlab.devices import resolve_device
from cnnlab.engine.distributed import shutdown
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.metrics import classification_metrics, format_report, softmax
from cnnlab.runs import read_json, write_json
from cnnlab.runs.builtin import output_dir, resolve_run_path
from cnnlab.runs.model_file import load_model, read_meta
from cnnlab.runs.predictions import Predictions
from cnnlab.runs.run import is_run, open_run
from cnnlab.workflow import (
    build_parts,
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
        resume: a run folder to continue from its ``checkpoints/last.pt`` (same config).
        log: where progress lines go (``print``; ``lambda s: None`` for silence).
        callbacks: functions ``cb(trainer, row)`` called after every epoch (see engine.trainer.Trainer).
        **short: short names as on the command line: data, data_root, model, epochs, lr, batch_size, seed, ...
    """
    cfg = _resume_config(resume) if resume is not None else make_config(config, overrides, **short)
    session = start_session(cfg, log)
    ds, data = load_data(session)
    parts = build_parts(session, data)
    run_dir = Path(resume) if resume is not None else new_run_folder(session, ds, data)
    trainer = make_trainer(session, parts, data, run_dir, callbacks)
    if resume is not None:
        resume_trainer(session, trainer, parts, run_dir)
    describe(session, data)
    history = trainer.fit()
    metrics = finish(session, trainer, data, run_dir) if session.dist.main else {}  # rank 0 writes
    shutdown(session.dist)
    return TrainResult(run_dir=run_dir, metrics=metrics, history=history, config=cfg)


def _resume_config(run_dir: str | Path) -> Config:
    if not (Path(run_dir) / "config.yaml").is_file():
        raise CnnlabError(f"{run_dir} is not a run folder (no config.yaml); give the folder printed by 'cnnlab train'")
    return load_config(Path(run_dir) / "config.yaml")


def evaluate(
    run_or_model: str | Path,
    data: str | None = None,
    data_root: str | None = None,
    split: str = "test",
    batch_size: int = 1000,
    device: str = "auto",
    save: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained model (a run folder or a model folder) on a dataset split.

    Without ``data``, a run is scored on its own split: the exact samples of its split.csv (skipped
    files stay skipped), from the test predictions training saved when ``split`` is "test". With
    ``data``, the model predicts that dataset's test split (classes must match in name and order).
    """
    path = resolve_run_path(run_or_model)  # a folder, or a built-in name such as demo:mnist
    dev = resolve_device(device)
    if is_run(path) and data is None:
        run = open_run(path)
        if split == "test":
            preds, _ = run.test_predictions(dev)
        else:
            examples = run.examples(split, data_root)
            preds = Predictions(examples.ids, examples.labels, softmax(run.logits(examples, dev, batch_size)))
        metrics = predictions_metrics(preds, run.classes)
        name, run_dir = run.dataset, run.path
    else:
        name = data or read_meta(path).get("dataset")
        if name is None:
            raise CnnlabError(f"{path}: say which data to evaluate on with --data")
        metrics = _evaluate_on(path, name, data_root, split, dev, batch_size)
        run_dir = path if is_run(path) else None
    metrics.update({"data": name, "split": split})
    if save and run_dir is not None:  # a built-in run's go to runs/demo-NAME (the package may be read-only)
        tag = "metrics.json" if data is None and split == "test" else f"eval-{_slug(name)}-{split}.json"
        target = output_dir(run_dir) / tag
        write_json(target, {**(read_json(target) if target.is_file() else {}), **metrics})
    return metrics


def predictions_metrics(preds: Predictions, classes: list[str]) -> dict[str, Any]:
    """Test metrics from saved predictions (log-probabilities stand in for logits: same softmax and loss)."""
    return classification_metrics(preds.targets, preds.preds, preds.log_probs(), classes)


def _evaluate_on(path: Path, name: str, data_root: str | None, split: str, dev, batch_size: int) -> dict[str, Any]:
    """A model (run or model folder) on another dataset's split, read from that dataset."""
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import eval_loader
    from cnnlab.engine.loop import predict

    model = open_run(path).torch_model(dev, "evaluating on other data") if is_run(path) else load_model(path, dev)[0]
    meta = read_meta(path)
    ds = load_dataset(name, root=data_root)
    if list(ds.classes) != list(meta["classes"]):
        raise CnnlabError(
            f"the classes of {name} {ds.classes} differ from the model's {meta['classes']} (names and order must match)"
        )
    logits, targets = predict(model, eval_loader(ds, split, meta, dev, batch_size=batch_size))
    return classification_metrics(targets, logits.argmax(1), logits, meta["classes"])


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")[:60]


__all__ = ["train", "evaluate", "TrainResult", "make_config", "format_report", "ArrayDataset"]
