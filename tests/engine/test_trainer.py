"""Training end to end on scikit-learn's digits (8x8, fast): run folder, resume, NaN, early stop."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.api import evaluate, train
from cnnlab.config import load_config
from cnnlab.data.datasets import load_dataset
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.loop import NonFiniteLossError
from cnnlab.errors import CnnlabError
from cnnlab.runs.model_file import load_model

RUN_FILES = [
    "config.yaml",
    "env.json",
    "split.csv",
    "history.csv",
    "metrics.json",
    "data.json",
    "model/weights.safetensors",
    "model/model.json",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "plots/curves.png",
    "plots/confusion.png",
    "report.html",
]


def test_run_folder_is_complete_and_never_overwritten(fast_overrides):
    a = train(overrides={**fast_overrides, "output.plots": True}, log=lambda s: None)
    b = train(overrides=fast_overrides, log=lambda s: None)
    assert a.run_dir != b.run_dir and b.run_dir.name == a.run_dir.name + "-2"
    for f in RUN_FILES:
        assert (a.run_dir / f).is_file(), f
    metrics = json.loads((a.run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.5  # 2 epochs on digits beat chance (0.1) by far
    n_test = len(load_dataset("digits").test_labels)
    assert len(metrics["per_class"]) == 10 and sum(r["support"] for r in metrics["per_class"]) == n_test
    assert load_config(a.run_dir / "config.yaml") == a.config
    data = json.loads((a.run_dir / "data.json").read_text())
    assert len(data["mean"]) == 1 and 0 < data["mean"][0] < 1
    history = (a.run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch,train_loss")


def test_split_is_stratified_seeded_and_test_untouched(fast_overrides):
    r = train(overrides=fast_overrides, log=lambda s: None)
    rows = [line.split(",") for line in (r.run_dir / "split.csv").read_text().splitlines()[1:]]
    train_idx = {int(s) for split, s, _ in rows if split == "train"}
    val_idx = {int(s) for split, s, _ in rows if split == "val"}
    ds = load_dataset("digits")
    assert not train_idx & val_idx and train_idx | val_idx == set(range(len(ds.train_labels)))
    assert sum(1 for split, *_ in rows if split == "test") == len(ds.test_labels)
    val_labels = [int(y) for split, _, y in rows if split == "val"]
    assert set(val_labels) == set(range(10))  # every class is represented


def test_same_seed_same_weights_and_evaluate_reproduces_metrics(fast_overrides):
    a = train(overrides=fast_overrides, log=lambda s: None)
    b = train(overrides=fast_overrides, log=lambda s: None)
    wa, _ = load_model(a.run_dir)
    wb, _ = load_model(b.run_dir)
    for (ka, va), (_, vb) in zip(wa.state_dict().items(), wb.state_dict().items()):
        assert torch.equal(va, vb), ka
    again = evaluate(a.run_dir, save=False)
    assert again["accuracy"] == a.metrics["accuracy"]
    assert again["confusion_matrix"] == a.metrics["confusion_matrix"]


def test_evaluate_uses_the_runs_test_time_augmentation_unless_told(fast_overrides):
    tta = {**fast_overrides, "train.tta": "flip-translate1", "train.early_stop_patience": None}
    r = train(overrides=tta, log=lambda s: None)
    metrics = json.loads((r.run_dir / "metrics.json").read_text())
    assert metrics["tta"] == "flip-translate1"
    # The validation split scored now reproduces the best epoch's validation loss of history.csv.
    best = next(row for row in r.history if row["epoch"] == metrics["best_epoch"])
    val = evaluate(r.run_dir, split="val", save=False)
    assert val["tta"] == "flip-translate1" and val["loss"] == pytest.approx(best["val_loss"], rel=1e-4)
    plain = evaluate(r.run_dir, split="val", tta="none", save=False)
    assert abs(plain["loss"] - best["val_loss"]) > 1e-3  # six views average to other probabilities
    # The test split without TTA goes to a file of its own; metrics.json keeps training's figures.
    evaluate(r.run_dir, tta="none")
    assert json.loads((r.run_dir / "metrics.json").read_text()) == metrics
    other = json.loads((r.run_dir / "eval-digits-test-tta-none.json").read_text())
    assert other["tta"] == "none" and other["loss"] != metrics["loss"]
    named = evaluate(r.run_dir, data="digits", tta="none", save=False)  # the same test images, read anew
    assert named["confusion_matrix"] == other["confusion_matrix"] and named["loss"] == pytest.approx(other["loss"])
    assert evaluate(r.run_dir, data="digits", save=False)["confusion_matrix"] == metrics["confusion_matrix"]
    # When the saved predictions are gone, the test split is predicted again, with the run's TTA.
    (r.run_dir / "predictions.csv").unlink()
    again = evaluate(r.run_dir, save=False)
    assert again["loss"] == pytest.approx(metrics["loss"], rel=1e-4)
    with pytest.raises(CnnlabError, match="unknown test-time augmentation 'flipp'.*Known: flip,"):
        evaluate(r.run_dir, tta="flipp", save=False)


def test_unknown_tta_fails_before_any_data_is_read(fast_overrides, monkeypatch):
    import cnnlab.api

    monkeypatch.setattr(cnnlab.api, "load_data", lambda s: pytest.fail("data was loaded"))
    with pytest.raises(CnnlabError, match="unknown test-time augmentation 'mirror'"):
        train(overrides={**fast_overrides, "train.tta": "mirror"}, log=lambda s: None)
    assert not Path(fast_overrides["output.root"]).exists()


def test_resume_at_epoch_boundary_is_bit_identical(fast_overrides):
    full = train(overrides={**fast_overrides, "train.epochs": 3, "train.early_stop_patience": None}, log=lambda s: None)
    # Same run stopped after 2 epochs (its config is then edited to ask for 3, as a user extending it would)
    part = train(overrides={**fast_overrides, "train.epochs": 2, "train.early_stop_patience": None}, log=lambda s: None)
    cfg = yaml.safe_load((part.run_dir / "config.yaml").read_text())
    cfg["train"]["epochs"] = 3
    (part.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    resumed = train(resume=part.run_dir, log=lambda s: None)
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]


def test_non_finite_loss_stops_and_keeps_previous_checkpoints(fast_overrides, monkeypatch):
    import cnnlab.workflow as api  # the training steps build the loss there

    calls = {"n": 0}
    real = api.build_loss

    def poisoned(*args, **kw):  # a loss that turns NaN on the 3rd step of epoch 2
        inner = real(*args, **kw)

        def loss(logits, y):
            calls["n"] += 1
            out = inner(logits, y)
            return out * float("nan") if calls["n"] == steps_per_epoch + 3 else out

        return loss

    steps_per_epoch = -(-int(0.9 * len(load_dataset("digits").train_labels)) // fast_overrides["data.batch_size"])
    monkeypatch.setattr(api, "build_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 3\b"):
        train(overrides={**fast_overrides, "train.epochs": 3}, log=lambda s: None)
    (run_dir,) = Path(fast_overrides["output.root"]).iterdir()
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(run_dir / "checkpoints" / name)
        assert state["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run_dir / "model").exists()  # no model file from a broken run


def test_early_stopping_stops_before_the_epoch_limit(fast_overrides):
    # lr 1e-12 (0 is refused: optim.lr must be above 0) leaves the weights as they are, so val accuracy
    # never improves after the first epoch: patience 1 stops at epoch 2 of 10.
    r = train(
        overrides={**fast_overrides, "train.epochs": 10, "train.early_stop_patience": 1, "optim.lr": 1e-12},
        log=lambda s: None,
    )
    assert len(r.history) == 2
    ckpt = r.run_dir / "checkpoints"
    best, last = load_checkpoint(ckpt / "best.pt"), load_checkpoint(ckpt / "last.pt")
    assert (best["epoch"], last["epoch"]) == (1, 2)  # epoch 2 did not improve: best.pt stayed epoch 1's
    # epoch 1 improved: best.pt was a second name for its last.pt, which epoch 2's write replaced
    assert (ckpt / "best.pt").stat().st_ino != (ckpt / "last.pt").stat().st_ino


def test_an_improving_epochs_best_pt_is_its_last_pt_written_once(fast_overrides):
    r = train(overrides={**fast_overrides, "train.epochs": 1}, log=lambda s: None)
    ckpt = r.run_dir / "checkpoints"
    assert (ckpt / "best.pt").stat().st_ino == (ckpt / "last.pt").stat().st_ino  # one file, two names
    assert load_checkpoint(ckpt / "best.pt")["epoch"] == 1


def test_callbacks_see_every_epoch_and_can_stop_training(fast_overrides):
    seen = []

    class Stop(Exception):
        pass

    def cb(trainer, row):
        seen.append((trainer.epoch, row["val_acc"]))
        if trainer.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(overrides={**fast_overrides, "train.epochs": 4}, log=lambda s: None, callbacks=[cb])
    assert [e for e, _ in seen] == [1, 2] and all(0 <= a <= 1 for _, a in seen)


def test_the_records_details_resume_exactly_and_alternate_with_the_epoch(fast_overrides, monkeypatch):
    # airbench94's alternating flips, whitening bias trained for the first epoch only, 3 Newton-Schulz steps
    from cnnlab.data.loaders import _EpochPlan

    epochs_told = []
    tell = _EpochPlan.set_epoch
    monkeypatch.setattr(_EpochPlan, "set_epoch", lambda self, e: (epochs_told.append(e), tell(self, e)))
    record = {
        **fast_overrides,
        "model.name": "airbench",
        "model.kwargs": {"widths": [16, 16]},
        "optim.name": "muon",
        "optim.lr": 0.05,
        "optim.muon_ns_steps": 3,
        "optim.group_epochs": {"stem.bias": 1},
        "data.augment": "random_crop(pad=1)+altflip",
        "sched.name": "none",  # a schedule over the run would differ between the 2- and 3-epoch runs
        "train.early_stop_patience": None,
    }
    full = train(overrides={**record, "train.epochs": 3}, log=lambda s: None)
    assert epochs_told == [0, 1, 2]
    part = train(overrides={**record, "train.epochs": 2}, log=lambda s: None)
    after_two = load_checkpoint(part.run_dir / "checkpoints" / "last.pt")["model"]
    cfg = yaml.safe_load((part.run_dir / "config.yaml").read_text())
    cfg["train"]["epochs"] = 3
    (part.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    resumed = train(resume=part.run_dir, log=lambda s: None)
    assert epochs_told[-1] == 2  # the resumed run's third epoch flips as the full run's did
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(a["stem.bias"], after_two["stem.bias"])  # frozen after the first epoch
    assert not torch.equal(a["groups.0.norm1.bias"], after_two["groups.0.norm1.bias"])  # the rest trained on
