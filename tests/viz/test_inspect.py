import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.viz import inspect as I


def _json(path):
    return json.loads(path.with_suffix(".json").read_text())


def test_grad_cam_equals_cam_on_a_gap_linear_head():
    # conv -> global average pool -> linear: Grad-CAM's channel weights are w_ck / (h w), so the map is
    # CAM (Zhou et al. 2016) = ReLU(sum_k w_ck A_k), normalised to a maximum of 1.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    lin = nn.Linear(6, 4)
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin)
    x = torch.randn(1, 3, 10, 10)
    cam, t = I.grad_cam(model, x, target=2)
    with torch.no_grad():
        expected = torch.relu((lin.weight[2].view(1, 6, 1, 1) * conv(x)).sum(1))[0]
    assert t == 2 and cam.shape == (10, 10)
    assert np.allclose(cam, (expected / expected.max()).numpy(), atol=1e-5)


def test_saliency_of_a_linear_model_is_its_weight_magnitude():
    torch.manual_seed(0)
    lin = nn.Linear(2 * 5 * 5, 3)
    model = nn.Sequential(nn.Flatten(), lin)
    sal, t = I.saliency(model, torch.randn(1, 2, 5, 5), target=1)
    assert t == 1
    assert np.allclose(sal, lin.weight[1].detach().abs().view(2, 5, 5).amax(0).numpy())


def test_grad_cam_survives_inplace_relu_and_explains_the_prediction(digits_preds):
    x = digits_preds.inputs([0])
    cam, t = I.grad_cam(digits_preds.model, x)  # mnist_cnn: conv followed by ReLU(inplace=True)
    assert t == int(digits_preds.logits[0].argmax())
    assert cam.shape == (8, 8) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    with pytest.raises(CnnlabError, match="no layer named"):
        I.grad_cam(digits_preds.model, x, layer="nope")


def test_filters_and_feature_maps_plots(tmp_path, digits_preds):
    model = digits_preds.model
    w = I.first_layer_filters(model)
    assert w.shape == (32, 1, 3, 3)
    fig = I.plot_filters(w, tmp_path / "filters.png")
    data = _json(tmp_path / "filters.png")
    assert data["panels"] == 32 == len(fig.axes) and data["shape"] == [32, 1, 3, 3] and data["mode"] == "grey"
    assert data["min"] == pytest.approx(w.reshape(32, -1).min(1), abs=1e-6)
    assert Image.open(tmp_path / "filters.png").size == (int(1.2 * 8 * 110), int((1.2 * 4 + 0.5) * 110))

    maps = I.feature_maps(model, digits_preds.inputs([4]))
    assert [(n, m.shape) for n, m in maps] == [("0", (32, 8, 8)), ("2", (64, 8, 8))]
    fig = I.plot_feature_maps(digits_preds.images([4])[0], maps, tmp_path / "fm.png", max_channels=6)
    data = _json(tmp_path / "fm.png")
    assert data["panels"] == 1 + 6 + 6 == len(fig.axes)
    strongest = np.abs(maps[1][1]).mean((1, 2)).argmax()
    assert data["layers"][1]["channels"][0] == strongest  # most active channel shown first


def test_heatmap_plot_and_prediction_grid(tmp_path, digits_preds):
    cam, _ = I.grad_cam(digits_preds.model, digits_preds.inputs([1]))
    fig = I.plot_heatmap(digits_preds.images([1])[0], cam, tmp_path / "gc.png", "Grad-CAM")
    data = _json(tmp_path / "gc.png")
    assert len(fig.axes) == 2 and np.allclose(data["map"], cam, atol=1e-4)
    assert tuple(data["peak"]) == np.unravel_index(cam.argmax(), cam.shape)
    rows = I.prediction_grid_rows(digits_preds.rows(), n=12, seed=1)
    assert len(rows) == 12 and [r["index"] for r in rows] == sorted(r["index"] for r in rows)
    assert rows == I.prediction_grid_rows(digits_preds.rows(), n=12, seed=1)


def test_filter_normalised_direction_matches_every_filter_norm(digits_preds):
    model = digits_preds.model
    d = I.filter_normalized_direction(model, torch.Generator().manual_seed(0))
    for p, di in zip(model.parameters(), d):
        assert di.shape == p.shape
        if p.dim() <= 1:
            assert torch.count_nonzero(di) == 0  # biases stay put
        else:
            assert torch.allclose(di.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-4)
    again = I.filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(d, again))


def test_loss_landscape_slices_center_on_the_trained_loss(tmp_path, digits_preds):
    from cnnlab.evaluation.metrics import cross_entropy

    model = digits_preds.model
    before = [p.detach().clone() for p in model.parameters()]
    idx = np.arange(120)
    batches = [(digits_preds.inputs(idx), torch.from_numpy(digits_preds.targets[idx]))]
    one = I.loss_landscape(model, batches, dims=1, steps=5, span=0.5)
    two = I.loss_landscape(model, batches, dims=2, steps=3, span=0.5)
    trained = cross_entropy(digits_preds.logits[:120], digits_preds.targets[:120])
    assert one["loss"][2] == pytest.approx(trained, rel=1e-4) and two["loss"][1, 1] == pytest.approx(trained, rel=1e-4)
    assert one["loss"].shape == (5,) and two["loss"].shape == (3, 3) and one["loss"].max() > trained
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # weights restored
    I.plot_landscape_1d(one, tmp_path / "l1.png")
    fig = I.plot_landscape_2d(two, tmp_path / "l2.png")
    d1, d2 = _json(tmp_path / "l1.png"), _json(tmp_path / "l2.png")
    assert d1["panels"] == 2 and d1["loss"] == pytest.approx(one["loss"].tolist())
    assert np.allclose(d2["loss"], two["loss"]) and d2["alphas"] == pytest.approx([-0.5, 0, 0.5])
    assert len(fig.axes) == 2  # contour + colour bar
    with pytest.raises(CnnlabError):
        I.loss_landscape(model, batches, dims=3)


def test_visualize_dispatch_errors(digits_run):
    with pytest.raises(CnnlabError, match="gradcam"):
        I.visualize(digits_run, "gradcma")
    with pytest.raises(CnnlabError, match="outside"):
        I.visualize(digits_run, "saliency", index=10_000)


@pytest.mark.parametrize("in_channels, mode", [(3, "rgb"), (1, "grey"), (4, "mean over input channels")])
def test_filter_plot_modes(tmp_path, in_channels, mode):
    w = np.random.default_rng(0).normal(size=(10, in_channels, 5, 5))
    fig = I.plot_filters(w, tmp_path / "f.png", max_filters=6)
    data = _json(tmp_path / "f.png")
    assert data["mode"] == mode and data["panels"] == 6 == len(fig.axes) and data["shape"] == [10, in_channels, 5, 5]
    assert Image.open(tmp_path / "f.png").size == (round(1.2 * 6 * 110), round(1.7 * 110))
