"""Labels from a CSV (``csv:FILE``): columns found by header or named, paths relative to the CSV,
splits, every row problem refused by training and listed by the data doctor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset
from cnnlab.data.doctor import check
from cnnlab.data.labels_csv import class_order, read_labels, scan_csv
from cnnlab.errors import CnnlabError

COLOURS = {"cat": (200, 40, 40), "dog": (40, 40, 200), "owl": (40, 200, 40)}


def pictures(folder: Path, per_class: int = 6, seed: int = 0) -> dict[str, list[str]]:
    """Noisy 8x8 PNGs in the colour of their class, all in one folder (``cat3.png``); names per class."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {}
    for c, colour in COLOURS.items():
        for i in range(per_class):
            px = np.clip(np.array(colour) + rng.normal(0, 25, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(folder / f"{c}{i}.png")
            names.setdefault(c, []).append(f"{c}{i}.png")
    return names


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def pets(tmp_path) -> Path:
    """pets/labels.csv (filename,class,subset: the last 2 of each class test) and pets/images/."""
    names = pictures(tmp_path / "pets" / "images")
    rows = [f"images/{n},{c},{'test' if i >= 4 else 'train'}" for c, ns in names.items() for i, n in enumerate(ns)]
    return write(tmp_path / "pets" / "labels.csv", ["filename,class,subset", *rows])


def test_columns_are_found_by_their_header_and_paths_are_relative_to_the_csv(pets):
    scan = scan_csv(pets)
    assert scan.classes == ["cat", "dog", "owl"] and scan.layout == "splits"
    assert {s: len(v) for s, v in scan.splits.items()} == {"train": 12, "test": 6}
    assert scan.root == pets.parent and scan.splits["test"][0] == (pets.parent / "images" / "cat4.png", 0)


def test_semicolons_a_byte_order_mark_and_named_columns(tmp_path):
    names = pictures(tmp_path / "imgs")
    rows = [f"{c};imgs/{n};x" for c, ns in names.items() for n in ns]
    path = tmp_path / "meta.csv"
    path.write_text("\ufeffSpecies;Picture;Note\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(CnnlabError, match=r"no path column among 'Species', 'Picture', 'Note'.*--data.csv_path_column"):
        scan_csv(path)
    scan = scan_csv(path, path_column="picture", label_column="SPECIES")
    assert scan.classes == ["cat", "dog", "owl"] and scan.layout == "flat" and len(scan.splits["train"]) == 18
    with pytest.raises(CnnlabError, match=r"has no column 'kind' \(data.csv_label_column\)"):
        scan_csv(path, path_column="picture", label_column="kind")


def test_integer_labels_sort_as_numbers_and_is_valid_marks_validation(tmp_path):
    assert class_order({"10", "9", "1"}) == ["1", "9", "10"] and class_order({"b", "a"}) == ["a", "b"]
    pictures(tmp_path)
    path = write(
        tmp_path / "l.csv", ["fname,label,is_valid", "cat0.png,10,False", "dog0.png,9,False", "cat1.png,10,True"]
    )
    scan = scan_csv(path)
    assert scan.classes == ["9", "10"] and [len(scan.splits[s]) for s in ("train", "val")] == [2, 1]


def test_row_problems_are_listed_and_refused(tmp_path):
    pictures(tmp_path)
    path = write(
        tmp_path / "l.csv",
        [
            "path,label,split",
            "cat0.png,cat,train",
            "dog0.png,,train",  # no label (an unlabelled test set?)
            "dog1.png,dog,holdout",  # not a split
            "../elsewhere.png,dog,train",  # leaves the CSV's folder
            "owl0.png,owl,test",  # a class never trained on
            "cat0.png,cat,train",  # a repeated row: kept once
            'dog2.png,"do\ng",train',  # a line break is no class name
        ],
    )
    table = read_labels(path)
    codes = sorted(code for code, _, _ in table.problems)
    assert codes == ["bad_label", "bad_split", "empty_label", "outside"]
    with pytest.raises(CnnlabError) as err:
        scan_csv(path)
    text = str(err.value)
    assert "5 row problem(s)" in text and "line 3: dog0.png has no label" in text
    assert "line 4: split 'holdout' is not train, val or test" in text and "data.csv_root" in text
    assert "label 'owl' is only in test, never in train" in text and "cnnlab data check csv:" in text


def test_a_binary_or_empty_file_is_one_clear_error(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x01garbage\x00")
    with pytest.raises(CnnlabError, match="not a readable UTF-8 CSV"):
        scan_csv(tmp_path / "bin.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CnnlabError, match="is empty: expected a header row"):
        scan_csv(tmp_path / "empty.csv")
    with pytest.raises(CnnlabError, match="does not exist"):
        load_dataset(f"csv:{tmp_path / 'none.csv'}")
    with pytest.raises(CnnlabError, match="csv: needs a path, e.g. --data csv:./labels.csv"):
        load_dataset("csv:")


def test_the_doctor_lists_every_problem_of_a_label_file(pets, capsys):
    lines = pets.read_text().splitlines()
    lines += [
        "images/missing.png,cat,train",  # no such file
        "images/cat0.png,dog,train",  # the same file under a second label
        "images/dog0.png,dog,test",  # the same file in train and test
        "images/owl0.png,owl,train",  # a repeated row
        "images/owl1.png,,train",  # no label
    ]
    write(pets, lines)
    shutil.copy(pets.parent / "images" / "owl2.png", pets.parent / "images" / "owl2-copy.png")
    lines.append("images/owl2-copy.png,owl,test")  # a copy under another name, across splits
    write(pets, lines)
    report = check(f"csv:{pets}")
    errors = {i.code for i in report.errors}
    assert {"missing", "label_conflict", "leak", "empty_label"} <= errors and report.exit_code == 1
    assert "duplicate_row" in {i.code for i in report.warnings}
    leaks = [i.message for i in report.errors if i.code == "leak"]
    assert any("owl2.png" in m and "owl2-copy.png" in m for m in leaks)
    code = main(["data", "check", f"csv:{pets}"])
    out = capsys.readouterr().out
    assert code == 1 and "missing" in out and "images/missing.png: no such file" in out


def test_training_on_a_csv_from_the_python_api_and_the_cli(pets, tmp_path, capsys):
    over = {"data.num_workers": 0, "output.progress": False, "train.threads": 1, "output.plots": False}
    result = cnnlab.train(data=f"csv:{pets}", epochs=1, image_size=8, out=tmp_path / "runs", overrides=over, log=print)
    assert result.run_dir.name == "pets-labels-seed_cnn"
    rows = (result.run_dir / "split.csv").read_text().splitlines()
    assert "test,images/cat4.png,0" in rows and sum(r.startswith("test,") for r in rows) == 6
    info = json.loads((result.run_dir / "data.json").read_text())
    assert info["classes"] == ["cat", "dog", "owl"] and info["layout"] == "splits"
    assert (result.run_dir / "split_manifest.csv").is_file()
    # the same file renamed by column options from the command line
    renamed = write(
        tmp_path / "pets" / "other.csv",
        ["img_file,kind"] + [",".join(line.split(",")[:2]) for line in pets.read_text().splitlines()[1:]],
    )
    argv = ["train", "--data", f"csv:{renamed}", "--data.csv_path_column", "img_file", "--data.csv_label_column"]
    argv += ["kind", "--epochs", "1", "--image-size", "8", "--no-progress", "--out", str(tmp_path / "runs")]
    argv += ["--set", "data.num_workers=0", "--set", "output.plots=false", "--set", "train.threads=1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "pets-other-seed_cnn" in capsys.readouterr().out


def test_a_leak_in_a_csv_is_refused_like_a_folder_s(pets, tmp_path):
    write(pets, [*pets.read_text().splitlines(), "images/cat4.png,cat,train"])  # a test image listed for train too
    with pytest.raises(CnnlabError, match=r"1 image\(s\) of the test split are also in train"):
        cnnlab.train(data=f"csv:{pets}", epochs=1, image_size=8, out=tmp_path / "runs", log=lambda s: None)


def test_own_images_csv_commands_run(tmp_path, monkeypatch, capsys):
    """The commands of docs/own-images.md's CSV section, on a generated ~/pets (labels.csv and meta.csv)."""
    import shlex

    doc = (Path(__file__).resolve().parents[2] / "docs" / "own-images.md").read_text()
    section = doc.split("## Labels in a CSV file: `csv:FILE`")[1].split("\n## ")[0]
    commands = [shlex.split(line)[1:] for line in section.split("```")[3].splitlines() if line.startswith("cnnlab ")]
    assert [c[0] for c in commands] == ["data", "train", "evaluate", "train"]
    names = pictures(tmp_path / "pets" / "images")
    rows = [f"images/{n},{c},{'test' if i >= 4 else 'train'}" for c, ns in names.items() for i, n in enumerate(ns)]
    write(tmp_path / "pets" / "labels.csv", ["filename,class,split", *rows])
    write(
        tmp_path / "pets" / "meta.csv", ["species,picture"] + [f"{c},images/{n}" for c, ns in names.items() for n in ns]
    )
    monkeypatch.chdir(tmp_path)
    fast = ["--epochs", "1", "--no-progress", "--set", "data.num_workers=0", "--set", "train.threads=1"]
    for args in commands:
        args = [a.replace("~/pets", str(tmp_path / "pets")) for a in args]
        args = [a if a != "64" else "8" for a in args]  # a small image size keeps the test fast
        code = main(args + (fast + ["--set", "output.plots=false"] if args[0] == "train" else []))
        assert code == 0, (args, capsys.readouterr().err)
    assert (tmp_path / "runs" / "pets" / "model" / "model.json").is_file()
    assert (tmp_path / "runs" / "pets-meta-seed_cnn" / "split.csv").is_file()


@pytest.mark.slow
def test_a_csv_without_training_rows_is_scored_by_evaluate(pets, tmp_path, capsys):
    """A label file of test images only (new photos to score): its labels are its classes."""
    over = {"data.num_workers": 0, "output.progress": False, "train.threads": 1, "output.plots": False}
    run = cnnlab.train(data=f"csv:{pets}", epochs=1, image_size=8, out=tmp_path / "runs", overrides=over).run_dir
    new = write(
        tmp_path / "pets" / "holdout.csv", ["file,label,split", "images/owl5.png,owl,test", "images/cat5.png,cat,test"]
    )
    assert scan_csv(new).classes == ["cat", "owl"]
    m = cnnlab.evaluate(run, data=f"csv:{new}", save=False)
    assert m["split"] == "test" and m["num_samples"] == 2
    assert {r["class"]: r["support"] for r in m["per_class"]} == {"cat": 1, "dog": 0, "owl": 1}
    code = main(["augment-preview", "--data", f"csv:{new}", "-n", "2", "--output", str(tmp_path / "a.png")])
    assert code == 0, capsys.readouterr().err


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_a_row_naming_a_fifo_is_refused_without_blocking(pets, tmp_path, capsys):
    import os

    os.mkfifo(pets.parent / "images" / "pipe.png")  # reading it would wait for a writer for ever
    write(pets, [*pets.read_text().splitlines(), "images/pipe.png,cat,train"])
    with pytest.raises(CnnlabError, match=r"pipe.png: cannot be read: .*not a regular file \(a FIFO\)"):
        cnnlab.train(data=f"csv:{pets}", epochs=1, image_size=8, out=tmp_path / "runs", log=lambda s: None)
    report = check(f"csv:{pets}")  # an error here: training cannot read it
    assert any(
        i.code == "not_a_file" and i.message == "images/pipe.png: a FIFO, not an image file" for i in report.errors
    )
