"""List and compare run folders: the table behind ``cnnlab runs`` and ``cnnlab runs compare``.

Everything is read from the files a run leaves behind (config.yaml, history.csv, metrics.json,
env.json; see ``cnnlab.runs``), so this works for runs made on other machines and needs no
tracking server. A folder with a config but no history or metrics is an unfinished (or
interrupted) run: it is skipped with a note instead of being shown with made-up numbers.
Comparing runs overlays their validation accuracy, validation loss and learning-rate curves in one
PNG and lists the config keys whose values differ, the question one asks first ("what changed?").
Torch-free and plot-free: YAML, CSV and JSON (the figure is drawn by viz.training_plots).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.runs.folder import read_history_csv, refuse_cv_parent
from cnnlab.runs.run import config_section, read_json, read_run_config


@dataclass
class RunInfo:
    path: Path
    config: dict[str, Any]
    history: list[dict[str, float]]
    metrics: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def numpy(self) -> bool:
        return self.config.get("engine") == "numpy"

    @property
    def best_val_acc(self) -> float:
        vals = [r["val_acc"] for r in self.history if not math.isnan(r.get("val_acc", math.nan))]
        return max(vals) if vals else math.nan

    @property
    def seconds(self) -> float:
        if "train_seconds" in self.metrics:
            return _number(self.metrics["train_seconds"])
        return sum(r.get("seconds", 0.0) for r in self.history)

    @property
    def date(self) -> str:
        stamp = (self.path / "config.yaml").stat().st_mtime  # written when the run started
        return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": _text(config_section(self.config, "model").get("name", "?")) + (" (numpy)" if self.numpy else ""),
            "data": _text(config_section(self.config, "data").get("name", "?")),
            "epochs": len(self.history),
            "best_val_acc": self.best_val_acc,
            "test_acc": _number(self.metrics.get("accuracy")),
            "seconds": self.seconds,
            "date": self.date,
        }


def read_run(path: str | Path) -> RunInfo:
    """Read one finished run folder; CnnlabError says what is missing or which file is malformed."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        refuse_cv_parent(path)
        raise CnnlabError(f"{path} is not a run folder (no config.yaml); 'cnnlab runs' lists the run folders")
    missing = [n for n in ("history.csv", "metrics.json") if not (path / n).is_file()]
    if missing:
        raise CnnlabError(f"{path} is unfinished (no {' or '.join(missing)}): interrupted, pruned or still training")
    config = read_run_config(path)
    metrics = read_json(path / "metrics.json")
    history = read_history_csv(path / "history.csv")
    return RunInfo(path, config, history, metrics)


def scan_runs(root: str | Path = "runs") -> tuple[list[RunInfo], list[str]]:
    """Finished runs directly under ``root`` (oldest first) and notes about the folders skipped."""
    root = Path(root)
    if not root.is_dir():
        raise CnnlabError(f"run root {root} does not exist; train something first or pass --runs-root")
    runs, notes = [], []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (path / "config.yaml").is_file():
            if (path / "study.db").is_file() or (path / "trials").is_dir():
                notes.append(f"{path.name}: a tuning study (its trials: cnnlab runs --runs-root {path / 'trials'})")
            elif (path / "cv-config.yaml").is_file():
                notes.append(f"{path.name}: a cross-validation (its folds: cnnlab runs --runs-root {path})")
            continue
        try:
            info = read_run(path)
            info.row()  # every cell of the table, so that a bad value shows here and not in the listing
        except CnnlabError as exc:
            notes.append("skipped " + str(exc).replace(str(path), path.name, 1))
            continue
        except OSError as exc:  # removed or made unreadable while listing
            notes.append(f"skipped {path.name}: unreadable ({exc.strerror or exc})")
            continue
        runs.append(info)
    runs.sort(key=lambda r: (r.path / "config.yaml").stat().st_mtime)
    return runs, notes


def format_table(runs: list[RunInfo]) -> str:
    """Fixed-width text table, one line per run."""
    head = ["name", "model", "data", "epochs", "best val acc", "test acc", "time", "date (UTC)"]
    lines = [head]
    for r in runs:
        d = r.row()
        lines.append(
            [
                d["name"],
                d["model"],
                d["data"],
                str(d["epochs"]),
                _num(d["best_val_acc"]),
                _num(d["test_acc"]),
                _duration(d["seconds"]),
                d["date"],
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)


def _number(value: Any) -> float:
    """A number from a run file, NaN when it is missing or not a number (shown as '-')."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return math.nan
    try:
        return float(value)
    except (ValueError, OverflowError):
        return math.nan


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "?"


def _num(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.4f}"


def _duration(s: float) -> str:
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f}min"


# ---- comparison --------------------------------------------------------------------------------
def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> dotted keys (``model.kwargs.dropout`` too)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + str(k)] = v
    return out


def config_diff(runs: list[RunInfo]) -> dict[str, list[Any]]:
    """Dotted keys whose values are not all equal, with each run's value (None where a key is absent)."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    return {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1}


# summary metrics in the comparison: label -> function of a run
METRICS = {
    "best val acc": lambda r: r.best_val_acc,
    "final val loss": lambda r: r.history[-1].get("val_loss", math.nan) if r.history else math.nan,
    "test accuracy": lambda r: _number(r.metrics.get("accuracy")),
    "test macro-F1": lambda r: _number(
        r.metrics["macro"].get("f1") if isinstance(r.metrics.get("macro"), dict) else None
    ),
    "test loss": lambda r: _number(r.metrics.get("loss")),
    "epochs": lambda r: float(len(r.history)),
    "seconds": lambda r: r.seconds,
}


def metric_diff(runs: list[RunInfo]) -> dict[str, list[float]]:
    return {label: [float(fn(r)) for r in runs] for label, fn in METRICS.items()}


def compare_runs(paths: list[str | Path]) -> tuple[list[RunInfo], str]:
    """Read the runs to compare; returns them and the printable report (``viz.training_plots.plot_compare``
    draws their curves)."""
    if len(paths) < 2:
        raise CnnlabError("give at least two run folders to compare")
    runs = [read_run(p) for p in paths]
    return runs, format_comparison(runs)


def format_comparison(runs: list[RunInfo]) -> str:
    names = [r.name for r in runs]
    diff = config_diff(runs)
    lines = ["config keys that differ:" if diff else "configs are identical"]
    rows = [["key", *names]] + [[k, *(_short(v) for v in vals)] for k, vals in diff.items()]
    lines += _columns(rows) if diff else []
    lines.append(f"\nmetrics (delta against {names[0]}):")
    rows = [["metric", *names]]
    for label, vals in metric_diff(runs).items():
        cells = [_metric_cell(label, vals[0])] + [_metric_cell(label, v, vals[0]) for v in vals[1:]]
        rows.append([label, *cells])
    return "\n".join(lines + _columns(rows))


def _metric_cell(label: str, v: float, ref: float | None = None) -> str:
    """A metric and its delta against ``ref``: counts as whole numbers, seconds to 0.1, the rest to 4 places."""
    if math.isnan(v):
        return "-"
    fmt = "d" if label == "epochs" else ".1f" if label == "seconds" else ".4f"
    cast = int if fmt == "d" else float
    cell = f"{cast(v):{fmt}}"
    if ref is not None and not math.isnan(ref):
        cell += f" ({cast(v - ref):+{fmt}})"
    return cell


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
