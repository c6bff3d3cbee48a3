"""One training step's options: accumulation, clipping, AMP, EMA, skipping non-finite losses, TTA."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.loop import (
    CLIPPERS,
    EpochParts,
    EpochState,
    NonFiniteLossError,
    StepOptions,
    predict,
    train_one_epoch,
)
from cnnlab.engine.trainer import _make_ema


def _data(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def test_accumulating_two_half_batches_equals_one_full_batch():
    x, y = _data()
    a, b = _model(), _model()
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    train_one_epoch(a, _batches(x, y, 16), opt_a, nn.CrossEntropyLoss())
    st = EpochState()
    train_one_epoch(b, _batches(x, y, 8), opt_b, nn.CrossEntropyLoss(), opts=StepOptions(accumulate=2), state=st)
    assert st.global_step == 2
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_clipping_by_value_and_by_norm():
    p = nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, -0.5, 4.0])
    CLIPPERS.get("value")([p], 1.0)
    assert p.grad.tolist() == [1.0, -0.5, 1.0]
    p.grad = torch.tensor([3.0, 0.0, 4.0])
    CLIPPERS.get("norm")([p], 1.0)
    assert torch.allclose(p.grad.norm(), torch.tensor(1.0), atol=1e-5)


def test_bf16_autocast_trains_on_cpu_and_keeps_float32_weights():
    x, y = _data(64)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = train_one_epoch(model, _batches(x, y, 16), opt, nn.CrossEntropyLoss(), opts=StepOptions(amp="bf16"))
    for _ in range(5):
        row = train_one_epoch(model, _batches(x, y, 16), opt, nn.CrossEntropyLoss(), opts=StepOptions(amp="bf16"))
    assert row["train_loss"] < first["train_loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_ema_follows_its_definition():
    x, y = _data(16)
    model = _model()
    ema = _make_ema(model, 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    snapshots = []
    for batch in _batches(x, y, 8):
        train_one_epoch(model, [batch], opt, nn.CrossEntropyLoss(), parts=EpochParts(ema=ema))
        snapshots.append([p.detach().clone() for p in model.parameters()])
    # torch's EMA starts from the first update's weights, then ema = 0.5 * ema + 0.5 * w
    for e, w1, w2 in zip(ema.module.parameters(), *snapshots):
        assert torch.allclose(e, 0.5 * w1 + 0.5 * w2, atol=1e-6)


def _nan_on(step_numbers):
    calls = {"n": 0}

    def loss(logits, y):
        calls["n"] += 1
        out = F.cross_entropy(logits, y)
        return out * float("nan") if calls["n"] in step_numbers else out

    return loss


def test_non_finite_losses_are_skipped_up_to_k_then_stop():
    x, y = _data(64)
    model = _model()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    st = EpochState()
    train_one_epoch(model, _batches(x, y, 8), opt, _nan_on({2}), opts=StepOptions(skip_nonfinite=1), state=st)
    assert st.skipped == 1 and st.global_step == 7 and "step 2 of epoch 1" in st.messages[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 4\b"):
        train_one_epoch(model, _batches(x, y, 8), opt, _nan_on({2, 4}), opts=StepOptions(skip_nonfinite=1))


def test_tta_averages_probabilities_of_the_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x, y = torch.randn(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)
    got, _ = predict(model, [(x, y)], tta="flip")
    with torch.no_grad():
        expected = ((F.softmax(model(x), 1) + F.softmax(model(x.flip(3)), 1)) / 2).log()
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-5)
    plain, _ = predict(model, [(x, y)])
    assert not torch.allclose(torch.from_numpy(plain), expected, atol=1e-3)


def test_flip_translate1_weights_airbench_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x, y = torch.randn(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)
    got, _ = predict(model, [(x, y)], tta="flip-translate1")
    pad = F.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = pad[..., 2:, 2:], pad[..., :4, :4]  # content moved 1 px, border mirrored

    def p(v):
        return (F.softmax(model(v), 1) + F.softmax(model(v.flip(3)), 1)) / 2

    with torch.no_grad():
        expected = (p(x) / 2 + p(up_left) / 4 + p(down_right) / 4).log()
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-5)


def test_fp16_with_grad_scaler_trains_with_finite_weights():
    x, y = _data(64)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    opts = StepOptions(amp="fp16", grad_clip=1.0)
    first = train_one_epoch(model, _batches(x, y, 16), opt, nn.CrossEntropyLoss(), opts, EpochParts(scaler=scaler))
    for _ in range(5):
        row = train_one_epoch(model, _batches(x, y, 16), opt, nn.CrossEntropyLoss(), opts, EpochParts(scaler=scaler))
    assert row["train_loss"] < first["train_loss"] and scaler.get_scale() > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
