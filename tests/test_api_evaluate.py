"""``cnnlab.evaluate`` / ``cnnlab evaluate RUN --data ...`` on data the run never saw: a plain folder of
class folders is one split, its classes matched by name; unreadable files fail or are skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli.main import main

COLOURS = {"apple": (200, 40, 40), "leaf": (40, 200, 40), "sea": (40, 40, 200)}


def colour_folder(root: Path, classes=("apple", "leaf", "sea"), n: int = 6, seed: int = 0) -> Path:
    """A flat folder: one subfolder per class of noisy 8x8 pictures in the class's colour."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            px = np.clip(np.array(COLOURS.get(c, (128, 128, 128))) + rng.normal(0, 25, (8, 8, 3)), 0, 255)
            Image.fromarray(px.astype(np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("eval")
    folder = colour_folder(base / "photos")
    over = {"data.num_workers": 0, "output.progress": False, "train.threads": 1, "output.plots": False}
    run = cnnlab.train(data=f"folder:{folder}", epochs=1, image_size=8, out=base / "runs", overrides=over, log=print)
    return run.run_dir, folder


def _cli(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_a_plain_class_folder_is_scored_whole_with_classes_matched_by_name(folder_run, tmp_path, capsys):
    run, _ = folder_run
    new = colour_folder(tmp_path / "new_photos", classes=("sea", "apple"), n=4, seed=5)  # a subset of the classes
    code, out, err = _cli(["evaluate", run, "--data", f"folder:{new}"], capsys)
    assert code == 0, err
    assert out.startswith(f"all 8 images of folder:{new}") and "confusion matrix" in out
    m = cnnlab.evaluate(run, data=f"folder:{new}", save=False)
    assert m["split"] == "all" and m["num_samples"] == 8
    support = {r["class"]: r["support"] for r in m["per_class"]}
    assert support == {"apple": 4, "leaf": 0, "sea": 4}  # labels are the model's indices of the names
    assert any(p.name.endswith("-all.json") for p in run.iterdir())


@pytest.mark.slow
def test_unknown_class_names_are_named(folder_run, tmp_path, capsys):
    run, _ = folder_run
    new = colour_folder(tmp_path / "zoo", classes=("apple", "zebra"), n=2)
    code, _, err = _cli(["evaluate", run, "--data", f"folder:{new}"], capsys)
    assert code == 1 and "Traceback" not in err
    assert "has class(es) the model does not know: 'zebra'" in err and "'apple', 'leaf', 'sea'" in err


def test_unreadable_files_fail_with_the_flag_to_skip_them(folder_run, tmp_path, capsys):
    run, _ = folder_run
    new = colour_folder(tmp_path / "new", n=3)
    (new / "leaf" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, _, err = _cli(["evaluate", run, "--data", f"folder:{new}"], capsys)
    assert code == 1 and "broken.jpg" in err and "--on-bad-image skip" in err
    code, out, err = _cli(["evaluate", run, "--data", f"folder:{new}", "--on-bad-image", "skip"], capsys)
    assert code == 0, err
    assert "all 9 images" in out and "left out" in out and "broken.jpg" in out


@pytest.mark.slow
def test_a_folder_with_splits_but_not_the_one_asked_for(folder_run, tmp_path, capsys):
    run, _ = folder_run
    colour_folder(tmp_path / "given" / "train", n=2)
    colour_folder(tmp_path / "given" / "val", n=2)
    code, _, err = _cli(["evaluate", run, "--data", f"folder:{tmp_path / 'given'}"], capsys)
    assert code == 1 and "has no 'test' split to evaluate on (it has train, val); choose one with --split" in err
    code, out, err = _cli(["evaluate", run, "--data", f"folder:{tmp_path / 'given'}", "--split", "val"], capsys)
    assert code == 0 and "the val split of" in out, err


@pytest.mark.slow
def test_the_run_s_own_folder_scored_whole_warns(folder_run, capsys):
    run, folder = folder_run
    code, out, err = _cli(["evaluate", run, "--data", f"folder:{folder}"], capsys)
    assert code == 0, err
    assert "warning: " in out and "these scores include its training images" in out
