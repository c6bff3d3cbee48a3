"""Every row of the errata table: its commands print "the source prints X; the correct value is Y", the
page lists it, and ``teach errata`` prints them all."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cnnlab.cli import main as cli
from cnnlab.teach.errata import ERRATA, corrections_for, errata_markdown

REPO = Path(__file__).resolve().parents[2]
COMMANDS = sorted({c for e in ERRATA for c in e.commands})


def _run(command: str, tmp_path, capsys) -> str:
    argv = shlex.split(command) + (["--out", str(tmp_path)] if command.startswith("teach") else [])
    assert cli.main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_prints_the_corrections_of_its_rows(command, tmp_path, capsys):
    out = _run(command, tmp_path, capsys)
    missing = [e.key for e in ERRATA if command in e.commands and e.key not in out]
    assert not missing, f"`cnnlab {command}` does not print: {missing}"
    for e in ERRATA:  # and prints each correction once, even where the command computes it itself
        assert out.count(e.key) <= 1, e.key


def test_a_command_without_rows_prints_no_correction(tmp_path, capsys):
    assert "the source prints" not in _run("calc conv --in 32 --k 3 --s 1 --p 1", tmp_path, capsys)
    assert corrections_for("teach conv binary") == []


def test_the_table_has_the_slips_a_second_read_found():
    seeds = [e.seed for e in ERRATA]
    assert len(ERRATA) >= 39 and all(s in " ".join(seeds) for s in ("000", "001", "002", "003", "004"))
    keys = " ".join(e.printed + e.correct for e in ERRATA)
    for needle in ("0.6439", "1.6%", "RMSProp keeps a moving average", "false positive rate", "invariance"):
        assert needle in keys, needle


def test_the_errata_page_is_the_table():
    page = (REPO / "docs" / "seed-errata.md").read_text()
    block = page.split("<!-- errata:start -->\n", 1)[1].split("\n<!-- errata:end -->", 1)[0]
    assert block == errata_markdown(), "run write_markdown() (docs/seed-errata.md says how)"
