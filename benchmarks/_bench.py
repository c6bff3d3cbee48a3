"""Helpers of the long benchmarks (bench_mnist.py, bench_startup.py, cifar10_fast.py).

* ``source_env``: the environment for a child process that runs this checkout's ``src/`` (not an
  installed copy), so a benchmark measures the code beside it.
* JSON-lines results: each measurement is appended as one line the moment it is made, so a run that
  is stopped keeps what it measured, and ``--resume`` keeps the lines already there and runs only
  the rest (``add_result_args``, ``open_results``, ``append_row``).

Run the scripts from the repo root (this folder is then on sys.path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def source_env(**extra: str) -> dict:
    """``os.environ`` with ``REPO/src`` first on PYTHONPATH, plus ``extra`` variables."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def add_result_args(ap: argparse.ArgumentParser, default_name: str) -> None:
    """``--out`` (default ``benchmarks/results/<default_name>``) and ``--resume``."""
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / default_name))
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --out; run only the rest")


def open_results(path: str | Path, resume: bool) -> tuple[Path, list[dict]]:
    """The results file (emptied unless ``resume``) and the rows it already holds."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if resume and out.exists():
        return out, [json.loads(ln) for ln in out.read_text().splitlines() if ln.strip()]
    out.write_text("")
    return out, []


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (machines differ from day to day), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def append_row(out: Path, row: dict) -> dict:
    """Append ``row`` with the UTC time and the processor's name to ``out`` and return it."""
    row = {**row, "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpu": cpu_model()}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row
