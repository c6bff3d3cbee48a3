"""CSV cells cnnlab writes are escaped against spreadsheet formula injection and read back unchanged (issue 26)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from cnnlab.files import tables

HOSTILE = ['=HYPERLINK("http://evil","x")', "+1+cmd", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "'=quoted", "'plain"]


@pytest.mark.parametrize("text", [*HOSTILE, "cat", "", "1.5e-03", "-1.5e-03", "+7", "nan", "a=b"])
def test_cells_round_trip_and_no_text_cell_starts_a_formula(text):
    buf = io.StringIO()
    tables.writer(buf).writerow([text, 3, -0.5])
    raw = next(csv.reader(io.StringIO(buf.getvalue())))
    assert raw[0] == text or (raw[0] == "'" + text and text.startswith(("=", "+", "-", "@", "\t", "\r", "'")))
    is_number = text not in HOSTILE
    assert is_number or not raw[0].startswith(("=", "+", "-", "@", "\t", "\r"))
    assert next(tables.reader(io.StringIO(buf.getvalue()))) == [text, "3", "-0.5"]


def test_dict_writer_and_reader_round_trip():
    buf = io.StringIO()
    w = tables.DictWriter(buf, fieldnames=["id", "true"])
    w.writeheader()
    w.writerows([{"id": "=a.png", "true": "@cls"}])
    assert "'=a.png,'@cls" in buf.getvalue()
    assert list(tables.DictReader(io.StringIO(buf.getvalue()))) == [{"id": "=a.png", "true": "@cls"}]


def test_predictions_csv_escapes_class_names_and_reads_them_back(tmp_path):
    from cnnlab.runs.predictions import read_predictions, write_predictions

    classes = ["=cmd|' /C calc'!A0", "+bird", "cat"]
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    path = write_predictions(tmp_path / "predictions.csv", ["-1.png", "@x.png"], [0, 2], probs, classes)
    cells = [c for row in csv.reader(path.open(newline="")) for c in row]
    assert not any(c.startswith(("=", "+", "@")) or (c.startswith("-") and c.endswith(".png")) for c in cells), cells
    back = read_predictions(path, classes)
    assert back.ids == ["-1.png", "@x.png"] and back.targets.tolist() == [0, 2]
    np.testing.assert_allclose(back.probs, probs)


def test_misclassified_csv_escapes_names(tmp_path):
    from cnnlab.evaluation.interpret import prediction_table, write_misclassified_csv

    logits = np.array([[0.0, 3.0], [3.0, 0.0]])
    rows = prediction_table(logits, np.array([0, 0]), ["=evil()", "+ok"], ["@a.png", "b.png"])
    path = write_misclassified_csv(tmp_path / "misclassified.csv", rows)
    text = path.read_text()
    assert "'=evil()" in text and "'+ok" in text and "'@a.png" in text
    assert not any(c.startswith(("=", "+", "@")) for row in csv.reader(io.StringIO(text)) for c in row)


def test_split_csv_round_trips_hostile_file_names(tmp_path):
    from cnnlab.data.splits import read_split_csv, write_split_csv

    rows = [("train", "=cls/=x.png", 0), ("test", "-b/@y.png", 1)]
    write_split_csv(tmp_path / "split.csv", rows)
    assert "'=cls/=x.png" in (tmp_path / "split.csv").read_text()
    assert read_split_csv(tmp_path / "split.csv") == rows


def test_no_csv_is_written_beside_the_escaping_writer():
    """Every CSV cnnlab writes goes through files.tables (predictions.csv wrote class names raw)."""
    import ast
    from pathlib import Path

    src = Path(__file__).parents[2] / "src" / "cnnlab"
    raw = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            f = node.func if isinstance(node, ast.Call) else None
            name = f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            if name in ("csv.writer", "csv.DictWriter"):
                raw.append(f"{path.relative_to(src)}:{node.lineno} {name}")
    assert raw and all(r.startswith("files/tables.py:") for r in raw), raw  # found the escaping writer, and only it
