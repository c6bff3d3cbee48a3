"""``cnnlab cv``: K ordinary fold runs in one parent folder, cv.json/cv.md, resuming, refusals.

One 3-fold cross-validation of a small image folder (1 epoch, 8x8 images) is trained once per module;
tests that change it work on a copy."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import cnnlab
from cnnlab.cli.main import main

FAST = ["--epochs", "1", "--image-size", "8", "--no-progress"]
FAST += ["--set", "data.num_workers=0", "--set", "train.threads=1", "--set", "output.plots=false"]


def make_folder(root: Path, counts=(7, 6, 5)) -> Path:
    """A flat folder of class folders (red, green, blue noise) with one exact copy in class c0."""
    rng = np.random.default_rng(0)
    for c, n in enumerate(counts):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n):
            colour = np.eye(3)[c] * 200 + 30
            pixels = np.clip(colour + rng.normal(0, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    shutil.copy(root / "c0" / "0.png", root / "c0" / "copy-of-0.png")
    return root


def _cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """(folder, runs root, parent, printed output) of `cnnlab cv --folds 3` on the small folder."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("cv")
    folder = make_folder(tmp / "imgs")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["cv", "--folds", "3", "--data", f"folder:{folder}", "--out", str(tmp / "runs"), *FAST])
    assert code == 0, out.getvalue()
    return folder, tmp / "runs", tmp / "runs" / "imgs-seed_cnn-cv", out.getvalue()


def _copy(cv_run, tmp_path) -> Path:
    parent = tmp_path / "runs" / cv_run[2].name
    shutil.copytree(cv_run[2], parent)
    return parent


def _args(cv_run, parent: Path) -> list:
    return ["cv", "--folds", "3", "--data", f"folder:{cv_run[0]}", "--out", parent.parent, *FAST]


def test_three_fold_runs_and_a_summary_of_their_metrics(cv_run):
    folder, _, parent, printed = cv_run
    assert sorted(p.name for p in parent.iterdir()) == [
        ".lock",  # the parent's run lock (released: a later cv takes it again)
        "cv-config.yaml",
        "cv.json",
        "cv.md",
        "fold-1",
        "fold-2",
        "fold-3",
    ]
    summary = json.loads((parent / "cv.json").read_text())
    folds = [json.loads((parent / f"fold-{k}" / "metrics.json").read_text()) for k in (1, 2, 3)]
    for key, get in {
        "accuracy": lambda m: m["accuracy"],
        "loss": lambda m: m["loss"],
        "macro.f1": lambda m: m["macro"]["f1"],
    }.items():
        values = [get(m) for m in folds]
        assert summary["mean"][key] == pytest.approx(np.mean(values))
        assert summary["std"][key] == pytest.approx(np.std(values, ddof=1))
        assert [r["metrics"][key] for r in summary["runs"]] == pytest.approx(values)
    assert "mean ± std" in printed and "fold-3" in printed and str(parent) in printed
    assert (parent / "cv.md").read_text() in printed


def test_every_image_is_tested_by_exactly_one_fold_and_copies_stay_together(cv_run):
    folder, _, parent, _ = cv_run
    tested = []
    for k in (1, 2, 3):
        rows = [line.split(",") for line in (parent / f"fold-{k}" / "split.csv").read_text().splitlines()[1:]]
        side = {src: split for split, src, _ in rows}
        assert side["c0/0.png"] == side["c0/copy-of-0.png"]
        tested += [src for split, src, _ in rows if split == "test"]
        data = json.loads((parent / f"fold-{k}" / "data.json").read_text())
        assert data["cross_validation"]["fold"] == k and data["duplicate_groups"] == [["c0/0.png", "c0/copy-of-0.png"]]
    images = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    assert sorted(tested) == images


def test_a_fold_run_is_an_ordinary_run(cv_run, capsys):
    fold = cv_run[2] / "fold-2"
    code, out, err = _cli(["evaluate", fold], capsys)
    assert code == 0 and "accuracy" in out, err
    saved = json.loads((fold / "metrics.json").read_text())
    assert cnnlab.evaluate(fold, save=False)["accuracy"] == saved["accuracy"]


def test_the_same_command_again_skips_the_finished_folds(cv_run, tmp_path, capsys):
    parent = _copy(cv_run, tmp_path)
    before = {k: (parent / f"fold-{k}" / "model" / "weights.safetensors").stat().st_mtime_ns for k in (1, 2, 3)}
    code, out, err = _cli(_args(cv_run, parent), capsys)
    assert code == 0, err
    assert out.count("already trained") == 3 and "epoch   1/1" not in out
    assert before == {k: (parent / f"fold-{k}" / "model" / "weights.safetensors").stat().st_mtime_ns for k in (1, 2, 3)}


def test_an_interrupted_fold_is_resumed_and_a_fold_never_checkpointed_is_retrained(cv_run, tmp_path, capsys):
    parent = _copy(cv_run, tmp_path)
    shutil.rmtree(parent / "fold-2" / "model")  # killed after its last checkpoint, before the model file
    (parent / "fold-2" / "metrics.json").unlink()
    shutil.rmtree(parent / "fold-3" / "checkpoints")  # killed before its first checkpoint
    shutil.rmtree(parent / "fold-3" / "model")
    (parent / "cv.json").unlink()
    code, out, err = _cli(["cv", "--resume", parent, "--json", tmp_path / "cv.json"], capsys)
    assert code == 0, err
    assert "fold 1/3: already trained" in out
    assert "fold 2/3: continuing the interrupted run" in out and "resuming" in out
    assert "fold 3/3: training" in out
    assert sorted(p.name for p in parent.iterdir() if p.name.startswith("fold")) == ["fold-1", "fold-2", "fold-3"]
    assert json.loads((tmp_path / "cv.json").read_text()) == json.loads((parent / "cv.json").read_text())
    assert (parent / "fold-2" / "model" / "weights.safetensors").is_file()


def test_another_config_for_the_same_folder_is_refused(cv_run, tmp_path, capsys):
    parent = _copy(cv_run, tmp_path)
    code, _, err = _cli([*_args(cv_run, parent), "--lr", "0.01"], capsys)
    assert code == 1 and "another config" in err and "optim.lr: null there, 0.01 here" in err
    assert "Traceback" not in err
    code, _, err = _cli(["cv", "--resume", parent, "--epochs", "2"], capsys)
    assert code == 1 and "drop the other options" in err


def test_too_few_images_or_folds_are_refused_without_a_traceback(tmp_path, capsys):
    folder = make_folder(tmp_path / "small", counts=(6, 6, 2))
    code, _, err = _cli(["cv", "--folds", "3", "--data", f"folder:{folder}", "--out", tmp_path / "runs", *FAST], capsys)
    assert code == 1 and "class 'c2' has 2 images, fewer than the 3 folds" in err and "--folds 2" in err
    assert "Traceback" not in err
    code, _, err = _cli(["cv", "--folds", "1", "--data", f"folder:{folder}", "--out", tmp_path / "runs"], capsys)
    assert code == 1 and err.startswith("cnnlab: error: --folds 1: cross-validation needs at least 2 folds")


def test_api_cv_on_a_named_dataset_uses_its_training_split(tmp_path, fast_overrides):
    """digits: the folds cut its training split; a fold run's test split is read back from it."""
    result = cnnlab.cv(folds=2, overrides={**fast_overrides, "train.epochs": 1}, log=lambda s: None)
    assert [p.name for p in result.runs] == ["fold-1", "fold-2"] and result.parent.name == "digits-seed_cnn-cv"
    assert "training split of digits" in result.summary["test_splits"]
    fold = result.runs[0]
    (fold / "predictions.csv").unlink()  # evaluate now predicts the run's test split from split.csv
    again = cnnlab.evaluate(fold, save=False)
    assert again["accuracy"] == pytest.approx(json.loads((fold / "metrics.json").read_text())["accuracy"])


# --- the documented commands run (1 epoch and tiny images added to keep them fast) -------------------------
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _doc_section(doc: str, heading: str) -> str:
    return (DOCS / doc).read_text().split(heading)[1].split("\n## ")[0]


def _commands(section: str) -> list[list[str]]:
    block = section.split("```")[1]
    return [shlex.split(line.split("#")[0])[1:] for line in block.splitlines() if line.startswith("cnnlab ")]


def test_own_images_cross_validation_commands_run(tmp_path, monkeypatch, capsys):
    folder = make_folder(tmp_path / "flowers", counts=(5, 5, 5))
    monkeypatch.chdir(tmp_path)
    section = _doc_section("own-images.md", "## Cross-validation: `cnnlab cv`")
    commands = _commands(section)
    assert [c[0] for c in commands] == ["cv", "cv", "evaluate"]
    for args in commands:
        args = [a.replace("~/flowers", str(folder)) for a in args]
        code, _, err = _cli(args + FAST if "--folds" in args else args, capsys)
        assert code == 0, (args, err)
    parent = tmp_path / "runs" / "flowers-cv"
    assert [p.name for p in sorted(parent.glob("fold-*"))] == [f"fold-{k}" for k in range(1, 6)]
    for name in ("cv-config.yaml", "cv.json", "cv.md"):
        assert f"`{name}`" in section and (parent / name).is_file()
    summary = json.loads((parent / "cv.json").read_text())
    for key in ("accuracy", "loss", "macro.f1", "balanced_accuracy"):
        assert f"`{key}`" in section and key in summary["mean"] and key in summary["std"]


def test_training_cross_validation_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    section = _doc_section("training.md", "## Cross-validation — `cnnlab cv`")
    (args,) = _commands(section)
    code, out, err = _cli([*args, "--epochs", "1", *FAST[2:]], capsys)
    assert code == 0, err
    assert "runs/digits-seed_cnn-cv/fold-1" in section and (tmp_path / "runs/digits-seed_cnn-cv/fold-5/model").is_dir()
    assert "its own test split, 359 images, is not used" in out


def test_the_parent_folder_given_as_a_run_names_its_folds(cv_run, capsys, tmp_path):
    parent = cv_run[2]
    for argv in (
        ["evaluate", parent],
        ["report", parent],
        ["interpret", parent],
        ["export", parent, "--output", tmp_path / "m.onnx"],
    ):
        code, _, err = _cli(argv, capsys)
        assert code == 1 and "is a cross-validation folder" in err, (argv, err)
        assert "use one of its folds: fold-K (fold-1, fold-2, fold-3)" in err and "Traceback" not in err
    code, _, err = _cli(["train", "--resume", parent], capsys)
    assert code == 1 and f"continue it with 'cnnlab cv --resume {parent}'" in err


def test_cv_resume_takes_runtime_options(cv_run, tmp_path, capsys):
    parent = _copy(cv_run, tmp_path)
    code, out, err = _cli(["cv", "--resume", parent, "--no-progress", "--set", "train.threads=1"], capsys)
    assert code == 0, err
    assert out.count("already trained") == 3


def _hold_lock(folder: Path):
    """Another process holding ``folder``'s run lock (as a running ``cnnlab cv`` does); stop it with .kill()."""
    script = (
        "import sys, time; from cnnlab.engine.trainer import RunLock; "
        "lock = RunLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_cv_on_the_same_folder_is_refused_while_the_first_runs(cv_run, tmp_path, capsys):
    # Two cv runs on one folder used to delete each other's fold folder while it trained (each fold's own
    # lock sat on the folder the other deleted): the parent folder is now locked for the whole run.
    parent = _copy(cv_run, tmp_path)
    shutil.rmtree(parent / "fold-3")  # a fold the first cv would be training now
    before = sorted(str(p.relative_to(parent)) for p in parent.rglob("*"))
    holder = _hold_lock(parent)
    try:
        for args in (_args(cv_run, parent), ["cv", "--resume", parent]):
            code, out, err = _cli(args, capsys)
            assert code == 1 and err.count("cnnlab: error:") == 1 and "Traceback" not in err, err
            assert f"{parent} is being cross-validated by another process (PID {holder.pid}" in err
            assert "fold" not in out
    finally:
        holder.kill()
        holder.wait()
    assert sorted(str(p.relative_to(parent)) for p in parent.rglob("*")) == before
    code, out, err = _cli(["cv", "--resume", parent], capsys)  # the lock of a dead process never blocks
    assert code == 0 and "fold 3/3: training" in out, err


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        (("train", "epochs"), 2, "train.epochs: 1 in fold-1, 2 in cv-config.yaml"),
        (("optim", "name"), "sgd", 'optim.name: "adam" in fold-1, "sgd" in cv-config.yaml'),
        (("model", "kwargs"), {"fc_dropout": 0.1}, "model.kwargs.fc_dropout: null in fold-1, 0.1 in cv-config.yaml"),
    ],
)
def test_a_resumed_cv_whose_saved_config_was_edited_is_refused(cv_run, tmp_path, capsys, key, value, said):
    # The folds already trained would otherwise be averaged with folds trained under the edited settings.
    parent = _copy(cv_run, tmp_path)
    shutil.rmtree(parent / "fold-3")
    stored = yaml.safe_load((parent / "cv-config.yaml").read_text())
    stored[key[0]][key[1]] = value
    (parent / "cv-config.yaml").write_text(yaml.safe_dump(stored))
    code, out, err = _cli(["cv", "--resume", parent], capsys)
    assert code == 1 and err.count("cnnlab: error:") == 1 and "Traceback" not in err, err
    assert "cv-config.yaml does not match the folds trained from it" in err and said in err
    assert not (parent / "fold-3").exists() and "training" not in out


def test_a_fold_config_edited_on_disk_is_refused_too(cv_run, tmp_path, capsys):
    parent = _copy(cv_run, tmp_path)
    saved = yaml.safe_load((parent / "fold-2" / "config.yaml").read_text())
    saved["data"]["val_fraction"] = 0.3
    (parent / "fold-2" / "config.yaml").write_text(yaml.safe_dump(saved))
    code, _, err = _cli(_args(cv_run, parent), capsys)
    assert code == 1 and "data.val_fraction: 0.3 in fold-2, 0.1 in cv-config.yaml" in err, err


def test_cv_checks_its_config_as_train_does_before_making_its_folder(cv_run, tmp_path, capsys):
    # Unknown names and misspelt model arguments used to create the parent folder and cv-config.yaml first.
    for flags, message in (
        (["--optimizer", "adamm"], "unknown optimizer 'adamm'"),
        (["--model.kwargs", "{dropuot: 0.1}"], "model 'seed_cnn' has no argument 'dropuot'"),
        (["--seed", "-1"], "train.seed must be 0 or more"),
    ):
        code, _, err = _cli(["cv", "--folds", "3", "--data", f"folder:{cv_run[0]}", "--out", tmp_path, *flags], capsys)
        assert code == 1 and message in err and "Traceback" not in err, err
        assert not list(tmp_path.iterdir())


def test_a_copy_in_the_unused_test_folder_does_not_stop_cross_validation(tmp_path, capsys):
    """cv tests on folds of train/ and never reads test/, so a training photo copied there is no leak (train
    alone refuses the same folder)."""
    make_folder(tmp_path / "given" / "train", counts=(4, 4, 4))
    make_folder(tmp_path / "given" / "test", counts=(2, 2, 2))
    shutil.copy(tmp_path / "given" / "train" / "c1" / "3.png", tmp_path / "given" / "test" / "c1" / "same.png")
    data = ["--data", f"folder:{tmp_path / 'given'}", "--out", tmp_path / "runs", *FAST]
    code, _, err = _cli(["train", *data], capsys)
    assert code == 1 and "of the test split are also in train" in err
    code, out, err = _cli(["cv", "--folds", "2", *data], capsys)
    assert code == 0, err
    assert "warnings" not in json.loads(
        (tmp_path / "runs" / "given-seed_cnn-cv" / "fold-1" / "metrics.json").read_text()
    )
