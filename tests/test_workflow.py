"""The training workflow's process-level steps: what ``start_session`` sets up for the whole process."""

from __future__ import annotations

import gc

import pytest

import cnnlab.engine.loop as loop
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


@pytest.mark.parametrize(
    ("amp", "kernels", "warned"), [("bf16", False, True), ("bf16", True, False), ("none", False, False)]
)
def test_a_session_warns_when_bf16_would_be_emulated_on_this_cpu(registered, monkeypatch, amp, kernels, warned):
    monkeypatch.setattr(loop, "cpu_has_bf16_kernels", lambda: kernels)
    cfg = Config()
    cfg.train.threads, cfg.train.device, cfg.train.amp = None, "cpu", amp
    lines: list[str] = []
    workflow.start_session(cfg, log=lines.append)
    assert any("train.amp bf16" in line and "--train.amp none" in line for line in lines) == warned


def test_the_report_code_is_imported_once_on_a_background_thread_after_the_first_epoch(monkeypatch):
    import types

    started = []
    fake = lambda *a, **k: types.SimpleNamespace(start=lambda: started.append((k["args"], k["daemon"])))  # noqa: E731
    monkeypatch.setattr(workflow.threading, "Thread", fake)
    preload = workflow.ReportPreload()
    assert started == []  # not while the first epoch trains
    preload(None, {"epoch": 1})
    preload(None, {"epoch": 2})
    assert started == [(("cnnlab.viz.report",), True)]
