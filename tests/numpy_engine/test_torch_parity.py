"""Parity of the NumPy engine with torch: same weights and inputs give the same forward, backward and
optimiser step (float64 within 1e-10, float32 within rtol 1e-4). Skipped when torch is absent."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab.numpy_engine as ne

torch = pytest.importorskip("torch")
nn = torch.nn

TOL64 = dict(rtol=1e-10, atol=1e-10)


def assert_close(actual: np.ndarray, expected, dtype) -> None:
    expected = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    if dtype == np.float64:
        np.testing.assert_allclose(actual, expected, **TOL64)
    else:  # float32: rtol 1e-4; the small atol only matters for entries that cancel to ~0
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(expected).max())))


def _gap():
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


# (id, numpy factory, torch factory, input shape, integer-valued input to force max-pool ties)
LAYERS = [
    ("conv", lambda: ne.Conv2d(3, 4, 3), lambda: nn.Conv2d(3, 4, 3), (2, 3, 7, 6), False),
    ("conv_s2p1", lambda: ne.Conv2d(3, 4, 3, 2, 1), lambda: nn.Conv2d(3, 4, 3, 2, 1), (2, 3, 7, 8), False),
    ("conv_k5p2", lambda: ne.Conv2d(2, 3, 5, padding=2), lambda: nn.Conv2d(2, 3, 5, padding=2), (3, 2, 9, 7), False),
    ("conv_rect", lambda: ne.Conv2d(2, 3, (3, 2), (2, 1), (0, 1)), lambda: nn.Conv2d(2, 3, (3, 2), (2, 1), (0, 1)),
     (2, 2, 7, 5), False),
    ("maxpool2", lambda: ne.MaxPool2d(2), lambda: nn.MaxPool2d(2), (2, 3, 7, 6), False),
    ("maxpool2_ties", lambda: ne.MaxPool2d(2), lambda: nn.MaxPool2d(2), (2, 3, 8, 6), True),
    ("maxpool3s2p1_ties", lambda: ne.MaxPool2d(3, 2, 1), lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 7, 7), True),
    ("maxpool3s1", lambda: ne.MaxPool2d(3, 1), lambda: nn.MaxPool2d(3, 1), (2, 2, 6, 5), False),
    ("avgpool2", lambda: ne.AvgPool2d(2), lambda: nn.AvgPool2d(2), (2, 3, 7, 6), False),
    ("avgpool3s2p1", lambda: ne.AvgPool2d(3, 2, 1), lambda: nn.AvgPool2d(3, 2, 1), (2, 3, 7, 6), False),
    ("gap", ne.GlobalAvgPool2d, _gap, (2, 3, 5, 4), False),
    ("relu", ne.ReLU, nn.ReLU, (4, 9), True),
    ("leaky", lambda: ne.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2), (4, 9), False),
    ("sigmoid", ne.Sigmoid, nn.Sigmoid, (4, 9), False),
    ("tanh", ne.Tanh, nn.Tanh, (4, 9), False),
    ("linear", lambda: ne.Linear(6, 5), lambda: nn.Linear(6, 5), (4, 6), False),
    ("flatten", ne.Flatten, nn.Flatten, (2, 3, 2, 2), False),
    ("bn1d", lambda: ne.BatchNorm1d(5), lambda: nn.BatchNorm1d(5), (6, 5), False),
    ("bn2d", lambda: ne.BatchNorm2d(3), lambda: nn.BatchNorm2d(3), (4, 3, 5, 3), False),
    ("dropout_eval", lambda: ne.Dropout(0.4).eval(), lambda: nn.Dropout(0.4).eval(), (4, 6), False),
]  # fmt: skip


def _copy_weights(np_module, torch_module, dtype) -> None:
    """Give the torch module the NumPy module's parameters (random, not the default init)."""
    rng = np.random.default_rng(1)
    for p in np_module.parameters():
        p.data = rng.standard_normal(p.data.shape).astype(dtype)
    state = {k: torch.from_numpy(np.array(v)) for k, v in np_module.state_dict().items()}
    torch_module.load_state_dict(state)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,np_factory,torch_factory,shape,ties", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_forward_backward_match_torch(name, np_factory, torch_factory, shape, ties, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    if ties:  # small integers: many equal values inside a window, and exact zeros for ReLU
        x = np.round(x)
    x = x.astype(dtype)
    m, tm = np_factory().astype(dtype), torch_factory().to(torch.float64 if dtype == np.float64 else torch.float32)
    _copy_weights(m, tm, dtype)

    y = m.forward(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = m.backward(g)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = tm(xt)
    yt.backward(torch.from_numpy(g))
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, yt, dtype)
    assert_close(dx, xt.grad, dtype)
    torch_params = dict(tm.named_parameters())
    for pname, p in m.named_parameters():
        assert_close(p.grad, torch_params[pname].grad, dtype)
    torch_buffers = dict(tm.named_buffers())
    for bname, b in m.named_buffers():  # running statistics of batch norm
        assert_close(b, torch_buffers[bname], dtype)


def test_maxpool_tie_rule_gives_the_gradient_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]]]])  # three tied maxima; the top-right one comes first
    m = ne.MaxPool2d(2)
    m.forward(x)
    dx = m.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 1.0], [0.0, 0.0]])


OPTIMIZERS = [
    ("sgd", lambda p: ne.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    ("momentum", lambda p: ne.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("momentum_damp", lambda p: ne.SGD(p, lr=0.1, momentum=0.9, dampening=0.2),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.2)),
    ("nesterov_wd", lambda p: ne.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("rmsprop", lambda p: ne.RMSprop(p, lr=0.01), lambda p: torch.optim.RMSprop(p, lr=0.01)),
    ("rmsprop_full", lambda p: ne.RMSprop(p, lr=0.01, momentum=0.9, centered=True, weight_decay=0.01),
     lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    ("adam", lambda p: ne.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    ("adam_wd", lambda p: ne.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adamw", lambda p: ne.AdamW(p, lr=0.01), lambda p: torch.optim.AdamW(p, lr=0.01)),
]  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,np_opt,torch_opt", OPTIMIZERS, ids=[c[0] for c in OPTIMIZERS])
def test_optimizer_steps_match_torch(name, np_opt, torch_opt, dtype):
    rng = np.random.default_rng(2)
    shapes = [(3, 4), (5,)]
    params = [ne.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]
    tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    opt, topt = np_opt(params), torch_opt(tparams)
    for _ in range(3):  # several steps so that momentum/moment state is exercised
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for p, tp, g in zip(params, tparams, grads):
            p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            assert p.data.dtype == dtype
            assert_close(p.data, tp, dtype)


def _torch_lenet(in_channels: int, pad: int):
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_lenet_training_step_matches_torch(dtype):
    rng = np.random.default_rng(3)
    m = ne.lenet(in_channels=3, input_size=32, dtype=dtype)
    tm = _torch_lenet(3, 0).to(torch.float64 if dtype == np.float64 else torch.float32)
    tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in m.state_dict().items()})
    x = rng.standard_normal((8, 3, 32, 32)).astype(dtype)
    y = rng.integers(0, 10, 8)

    loss_fn, opt = ne.CrossEntropyLoss(), ne.Adam(m.parameters(), lr=1e-3)
    loss = loss_fn(m.forward(x), y)
    m.backward(loss_fn.backward(), input_grad=False)
    opt.step()

    topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    tloss = nn.CrossEntropyLoss()(tm(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    topt.step()
    assert_close(np.array(loss), tloss, dtype)
    tstate = tm.state_dict()
    for k, v in m.state_dict().items():
        assert_close(v, tstate[k], dtype)


def test_cross_entropy_matches_torch_with_label_smoothing():
    rng = np.random.default_rng(4)
    z, y = 4 * rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    loss_fn = ne.CrossEntropyLoss(label_smoothing=0.2)
    loss = loss_fn(z, y)
    zt = torch.from_numpy(z.copy()).requires_grad_(True)
    tloss = nn.CrossEntropyLoss(label_smoothing=0.2)(zt, torch.from_numpy(y))
    tloss.backward()
    assert_close(np.array(loss), tloss, np.float64)
    assert_close(loss_fn.backward(), zt.grad, np.float64)
