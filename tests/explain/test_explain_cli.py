"""``cnnlab explain``: listed, and a wrong path or model fails with one line before any server starts."""

from __future__ import annotations

from cnnlab.cli.main import main


def test_explain_is_a_command_and_refuses_a_missing_run(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and "nope" in err and "Traceback" not in err
    assert main(["explain", str(tmp_path), "--max-pixels", "0"]) == 1
    assert "--max-pixels" in capsys.readouterr().err


def test_explain_serves_the_page_from_the_command_line(explain_model):
    """The real command in its own process: the page and the model's layers on a free local port, and a
    connection whose headers never finish closed after --read-timeout (the server set-up serve has)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    import pytest

    pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "cnnlab.cli.main", "explain", str(explain_model), "--port", str(port)]
    cmd += ["--threads", "1", "--read-timeout", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, model = time.monotonic() + 120, None
        while model is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=5) as r:
                    model = json.loads(r.read())
            except OSError:
                time.sleep(0.2)
        assert model is not None, proc.stderr.read1().decode() if proc.poll() is not None else "no answer"
        assert model["architecture"] == "seed_cnn" and len(model["layers"]) == 25
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"cnnlab explain" in r.read() and "server" not in {k.lower() for k in r.headers}
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /api/model HTTP/1.1\r\nHost: x\r\n")  # the headers never finish
            t0 = time.monotonic()
            assert slow.recv(100) == b"" and time.monotonic() - t0 < 5  # closed by the server, no answer
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/" in out.decode()
