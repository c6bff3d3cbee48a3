"""Where a ``cnnlab train`` command's wall time goes: each phase of ``cnnlab.api.train``, timed in the process.

Runs the command given after ``--`` exactly as ``cnnlab`` would (same parser, same code), with a wall-clock
timer around the import of torch, cnnlab's own imports, the parser, and the phases the API calls: the
session, the data, the model and optimiser (with the LR finder inside when a fine-tune asks for one), the run
folder, each epoch, each checkpoint, the test predictions, the plots and the HTML report. Prints one line per
phase as it ends (seconds since start, seconds in the phase), then the command's own output continues.
Compare it with a plain script's total from the same quiet minutes, not across machines.

Run:  python benchmarks/train_phases.py -- --config configs/mnist_fast.yaml --data-root ../shared/data --no-progress
"""

from __future__ import annotations

import functools
import sys
import time

START = time.perf_counter()


def _mark(what: str, seconds: float | None = None) -> None:
    took = f" {seconds:.2f} s" if seconds is not None else ""
    print(f"[{time.perf_counter() - START:7.2f} s] {what}{took}", file=sys.stderr, flush=True)


def _timed(owner, name: str) -> None:
    """Replace ``owner.name`` with the same function, timed."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _mark(name, time.perf_counter() - start)

    setattr(owner, name, timed)


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    import torch  # noqa: F401 - timed on its own: every PyTorch script pays it

    _mark("import torch")
    import cnnlab.api as api
    import cnnlab.cli.main as cli
    import cnnlab.engine.trainer as trainer
    import cnnlab.workflow as workflow

    _mark("import cnnlab")
    for name in ("start_session", "load_data", "build_parts", "new_run_folder", "finish"):
        _timed(api, name)  # the names cnnlab.api.train calls
    for name in ("recipe_lr", "_test_metrics", "_write_plots"):
        _timed(workflow, name)
    for name in ("train_one_epoch",):
        _timed(trainer, name)
    _timed(trainer.Trainer, "_save")
    import cnnlab.viz.report as report

    _mark("import cnnlab.viz.report (imported by the report at the end otherwise)")
    _timed(report, "write_report_safely")
    _timed(cli, "build_parser")
    rc = cli.main(["train", *argv])
    _mark("command returned")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
