"""Regular files versus the rest: FIFOs, sockets and devices are never opened as data.

Opening a FIFO for reading waits for a writer for ever, and a link to ``/dev/zero`` named
``x.jpg`` never ends; an image folder, a mirror folder or a run folder can hold either. Every
reader of files a user supplies asks :func:`file_kind` first, and :func:`read_regular_bytes`
opens without blocking and checks the open file itself, so a file swapped for a FIFO between the
check and the read is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def kind_of_mode(mode: int) -> str | None:
    """None for a regular file's ``st_mode``, else what it is (``"a FIFO"``, ``"a device"``, ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_kind(path: str | Path) -> str | None:
    """None when ``path`` is a regular file (links followed); else what it is, ``"a broken link"`` or ``"missing"``."""
    try:
        return kind_of_mode(os.stat(path).st_mode)
    except FileNotFoundError:
        return "a broken link" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file (links followed); False for FIFOs, sockets, devices, folders and missing files."""
    return file_kind(path) is None


class NotRegularFile(OSError):
    """Raised by :func:`read_regular_bytes` for a path that is not a regular file; ``kind`` says what it is."""

    def __init__(self, path: str | Path, kind: str) -> None:
        super().__init__(f"not a regular file ({kind})")
        self.filename = str(path)
        self.strerror = f"not a regular file ({kind})"
        self.kind = kind


def read_regular_bytes(path: str | Path) -> bytes:
    """The bytes of a regular file; :class:`NotRegularFile` for a FIFO, socket or device (never blocks on one)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        kind = kind_of_mode(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotRegularFile(path, kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
