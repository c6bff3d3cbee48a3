"""The options every command spells the same way (checked over every subcommand by tests/cli).

- ``--out DIR`` is always a folder; a single output file is ``--output FILE``.
- ``--device`` defaults to ``auto`` (the GPU when there is one, else the CPU).
- Every RUN / MODEL argument takes a built-in run's name too (``demo:mnist``): ``type=run_path``.
- ``--top-k K`` for how many classes to list; ``--json [FILE]`` wherever JSON is offered (no FILE
  or ``-``: print it); ``--set KEY=VALUE`` wherever config keys are taken.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic


def add_device(p, what: str = "") -> None:
    p.add_argument(
        "--device", default="auto", help=f"auto (default: the GPU if there is one), cpu, cuda or cuda:N{what}"
    )


def add_output(p, what: str, default: str) -> None:
    p.add_argument("--output", metavar="FILE", help=f"{what} to write (default {default})")


def add_json(p, what: str = "the result") -> None:
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help=f"{what} as JSON: printed, or written to FILE")


def add_set(p) -> None:
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. --set optim.lr=0.01"
    )


def parse_sets(items: list[str]) -> dict[str, str]:
    """``["optim.lr=0.01", ...]`` -> ``{"optim.lr": "0.01"}``; a malformed item is a clear error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CnnlabError(f"--set takes KEY=VALUE (e.g. --set optim.lr=0.01), got {item!r}")
        out[key.strip()] = value
    return out


def emit_json(target: str, data: Any) -> None:
    """Print ``data`` as JSON (target ``-``) or write it to the file ``target``."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    if target == "-":
        sys.stdout.write(text)
        return
    try:
        atomic.write_text(target, text)
    except OSError as exc:
        raise CnnlabError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"wrote {target}")


def run_path(value: str) -> str:
    """argparse ``type`` of every RUN / MODEL argument: a built-in name (``demo:mnist``) becomes the run
    folder shipped in the package (:func:`cnnlab.runs.builtin.resolve_run_path`); other values pass unchanged."""
    from cnnlab.runs.builtin import resolve_run_path

    try:
        return str(resolve_run_path(value))
    except CnnlabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
