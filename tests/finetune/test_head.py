"""The LP-FT head fit (cnnlab.finetune.head): pooled features captured for any network, the logistic
regression solved to its optimum, the model's mode and every random number generator left alone."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.data.loaders import TensorLoader
from cnnlab.finetune.head import fit_head, fit_logistic, pooled_features
from cnnlab.models import create_model


def _model():
    return create_model("seed_cnn", num_classes=3, in_channels=3, input_size=16)


def test_the_features_are_the_classifiers_input_in_eval_mode():
    model = _model().train()
    x = torch.randn(10, 3, 16, 16)
    feats, labels = pooled_features(model, [(x[:6], torch.arange(6)), (x[6:], torch.arange(6, 10))])
    assert model.training  # its mode is given back
    head = model.classifier[-1]
    with torch.no_grad():
        logits = model.eval()(x)
    assert feats.shape == (10, head.in_features) and labels.tolist() == list(range(10))
    torch.testing.assert_close(head(feats), logits)  # exactly what the eval-mode classifier saw


def test_the_logistic_regression_reaches_its_optimum():
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(300, 20, generator=g), torch.randint(0, 4, (300,), generator=g)
    l2 = 0.05
    w, b = fit_logistic(feats, labels, 4, l2)
    w.requires_grad_(True), b.requires_grad_(True)
    loss = nn.functional.cross_entropy(feats @ w.T + b, labels) + l2 / 2 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, [w, b])
    assert gw.abs().max() < 1e-4 and gb.abs().max() < 1e-4  # convex: a zero gradient is the minimum


def test_fit_head_separates_what_the_features_separate_and_draws_no_random_numbers():
    torch.manual_seed(0)
    model = _model()
    images = torch.zeros(60, 3, 16, 16, dtype=torch.uint8)
    labels = torch.arange(3).repeat_interleave(20)
    for k in range(3):  # each class its own colour: any random conv body tells them apart
        images[labels == k, k] = 200
    images += torch.randint(0, 40, images.shape, dtype=torch.uint8)
    gen = torch.Generator().manual_seed(1)
    loader = TensorLoader(images, labels, 8, [0.5] * 3, [0.25] * 3, shuffle=True, generator=gen)
    global_state, gen_state = torch.get_rng_state(), gen.get_state()
    lines: list[str] = []
    result = fit_head(model, loader.unaugmented(size=16), lines.append)
    assert torch.equal(torch.get_rng_state(), global_state) and torch.equal(gen.get_state(), gen_state)
    assert result["images"] == 60 and result["train_acc"] == 1.0 and result["train_loss"] < 0.5
    assert lines[0].startswith("head fitted on the frozen features of 60 training images")
    with torch.no_grad():
        model.eval()
        assert (model(next(loader.unaugmented(size=60))[0]).argmax(1) == labels).all()
