"""The training workflow's process-level steps: what ``start_session`` sets up for the whole process."""

from __future__ import annotations

import gc

import pytest

import cnnlab.workflow as workflow
from cnnlab.config import Config


@pytest.fixture
def registered(monkeypatch) -> list:
    """The functions the workflow hands to ``atexit.register``, captured instead of registered."""
    calls: list = []
    monkeypatch.setattr(workflow.atexit, "register", calls.append)
    monkeypatch.setattr(workflow, "_FREEZE_REGISTERED", False)
    return calls


def test_a_session_freezes_the_objects_at_exit_once_per_process(registered):
    cfg = Config()
    cfg.train.threads = None  # leave this process's thread count alone
    workflow.start_session(cfg, log=lambda s: None)
    workflow.start_session(cfg, log=lambda s: None)  # a second run in the same process (a notebook, cv)
    assert registered == [gc.freeze]


def test_the_registered_exit_step_freezes_and_leaves_collection_on(registered):
    workflow.freeze_objects_at_exit()
    try:
        registered[0]()
        assert gc.get_freeze_count() > 0  # the exit's last collection skips these objects
        assert gc.isenabled()
    finally:
        gc.unfreeze()
