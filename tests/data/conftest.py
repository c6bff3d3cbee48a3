"""Fixtures for the data tests: the messy folder (see messy.py), built once per session, read-only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from messy import Messy, build_messy_folder


@pytest.fixture(scope="session")
def messy(tmp_path_factory) -> Messy:
    """A freshly built messy folder and the facts about it. Tests must not modify it."""
    return build_messy_folder(tmp_path_factory.mktemp("messy") / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets (``../shared/data`` next to the repo, or $CNNLAB_SHARED_DATA); skip when absent."""
    env = os.environ.get("CNNLAB_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path} (set CNNLAB_SHARED_DATA)")
    return path.resolve()
