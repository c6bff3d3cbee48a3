"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cnnlab(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def test_train_then_evaluate(tmp_path):
    r = cnnlab(
        "train", "--data", "digits", "--epochs", "1", "--out", tmp_path, "--optim.lr", "0.003", "--train.threads", "1"
    )
    assert r.returncode == 0, r.stderr
    assert "epoch   1/1" in r.stdout and "test accuracy" in r.stdout and "macro avg" in r.stdout
    run_dir = Path(r.stdout.strip().splitlines()[-1].split("run folder: ")[1])
    assert (run_dir / "metrics.json").is_file()
    cfg = (run_dir / "config.yaml").read_text()
    assert "lr: 0.003" in cfg and "name: digits" in cfg
    e = cnnlab("evaluate", run_dir, "--json")
    assert e.returncode == 0, e.stderr
    m = json.loads(e.stdout)
    assert m["accuracy"] == json.loads((run_dir / "metrics.json").read_text())["accuracy"]
    e = cnnlab("evaluate", run_dir, "--split", "val", "--tta", "flip")
    assert e.returncode == 0, e.stderr
    assert e.stdout.startswith("the val split of digits, test-time augmentation: flip\n") and "macro avg" in e.stdout
    assert json.loads((run_dir / "eval-digits-val-tta-flip.json").read_text())["tta"] == "flip"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "seed_cn"], "unknown model 'seed_cn'. Did you mean 'seed_cnn'"),
        (["train", "--data", "mnits"], "unknown dataset 'mnits'. Did you mean 'mnist'"),
        (["train", "--epochs", "three"], "'train.epochs' expects int"),
        (["train", "--optim.lrr", "1"], "unrecognized arguments: --optim.lrr"),
        (["train", "--data", "folder:/definitely/not/here"], "/definitely/not/here"),
        (["train", "--config", "missing.yaml"], "config file missing.yaml does not exist"),
        (["evaluate", "no-such-run"], "no-such-run is not a cnnlab model"),
        (["evaluate", "demo:mnist", "--tta", "flop"], "unknown test-time augmentation 'flop'. Did you mean 'flip'"),
        (["train", "--resume", "no-such-run"], "is not a run folder"),
    ],
)
def test_user_errors_are_one_clear_line(tmp_path, args, message):
    r = cnnlab(*args, "--out", tmp_path) if args[0] == "train" and "--resume" not in args else cnnlab(*args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_data_offline_says_which_files_to_place_where(tmp_path):
    r = cnnlab("train", "--data", "fashion-mnist", "--data-root", tmp_path / "empty", "--out", tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "train-images-idx3-ubyte.gz" in r.stderr and "FashionMNIST" in r.stderr


def test_empty_class_folder_is_named(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "imgs" / "cat" / f"{i}.png")
    r = cnnlab("train", "--data", f"folder:{tmp_path / 'imgs'}", "--out", tmp_path)
    assert r.returncode == 1 and "dog" in r.stderr and "Traceback" not in r.stderr


def test_help_lists_config_keys():
    r = cnnlab("train", "--help")
    assert r.returncode == 0 and "--optim.lr" in r.stdout and "--data" in r.stdout


def test_the_command_ends_as_a_normal_exit_would_without_the_teardown(tmp_path):
    """exit_now: non-daemon threads joined, atexit handlers run, output flushed (to a file and to a pipe),
    the status kept; the cnnlab command and ``python -m cnnlab`` end through it."""
    marker, out = tmp_path / "atexit.txt", tmp_path / "out.txt"
    code = (
        "import atexit, threading, time, sys\n"
        "from cnnlab.cli.main import exit_now\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        f"threading.Thread(target=lambda: (time.sleep(0.3), open({str(marker)!r} + '.t', 'w').write('t'))).start()\n"
        "print('unflushed', end='')\n"
        "exit_now(3)\n"
    )
    with out.open("w") as f:
        done = subprocess.run([sys.executable, "-c", code], stdout=f, timeout=60)
    assert done.returncode == 3 and out.read_text() == "unflushed"
    assert marker.read_text() == "ran" and Path(f"{marker}.t").read_text() == "t"
    cnnlab = [sys.executable, "-m", "cnnlab", "calc", "conv"]
    piped = subprocess.run([*cnnlab, "--in", "32", "--k", "3"], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "30" in piped.stdout
    bad = subprocess.run([sys.executable, "-m", "cnnlab", "evaluate", str(tmp_path / "nothing")], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("cnnlab: error:") and bad.stderr.count("\n") == 1
