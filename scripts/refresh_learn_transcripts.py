"""Rewrite the output under every ``$ cnnlab calc ...`` / ``$ cnnlab teach ...`` line of docs/learn with
what the command prints now (tests/teach/test_conv_and_numbers.py checks that they agree).

Run it after changing a teach/calc command's output, then read the diff: a changed number in a
page is a change a student will see. Figures are not touched (``teach ... --out docs/learn/img``).

Usage (from the repository root): ``python scripts/refresh_learn_transcripts.py``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def refresh(page: Path, parser: argparse.ArgumentParser) -> bool:
    """Rewrite one page's transcripts; True when something changed."""
    text = page.read_text()
    parts = text.split("```console\n")
    out = [parts[0]]
    for block in parts[1:]:
        body, sep, rest = block.partition("```")
        chunks = body.split("$ cnnlab ")
        new = chunks[0]
        for chunk in chunks[1:]:
            command, _, output = chunk.partition("\n")
            if command.split()[0] in ("calc", "teach") and output.strip():
                args = parser.parse_args(command.split())
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    args.func(args)
                output = buf.getvalue().strip() + "\n"
            new += "$ cnnlab " + command + "\n" + output
        out.append(new + sep + rest)
    new_text = "```console\n".join(out)
    if new_text != text:
        page.write_text(new_text)
    return new_text != text


def main() -> int:
    sys.path.insert(0, str(REPO / "src"))
    from cnnlab.cli import calc, teach

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    calc.add_parser(sub)
    teach.add_parser(sub)
    pages = sorted((REPO / "docs" / "learn").glob("*.md"))
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # teach writes ./teach/*.png, as the pages say; keep that out of the repository
        try:
            changed = [p.name for p in pages if refresh(p, parser)]
        finally:
            os.chdir(cwd)
    print("updated: " + (", ".join(changed) if changed else "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
