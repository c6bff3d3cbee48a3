"""Property-based: any value for any config key, in a YAML file or as a flag, ends in exactly one
``cnnlab: error:`` line or in the data being asked for, never in a traceback, and never makes a folder.

The real CLI entry runs in-process, through the real session start (config checks, device, seeds);
reading the data is replaced by a stand-in that stops there, so no example trains or reads data, and
the process-wide settings a session changes (threads, deterministic algorithms, random states) are
put back after each test.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.cli.main import main
from cnnlab.config import leaf_fields
from cnnlab.errors import CnnlabError

# the schedules are stepped on an optimiser without gradients: torch's ordering warning says nothing here
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")
KEYS = sorted(leaf_fields())
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 10**6]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e-300, 1e300, math.nan, math.inf, -math.inf]),
    st.text(max_size=30),
    st.sampled_from(["", " ", "auto", "none", "null", "1e-3", "-1", "nan", "../x", "a\x00b", "x" * 5000]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), SCALARS, max_size=3),
)
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
SESSION = "fuzz stand-in: the data would be read here"


@pytest.fixture
def no_data(monkeypatch):
    import random

    import numpy as np
    import torch

    def stand_in(session):
        build_without_data(session.cfg)
        raise CnnlabError(SESSION)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the examples are tiny; the session's own thread setting is ignored
    monkeypatch.setattr("cnnlab.api.load_data", stand_in)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *a, **k: None)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    monkeypatch.undo()
    torch.set_num_threads(threads)
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def build_without_data(cfg) -> None:
    """What ``build_parts`` makes of the config, on a tiny model: every optimiser, and every schedule
    stepped through its first epochs (not only the ones the config names: a value must suit whichever
    component reads it), and the loss. These are where values the config let through used to fail
    (torch's ValueError for a negative eps, a one-cycle pct_start of 5, ...)."""
    import torch
    from torch import nn

    from cnnlab.config import EPOCH_METRICS, replace
    from cnnlab.engine.losses import build_loss
    from cnnlab.engine.optim import OPTIMIZERS, build_optimizer
    from cnnlab.engine.schedulers import SCHEDULERS, build_schedule
    from cnnlab.finetune.recipe import resolve_recipe

    cfg = resolve_recipe(cfg, log=lambda s: None)
    cfg = replace(cfg, optim={"lr": cfg.optim.lr or 1e-3})  # the recipe's LR finder would choose it
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 3))
    for name in OPTIMIZERS:
        build_optimizer(model, replace(cfg, optim={"name": name}).optim)
    for name in SCHEDULERS:
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
        optimizer.step()  # no gradients: nothing moves, but the schedule sees a stepped optimiser
        schedule = build_schedule(optimizer, replace(cfg, sched={"name": name}).sched, cfg.train.epochs, 2)
        for _ in range(min(cfg.train.epochs, 3)):
            schedule.step_batch()
            schedule.step_batch()
            schedule.step_epoch(dict.fromkeys(EPOCH_METRICS, 1.0))
    t = cfg.train
    build_loss(t.loss, label_smoothing=t.label_smoothing, gamma=t.focal_gamma, alpha=t.focal_alpha)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``cnnlab ARGV`` in-process: (exit code, stderr). An exception other than SystemExit fails the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
    return code, err.getvalue()


def assert_one_error_line(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (1, 2), (code, err)
    assert sum(line.startswith("cnnlab: error:") for line in err.splitlines()) == 1, err


def _yaml_text(entries: dict) -> str | None:
    nested: dict = {}
    for key, value in entries.items():
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    try:
        return yaml.safe_dump(nested, allow_unicode=True)
    except yaml.YAMLError:
        return None


@FUZZ
@given(entries=st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=3))
def test_any_value_in_a_config_file_is_one_error_line(tmp_path_factory, no_data, entries):
    tmp = tmp_path_factory.mktemp("cfg")
    text = _yaml_text(entries)
    if text is None:
        return
    (tmp / "c.yaml").write_text(text)
    code, err = run_cli(["train", "--config", str(tmp / "c.yaml"), "--out", str(tmp / "runs")])
    assert_one_error_line(code, err)
    assert not (tmp / "runs").exists()


@FUZZ
@given(key=st.sampled_from(KEYS), text=st.one_of(st.text(max_size=40), st.from_type(float).map(str)))
def test_any_text_for_any_flag_is_one_error_line(tmp_path_factory, no_data, key, text):
    tmp = tmp_path_factory.mktemp("flag")
    code, err = run_cli(["train", f"--{key}={text}", "--out", str(tmp / "runs")])
    assert_one_error_line(code, err)
    assert not (tmp / "runs").exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.integers(1, 3000).map(lambda n: "a: " + "[" * n + "]" * n),
        st.integers(2, 12).map(lambda n: "x: &a [1, 1]\n" + "".join(f"y{i}: &a [*a, *a]\n" for i in range(n * 3))),
    )
)
def test_any_config_file_text_is_one_error_line(tmp_path_factory, no_data, text):
    tmp = tmp_path_factory.mktemp("text")
    path = tmp / "c.yaml"
    path.write_text(text, errors="surrogatepass") if "\ud800" not in text else path.write_bytes(b"\xff")
    code, err = run_cli(["train", "--config", str(path), "--out", str(tmp / "runs")])
    assert_one_error_line(code, err)
    assert not (tmp / "runs").exists()


def test_the_stand_in_is_reached_by_a_good_config(tmp_path, no_data):
    """The fuzz tests can tell an accepted config from a refused one: a good one gets as far as the data."""
    code, err = run_cli(["train", "--data", "digits", "--out", str(tmp_path / "runs")])
    assert code == 1 and SESSION in err
    assert Path(tmp_path).is_dir()
