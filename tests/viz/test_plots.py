import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from cnnlab.evaluation.curves import calibration, pr_ovr, roc_ovr
from cnnlab.evaluation.interpret import prediction_table
from cnnlab.evaluation.metrics import softmax
from cnnlab.viz.plots import plot_confusion, plot_history, plot_image_grid, plot_reliability, plot_roc_pr


def _load(path):
    return Image.open(path).size, json.loads(path.with_suffix(".json").read_text())


@pytest.fixture
def scores():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 300)
    return y, softmax(rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[y])


def test_history_plot_has_three_panels_and_its_numbers(tmp_path):
    hist = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5, "val_acc": 0.4, "lr": 0.1}
        for e in (1, 2, 3)
    ]
    fig = plot_history(hist, tmp_path / "curves.png")
    size, data = _load(tmp_path / "curves.png")
    assert size == (1430, 396)  # 13 x 3.6 inches at 110 dpi
    assert len(fig.axes) == 3 and data["panels"] == ["loss", "accuracy", "learning rate"]
    assert data["epochs"] == [1, 2, 3] and data["val_loss"] == pytest.approx([1.2, 0.6, 0.4])


def test_confusion_plot_json_is_the_row_normalised_matrix(tmp_path):
    cm = np.array([[8, 2], [1, 9]])
    fig = plot_confusion(cm, ["cat", "dog"], tmp_path / "cm.png")
    size, data = _load(tmp_path / "cm.png")
    assert np.allclose(data["matrix"], [[0.8, 0.2], [0.1, 0.9]]) and data["classes"] == ["cat", "dog"]
    assert len(fig.axes) == 2 and size[0] > 400  # heatmap + colour bar


def test_roc_pr_plot_two_panels_matching_scikit_learn(tmp_path, scores):
    y, p = scores
    fig = plot_roc_pr(roc_ovr(y, p), pr_ovr(y, p), ["a", "b", "c"], tmp_path / "roc_pr.png")
    size, data = _load(tmp_path / "roc_pr.png")
    assert size == (1210, 506) and len(fig.axes) == 2 and data["panels"] == ["roc", "pr"]
    assert data["macro_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    for c, curve in enumerate(data["roc"]):
        assert curve["fpr"][0] == 0 and curve["tpr"][0] == 0 and curve["fpr"][-1] == 1 and curve["tpr"][-1] == 1
        assert curve["auc"] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]))
        assert data["pr"][c]["ap"] == pytest.approx(skm.average_precision_score(y == c, p[:, c]))


def test_reliability_plot_counts_and_ece(tmp_path, scores):
    y, p = scores
    cal = calibration(y, p, n_bins=10)
    fig = plot_reliability(cal, tmp_path / "rel.png")
    size, data = _load(tmp_path / "rel.png")
    assert size == (1100, 462) and len(fig.axes) == 2
    assert sum(data["count"]) == 300 and data["ece"] == pytest.approx(cal["ece"]) and len(data["edges"]) == 11
    filled = [a for a, n in zip(data["accuracy"], data["count"]) if n]
    assert all(0 <= a <= 1 for a in filled) and None in data["accuracy"]  # empty low-confidence bins


def test_image_grid_marks_right_and_wrong(tmp_path, scores):
    y, p = scores
    rows = prediction_table(np.log(p[:10]), y[:10], ["a", "b", "c"])
    images = np.random.default_rng(0).random((10, 8, 8, 1))
    fig = plot_image_grid(images, rows, tmp_path / "grid.png", "ten", cols=4)
    size, data = _load(tmp_path / "grid.png")
    assert data["panels"] == 10 and len(fig.axes[0].images) == 10  # one axes holds every thumbnail
    assert size == (int(1.6 * 4 * 110), int((1.9 * 3 + 0.4) * 110))
    assert [r["correct"] for r in data["rows"]] == [r["correct"] for r in rows]
    px = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).reshape(-1, 3).astype(int)
    red = ((px[:, 0] > 180) & (px[:, 1] < 80) & (px[:, 2] < 80)).sum()
    green = ((px[:, 1] > 120) & (px[:, 0] < 60) & (px[:, 2] < 110)).sum()
    n_wrong = sum(not r["correct"] for r in rows)
    assert (red > 0) == (n_wrong > 0) and (green > 0) == (n_wrong < 10)
    with pytest.raises(ValueError):
        plot_image_grid(images[:0], [], tmp_path / "none.png")
