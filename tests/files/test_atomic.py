"""The one atomic writer: whole files or none, modes from the umask, stale temporaries removed, and no
other writer beside it (issue 26)."""

from __future__ import annotations

import ast
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.files import atomic

SRC = Path(__file__).parents[2] / "src" / "cnnlab"
RENAMERS = ("os.replace", "os.rename", "shutil.move", "tempfile.mkstemp", "tempfile.NamedTemporaryFile")


def _dead_pid() -> int:
    """The PID of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_way_of_writing_gives_the_umasks_mode(tmp_path, umask_022):
    atomic.write_bytes(tmp_path / "a.bin", b"x")
    with atomic.atomic_write(tmp_path / "b.txt", "w", newline="") as f:
        f.write("y")
    with atomic.atomic_path(tmp_path / "c.onnx") as tmp:
        tmp.write_bytes(b"z")
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {"a.bin": 0o644, "b.txt": 0o644, "c.onnx": 0o644}
    os.umask(0o002)
    atomic.write_bytes(tmp_path / "a.bin", b"x2")  # replacing a file gives the new file the umask's mode too
    assert _mode(tmp_path / "a.bin") == 0o664 and (tmp_path / "a.bin").read_bytes() == b"x2"


def test_model_file_and_checkpoints_are_readable_by_others(tmp_path, umask_022):
    """model.json, weights.safetensors and the checkpoints came out 0600 (mkstemp) while the rest was 0644."""
    import torch

    from cnnlab.engine.checkpoint import atomic_save
    from cnnlab.runs.model_file import save_model_file

    meta = {"architecture": "x", "kwargs": {}, "classes": ["a", "b"], "input_shape": [1, 2, 2], "mean": [0], "std": [1]}
    save_model_file(tmp_path / "model", torch.nn.Linear(2, 2), meta)
    atomic_save({"w": torch.ones(2)}, tmp_path / "checkpoints" / "last.pt")
    written = [*(tmp_path / "model").iterdir(), tmp_path / "checkpoints" / "last.pt"]
    assert sorted(p.name for p in written) == ["last.pt", "model.json", "weights.safetensors"]
    assert all(_mode(p) == 0o644 for p in written), {p.name: oct(_mode(p)) for p in written}


def test_a_failed_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as info:
        atomic.write_text(target, "new")
    assert info.value.filename == str(target)  # the file the caller asked for, not the temporary
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"] and target.read_text() == "old"
    with pytest.raises(ZeroDivisionError), atomic.atomic_write(target) as f:
        f.write(b"half")
        raise ZeroDivisionError
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"] and target.read_text() == "old"


_KILLED = """
import sys, time
from cnnlab.files.atomic import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b"half a file")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_write_killed_midway_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "model" / "weights.safetensors"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", _KILLED, str(target)], stdout=subprocess.PIPE, env=env)
    assert p.stdout.readline().strip() == b"writing"
    (left,) = target.parent.iterdir()  # the live writer's temporary: not touched by a clean-up meanwhile
    assert atomic.remove_stale_temps(target.parent) == [] and left.exists()
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert left.name.startswith(".weights.safetensors.") and not target.exists()
    other = target.parent / "notes.tmp"
    other.write_text("not ours")
    atomic.write_bytes(target, b"whole")
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.tmp", "weights.safetensors"]


def test_stale_temporaries_are_told_apart_by_their_writers_pid(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    names = [
        f".last.pt.{dead}.0123abcd.tmp",  # a killed writer: stale
        f".best.pt.{alive}.0123abcd.tmp",  # a live process is writing it
        ".last.pt.k1ll3d.tmp",  # an older version's (no PID): only the folder's lock holder removes it
        "last.pt",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in atomic.remove_stale_temps(tmp_path, target="best.pt")] == []
    assert [p.name for p in atomic.remove_stale_temps(tmp_path)] == [names[0]]
    assert [p.name for p in atomic.remove_stale_temps(tmp_path, owned=True)] == sorted(names[1:3])
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert atomic.remove_stale_temps(tmp_path / "absent") == []


def test_opening_a_run_removes_what_a_kill_during_finalisation_left(tmp_path):
    """A kill while the model file was written left ``.weights.safetensors.*.tmp`` in model/ for ever."""
    from cnnlab.runs.run import open_run

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text("engine: numpy\nmodel: lenet\ndata: digits\n")
    meta = {"architecture": "lenet", "kwargs": {}, "classes": ["a"], "input_shape": [1, 8, 8], "mean": [0], "std": [1]}
    (run / "model" / "model.json").write_text(json.dumps(meta))
    (run / "model" / "weights.npz").write_bytes(b"")
    stale = run / "model" / f".weights.safetensors.{_dead_pid()}.0123abcd.tmp"
    stale.write_bytes(b"half")
    open_run(run)
    assert not stale.exists()


def test_only_the_atomic_writer_renames_files_into_place():
    """One writer: no other module renames temporaries over targets or makes its own temp files."""
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                name = f"{owner.id}.{node.func.attr}" if isinstance(owner, ast.Name) else ""
                if name in (
                    "os.replace",
                    "os.rename",
                    "shutil.move",
                    "tempfile.mkstemp",
                    "tempfile.NamedTemporaryFile",
                ):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {name}")
    assert found and all(f.startswith("files/atomic.py:") for f in found), found


def test_a_temporary_name_fits_beside_a_long_file_name(tmp_path):
    target = tmp_path / ("n" * 250)
    atomic.write_bytes(target, b"x")
    assert target.read_bytes() == b"x" and len(atomic.temp_path(target).name) < 255


def test_a_rename_that_fails_leaves_no_temporary_and_names_the_target(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_text("x")  # a folder in the way: os.replace fails
    with pytest.raises(OSError) as info:
        atomic.write_bytes(tmp_path / "taken", b"y")
    assert info.value.filename == str(tmp_path / "taken")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_links_keep_pointing_and_streams_are_written_in_place(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    (tmp_path / "link.json").symlink_to(real)
    atomic.write_text(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and real.read_text() == "new"
    if not hasattr(os, "mkfifo"):
        return
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic.write_text(fifo, "streamed")  # as with --json /dev/stdout: written through, not replaced
    reader.join(10)
    assert got == [b"streamed"] and stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "out.fifo", "real.json"]


def _direct_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, call) of file writes that bypass the atomic writer: Path.write_text/write_bytes, a figure's
    savefig and open(..., "w"); writes to a temporary path that atomic_path gave (``tmp``) are its own."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("write_text", "write_bytes", "savefig"):
            owner = func.value
            if not (isinstance(owner, ast.Name) and owner.id in ("atomic", "tmp")):
                found.append((node.lineno, func.attr))
        elif isinstance(func, ast.Name) and func.id == "open" and len(node.args) >= 2:
            mode, target = node.args[1], node.args[0]
            writes = isinstance(mode, ast.Constant) and str(mode.value).startswith(("w", "x"))
            if writes and not (isinstance(target, ast.Name) and target.id == "tmp"):
                found.append((node.lineno, f"open(..., {mode.value!r})"))
    return found


def test_files_are_written_only_through_the_atomic_writer():
    """A config.yaml, report or JSON written with write_text was left half-written by a kill."""
    found = [
        f"{path.relative_to(SRC)}:{line} {call}"
        for path in SRC.rglob("*.py")
        if path.name != "atomic.py"
        for line, call in _direct_writes(ast.parse(path.read_text()))
    ]
    probe = _direct_writes(ast.parse("Path('x').write_text('y')\nopen(p, 'w')\natomic.write_text(p, 'y')"))
    assert [call for _, call in probe] == ["write_text", "open(..., 'w')"]  # the check sees what it looks for
    assert not found, found


def test_a_leftover_with_this_processs_pid_is_stale_but_its_own_write_in_flight_is_not(tmp_path):
    """A container restarted after a kill often runs cnnlab under the same PID as the killed one."""
    leftover = tmp_path / f".weights.safetensors.{os.getpid()}.0123abcd.tmp"
    leftover.write_bytes(b"half")
    with atomic.atomic_write(tmp_path / "model.json") as f:
        f.write(b"{}")
        live = [p for p in tmp_path.iterdir() if p.name.startswith(".model.json.")]
        assert atomic.remove_stale_temps(tmp_path) == [leftover]  # the leftover goes, the live write stays
        assert len(live) == 1 and live[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_a_tight_laid_out_figure_is_drawn_once_and_saved_pixel_for_pixel(tmp_path, monkeypatch):
    # tight_layout() leaves matplotlib's do-nothing PlaceHolderLayoutEngine, for which savefig renders a
    # throw-away PNG first: save_figure lifts it for the save, and the file is the one savefig writes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def figure():
        fig = Figure(figsize=(4, 3), dpi=50)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.bar(["a", "b"], [3, 3000])
        ax.set_yscale("log")
        ax.set_title("a title")
        fig.tight_layout()
        return fig

    plain = tmp_path / "plain.png"
    figure().savefig(plain, format="png", dpi=50)
    draws = []
    real_draw = FigureCanvasAgg.draw
    monkeypatch.setattr(FigureCanvasAgg, "draw", lambda canvas: draws.append(1) or real_draw(canvas))
    fig = figure()
    engine = fig.get_layout_engine()
    assert type(engine).__name__ == "PlaceHolderLayoutEngine"  # what the lift is for: else this test checks nothing
    atomic.save_figure(fig, tmp_path / "fig.png", dpi=50)
    assert len(draws) == 1
    assert (tmp_path / "fig.png").read_bytes() == plain.read_bytes()
    assert fig.get_layout_engine() is engine


def test_a_second_name_shares_the_finished_files_bytes_until_either_is_rewritten(tmp_path):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    atomic.write_bytes(last, b"epoch 1")
    atomic.write_bytes(best, b"epoch 0")  # an older best, replaced whole
    atomic.link_or_copy(last, best)
    assert best.read_bytes() == b"epoch 1" and best.stat().st_ino == last.stat().st_ino  # written once
    atomic.write_bytes(last, b"epoch 2")  # the next epoch renames a new file over last.pt
    assert best.read_bytes() == b"epoch 1" and last.read_bytes() == b"epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left
    with pytest.raises(FileNotFoundError):
        atomic.link_or_copy(tmp_path / "missing.pt", best)
    assert best.read_bytes() == b"epoch 1"


def test_without_hard_links_the_second_name_is_a_copy(tmp_path, monkeypatch):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    atomic.write_bytes(last, b"x" * (3 << 20))  # more than one chunk of the copy

    def no_links(src, dst):  # FAT, some network shares
        raise PermissionError(1, "Operation not permitted", str(src), None, str(dst))

    monkeypatch.setattr(os, "link", no_links)
    atomic.link_or_copy(last, best)
    assert best.read_bytes() == last.read_bytes() and best.stat().st_ino != last.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
