"""Recording every layer and recomputing single units: for each zoo model the explainer must handle,
every kind of unit recomputed by hand equals what the layer produced; receptive-field boxes match
the gradient's support and the summary's RF."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from explain_helpers import random_bn_stats
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.explainer import spread_over_classes
from cnnlab.explain.explainer import test_images as find_test_images
from cnnlab.explain.hooks import record, softmax_arithmetic, unit_arithmetic, window_of
from cnnlab.models import create_model
from cnnlab.models.summary import summary

ZOO = [
    ("seed_cnn", 1, 28, {"conv", "batchnorm", "activation", "maxpool", "copy", "linear"}),
    ("lenet5", 1, 28, {"conv", "activation", "avgpool", "copy", "linear"}),
    ("fast_cnn", 3, 32, {"conv", "batchnorm", "activation", "maxpool", "copy", "linear"}),
    ("mnist_cnn", 1, 28, {"conv", "activation", "maxpool", "copy", "linear"}),
    ("vgg11_bn_cifar", 3, 32, {"conv", "batchnorm", "activation", "maxpool", "avgpool", "copy", "linear"}),
    ("resnet18_cifar", 3, 32, {"conv", "batchnorm", "activation", "avgpool", "copy", "linear"}),
]


def _model(name: str, c: int, s: int) -> nn.Module:
    torch.manual_seed(0)
    return random_bn_stats(create_model(name, num_classes=10, in_channels=c, input_size=s)).eval()


@pytest.mark.parametrize("name,c,s,kinds", ZOO, ids=[z[0] for z in ZOO])
def test_every_unit_recomputed_by_hand_equals_the_layer_output(name, c, s, kinds):
    model = _model(name, c, s)
    x = torch.randn(1, c, s, s, generator=torch.Generator().manual_seed(1))
    records, logits = record(model, x)
    with torch.no_grad():
        assert torch.allclose(logits, model(x)[0], atol=1e-5)  # hooks change nothing
    rng = np.random.default_rng(0)
    seen = set()
    for r in records:
        for _ in range(3):
            index = [int(rng.integers(n)) for n in r.y.shape]
            u = unit_arithmetic(r, *index)
            seen.add(u["kind"])
            assert u["computed"] == pytest.approx(u["value"], rel=1e-4, abs=1e-5), (r.name, index, u["kind"])
    assert seen == kinds  # every layer type of the model has its own arithmetic (no "other")


def test_conv_arithmetic_shows_patch_kernel_products_and_bias():
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    x = torch.randn(1, 2, 7, 7)
    (rec,), _ = record(nn.Sequential(conv), x)
    u = unit_arithmetic(rec, 1, 0, 2)  # top row: the window hangs over the zero padding
    patch, kernel = np.array(u["patch"]), np.array(u["kernel"])
    assert patch.shape == (2, 3, 3) and np.all(patch[:, 0, :] == 0)  # padding row
    assert np.allclose(patch[:, 1:, :], x[0, :, 0:2, 3:6].numpy(), atol=1e-6)
    assert np.allclose(np.array(u["products"]), patch * kernel)
    assert u["origin"] == [-1, 3] and u["sum"] + u["bias"] == pytest.approx(u["computed"])
    assert u["computed"] == pytest.approx(float(conv(x)[0, 1, 0, 2].detach()), abs=1e-5)


def test_inplace_relu_keeps_its_input_and_maxpool_names_the_winner():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2))
    records, _ = record(model, torch.randn(1, 1, 10, 10))
    relu, pool = records[1], records[2]
    assert (relu.x < 0).any() and (relu.y >= 0).all()  # the input as it was before ReLU overwrote it
    u = unit_arithmetic(pool, 1, 2, 3)
    wy, wx = u["winner_input"]
    assert (wy // 2, wx // 2) == (2, 3) and u["computed"] == pytest.approx(float(relu.y[1, wy, wx]))


def test_receptive_field_box_is_where_the_gradient_reaches():
    # no activations and positive weights: the gradient of a unit is non-zero exactly on its receptive field
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(2, 2, 5, stride=2, padding=2), nn.Conv2d(2, 1, 3)
    )
    for p in model.parameters():
        p.data.uniform_(0.1, 1.0)
    x = torch.rand(1, 1, 40, 40, requires_grad=True)
    records, _ = record(model, x.detach())
    out = model(x)
    for i, j in [(0, 0), (4, 2), (7, 7)]:
        (grad,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
        ys, xs = np.nonzero(grad[0, 0].numpy())
        assert records[-1].box(i, j, 40) == (ys.min(), xs.min(), ys.max(), xs.max())
    assert records[-1].rf == summary(model, (1, 40, 40)).rows[-1].rf


@pytest.mark.parametrize("name,c,s", [("seed_cnn", 1, 28), ("lenet5", 1, 28), ("vgg11_bn_cifar", 3, 32)])
def test_receptive_field_agrees_with_the_summary_and_holds_the_gradient(name, c, s):
    model = _model(name, c, s)
    x = torch.randn(1, c, s, s, requires_grad=True)
    records, _ = record(model, x.detach())
    rows = {row.name: row for row in summary(model, (c, s, s)).rows}
    for rec in records:
        assert rec.rf == rows[rec.name].rf, rec.name
    conv = next(r for r in records[::-1] if r.type == "Conv2d")
    feats = {}
    handle = conv.module.register_forward_hook(lambda m, i, o: feats.setdefault("y", o))
    model(x)
    handle.remove()
    i, j = conv.y.shape[1] // 2, conv.y.shape[2] // 2
    (grad,) = torch.autograd.grad(feats["y"][0, 0, i, j], x)
    ys, xs = np.nonzero(grad[0].abs().sum(0).numpy())
    y0, x0, y1, x1 = conv.box(i, j, s)
    assert y0 <= ys.min() and ys.max() <= y1 and x0 <= xs.min() and xs.max() <= x1


def test_softmax_arithmetic_and_unit_errors():
    z = torch.tensor([2.0, -1.0, 0.5, 3.0])
    sm = softmax_arithmetic(z)
    assert np.allclose(sm["probs"], torch.softmax(z, 0).numpy()) and sm["max"] == 3.0
    assert sm["sum"] == pytest.approx(sum(np.exp(np.array(sm["logits"]) - 3.0)))
    (rec,), _ = record(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.randn(1, 1, 5, 5))
    with pytest.raises(CnnlabError, match="outside layer"):
        unit_arithmetic(rec, 2, 0, 0)


def test_test_images_of_a_folder_run_and_of_a_named_dataset(tmp_path):
    data = tmp_path / "photos"
    for cls in ["cat", "dog"]:
        (data / cls).mkdir(parents=True)
        (data / cls / "a.png").write_bytes(b"x")
    run = tmp_path / "run"  # a run folder as open_run reads it: config, model file, split.csv
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text(f"data:\n  name: folder:{data}\n")
    meta = {"architecture": "seed_cnn", "kwargs": {}, "classes": ["cat", "dog"], "input_shape": [3, 8, 8]}
    meta |= {"mean": [0.5] * 3, "std": [0.2] * 3}  # open_run checks model.json like every reader
    (run / "model" / "model.json").write_text(json.dumps({**meta, "dataset": f"folder:{data}"}))
    (run / "model" / "weights.safetensors").write_bytes(b"")
    (run / "split.csv").write_text("split,source,label\ntrain,cat/a.png,0\ntest,dog/a.png,1\ntest,cat/a.png,0\n")
    samples, note = find_test_images(run / "model", {"dataset": f"folder:{data}"})
    assert note == "" and [(s.id, s.label) for s in samples] == [("cat/a.png", 0), ("dog/a.png", 1)]  # by class
    assert samples[0].load() == data / "cat" / "a.png"
    samples, note = find_test_images(tmp_path / "bare", {"dataset": "digits"}, limit=12)  # no run: the dataset
    assert len(samples) == 12 and note == "" and samples[0].load().dtype == np.uint8
    assert [s.label for s in samples] == [*range(10), 0, 1]  # every class in turn, not the split's first 12
    samples, note = find_test_images(tmp_path, {"dataset": f"folder:{data}"})
    assert samples == [] and "no test split" in note  # a folder model without its run


def test_sample_images_take_every_class_in_turn():
    labels = [0] * 30 + [1] * 5 + [2] * 2  # a folder's test split: sorted by class, uneven
    picked = spread_over_classes(labels, 8)
    assert [labels[k] for k in picked] == [0, 1, 2, 0, 1, 2, 0, 1] and picked[:3] == [0, 30, 35]
    assert sorted(spread_over_classes(labels, 100)) == list(range(37)) and spread_over_classes([], 5) == []


def test_each_layer_names_the_map_it_read_and_its_window():
    records, _ = record(_model("seed_cnn", 1, 28), torch.randn(1, 1, 28, 28))
    assert [r.source for r in records] == list(range(len(records)))  # sequential: each reads the one before
    conv = records[0]
    assert window_of(conv.module) == {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1]}
    pool = next(r for r in records if r.type == "MaxPool2d")
    assert window_of(pool.module)["kernel"] == [2, 2] and window_of(pool.module)["stride"] == [2, 2]
    assert window_of(records[1].module) is None  # BatchNorm: no window
    records, _ = record(_model("resnet18_cifar", 3, 32), torch.randn(1, 3, 32, 32))
    shapes = [None, *(r.y.shape for r in records)]
    assert any(r.source is None for r in records)  # the ReLU after x + shortcut reads a tensor no module made
    for r in records:
        if r.source is not None and r.source > 0:
            assert shapes[r.source] == r.x.shape and r.source <= records.index(r), r.name
