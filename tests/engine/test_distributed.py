"""Data-parallel training: 2 CPU processes (gloo) average gradients like one process on the combined
batch, and ``torchrun ... cnnlab train`` writes one complete run folder from rank 0."""

import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cnnlab.data.loaders import TensorLoader
from cnnlab.engine.distributed import DistInfo, launch, mean_over_ranks
from cnnlab.engine.loop import EpochParts, train_one_epoch


def _setup():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 6, 6), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    return images, labels, model


def _loader(images, labels, batch):
    return TensorLoader(images, labels, batch, [0.5], [0.25], shuffle=True, generator=torch.Generator().manual_seed(1))


def _rank_main(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    images, labels, model = _setup()
    loader = _loader(images, labels, 8)
    loader.shard(rank, world)
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    row = train_one_epoch(model, loader, opt, nn.CrossEntropyLoss(), parts=EpochParts(forward=ddp))
    row = mean_over_ranks(row, ("train_loss",), DistInfo(rank, world, rank))
    if rank == 0:
        torch.save({"state": model.state_dict(), "loss": row["train_loss"], "steps": len(loader)}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_one_process_on_the_combined_batch(tmp_path):
    out = tmp_path / "rank0.pt"
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.start_processes(_rank_main, args=(2, init_file, str(out)), nprocs=2, start_method="spawn")
    ddp = torch.load(out, weights_only=True)
    images, labels, model = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    row = train_one_epoch(model, _loader(images, labels, 16), opt, nn.CrossEntropyLoss())
    assert ddp["steps"] == 4  # 64 images, 2 ranks, 8 per rank per step
    for k, v in model.state_dict().items():
        assert torch.allclose(ddp["state"][k], v, atol=1e-6), k
    assert abs(ddp["loss"] - row["train_loss"]) < 1e-5


@pytest.mark.slow
def test_torchrun_training_writes_one_complete_run_folder(tmp_path, monkeypatch):
    env_root = tmp_path / "runs"
    argv = ["train", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--out", str(env_root)]
    argv += ["--train.threads", "1", "--output.plots", "false", "--no-progress", "--train.checkpoint_every", "5"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert launch(2, argv) == 0
    (run,) = list(env_root.iterdir())  # one folder, written by rank 0 only
    for f in ["config.yaml", "history.csv", "metrics.json", "steps.csv", "checkpoints/last.pt", "model/model.json"]:
        assert (run / f).is_file(), f
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs, no duplicate rows from rank 1
    steps = (run / "steps.csv").read_text().splitlines()[1:]
    assert len(steps) == len({line.split(",")[0] for line in steps})  # every step logged once
    assert Path(run / "checkpoints" / "best.pt").is_file()
    # the DDP run is a run like any other for every later command (tests/runs/test_run_matrix.py)
    from cnnlab.cli.main import main as cli
    from cnnlab.runs.run import open_run

    assert "ddp" in open_run(run).kind
    assert (run / "predictions.csv").is_file()
    for argv in (
        ["evaluate", run],
        ["interpret", run, "--top", "2"],
        ["report", run],
        ["runs", "--runs-root", env_root],
    ):
        assert cli([str(a) for a in argv]) == 0, argv


@pytest.mark.slow
def test_cli_nproc_relaunches_under_torchrun(tmp_path):
    import subprocess
    import sys

    from cnnlab.cli.train import _without_launch_flags

    assert _without_launch_flags(["--nproc", "2", "--data", "digits", "--torchrun=--nnodes 1", "--epochs", "1"]) == [
        "--data",
        "digits",
        "--epochs",
        "1",
    ]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "--nproc",
            "2",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
            "--train.threads",
            "1",
            "--output.plots",
            "false",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = list(tmp_path.iterdir())  # both processes trained; rank 0 alone wrote the one run folder
    assert (run / "metrics.json").is_file() and "run folder:" in r.stdout


@pytest.mark.slow
def test_resume_under_torchrun_continues_exactly(tmp_path, monkeypatch):
    # Two ranks, 2 epochs straight vs 1 epoch, config edited to 2, then --resume under torchrun:
    # the same weights, history and steps.csv (every rank loaded the same checkpoint and RNG state).
    import yaml

    from cnnlab.engine.checkpoint import load_checkpoint

    common = ["--data", "digits", "--batch-size", "64", "--train.threads", "1", "--output.plots", "false"]
    common += ["--no-progress", "--train.early_stop_patience", "null", "--data.augment", "crop(pad=1)"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert launch(2, ["train", *common, "--epochs", "2", "--out", str(tmp_path / "full")]) == 0
    assert launch(2, ["train", *common, "--epochs", "1", "--out", str(tmp_path / "part")]) == 0
    (full,) = list((tmp_path / "full").iterdir())
    (part,) = list((tmp_path / "part").iterdir())
    cfg = yaml.safe_load((part / "config.yaml").read_text())
    cfg["train"]["epochs"] = 2
    (part / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert launch(2, ["train", "--resume", str(part)]) == 0
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(part / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (full / "steps.csv").read_text() == (part / "steps.csv").read_text()
    rows = lambda run: [line.split(",")[:3] for line in (run / "history.csv").read_text().splitlines()]  # noqa: E731
    assert rows(full) == rows(part)  # epoch, train_loss, train_acc of both epochs, written once
