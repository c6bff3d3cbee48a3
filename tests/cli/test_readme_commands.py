"""README.md's command list: every line is a real command with real flags (parsed by cnnlab's own parser)."""

import shlex
from pathlib import Path

from cnnlab.cli.main import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands() -> list[str]:
    block = README.read_text().split("## What a run looks like")[1].split("```bash\n")[1].split("```")[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("cnnlab ")]


def test_every_readme_command_parses():
    commands = _commands()
    assert len(commands) >= 30
    parser = build_parser()
    for command in commands:
        try:
            args = parser.parse_args(shlex.split(command)[1:])
        except SystemExit as exc:  # argparse's way of refusing a flag or value
            raise AssertionError(f"README command does not parse: {command}") from exc
        assert callable(args.func), command


def test_readme_leads_own_photos_with_fine_tuning():
    photos = [c for c in _commands() if "folder:~/photos" in c and c.startswith("cnnlab train")]
    assert "--pretrained imagenet" in photos[0]


def test_readme_states_what_evaluate_demo_prints(tmp_path, monkeypatch, capsys):
    """The figure beside `cnnlab evaluate demo:mnist` is the accuracy that command prints (its own test split)."""
    import json

    from cnnlab.cli.main import main

    monkeypatch.chdir(tmp_path)  # evaluate writes runs/demo-mnist/ here
    assert main(["evaluate", "demo:mnist", "--json"]) == 0
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    block = README.read_text().split("## What a run looks like")[1]
    line = next(ln for ln in block.splitlines() if ln.startswith("cnnlab evaluate demo:mnist "))
    assert f"{accuracy * 100:.1f} %" in line.split("#", 1)[1], line
