"""The ``cnnlab`` command: one subcommand per module in this package.

Each subcommand module defines ``add_parser(subparsers)`` (which registers its arguments and sets
``func``) and a ``run(args) -> int``. This file only wires them together and turns user errors
into one clear line on stderr with a non-zero exit code (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnlab import __version__
from cnnlab.errors import CnnlabError

# Subcommand modules under cnnlab.cli, in the order `cnnlab --help` lists them.
COMMANDS = ["train", "evaluate", "summary", "calc", "teach", "data", "models", "scratch", "tune", "runs"]
COMMANDS += ["predict", "export", "serve", "compress"]  # deployment (issue 8)
COMMANDS += ["interpret", "visualize", "report"]  # evaluation, pictures, HTML report (issue 5)
COMMANDS += ["explain"]  # the interactive explainer (issue 16)
COMMANDS += ["lr-find", "augment-preview"]  # training tools (issue 3)


class _Parser(argparse.ArgumentParser):
    """argparse exits with code 2 on a bad flag; keep that, but print a short hint too."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"cnnlab: error: {message}\nRun '{self.prog} --help' to see the options.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description="Convolutional neural networks on images: learn, train, evaluate.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"cnnlab.cli.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except CnnlabError as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
