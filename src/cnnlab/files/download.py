"""The one streaming downloader: dataset files and published weights come through here.

:func:`download` streams a URL in 1 MiB blocks into the atomic writer (:mod:`cnnlab.files.atomic`),
hashing as it goes, and renames the file to its real name only when the digest matches, so an
interrupted, truncated or tampered download never appears under that name. It stops at a size cap
(the expected size when the caller knows it, else :func:`max_download_bytes`, which
``$CNNLAB_MAX_DOWNLOAD_MB`` sets): a mirror that streams zeros for ever costs at most the cap in
disk and time, never the whole cache. The temporary file of a killed download is removed on the
next call, as are the ``.part`` files earlier versions left. :func:`mirror_file` looks a file up
in a local mirror folder and refuses an entry that is not a regular file (a FIFO would block the
reader, a link to a device would stream for ever) with a message, rather than passing over it.

Failures raise :class:`DownloadError`, whose ``reason`` the caller combines with its own advice
(which file to put in which folder to work offline). Standard library only (tqdm for the bar).
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.files.atomic import atomic_write, remove_stale_temps
from cnnlab.files.kinds import file_kind

MAX_ENV = "CNNLAB_MAX_DOWNLOAD_MB"
DEFAULT_MAX_MB = 4096  # larger than every dataset archive and published weights file cnnlab fetches
BLOCK = 1 << 20


class DownloadError(CnnlabError):
    """A download that failed or gave the wrong bytes; ``reason`` is the short cause."""

    def __init__(self, message: str, reason: str, offline: bool, cause: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.offline = offline  # True when the network failed, False when the bytes were wrong
        self.cause = cause or reason  # the network's own words ("[Errno -2] Name or service not known")


def max_download_bytes() -> int:
    """The size cap for a download of unknown size: ``$CNNLAB_MAX_DOWNLOAD_MB`` MiB (default 4096)."""
    raw = os.environ.get(MAX_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not 0 < mb < 1 << 30:
        raise CnnlabError(f"${MAX_ENV}={raw!r} must be a positive number of MiB (e.g. 4096)")
    return int(mb * (1 << 20))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def mirror_file(folder: str | Path, name: str) -> Path | None:
    """``folder/name`` when it is a regular file (a link to one counts); None when there is no such entry.

    Raises:
        CnnlabError: the entry exists but is not a regular file (a FIFO, a socket, a device, a folder
            or a broken link): reading it could block or never end, and passing over it silently
            would send the request to the internet instead of the mirror its owner set up.
    """
    path = Path(folder).expanduser() / name
    try:
        path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CnnlabError(f"the mirror entry {path} cannot be read ({exc.strerror})") from None
    kind = file_kind(path)
    if kind is not None:
        raise CnnlabError(
            f"the mirror entry {path} is {kind}, not a regular file; replace it with the file itself "
            "(or remove it to download from the internet)"
        )
    return path


def download(
    url: str,
    dest: str | Path,
    digest: str,
    *,
    algorithm: str = "sha256",
    max_bytes: int | None = None,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Stream ``url`` to ``dest``; the file appears only when complete, within the cap and with ``digest``.

    Args:
        digest: the expected hex digest, or its first hex digits (torch.hub's names carry 8).
        algorithm: a :mod:`hashlib` name (``md5`` for the dataset files, ``sha256`` for weights).
        max_bytes: the most bytes to accept (the expected size when known); None: :func:`max_download_bytes`.

    Raises:
        DownloadError: the network failed (``offline``), or the body was too large or had another digest.
        CnnlabError: ``dest``'s folder cannot be written.
    """
    dest = Path(dest)
    cap = max_download_bytes() if max_bytes is None else int(max_bytes)
    if len(digest) < 6:
        raise ValueError(f"a download needs at least 6 hex digits of its digest, got {digest!r}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"cannot write the download of {dest.name} into {dest.parent}/ ({exc.strerror})") from None
    _remove_leftovers(dest)
    h = hashlib.new(algorithm)
    try:
        with atomic_write(dest) as out:
            _stream(url, out, h, cap, timeout, dest.name if progress else None)
            if not h.hexdigest().startswith(digest):
                got = h.hexdigest()[: len(digest)]
                reason = f"{url} gave a file whose {algorithm} starts {got}, not {digest} as expected; it was not kept"
                raise DownloadError(reason, reason, offline=False)
    except OSError as exc:  # the network's errors became DownloadErrors in _stream: this is our disk
        raise CnnlabError(
            f"cannot write the download of {dest.name} into {dest.parent}/ ({exc.strerror or exc})"
        ) from None
    return dest


def _remove_leftovers(dest: Path) -> None:
    """Temporaries of killed downloads of ``dest``: this writer's (by PID) and older versions' ``.part`` files."""
    remove_stale_temps(dest.parent, target=dest.name)
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        try:
            if part.is_file() and not part.is_symlink():
                part.unlink()
        except OSError:
            pass


def _stream(url: str, out, h, cap: int, timeout: float, label: str | None) -> None:
    """Copy the response body into ``out`` and ``h``, refusing more than ``cap`` bytes."""
    from tqdm import tqdm

    with _open(url, timeout) as response:
        declared = _content_length(response)
        if declared > cap:
            reason = f"{url} announces {declared:,} bytes, more than the {cap:,} expected; nothing was kept"
            raise DownloadError(reason, reason, offline=False)
        total = 0
        bar = tqdm(
            total=declared or None, unit="B", unit_scale=True, desc=label, disable=label is None, file=sys.stderr
        )
        with bar:
            for block in _blocks(url, response):
                total += len(block)
                if total > cap:
                    reason = f"{url} sent more than the {cap:,} bytes expected; the download was stopped and not kept"
                    raise DownloadError(reason, reason, offline=False)
                h.update(block)
                out.write(block)
                bar.update(len(block))


def _content_length(response) -> int:
    try:
        return max(0, int(response.headers.get("Content-Length") or 0))
    except (AttributeError, ValueError):  # no headers (file: URLs) or a garbled value: unknown
        return 0


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)  # incl. timeouts


def _offline(url: str, exc: BaseException) -> DownloadError:
    cause = str(getattr(exc, "reason", None) or exc)
    reason = f"download of {url} failed ({cause})"
    return DownloadError(reason, reason, offline=True, cause=cause)


def _open(url: str, timeout: float):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "cnnlab"}), timeout=timeout)
    except _NETWORK_ERRORS as exc:
        raise _offline(url, exc) from None


def _blocks(url: str, response) -> Iterator[bytes]:
    """The body in blocks of 1 MiB; a connection that fails or stalls mid-way is a DownloadError."""
    while True:
        try:
            block = response.read(BLOCK)
        except _NETWORK_ERRORS as exc:
            raise _offline(url, exc) from None
        if not block:
            return
        yield block
