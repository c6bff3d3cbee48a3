"""JSON-lines result files of the long benchmarks (bench_mnist.py, cifar10_fast.py).

Each measurement is appended as one line the moment it is made, so a run that is stopped keeps what
it measured, and ``--resume`` keeps the lines already there and runs only the rest. Run the scripts
from the repo root (this folder is then on sys.path).
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def open_results(path: str | Path, resume: bool) -> tuple[Path, list[dict]]:
    """The results file (emptied unless ``resume``) and the rows it already holds."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if resume and out.exists():
        return out, [json.loads(ln) for ln in out.read_text().splitlines() if ln.strip()]
    out.write_text("")
    return out, []


def append_row(out: Path, row: dict) -> dict:
    """Append ``row`` with the UTC time to ``out`` and return it."""
    row = {**row, "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row
