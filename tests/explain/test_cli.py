"""``cnnlab explain``: listed, and a wrong path or model fails with one line before any server starts."""

from __future__ import annotations

from cnnlab.cli.main import main


def test_explain_is_a_command_and_refuses_a_missing_run(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and "nope" in err and "Traceback" not in err
    assert main(["explain", str(tmp_path), "--max-pixels", "0"]) == 1
    assert "--max-pixels" in capsys.readouterr().err
