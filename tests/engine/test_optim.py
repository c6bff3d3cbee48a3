"""Optimiser registry: every entry trains, LAMB and Lookahead behave as defined, decay modes and groups."""

import copy

import pytest
import torch
from torch import nn

from cnnlab.config import OptimConfig
from cnnlab.engine.loop import base_lr
from cnnlab.engine.optim import OPTIMIZERS, Lamb, Lookahead, build_optimizer, describe_group_lrs, param_groups
from cnnlab.errors import CnnlabError


def _problem():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = (x @ torch.randn(5, 1)).squeeze(1)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    return model, x, y


def _fit(model, opt, x, y, steps=40):
    for _ in range(steps):
        loss = ((model(x).squeeze(1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(((model(x).squeeze(1) - y) ** 2).mean().detach())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimiser_reduces_the_loss(name):
    model, x, y = _problem()
    start = float(((model(x).squeeze(1) - y) ** 2).mean().detach())
    lr = {"sgd": 0.05, "adadelta": 20.0, "adagrad": 0.1, "radam": 0.05}.get(name, 0.01)
    opt = build_optimizer(model, OptimConfig(name=name, lr=lr, weight_decay=1e-4, lookahead_k=0))
    assert _fit(model, opt, x, y, steps=60) < 0.7 * start, name


def test_lamb_first_step_matches_its_definition():
    torch.manual_seed(1)
    w = nn.Parameter(torch.randn(4, 3))
    w.grad = torch.randn(4, 3)
    w0, g = w.detach().clone(), w.grad.clone()
    Lamb([w], lr=0.1, eps=1e-6, weight_decay=0.01).step()
    # step 1 with bias correction: m_hat = g, v_hat = g^2 -> adam step = g / (|g| + eps)
    u = g / (g.abs() + 1e-6) + 0.01 * w0
    expected = w0 - 0.1 * (w0.norm() / u.norm()) * u
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def test_lookahead_pulls_towards_slow_weights_and_round_trips():
    model, x, y = _problem()
    inner = torch.optim.SGD(model.parameters(), lr=0.05)
    opt = Lookahead(inner, k=3, alpha=0.5)
    start = [p.detach().clone() for p in model.parameters()]
    fast = copy.deepcopy(model)
    fast_opt = torch.optim.SGD(fast.parameters(), lr=0.05)
    _fit(model, opt, x, y, steps=3)
    _fit(fast, fast_opt, x, y, steps=3)
    for p, s, f in zip(model.parameters(), start, fast.parameters()):  # after k steps: halfway to the fast weights
        assert torch.allclose(p, s + 0.5 * (f - s), atol=1e-6)
    _fit(model, opt, x, y, steps=2)
    state = copy.deepcopy(opt.state_dict())
    twin = copy.deepcopy(model)
    twin_opt = Lookahead(torch.optim.SGD(twin.parameters(), lr=0.05), k=3, alpha=0.5)
    twin_opt.load_state_dict(state)
    _fit(model, opt, x, y, steps=4)
    _fit(twin, twin_opt, x, y, steps=4)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_decoupled_decay_shrinks_weights_without_gradient(name):
    # With a zero gradient L2 decay moves Adam's weights by ~lr (normalised), decoupled by lr*wd*w.
    w = nn.Parameter(torch.full((3,), 2.0))
    opt = build_optimizer([w], OptimConfig(name=name, lr=0.1, weight_decay=0.5, weight_decay_mode="decoupled"))
    w.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((3,), 2.0 * (1 - 0.1 * 0.5)))


def test_l2_mode_adds_decay_to_the_gradient_for_adamw():
    w = nn.Parameter(torch.full((3,), 2.0))
    opt = build_optimizer([w], OptimConfig(name="adamw", lr=0.1, weight_decay=0.5, weight_decay_mode="l2"))
    w.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((3,), 2.0 - 0.1), atol=1e-5)  # Adam's first step is ~lr


def test_groups_no_decay_on_norm_and_bias_and_per_group_lr():
    model, _, _ = _problem()
    cfg = OptimConfig(name="sgd", lr=0.1, weight_decay=1e-3, no_decay_norm_bias=True, group_lr={"3.*": 0.01})
    opt = build_optimizer(model, cfg)
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_id[id(named["0.weight"])]["weight_decay"] == 1e-3
    assert by_id[id(named["0.bias"])]["weight_decay"] == 0.0
    assert by_id[id(named["1.weight"])]["weight_decay"] == 0.0  # BatchNorm scale
    assert by_id[id(named["3.weight"])]["lr"] == 0.01 and by_id[id(named["0.weight"])]["lr"] == 0.1
    with pytest.raises(CnnlabError, match="matched no parameter"):
        param_groups(model, OptimConfig(group_lr={"nothing*": 0.5}))
    with pytest.raises(CnnlabError, match="unknown optimizer"):
        build_optimizer(model, OptimConfig(name="adamm"))


def test_orthogonalise_flattens_the_spectrum_and_keeps_the_singular_vectors():
    from cnnlab.engine.optim import orthogonalise

    torch.manual_seed(0)
    for shape in [(16, 64), (64, 16)]:
        u, _, vh = torch.linalg.svd(torch.randn(*shape), full_matrices=False)
        s = torch.logspace(-1, 1, min(shape))  # singular values spread over two decades
        o = orthogonalise(u @ torch.diag(s) @ vh).float()
        sv = torch.linalg.svdvals(o)
        assert sv.min() > 0.5 and sv.max() < 1.5, shape  # every direction now moves by about the same
        assert torch.allclose(u.T @ o @ vh.T, torch.diag(torch.diagonal(u.T @ o @ vh.T)), atol=0.05)


def test_muon_orthogonalises_filters_and_hidden_matrices_but_not_the_head():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 4), nn.Linear(4, 2))
    groups = param_groups(model, OptimConfig(name="muon", lr=0.1, group_lr={"1.*": 0.5}))
    ortho = {id(p) for g in groups if g["orthogonal"] for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in ortho}
    assert names == {"0.weight", "3.weight"}  # not the biases, BN, or the classifier head "4"
    assert all("orthogonal" not in g for g in param_groups(model, OptimConfig(name="sgd")))


def test_muon_step_matches_its_definition_and_resumes_exactly():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 4, 3)
    opt = build_optimizer(
        nn.Sequential(conv), OptimConfig(name="muon", lr=0.1, momentum=0.8, nesterov=True, muon_momentum=0.6)
    )
    w0, b0 = conv.weight.detach().clone(), conv.bias.detach().clone()
    conv.weight.grad, conv.bias.grad = torch.randn_like(w0), torch.randn_like(b0)
    gw, gb = conv.weight.grad.clone(), conv.bias.grad.clone()
    opt.step()
    from cnnlab.engine.optim import orthogonalise

    w = w0 * 2 / w0.norm()  # rescaled to norm sqrt(out_channels) = 2
    expect = w - 0.1 * orthogonalise((gw + 0.6 * gw).reshape(4, -1)).view_as(w0)  # Nesterov: g + mu * buf
    assert torch.allclose(conv.weight, expect, atol=1e-6)
    assert torch.allclose(conv.bias, b0 - 0.1 * (gb + 0.8 * gb) - 0.1 * 1e-4 * 1.8 * b0, atol=1e-6)
    model, x, y = _problem()
    opt = build_optimizer(model, OptimConfig(name="muon", lr=0.02))
    _fit(model, opt, x, y, steps=3)
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, OptimConfig(name="muon", lr=0.02))
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    _fit(model, opt, x, y, steps=4)
    _fit(twin, twin_opt, x, y, steps=4)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_base_lr_is_optim_lr_under_the_schedule_not_the_largest_group_rate():
    # airbench's recipe trains BatchNorm shifts at 442x optim.lr: the epoch line used to print that rate
    model, x, y = _problem()
    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.9, group_lr={"1.bias": 44.1, "3.weight": 0.25})
    opt = build_optimizer(model, cfg)
    assert base_lr(opt) == pytest.approx(0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    _fit(model, opt, x, y, steps=1)
    sched.step()
    assert base_lr(opt) == pytest.approx(0.05)  # every group follows the schedule: the ratio is kept
    names = {id(p): n for n, p in model.named_parameters()}
    line = describe_group_lrs(opt, names)
    assert "1.bias x441" in line and "3.weight x2.5" in line and line.index("1.bias") < line.index("3.weight")
    assert describe_group_lrs(build_optimizer(model, OptimConfig(name="sgd", lr=0.1)), names) is None
    assert base_lr(Lookahead(build_optimizer(model, cfg))) == pytest.approx(0.1)


def test_group_epochs_get_groups_of_their_own_named_in_the_rate_line():
    model, _, _ = _problem()
    cfg = OptimConfig(name="sgd", lr=0.1, group_lr={"*.bias": 2.0}, group_epochs={"0.bias": 3})
    opt = build_optimizer(model, cfg)
    limited = [g for g in opt.param_groups if g.get("train_epochs")]
    assert len(limited) == 1 and limited[0]["params"] == [model[0].bias] and limited[0]["lr"] == 2.0
    line = describe_group_lrs(opt, {id(p): n for n, p in model.named_parameters()})
    assert "0.bias x20 (falling to 0 over the first 3 epochs, then frozen)" in line
    assert "1.bias, 3.bias x20;" in line or line.endswith("1.bias, 3.bias x20")
    with pytest.raises(CnnlabError, match="group_epochs .* matched no parameter name"):
        build_optimizer(model, OptimConfig(name="sgd", lr=0.1, group_epochs={"stem.bias": 3}))


def test_muon_runs_the_configured_number_of_newton_schulz_steps():
    from cnnlab.engine.optim import orthogonalise

    steps = []
    for k in (3, 5):
        torch.manual_seed(4)
        conv = nn.Conv2d(4, 8, 3)
        opt = build_optimizer(nn.Sequential(conv), OptimConfig(name="muon", lr=0.1, muon_momentum=0.0, muon_ns_steps=k))
        w0 = conv.weight.detach().clone()
        conv.weight.grad = torch.randn_like(w0)
        expect = w0 * 8**0.5 / w0.norm() - 0.1 * orthogonalise(conv.weight.grad.reshape(8, -1), k).view_as(w0)
        opt.step()
        assert torch.allclose(conv.weight, expect, atol=1e-6), k
        steps.append(conv.weight.detach().clone())
    assert not torch.allclose(steps[0], steps[1], atol=1e-4)  # three iterations are not five


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_sgd_and_adam_use_the_fused_kernel_where_torch_has_one(name):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.01, momentum=0.9))
    assert opt.defaults["fused"] is True  # one pass per tensor on a CPU: 4.3 ms a step instead of 21 for Lite0
    reference = copy.deepcopy(model)
    plain = getattr(torch.optim, {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[name])
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    ref = plain(reference.parameters(), lr=0.01, weight_decay=opt.defaults["weight_decay"], **kwargs)
    x = torch.randn(8, 3, 6, 6)
    for m, o in ((model, opt), (reference, ref)):
        for p in m.parameters():
            p.grad = torch.ones_like(p)  # the same gradient for both: only the kernel differs
        o.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)  # the same update as the per-tensor loop
    assert model(x).shape == (8, 2)
    on_meta = build_optimizer(nn.Linear(3, 2, device="meta"), OptimConfig(name=name, lr=0.01))
    assert not on_meta.defaults.get("fused")  # no fused kernel there: the default loop
