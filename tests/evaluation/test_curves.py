import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from cnnlab.evaluation.curves import (
    auc,
    brier_score,
    calibration,
    curve_metrics,
    pr_ovr,
    precision_recall_curve,
    roc_curve,
    roc_ovr,
)
from cnnlab.evaluation.metrics import softmax


@pytest.fixture
def probs_and_labels():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 500)
    logits = rng.normal(size=(500, 6)) + 1.5 * np.eye(6)[y]
    logits[:50] = np.round(logits[:50])  # ties in scores, which curves must treat as one threshold
    return y, softmax(logits)


def test_roc_curve_points_and_auc_match_scikit_learn(probs_and_labels):
    y, p = probs_and_labels
    for c in range(p.shape[1]):
        ours = roc_curve(y == c, p[:, c])
        fpr, tpr, _ = skm.roc_curve(y == c, p[:, c], drop_intermediate=False)
        assert np.allclose(ours["fpr"], fpr) and np.allclose(ours["tpr"], tpr)
        assert auc(ours["fpr"], ours["tpr"]) == pytest.approx(skm.roc_auc_score(y == c, p[:, c]))


def test_macro_ovr_auc_matches_scikit_learn(probs_and_labels):
    y, p = probs_and_labels
    r = roc_ovr(y, p)
    assert r["macro_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert len(r["curves"]) == 6 and 0.5 < r["macro_auc"] < 1.0


def test_average_precision_matches_scikit_learn(probs_and_labels):
    y, p = probs_and_labels
    r = pr_ovr(y, p)
    for c in range(6):
        assert r["ap"][c] == pytest.approx(skm.average_precision_score(y == c, p[:, c]))
        prec, rec, _ = skm.precision_recall_curve(y == c, p[:, c], drop_intermediate=False)
        ours = precision_recall_curve(y == c, p[:, c])
        # scikit-learn lists the points from full recall down; ours go from the top threshold up
        assert np.allclose(ours["precision"][::-1][: len(prec)], prec)
        assert np.allclose(ours["recall"][::-1][: len(rec)], rec)
    onehot = np.eye(6)[y]
    assert r["macro_ap"] == pytest.approx(skm.average_precision_score(onehot, p, average="macro"))


def test_absent_class_gives_nan_auc_not_a_crash():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    r = roc_ovr(y, p)
    assert np.isnan(r["auc"][2]) and r["macro_auc"] == pytest.approx(1.0)


def test_calibration_bins_match_scikit_learn(probs_and_labels):
    y, p = probs_and_labels
    cal = calibration(y, p, n_bins=10)
    conf, correct = p.max(1), (p.argmax(1) == y)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    filled = cal["count"] > 0
    assert np.allclose(cal["accuracy"][filled], prob_true) and np.allclose(cal["confidence"][filled], prob_pred)
    assert cal["count"].sum() == len(y)
    # ECE by its definition, summed sample by sample
    bins = np.clip(np.ceil(conf * 10).astype(int) - 1, 0, 9)
    ece = sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean() for b in set(bins))
    assert cal["ece"] == pytest.approx(ece)


def test_calibration_of_a_perfectly_calibrated_toy_and_an_overconfident_one():
    # 10 predictions at confidence 0.8, 8 right -> that bin is calibrated, ECE 0
    y = np.array([0] * 8 + [1] * 2)
    p = np.tile([0.8, 0.2], (10, 1))
    assert calibration(y, p, n_bins=5)["ece"] == pytest.approx(0.0)
    # same predictions at confidence 1.0 -> gap 0.2 for everything
    assert calibration(y, np.tile([1.0, 0.0], (10, 1)), n_bins=5)["ece"] == pytest.approx(0.2)


def test_brier_and_summary(probs_and_labels):
    y, p = probs_and_labels
    onehot = np.eye(6)[y]
    assert brier_score(y, p) == pytest.approx(np.mean(np.sum((p - onehot) ** 2, 1)))
    s = curve_metrics(y, p)
    assert set(s) >= {"macro_auc", "auc", "macro_ap", "ap", "ece", "mce", "brier"}
    assert len(s["auc"]) == 6 and all(isinstance(v, float) for v in s["auc"])


def test_package_exports_resolve():
    import cnnlab.evaluation as E
    import cnnlab.viz as V

    assert E.roc_ovr is roc_ovr and {"run_predictions", "most_confused", "classification_metrics"} <= set(E.__all__)
    assert all(callable(getattr(E, n)) for n in E.__all__) and all(callable(getattr(V, n)) for n in V.__all__)
    with pytest.raises(AttributeError):
        E.nope  # noqa: B018
