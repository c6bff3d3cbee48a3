"""LR schedules: each registered schedule's curve, warm-up composition, state round trip."""

import math

import pytest
import torch

from cnnlab.config import SchedConfig
from cnnlab.engine.schedulers import SCHEDULERS, build_schedule, lr_curve


def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_schedule_gives_finite_positive_lrs(name):
    lrs = lr_curve(_opt, SchedConfig(name=name, warmup_epochs=1), epochs=4, steps_per_epoch=5)
    assert len(lrs) == 20 and all(math.isfinite(v) and v >= 0 for v in lrs), name
    assert lrs[0] < lrs[4] or name in ("cyclic", "onecycle")  # warm-up rises (those two start low anyway)


def test_closed_forms():
    step = lr_curve(_opt, SchedConfig(name="step", step_size=2, gamma=0.5), 6, 3)
    assert step[5] == pytest.approx(0.1) and step[6] == pytest.approx(0.05) and step[12] == pytest.approx(0.025)
    multi = lr_curve(_opt, SchedConfig(name="multistep", milestones=[1, 3], gamma=0.1), 4, 2)
    assert multi[1] == pytest.approx(0.1) and multi[2] == pytest.approx(0.01) and multi[6] == pytest.approx(0.001)
    expo = lr_curve(_opt, SchedConfig(name="exponential", gamma=0.5), 3, 4)
    assert expo[4] == pytest.approx(0.05) and expo[8] == pytest.approx(0.025)
    cos = lr_curve(_opt, SchedConfig(name="cosine", min_lr=0.0), 2, 5)
    assert cos[5] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    poly = lr_curve(_opt, SchedConfig(name="polynomial", power=1.0), 1, 10)
    assert poly[5] == pytest.approx(0.05)
    sgdr = lr_curve(_opt, SchedConfig(name="cosine_restarts", restart_epochs=1, min_lr=0.0), 3, 4)
    assert sgdr[4] == pytest.approx(0.1) and sgdr[8] == pytest.approx(0.1) and sgdr[2] < 0.1
    cyc = lr_curve(_opt, SchedConfig(name="cyclic", base_lr=0.01, cycle_epochs=1), 4, 5)
    assert cyc[0] == pytest.approx(0.01) and cyc[5] == pytest.approx(0.1) and cyc[10] == pytest.approx(0.01)
    one = lr_curve(_opt, SchedConfig(name="onecycle", pct_start=0.25, div_factor=10), 4, 5)
    assert one[0] == pytest.approx(0.01) and max(one) == pytest.approx(0.1, rel=1e-3) and one[-1] < 1e-4


def test_warmup_restores_the_inner_lr_of_chainable_schedules():
    # StepLR multiplies the current LR: a leaked warm-up factor would show up as a smaller LR after it.
    lrs = lr_curve(_opt, SchedConfig(name="step", step_size=2, gamma=0.5, warmup_epochs=1), 5, 4)
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4:12] == pytest.approx([0.1] * 8) and lrs[12] == pytest.approx(0.05)
    start = lr_curve(_opt, SchedConfig(name="none", warmup_epochs=1, warmup_start=0.5), 2, 2)
    assert start == pytest.approx([0.075, 0.1, 0.1, 0.1])


def test_plateau_waits_for_warmup_and_reduces():
    opt = _opt()
    s = build_schedule(opt, SchedConfig(name="plateau", patience=0, factor=0.5, monitor="val_loss"), 5, 2)
    for _ in range(2):
        s.step_epoch({"val_loss": 1.0})
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_state_round_trip_mid_warmup():
    cfg = SchedConfig(name="cosine", warmup_epochs=1)
    a_opt, b_opt = _opt(), _opt()
    a = build_schedule(a_opt, cfg, 3, 4)
    for _ in range(2):
        a_opt.step()
        a.step_batch()
    b = build_schedule(b_opt, cfg, 3, 4)
    b.load_state_dict(a.state_dict())
    b_opt.param_groups[0]["lr"] = a_opt.param_groups[0]["lr"]  # the optimiser state carries the LR
    for _ in range(6):
        for o, s in ((a_opt, a), (b_opt, b)):
            o.step()
            s.step_batch()
        assert a_opt.param_groups[0]["lr"] == b_opt.param_groups[0]["lr"]


@pytest.mark.parametrize("name", ["polynomial", "onecycle"])
def test_group_epochs_decay_a_group_to_zero_on_its_own_clock_then_freeze_it(name):
    from cnnlab.config import OptimConfig
    from cnnlab.engine.loop import base_lr
    from cnnlab.engine.optim import build_optimizer

    layer = torch.nn.Linear(3, 2)
    opt = build_optimizer(layer, OptimConfig(name="sgd", lr=0.1, momentum=0.9, group_epochs={"bias": 2}))
    sched = build_schedule(opt, SchedConfig(name=name, warmup_epochs=1), epochs=4, steps_per_epoch=5)
    bias_group = next(g for g in opt.param_groups if g["params"][0] is layer.bias)
    seen = []
    for _ in range(12):
        seen.append((bias_group["lr"], base_lr(opt), layer.bias.requires_grad))
        sched.step_batch()
    # the bias: 0.1 falling linearly to 0 over 2 epochs (10 steps), whatever the warm-up and schedule do
    assert [s[0] for s in seen[:10]] == pytest.approx([0.1 * (1 - t / 10) for t in range(10)])
    assert seen[10][0] == 0 and not layer.bias.requires_grad and layer.weight.requires_grad
    assert all(s[2] for s in seen[:10])
    assert seen[0][1] < seen[5][1]  # the weight warms up: the epoch line's rate is the schedule's, not the bias's
    # a resumed schedule freezes the group again (requires_grad is not part of any state_dict)
    layer2 = torch.nn.Linear(3, 2)
    opt2 = build_optimizer(layer2, OptimConfig(name="sgd", lr=0.1, momentum=0.9, group_epochs={"bias": 2}))
    sched2 = build_schedule(opt2, SchedConfig(name=name, warmup_epochs=1), epochs=4, steps_per_epoch=5)
    opt2.load_state_dict(opt.state_dict())  # the Trainer's order: build both, then load both
    assert layer2.bias.requires_grad
    sched2.load_state_dict(sched.state_dict())
    assert not layer2.bias.requires_grad and opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
