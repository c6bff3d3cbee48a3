"""The server set-up every surface shares (cnnlab.serve.server): a port in use is one error line, answers
carry no absolute path, and a request whose client has gone is dropped before it runs."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("fastapi")
from starlette.requests import Request  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.serve.server import Admission, ClientGone, ServeSettings, bind, public_text  # noqa: E402


def test_a_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CnnlabError, match=f"port {port} on 127.0.0.1 is already in use.*--port"):
            bind("127.0.0.1", port)
    with pytest.raises(CnnlabError, match="cannot bind to no-such-host.invalid"):
        bind("no-such-host.invalid", 0)
    sock = bind("127.0.0.1", 0)  # a free port: a socket, not yet listening
    assert sock.getsockname()[1] > 0
    sock.close()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("the image folder /home/ann/data/photos is gone", "the image folder photos is gone"),
        ("test images of folder:/srv/x/cats are missing", "test images of folder:cats are missing"),
        ("(/tmp/a/b/, put it back)", "(<folder>, put it back)"),
        ("1,024 bytes/s under the minimum; 3/4 done", "1,024 bytes/s under the minimum; 3/4 done"),
        ("send a PNG, JPEG or WebP", "send a PNG, JPEG or WebP"),
    ],
)
def test_public_text_cuts_absolute_paths_to_their_last_part(text, expected):
    assert public_text(text) == expected


def _request(disconnect: asyncio.Event) -> Request:
    async def receive():
        await disconnect.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/x", "headers": []}, receive)


def test_a_request_whose_client_left_while_queued_is_dropped_and_frees_its_place():
    settings = ServeSettings(max_concurrency=1, max_queue=4, max_total_pixels=100)
    ran = []

    async def scenario():
        admission = Admission(settings)
        release, gone = asyncio.Event(), asyncio.Event()

        async def first():
            async with admission.slot(10):
                await release.wait()
                ran.append("first")

        async def abandoned():
            async with admission.slot(50, _request(gone)):
                ran.append("abandoned")  # must never run: its client left while it waited

        holder = asyncio.create_task(first())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(abandoned())
        await asyncio.sleep(0.01)
        assert admission.waiting == 2 and admission.pixels == 60
        gone.set()  # the client closes its connection
        with pytest.raises(ClientGone):
            await waiter
        assert admission.waiting == 1 and admission.pixels == 10  # its place and pixels are free again
        release.set()
        await holder
        async with admission.slot(10, _request(asyncio.Event())):  # the worker is free for the next one
            ran.append("next")
        return admission

    admission = asyncio.run(scenario())
    assert ran == ["first", "next"] and admission.waiting == 0 and admission.pixels == 0


def test_only_the_server_set_up_starts_uvicorn():
    """Every web surface runs on cnnlab.serve.server: no other module builds or runs a uvicorn server."""
    import re
    from pathlib import Path

    src = Path(__file__).parents[2] / "src" / "cnnlab"
    starts = re.compile(r"uvicorn\.(run|Server|Config)\b|^\s*(import uvicorn|from uvicorn import)", re.M)
    found = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if starts.search(p.read_text()))
    assert found == ["serve/server.py"], found
    assert (src / "cli" / "serve.py").is_file() and (src / "cli" / "explain.py").is_file()  # the scan saw them
