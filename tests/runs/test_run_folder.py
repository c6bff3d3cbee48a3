"""Run folders: ``--name`` names one folder inside ``--out`` and nothing else (issue 26)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.runs.folder import check_folder_name, create_run_dir, default_run_name

BAD = ["../../x", "..", ".", "a/b", "/tmp/abs", "a\\b", "", "  ", "x" * 201, "nul\0byte"]


@pytest.mark.parametrize("name", BAD)
def test_a_name_that_is_not_one_folder_is_refused(tmp_path, name):
    with pytest.raises(CnnlabError, match=r"must be one folder name"):
        create_run_dir(tmp_path / "runs", name)
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["train"], ["cv", "--folds", "2"], ["scratch", "train", "--model", "allconv"]])
def test_every_command_refuses_a_name_outside_out_with_one_line(tmp_path, capsys, command):
    out = tmp_path / "a" / "b" / "runs"
    argv = [*command, "--data", "digits", "--epochs", "1", "--name", "../../escaped", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: error: ") and "one folder name" in err[0], err
    assert not (tmp_path / "a" / "escaped").exists() and not out.exists()


def test_plain_names_and_default_names_are_one_folder(tmp_path):
    assert check_folder_name("my-run.v2") == "my-run.v2"
    cfg = SimpleNamespace(data=SimpleNamespace(name="digits"), model=SimpleNamespace(name="timm:hf-hub:org/model"))
    name = default_run_name(cfg)
    assert name == "digits-timm-hf-hub-org-model" and create_run_dir(tmp_path, name) == tmp_path / name
