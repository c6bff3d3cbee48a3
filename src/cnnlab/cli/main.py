"""The ``cnnlab`` command: one subcommand per module in this package.

Each subcommand module defines ``add_parser(subparsers)`` (which registers its arguments and sets
``func``) and a ``run(args) -> int``. This file only wires them together and turns user errors
into one clear line on stderr with a non-zero exit code (no traceback).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import importlib
import os
import re
import sys
import threading
from typing import NoReturn

from cnnlab import __version__
from cnnlab.errors import CnnlabError, did_you_mean

# Subcommand modules under cnnlab.cli, in the order `cnnlab --help` lists them.
COMMANDS = ["train", "evaluate", "summary", "calc", "teach", "data", "datasets", "models", "scratch", "tune", "runs"]
COMMANDS += ["predict", "export", "serve", "compress"]  # deployment (issue 8)
COMMANDS += ["interpret", "visualize", "report"]  # evaluation, pictures, HTML report (issue 5)
COMMANDS += ["explain"]  # the interactive explainer (issue 16)
COMMANDS += ["lr-find", "augment-preview"]  # training tools (issue 3)
COMMANDS += ["cv"]  # cross-validation (issue 14)


class _Parser(argparse.ArgumentParser):
    """argparse exits with code 2 on a bad flag; keep that, but print a short hint too. Flags must be
    spelled out (no abbreviations: ``--out`` must never quietly mean ``--output``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        usage = self.format_usage()
        if usage.count("\n") <= 6:  # a long one (train's every config key) would bury the message
            sys.stderr.write(usage)
        self.exit(2, f"cnnlab: error: {message}{self._hint(message)}\nRun '{self.prog} --help' to see the options.\n")

    def _hint(self, message: str) -> str:
        """' Did you mean ...?' for a mistyped subcommand, choice or flag."""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            return did_you_mean(choice.group(1), re.findall(r"'?([\w.:*-]+)'?", choice.group(2)))
        flags = re.search(r"unrecognized arguments: (.*)", message)
        if flags:
            known = list(dict.fromkeys(_all_options(self)))
            return "".join(did_you_mean(f.split("=")[0], known) for f in flags.group(1).split() if f.startswith("-"))
        return ""


def _subcommand_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return parser


def _all_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag of ``parser`` and of its subcommands (``runs compare``, ``data check``, ...)."""
    out = []
    for action in parser._actions:
        out += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _all_options(sub)
    return out


def os_error_message(exc: OSError) -> str:
    """An operating-system error as one line that names the file and the fix."""
    where = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device while writing {where}; free some space or choose another --out folder"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot access {where}: {exc.strerror}; choose a writable --out folder or fix its permissions"
    return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description="Convolutional neural networks on images: learn, train, evaluate.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"cnnlab.cli.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand's parser, so the hint comes from its own flags
        sub = _subcommand_parser(parser, getattr(args, "command", None))
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except CnnlabError as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `cnnlab teach conv | head`: the reader left; stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)  # (before OSError, of which it is a kind)
        os.dup2(devnull, sys.stdout.fileno())  # Python would fail again flushing stdout at exit
        return 141
    except OSError as exc:  # a read-only --out, a full disk, a missing permission: one line, no traceback
        print(f"cnnlab: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The ``cnnlab`` command and ``python -m cnnlab``: :func:`main`, then :func:`exit_now`. ``main``
    itself returns its status, for callers inside a Python process (tests, notebooks)."""
    exit_now(main())


def exit_now(status: int) -> NoReturn:
    """End the process as a normal exit would, without the interpreter's teardown.

    Threads that are not daemons are joined and the ``atexit`` handlers run (torch's, logging's,
    multiprocessing's, ``gc.freeze``), then the output is flushed and the process ends. What is skipped
    is freeing every object still alive one by one and unloading every module: a process that trained a
    few steps exited in 0.32 s with its objects frozen and in 0.09 s this way on the 2-core Xeon
    (``benchmarks/exit_cost.py``, medians of 5). Every file cnnlab writes is closed (and renamed into
    place) before this point."""
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls first at exit
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that left, a stream already closed
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
