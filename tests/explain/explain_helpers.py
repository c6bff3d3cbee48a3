"""Helpers for the explainer tests: a random-weight model with trained-looking BatchNorm, a digit-like image,
and a live uvicorn server."""

from __future__ import annotations

import http.client
import threading
import time

import pytest
import torch

from image_helpers import digit_like  # noqa: F401 - re-exported for the tests here

MEAN, STD = 0.13, 0.31


def random_bn_stats(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Running means/vars and affine parameters away from 0/1, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def start_server(app, ready: str = "/api/model", settings=None):
    """(host, port, stop) of the explainer ``app`` served as ``cnnlab explain`` serves it, on a free local port
    in a background thread, once GET ``ready`` answers 200 (another app: pass its ``settings``)."""
    pytest.importorskip("uvicorn")
    from cnnlab.serve.server import bind, uvicorn_server

    sock = bind("127.0.0.1", 0)
    host, port = sock.getsockname()
    srv = uvicorn_server(app, settings or app.state.explain.settings)  # the set-up cnnlab explain runs on
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", ready)
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)
    else:
        raise AssertionError("uvicorn did not start")

    def stop():
        srv.should_exit = True
        thread.join(10)
        sock.close()

    return host, port, stop
