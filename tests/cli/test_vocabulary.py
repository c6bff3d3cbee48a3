"""One CLI vocabulary, checked over every subcommand (see cnnlab/cli/_options.py)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from cnnlab.cli.main import COMMANDS, build_parser, main


def _parsers(parser=None, path=()):
    """(command path, parser) for every (sub)command."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _options():
    for path, parser in _parsers():
        for action in parser._actions:
            for flag in action.option_strings:
                yield " ".join(path), flag, action


def test_out_is_always_a_folder():
    outs = [(cmd, a) for cmd, flag, a in _options() if flag == "--out"]
    assert len(outs) >= 6
    for cmd, action in outs:
        assert "folder" in (action.help or ""), f"cnnlab {cmd} --out must be a folder: {action.help!r}"
        assert action.metavar != "FILE"


def test_single_files_are_output():
    for cmd, flag, action in _options():
        if flag == "--output":
            assert action.metavar == "FILE", cmd


def test_device_defaults_to_auto_everywhere():
    devices = [(cmd, a) for cmd, flag, a in _options() if flag == "--device"]
    assert len(devices) >= 6
    for cmd, action in devices:
        # train/lr-find take it as a config key whose default (train.device) is "auto"
        assert action.default in ("auto", argparse.SUPPRESS), f"cnnlab {cmd} --device defaults to {action.default}"
    from cnnlab.config import Config

    assert Config().train.device == "auto"


def test_one_spelling_for_top_k_and_json():
    for cmd, flag, action in _options():
        assert flag not in ("--top_k", "--topK"), cmd
        if flag == "--topk":
            assert "--top-k" in action.option_strings and action.option_strings[0] == "--top-k", cmd
        if flag == "--json":
            assert action.nargs == "?" and action.const == "-", f"cnnlab {cmd} --json must take an optional FILE"


def test_set_key_value_wherever_config_keys_are():
    takes_config = {cmd for cmd, flag, _ in _options() if flag == "--config"}
    assert {"train", "lr-find", "tune"} <= takes_config
    for cmd in takes_config:
        sets = [a for c, flag, a in _options() if c == cmd and flag == "--set"]
        assert sets and sets[0].metavar == "KEY=VALUE", cmd


def test_runs_root_or_out_not_both():
    for path, parser in _parsers():
        flags = {f for a in parser._actions for f in a.option_strings}
        assert not {"--out", "--runs-root"} <= flags, " ".join(path)


def test_set_means_the_same_as_the_dotted_flag(tmp_path):
    from cnnlab.cli.train import overrides_from_args

    parser = build_parser()
    a = parser.parse_args(["train", "--set", "optim.lr=0.01", "--train.epochs", "2"])
    assert overrides_from_args(a) == {"optim.lr": "0.01", "train.epochs": "2"}
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--set"])


def test_unknown_commands_and_flags_get_did_you_mean(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evalute", "x"])
    assert e.value.code == 2 and "Did you mean 'evaluate'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--epoch", "1"])  # no abbreviations: a typo is not silently another flag
    assert "Did you mean '--epochs'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "RUN", "--out-file", "x.onnx"])
    assert "--output" in capsys.readouterr().err


def test_help_names_only_commands_that_exist():
    for path, parser in _parsers():
        text = parser.format_help()
        for word in re.findall(r"\bcnnlab ([a-z][a-z-]+)", text):
            assert word in COMMANDS, f"'cnnlab {' '.join(path)} --help' names a missing command: cnnlab {word}"


def test_datasets_command_lists_the_registry(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "fashion-mnist", "cifar10", "cifar100", "digits", "mnist-sample", "folder:PATH"):
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name


def test_broken_pipe_ends_quietly(tmp_path):
    """`cnnlab teach conv | head -1`: the reader leaves early; no traceback."""
    cmd = f"{sys.executable} -m cnnlab teach conv --out teach-out | head -n 1"
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.stdout.strip() and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_a_reader_gone_before_the_first_line_ends_quietly_with_141(tmp_path):
    """Unbuffered, the first print meets the closed pipe inside the command: exit 141, nothing on stderr
    (BrokenPipeError is a kind of OSError, which would otherwise be reported as an error)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "cnnlab", "teach", "conv", "--out", "teach-out"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
