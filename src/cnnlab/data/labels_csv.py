"""Labels from a CSV file (``csv:labels.csv`` data): one row per image, a column for its path and one
for its label, optionally one for its split.

Most published data sets and Kaggle competitions give their labels this way (fastai's ``from_df``,
Keras' ``flow_from_dataframe``). The columns are found by their header, case-insensitively: the path
in ``path``, ``file``, ``filename``, ``image`` (and the other names in ``PATH_COLUMNS``), the label in
``label``, ``class``, ``category``, ``target`` ..., the split in ``split``, ``subset`` or ``set``
(values train/val/test, with the spellings of a folder's split folders) or fastai's boolean
``is_valid`` (true: validation). ``data.csv_path_column``, ``data.csv_label_column`` and
``data.csv_split_column`` name other columns. Paths are relative to the CSV's folder, or to
``data.csv_root``; one that leaves that folder is refused, so split.csv can always name a file by
its relative path. Class names are the labels, sorted (numerically when every label is an integer).

``read_labels`` records every problem it finds (``CsvTable.problems``) so the data doctor can list
them all; ``scan_csv`` raises on the first ones, as training needs. Files are not opened here:
missing and unreadable ones are found by the same screening as a folder's. No torch.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.folder import SPLIT_ALIASES, SPLIT_ORDER, FolderScan
from cnnlab.errors import CnnlabError

PATH_COLUMNS = (
    *("path", "file", "filename", "file_name", "filepath", "file_path", "fname"),
    *("image", "image_path", "image_file", "image_name", "image_id", "img"),  # Kaggle's spellings
)
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "classname", "category", "target", "y")
SPLIT_COLUMNS = ("split", "subset", "set", "partition", "is_valid")
SPLIT_VALUES = {**SPLIT_ALIASES, "training": "train", "dev": "val", "testing": "test"}
BOOLEAN = {"true": "val", "1": "val", "yes": "val", "false": "train", "0": "train", "no": "train"}
MAX_LABEL_CHARS = 200  # a class name is shown in tables, plots and model.json: one short line
MAX_ROWS = 5_000_000  # a bigger file is refused before it fills memory
MAX_FILE_BYTES = 256 << 20


@dataclass
class Row:
    """One data row: its line number in the file, the path as written, the label text and the split."""

    line: int
    path: str
    label: str
    split: str


@dataclass
class CsvTable:
    """What ``read_labels`` found: the rows kept, the columns used, and (code, message, paths) problems."""

    csv_path: Path
    root: Path
    columns: dict[str, str | None]  # "path" / "label" / "split" -> header name used
    rows: list[Row] = field(default_factory=list)
    problems: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def problem(self, code: str, message: str, paths: list[str] | None = None) -> None:
        self.problems.append((code, message, paths or []))


def _pick(header: list[str], wanted: str | None, known: tuple[str, ...], what: str, key: str, path: Path) -> str | None:
    """The header name of a column: the one named by the user (must exist), else the first known name."""
    lower = {h.strip().lower(): h for h in header}
    if wanted:
        if wanted.strip().lower() not in lower:
            raise CnnlabError(
                f"{path} has no column {wanted!r} (data.{key}); its columns are {', '.join(map(repr, header))}."
            )
        return lower[wanted.strip().lower()]
    for name in known:
        if name in lower:
            return lower[name]
    if what == "split":
        return None
    raise CnnlabError(
        f"{path}: no {what} column among {', '.join(map(repr, header))} (looked for {', '.join(known)}). "
        f"Name it with --data.{key} COLUMN."
    )


def _check_file(path: Path) -> None:
    if not path.is_file():  # a FIFO or a device is not a label file either (reading one could block)
        raise CnnlabError(f"label file {path} does not exist (or is not a file). Check the path after 'csv:'.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CnnlabError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB; is it really a label file?")


def _header(f, path: Path):
    """(header, row reader) of an open CSV, its delimiter (',', ';' or tab) sniffed from the first line."""
    try:
        first = f.readline(64 << 10)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(first, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(f, dialect)
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CnnlabError(f"{path} is not a readable UTF-8 CSV file ({exc}).") from None
    if not header or not any(h.strip() for h in header):
        raise CnnlabError(f"{path} is empty: expected a header row (e.g. path,label) and one row per image.")
    return header, reader


def read_labels(
    csv_path: str | Path,
    *,
    path_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
    root: str | Path | None = None,
) -> CsvTable:
    """Read a label CSV, keeping every well-formed row and recording the problems of the others.

    Raises CnnlabError only when nothing can be read: no file, not UTF-8 text, no header, no path or
    label column, or more than ``MAX_ROWS`` rows.
    """
    csv_path = Path(csv_path).expanduser()
    base = Path(os.path.abspath(Path(root).expanduser() if root else csv_path.parent))  # symlinks kept
    _check_file(csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark is no name
        header, reader = _header(f, csv_path)
        cols = {
            "path": _pick(header, path_column, PATH_COLUMNS, "path", "csv_path_column", csv_path),
            "label": _pick(header, label_column, LABEL_COLUMNS, "label", "csv_label_column", csv_path),
            "split": _pick(header, split_column, SPLIT_COLUMNS, "split", "csv_split_column", csv_path),
        }
        table = CsvTable(csv_path, base, cols)
        index = {k: header.index(v) for k, v in cols.items() if v is not None}
        try:
            for row, values in enumerate(reader, start=1):
                if row > MAX_ROWS:
                    raise CnnlabError(f"{csv_path} has more than {MAX_ROWS:,} rows; split it into smaller files.")
                if any(v.strip() for v in values):  # line: where the row ends (a quoted field may hold line breaks)
                    _add_row(table, reader.line_num, values, index)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CnnlabError(f"{csv_path} line {reader.line_num}: not readable as CSV ({exc}).") from None
    return table


def _add_row(table: CsvTable, line: int, values: list[str], index: dict[str, int]) -> None:
    """Check one row and keep it, or record why not."""
    get = {k: (values[i].strip() if i < len(values) else "") for k, i in index.items()}
    where = f"line {line}"
    if not get["path"]:
        table.problem("empty_path", f"{where}: no file name")
        return
    if not get["label"]:
        table.problem("empty_label", f"{where}: {get['path']} has no label", [get["path"]])
        return
    if len(get["label"]) > MAX_LABEL_CHARS or not get["label"].isprintable():
        table.problem(
            "bad_label",
            f"{where}: the label {get['label'][:40]!r} is not a class name (control characters, or more than "
            f"{MAX_LABEL_CHARS} characters)",
            [get["path"]],
        )
        return
    split = "train"
    if "split" in get:
        raw = get["split"].lower()
        mapping = BOOLEAN if table.columns["split"].strip().lower() == "is_valid" else SPLIT_VALUES
        if raw not in mapping:
            allowed = "true or false" if mapping is BOOLEAN else "train, val or test"
            table.problem("bad_split", f"{where}: split {get['split']!r} is not {allowed}", [get["path"]])
            return
        split = mapping[raw]
    full = os.path.normpath(table.root / get["path"].replace("\\", "/"))  # Windows separators too
    if os.path.commonpath([full, table.root]) != str(table.root):
        table.problem(
            "outside", f"{where}: {get['path']} is outside {table.root} (set data.csv_root to a folder holding it)"
        )
        return
    table.rows.append(Row(line, Path(full).relative_to(table.root).as_posix(), get["label"], split))


def class_order(labels: set[str]) -> list[str]:
    """Class names sorted: numerically when every label is an integer (so '10' follows '9'), else by name."""
    if labels and all(lab.lstrip("-").isdigit() for lab in labels):
        return sorted(labels, key=lambda s: (int(s), s))
    return sorted(labels)


def table_scan(table: CsvTable) -> FolderScan:
    """The rows as a :class:`FolderScan` (what a folder's scan gives): classes, samples per split,
    layout "splits" with a split column, else "flat". Repeated rows (same file, label and split) are
    kept once and recorded as ``duplicate_row`` problems; a label found only outside train is an
    ``unknown_label`` problem and its rows are left out."""
    seen: dict[tuple[str, str, str], int] = {}
    rows = []
    for r in table.rows:
        first = seen.setdefault((r.path, r.label, r.split), r.line)
        if first != r.line:
            table.problem("duplicate_row", f"line {r.line}: repeats line {first} ({r.path})", [r.path])
        else:
            rows.append(r)
    has_split = table.columns["split"] is not None
    # the classes are the labels of train; a file with no train rows (a test set to score) has its own
    trained = {r.label for r in rows if r.split == "train"} or {r.label for r in rows}
    for label in sorted({r.label for r in rows} - trained):
        where = sorted({r.split for r in rows if r.label == label})
        table.problem(
            "unknown_label",
            f"label {label!r} is only in {' and '.join(where)}, never in train: the model cannot learn it",
            [r.path for r in rows if r.label == label][:10],
        )
    rows = [r for r in rows if r.label in trained]
    classes = class_order(trained)
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, list] = {}
    for r in rows:
        splits.setdefault(r.split, []).append((table.root / r.path, index[r.label]))
    ordered = {s: splits[s] for s in SPLIT_ORDER if s in splits}
    return FolderScan(root=table.root, classes=classes, splits=ordered, layout="splits" if has_split else "flat")


ERRORS = ("empty_path", "empty_label", "bad_label", "bad_split", "outside", "unknown_label")  # refused by training


def scan_csv(csv_path: str | Path, **options) -> FolderScan:
    """Read a label CSV for training; raise CnnlabError listing (up to 10) rows it cannot use."""
    table = read_labels(csv_path, **options)
    scan = table_scan(table)
    bad = [message for code, message, _ in table.problems if code in ERRORS]
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise CnnlabError(
            f"{table.csv_path}: {len(bad)} row problem(s): " + "; ".join(bad[:10]) + more + ". Fix the rows "
            f"('cnnlab data check csv:{csv_path}' lists every problem)."
        )
    if not scan.num_images:
        raise CnnlabError(f"{table.csv_path} lists no images (a header and no rows?).")
    return scan
