"""One reader for every YAML, JSON and CSV file cnnlab reads: bounded size, nesting and alias expansion.

A config file, a run folder's ``config.yaml``, ``model.json``, ``metrics.json``, ``data.json``,
``env.json``, ``split.csv`` or ``history.csv`` may come from someone else (a shared run, a
downloaded model), so each read is limited before it is trusted: the file's size is capped, YAML
aliases may not expand past a node budget (a 1 KB "billion laughs" file otherwise becomes gigabytes
once copied), nesting is capped (a deep list otherwise ends in RecursionError), and every failure
(missing, unreadable, not UTF-8, malformed, too big, too deep, the wrong kind of top-level value) is
one :class:`CnnlabError` that names the file. Leaf module: no torch, no NumPy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.files import tables

MAX_DEPTH = 32  # nesting of mappings/lists; cnnlab writes at most 4 levels
MAX_NODES = 1_000_000  # scalars + containers after YAML alias expansion
MAX_YAML_BYTES = 1 << 20  # configs and search spaces are a few KB
MAX_JSON_BYTES = 64 << 20  # metrics.json of 1,000 classes (confusion matrix) is ~10 MB
MAX_CSV_BYTES = 1 << 30  # split.csv of a very large image folder
MAX_CSV_FIELD = 1 << 16  # one cell: a file path or a number


# ---- YAML -------------------------------------------------------------------------------------------
def load_yaml(text: str, source: str = "YAML text", max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse YAML safely (plain data only), refusing deep nesting and alias expansion past ``max_nodes``.

    ``source`` names the text in errors ("config file x.yaml"). The nesting is measured on the event
    stream (no recursion), the expanded size on the node graph (each alias node counted once per use,
    memoised, recursive aliases refused), before any Python object is built.
    """
    try:
        _check_depth(text, source, max_depth)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node, source, max_nodes)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise CnnlabError(f"{source} is not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise CnnlabError(f"{source} is nested too deeply to read") from None


def read_yaml(path: str | Path, what: str = "", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Read and parse the YAML file ``path`` (see :func:`load_yaml`); ``what`` describes it in errors."""
    path = Path(path)
    source = f"{what} {path}".strip()
    return load_yaml(_read_text(path, source, max_bytes), source)


def _check_depth(text: str, source: str, max_depth: int) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > max_depth:
                raise CnnlabError(f"{source} is nested more than {max_depth} levels deep; cnnlab files are flat")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node, source: str, max_nodes: int) -> None:
    """Count the nodes the document becomes with every alias expanded (iteratively, memoised by id)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        kids = _children(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            if sizes[key] > max_nodes:
                raise CnnlabError(
                    f"{source} expands to more than {max_nodes:,} values (YAML aliases repeating aliases); "
                    "write the values out instead"
                )
            continue
        if key in open_nodes:
            raise CnnlabError(f"{source} holds a recursive YAML alias (a value that contains itself)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
        for k in kids:
            if id(k) in open_nodes and id(k) not in sizes:
                raise CnnlabError(f"{source} holds a recursive YAML alias (a value that contains itself)")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


# ---- JSON -------------------------------------------------------------------------------------------
def load_json(text: str | bytes, source: str = "JSON text", expect: type | None = None, max_depth: int = MAX_DEPTH):
    """Parse JSON, refusing malformed text, nesting past ``max_depth`` and a top level that is not ``expect``."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{source} is not valid JSON ({_one_line(exc)})") from None
    except RecursionError:
        raise CnnlabError(f"{source} is nested too deeply to read") from None
    if _depth(value) > max_depth:
        raise CnnlabError(f"{source} is nested more than {max_depth} levels deep")
    if expect is not None and not isinstance(value, expect):
        kind = {dict: "an object ({...})", list: "a list ([...])"}.get(expect, expect.__name__)
        raise CnnlabError(f"{source} should hold {kind}, not {type(value).__name__}")
    return value


def read_json(path: str | Path, what: str = "", expect: type | None = dict, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a JSON file cnnlab wrote (``model.json``, ``metrics.json``, ...) with the limits of :func:`load_json`."""
    path = Path(path)
    source = f"{what} {path}".strip()
    return load_json(_read_text(path, source, max_bytes), source, expect)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON/YAML (iterative: a deep value must not recurse here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return deepest


# ---- CSV --------------------------------------------------------------------------------------------
def read_csv(path: str | Path, what: str = "", columns: tuple[str, ...] = (), max_bytes: int = MAX_CSV_BYTES):
    """Rows of a CSV file with a header, as dicts; ``columns`` that the header must contain. Cells come back as
    ``cnnlab.files.tables`` wrote them (its spreadsheet-formula escaping undone).

    Refuses a file past ``max_bytes``, a cell past ``MAX_CSV_FIELD``, a missing header or column, a row
    with more cells than the header, and text that is not UTF-8, naming the file (and the line)."""
    path = Path(path)
    source = f"{what} {path}".strip()
    reader = tables.DictReader(io.StringIO(_read_text(path, source, max_bytes), newline=""), strict=True)
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(MAX_CSV_FIELD)
        header = reader.fieldnames
        if not header:
            raise CnnlabError(f"{source} is empty (no header line)")
        missing = [c for c in columns if c not in header]
        if missing:
            raise CnnlabError(f"{source} has no column {', '.join(missing)} (its header: {_clip(','.join(header))})")
        rows = []
        for row in reader:
            if None in row:  # DictReader's bucket for cells beyond the header
                raise CnnlabError(f"{source} line {reader.line_num} has more cells than the header")
            rows.append(row)
        return rows
    except csv.Error as exc:
        raise CnnlabError(f"{source} is not valid CSV (line {reader.line_num}: {exc})") from None
    finally:
        csv.field_size_limit(limit)


def csv_float(value: str | None, source: str) -> float:
    """A CSV cell as a float (empty: NaN), else CnnlabError naming the file."""
    if value in ("", None):
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise CnnlabError(f"{source} holds {_clip(value)!r} where a number belongs") from None


# ---- shared -----------------------------------------------------------------------------------------
def _read_text(path: Path, source: str, max_bytes: int) -> str:
    """The file's text, refusing what is not a regular file (a FIFO would block), too big, or not UTF-8."""
    try:
        if not path.is_file():
            raise CnnlabError(f"{source} does not exist" if not path.exists() else f"{source} is not a regular file")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise CnnlabError(f"{source} cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise CnnlabError(f"{source} is larger than {max_bytes:,} bytes; cnnlab does not read files that big")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CnnlabError(f"{source} is not UTF-8 text") from None


def _one_line(exc: Exception) -> str:
    return _clip(" ".join(str(exc).split()), 300)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
