"""Start a cnnlab server process (serve or explain) on 127.0.0.1 for a benchmark, and wait until it answers.

Shared by bench_serve.py, bench_serve_abuse.py and bench_explain.py (run them from the repo root,
so this folder is on sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_cnnlab(args: list[str], ready_path: str, threads: int = 1, timeout_s: float = 120) -> subprocess.Popen:
    """``python -m cnnlab.cli.main ARGS`` with ``threads`` OMP threads; returns once
    ``http://127.0.0.1:<port><ready_path>`` answers 200 (the port is the value after ``--port``)."""
    port = args[args.index("--port") + 1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab.cli.main", *args], stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"cnnlab {args[0]} did not become ready within {timeout_s:.0f} s")
