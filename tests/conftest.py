"""Shared test fixtures: where the real data lives (if anywhere) and a fast training config."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CNNLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `data` when ../shared/data is absent (a user's clone has none)."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real datasets not found at {SHARED_DATA} (set CNNLAB_SHARED_DATA)")
    for item in items:
        if item.get_closest_marker("data") is not None:  # not item.keywords: tests/data/ is a keyword too
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _test_cache(request, tmp_path_factory, monkeypatch):
    """Decoded-dataset caches of the tests' own small files go to a session folder, not ~/.cache/cnnlab.

    Tests on the real data (marked ``data``) keep the user's cache, as cnnlab itself would, so the
    CIFAR-10 JPEG copy is decoded once per machine rather than once per test session."""
    if request.node.get_closest_marker("data") is None and "CNNLAB_CACHE" not in os.environ:
        monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cnnlab-cache"))


@pytest.fixture(autouse=True)
def _sigchld_as_found():
    """A test whose DataLoader started worker processes leaves torch's Python SIGCHLD handler installed for
    the rest of the process. Under pytest-xdist the next test that kills a child of its own
    (tests/files/test_atomic.py) then took the whole xdist worker down ("node down: Not properly
    terminated"). Each test starts with SIGCHLD as the session found it."""
    found = signal.getsignal(signal.SIGCHLD)
    yield
    changed = signal.getsignal(signal.SIGCHLD) is not found
    if changed and threading.current_thread() is threading.main_thread():  # only the main thread may set it
        signal.signal(signal.SIGCHLD, found)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture
def fast_overrides(tmp_path) -> dict:
    """A training config that finishes in a few seconds: digits (8x8), small batches, no plots."""
    return {
        "data.name": "digits",
        "data.batch_size": 64,
        "train.epochs": 2,
        "train.threads": 1,
        "output.root": str(tmp_path / "runs"),
        "output.progress": False,
        "output.plots": False,  # plots and the HTML report have tests of their own
    }
