"""The one streaming downloader: digest, size cap, leftovers of killed downloads, mirror entries that
are not regular files (issue 26). A local HTTP server stands in for the internet."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.files import download as D

PAYLOAD = os.urandom(3 * (1 << 20) + 11)  # several 1 MiB blocks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/file: PAYLOAD; /zeros: zeros for ever, no Content-Length (stops at 256 MiB or when the client goes);
    /liar: a Content-Length of 10 GB."""

    sent: dict[str, int] = {}

    def do_GET(self):
        self.send_response(200)
        if self.path == "/liar":
            self.send_header("Content-Length", str(10**10))
        if self.path.startswith("/file"):
            self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path.startswith("/file"):
            self.wfile.write(PAYLOAD)
            return
        block, sent = b"\0" * (1 << 16), 0
        try:
            while sent < 256 << 20:
                self.wfile.write(block)
                sent += len(block)
        except OSError:
            pass
        finally:
            _Handler.sent[self.path] = sent

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def url():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_streams_checks_the_digest_and_keeps_nothing_else(url, tmp_path):
    dest = tmp_path / "w" / "net-0123.pth"
    assert D.download(f"{url}/file", dest, SHA[:8]) == dest and dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["net-0123.pth"]
    with pytest.raises(D.DownloadError, match="sha256 starts .* not deadbeef") as info:
        D.download(f"{url}/file", tmp_path / "x" / "other.pth", "deadbeef")
    assert not info.value.offline and list((tmp_path / "x").iterdir()) == []


def test_a_mirror_streaming_zeros_stops_at_the_cap(url, tmp_path):
    dest = tmp_path / "cache" / "net.pth"
    start = time.monotonic()
    with pytest.raises(D.DownloadError, match="more than the 2,097,152 bytes expected") as info:
        D.download(f"{url}/zeros", dest, "ab" * 4, max_bytes=2 << 20)
    assert time.monotonic() - start < 20 and not info.value.offline
    assert list(dest.parent.iterdir()) == []  # nothing kept, not even the temporary
    with pytest.raises(D.DownloadError, match="announces 10,000,000,000 bytes"):
        D.download(f"{url}/liar", dest, "ab" * 4, max_bytes=2 << 20)
    assert list(dest.parent.iterdir()) == []


def test_the_configured_maximum_caps_downloads_of_unknown_size(url, tmp_path, monkeypatch):
    monkeypatch.setenv(D.MAX_ENV, "1")
    with pytest.raises(D.DownloadError, match="more than the 1,048,576 bytes"):
        D.download(f"{url}/zeros", tmp_path / "z.bin", "ab" * 4)
    monkeypatch.setenv(D.MAX_ENV, "lots")
    with pytest.raises(CnnlabError, match="CNNLAB_MAX_DOWNLOAD_MB"):
        D.download(f"{url}/file", tmp_path / "z.bin", SHA)


_KILLED = """
import sys
from cnnlab.files.download import download
download(sys.argv[1], sys.argv[2], "ab" * 4, max_bytes=1 << 40)
"""


def test_the_leftover_of_a_killed_download_goes_on_the_next_call(url, tmp_path):
    dest = tmp_path / "cache" / "net-0123.pth"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", _KILLED, f"{url}/zeros", str(dest)], env=env)
    deadline = time.monotonic() + 60
    while not any(f.stat().st_size > 1 << 20 for f in dest.parent.glob(".*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.kill()
    p.wait()
    (left,) = dest.parent.iterdir()
    legacy = dest.parent / ".net-0123.pth.x7Yq2b_k.part"  # what earlier versions left
    legacy.write_bytes(b"\0" * 1000)
    assert left.stat().st_size > 1 << 20
    with pytest.raises(D.DownloadError, match="offline|failed"):  # even a failing call cleans up
        D.download(f"http://127.0.0.1:{_dead_port()}/net-0123.pth", dest, SHA[:8])
    assert list(dest.parent.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_mirror_entries_that_are_not_regular_files_are_refused(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.mkfifo(mirror / "fifo.pth")
    (mirror / "zero.pth").symlink_to("/dev/zero")
    (mirror / "broken.pth").symlink_to(mirror / "absent")
    (mirror / "dir.pth").mkdir()
    (mirror / "real.pth").write_bytes(b"ok")
    (mirror / "link.pth").symlink_to(mirror / "real.pth")
    for name, what in [("fifo.pth", "a FIFO"), ("zero.pth", "a device"), ("broken.pth", "a broken link")]:
        with pytest.raises(CnnlabError, match=f"{name} is {what}, not a regular file"):
            D.mirror_file(mirror, name)
    with pytest.raises(CnnlabError, match="a folder"):
        D.mirror_file(mirror, "dir.pth")
    assert D.mirror_file(mirror, "real.pth") == mirror / "real.pth"
    assert D.mirror_file(mirror, "link.pth") == mirror / "link.pth"
    assert D.mirror_file(mirror, "absent.pth") is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_weights_from_a_mirror_entry_that_is_a_device_are_refused_not_downloaded(tmp_path, monkeypatch):
    from cnnlab.finetune import weights as W

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "resnet18-f37072fd.pth").symlink_to("/dev/zero")
    monkeypatch.setenv(W.MIRROR_ENV, str(mirror))
    url = f"http://127.0.0.1:{_dead_port()}/resnet18-f37072fd.pth"
    with pytest.raises(CnnlabError, match="is a device, not a regular file"):
        W.fetch_weights(url, cache=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()  # no download was tried


def test_weights_are_capped_at_their_published_size(url, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from cnnlab.finetune import weights as W

    entry = SimpleNamespace(url=f"{url}/zeros-deadbeef.pth", meta={"_file_size": 1.5})  # MiB, as torchvision says
    cap = W.size_cap(entry)
    assert 1.5 * (1 << 20) < cap < 1.51 * (1 << 20) and W.size_cap(SimpleNamespace(meta={})) is None
    with pytest.raises(CnnlabError, match=f"more than the {cap:,} bytes"):
        W.fetch_weights(entry.url, cache=tmp_path / "cache", progress=False, max_bytes=cap)
    assert list((tmp_path / "cache").iterdir()) == []


def test_dataset_downloads_are_capped(url, tmp_path, monkeypatch):
    from cnnlab.data import sources

    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1 << 20)
    dest = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(CnnlabError, match="more than the 1,048,576 bytes.*place the official"):
        sources.download(f"{url}/zeros", dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []
