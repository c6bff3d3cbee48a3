"""Every full command quoted in docs/*.md parses: cnnlab's own parser for ``cnnlab ...``, and for
``python benchmarks/X.py ...`` the script exists and defines each flag, itself or in a
``benchmarks/_*.py`` helper it imports (after a bare ``--`` the flags are the cnnlab command's).
Configs they name exist. Templates (``...``, ``a|b``) are skipped; capitalised placeholders (RUN,
MODEL, S) stand for a value."""

import contextlib
import io
import re
import shlex
from pathlib import Path

from cnnlab.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in sorted((REPO / "docs").glob("*.md")):
        text = page.read_text().replace("\n", " ")
        for cmd in re.findall(r"`(cnnlab [^`]*|python benchmarks/[^`]*)`", text):
            if (" --" in cmd or cmd.endswith(".py")) and "..." not in cmd and "|" not in cmd and ".key" not in cmd:
                found.append((page.name, cmd))
    return found


def _parses(parser, argv: list[str]) -> bool:
    argv = ["0" if PLACEHOLDER.match(a) else a for a in argv]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return callable(parser.parse_args(argv).func)
    except SystemExit:
        return False


def test_docs_quote_real_commands():
    commands = _commands()
    assert len(commands) >= 60 and {"training.md", "benchmarks.md", "own-images.md"} <= {p for p, _ in commands}
    parser, wrong = build_parser(), []
    for page, cmd in commands:
        words = shlex.split(cmd)
        configs = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--config"]
        wrong += [f"{page}: {cmd} (no {c})" for c in configs if not (REPO / c).is_file()]
        if words[0] == "cnnlab":
            if not _parses(parser, words[1:]):
                wrong.append(f"{page}: {cmd}")
            continue
        script = REPO / words[1]
        own, passed = words[2:], None
        if "--" in own:
            own, passed = own[: own.index("--")], own[own.index("--") + 1 :]
        if not script.is_file():
            wrong.append(f"{page}: {cmd} (no {words[1]})")
            continue
        src = script.read_text()
        helpers = re.findall(r"^from (_[a-z]\w*) import", src, re.M)  # benchmarks/_bench.py and the like
        src += "".join((script.parent / f"{m}.py").read_text() for m in helpers)
        wrong += [f"{page}: {cmd} ({f})" for f in own if f.startswith("--") and f'"{f.split("=")[0]}"' not in src]
        if passed is not None and not _parses(parser, ["train", *passed]):
            wrong.append(f"{page}: {cmd} (cnnlab train {' '.join(passed)})")
    assert not wrong, "\n".join(wrong)
