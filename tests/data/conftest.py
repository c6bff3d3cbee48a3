"""Fixtures for the data tests: the messy folder (see messy.py), built once per session, read-only.

``shared_data`` (the real datasets) comes from tests/conftest.py."""

from __future__ import annotations

import pytest
from messy import Messy, build_messy_folder


@pytest.fixture(scope="session")
def messy(tmp_path_factory) -> Messy:
    """A freshly built messy folder and the facts about it. Tests must not modify it."""
    return build_messy_folder(tmp_path_factory.mktemp("messy") / "data")


@pytest.fixture(scope="session")
def messy_trainable(tmp_path_factory) -> Messy:
    """The messy folder without the empty class and with enough good images to train with skip."""
    return build_messy_folder(tmp_path_factory.mktemp("messy_trainable") / "data", trainable=True)
