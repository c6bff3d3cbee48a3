"""The one atomic writer: every file cnnlab writes appears whole under its name, or not at all.

A write goes to a temporary file in the target's own folder (so the final rename never crosses a
file system), is flushed and fsynced, then renamed over the target with ``os.replace`` (atomic on
POSIX and Windows), and the folder entry is fsynced too. A kill, a full disk or an exception in
the middle leaves the previous file intact. The temporary file is created with mode 0666 filtered
by the umask, exactly as ``open(path, "w")`` would be, so a model file or a checkpoint is as
readable by a second user or a serving container as every other file of the run (``mkstemp``'s
0600 was not).

Temporary files are named ``.<target>.<pid>.<8 hex>.tmp``. A process killed mid-write leaves one
behind; :func:`remove_stale_temps` deletes those whose writer has ended (the PID in the name is no
longer alive, or is this process's own and not a write in flight: a restarted container reuses
PIDs), and every write clears its own target's stale ones first, so a leftover disappears
the next time the folder is written or opened (``open_run`` clears a run's folders). Files of any
other name are never touched. A target that is a symbolic link has its target replaced (the link
stays); one that is a FIFO or a device (``--json /dev/stdout``) is written in place, as a stream.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from cnnlab.files.kinds import file_kind

TMP_SUFFIX = ".tmp"
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
# Temporaries of earlier cnnlab versions (mkstemp: ".<target>.<8 random>.tmp") carry no PID; they are
# removed only by a caller that holds the folder's lock (``owned=True``).
_LEGACY = re.compile(r"^\..+\.tmp$")
_IN_FLIGHT: set[str] = set()  # names of this process's temporaries being written now (never stale)
_MAX_TARGET_CHARS = 200  # keeps ".<target>.<pid>.<hex>.tmp" under the usual 255-byte name limit


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` (not created)."""
    path = Path(path)
    return path.with_name(f".{path.name[:_MAX_TARGET_CHARS]}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def _create(path: Path) -> tuple[int, Path]:
    """Create a new temporary file beside ``path``: (fd, temp path), mode 0666 & ~umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, target=path.name)
    while True:
        tmp = temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue
        _IN_FLIGHT.add(tmp.name)  # from here until _removed_on_error ends: not stale, though it has our PID
        return fd, tmp


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that insist on a file name (``onnx.save``,
    ``torch.jit.save``); once the block ends it is fsynced and renamed over ``path``; on any error it
    is removed. The file already exists (empty, with the umask's mode) when the block starts.

    Example::

        with atomic_path("model.onnx") as tmp:
            torch.onnx.export(model, x, tmp)
    """
    path = _target(path)
    if _is_stream(path):  # /dev/stdout, a FIFO: written in place, never replaced
        yield path
        return
    fd, tmp = _create(path)
    os.close(fd)
    with _removed_on_error(tmp, path):
        yield tmp
        commit(tmp, path)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` that replaces ``path`` only when the block ends without an error.

    ``mode`` is ``"wb"`` or ``"w"``; ``open_kwargs`` go to :func:`open` (``encoding``, ``newline``).
    An ``OSError`` names ``path``, not the temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = _target(path)
    if _is_stream(path):  # /dev/stdout, a FIFO: written in place, never replaced
        with open(path, mode, **open_kwargs) as f:
            yield f
        return
    fd, tmp = _create(path)
    with _removed_on_error(tmp, path):
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)


def link_or_copy(src: str | Path, path: str | Path) -> None:
    """``path`` becomes a second name of the finished file ``src``: a hard link made under a temporary
    name and renamed into place, so the bytes are not written (or fsynced) again and the two share
    their disk space. A later atomic write of either name renames a new file over it and leaves the
    other as it was. Where the file system has no hard links (FAT, some network shares), or ``path``
    is a stream, a copy through :func:`atomic_write` instead."""
    src, path = Path(src), _target(path)
    if not _is_stream(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, target=path.name)
        tmp = temp_path(path)
        _IN_FLIGHT.add(tmp.name)
        try:
            with _removed_on_error(tmp, path):
                os.link(src, tmp)
                _replace(tmp, path)
            return
        except OSError:
            if not src.is_file():
                raise  # nothing to copy either
    with open(src, "rb") as f, atomic_write(path) as out:
        shutil.copyfileobj(f, out)


def _target(path: str | Path) -> Path:
    """The file to replace: a symbolic link's target (the link itself stays a link)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def _is_stream(path: Path) -> bool:
    """True for an existing FIFO, socket or device (``--json /dev/stdout``): there is no file to replace."""
    return file_kind(path) in ("a FIFO", "a socket", "a device")


def save_figure(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """A matplotlib figure saved atomically (``fig.savefig``; the format from the name's suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp, _idle_layout_lifted(fig):
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", **savefig_kwargs)
    return path


@contextmanager
def _idle_layout_lifted(fig: Any) -> Iterator[None]:
    """Lift the do-nothing layout engine that ``fig.tight_layout()`` leaves behind, for one save.

    matplotlib's ``tight_layout()`` lays the figure out once and leaves a ``PlaceHolderLayoutEngine``,
    whose ``execute`` does nothing; ``savefig`` treats any engine as one to run, so it first renders the
    whole figure into a throw-away PNG to get a renderer, then draws it again for the file: a teaching
    figure's save took 0.26 s where one draw and encode take 0.15 s. Without the placeholder the same
    pixels are drawn once (a test compares the files); the figure gets its engine back afterwards.
    """
    engine = fig.get_layout_engine() if hasattr(fig, "get_layout_engine") else None
    if type(engine).__name__ != "PlaceHolderLayoutEngine" or not hasattr(fig, "_layout_engine"):
        yield
        return
    fig._layout_engine = None  # not set_layout_engine(None): with rcParams' autolayout that would mean "tight"
    try:
        yield
    finally:
        fig._layout_engine = engine


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def commit(tmp: str | Path, path: str | Path) -> None:
    """Move a finished file that a library wrote under a temporary name in ``path``'s folder into place
    (fsync, rename, folder fsync): for writers that make several files at once (OpenVINO's .xml + .bin)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    _replace(Path(tmp), Path(path))


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    # Make the rename itself durable (the folder entry); not every platform can open a folder.
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


@contextmanager
def _removed_on_error(tmp: Path, path: Path) -> Iterator[None]:
    """Remove the temporary file on any error; an OSError about it is re-raised naming ``path``.
    While the block runs the temporary is this process's write in flight (see :func:`_stale`)."""
    try:
        yield
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp), tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        _IN_FLIGHT.discard(tmp.name)


def _stale(name: str, pid: int) -> bool:
    """Whether the temporary ``name`` written by process ``pid`` is left over. A temporary carrying this
    process's own PID is stale unless this process is writing it now: a container restarted after a
    kill often gets the same PID again."""
    if pid == os.getpid():
        return name not in _IN_FLIGHT
    return not _alive(pid)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (unknown counts as alive: nothing is deleted)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True


def remove_stale_temps(folder: str | Path, *, target: str | None = None, owned: bool = False) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``folder``; returns them.

    A temporary is stale when the process named in it has ended, so a write in progress in another
    process is never disturbed. ``target`` limits the clean-up to one file's temporaries. With
    ``owned=True`` the caller holds the folder's lock (the trainer, for ``checkpoints/``): no one
    else can be writing there, so every ``.*.tmp`` counts, those of older versions included.
    A folder that cannot be listed or written (read-only, missing) is left as it is.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        m = _TEMP.match(entry.name)
        mine = m is not None and (target is None or m["target"] == target[:_MAX_TARGET_CHARS])
        stale = (mine and _stale(entry.name, int(m["pid"]))) or (owned and target is None and _LEGACY.match(entry.name))
        if not stale or not entry.is_file(follow_symlinks=False):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return sorted(removed)
