import numpy as np
import pytest
from sklearn import metrics as skm

from cnnlab.evaluation.metrics import (
    classification_metrics,
    confusion_matrix,
    cross_entropy,
    format_report,
    topk_accuracy,
)


@pytest.fixture
def random_preds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    scores = rng.normal(size=(400, 5)) + 2.0 * np.eye(5)[y]  # informative but imperfect
    return y, scores


def test_matches_scikit_learn(random_preds):
    y, scores = random_preds
    pred = scores.argmax(1)
    m = classification_metrics(y, pred, scores)
    assert np.array_equal(np.array(m["confusion_matrix"]), skm.confusion_matrix(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    assert [c["precision"] for c in m["per_class"]] == pytest.approx(p)
    assert [c["recall"] for c in m["per_class"]] == pytest.approx(r)
    assert [c["f1"] for c in m["per_class"]] == pytest.approx(f)
    assert [c["support"] for c in m["per_class"]] == list(s)
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (m[avg]["precision"], m[avg]["recall"], m[avg]["f1"]) == pytest.approx((p, r, f))
    assert "top5_accuracy" not in m  # top-5 of 5 classes or fewer is 1 by definition: not reported
    assert topk_accuracy(scores, y, 2) == pytest.approx(skm.top_k_accuracy_score(y, scores, k=2))
    probs = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    assert cross_entropy(scores, y) == pytest.approx(skm.log_loss(y, probs))


def test_seed_000_worked_examples():
    # 100 images predicted "cat": 80 are cats (TP), 20 are not (FP) -> precision 80%.
    # 100 actual cats: 80 found (TP), 20 missed (FN) -> recall 80%.  (class 1 = cat, 0 = other)
    y_true = np.array([1] * 80 + [0] * 20 + [1] * 20 + [0] * 50)
    y_pred = np.array([1] * 80 + [1] * 20 + [0] * 20 + [0] * 50)
    m = classification_metrics(y_true, y_pred, class_names=["other", "cat"])
    cat = m["per_class"][1]
    assert cat["precision"] == pytest.approx(0.80) and cat["recall"] == pytest.approx(0.80)
    assert cat["f1"] == pytest.approx(0.80)


def test_confusion_matrix_rows_are_true_classes_and_normalised_rows_sum_to_one():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), class_names=["a", "b", "c"])
    assert np.allclose(np.array(m["confusion_matrix_normalized"]).sum(1), 1.0)
    assert m["per_class"][2]["precision"] == 0.0  # never predicted: zero, not NaN


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert cross_entropy(logits, np.array([0, 1])) == pytest.approx(0.0, abs=1e-12)
    assert cross_entropy(logits, np.array([1, 1])) == pytest.approx(500.0)


def test_report_lists_every_class_and_averages(random_preds):
    y, scores = random_preds
    text = format_report(classification_metrics(y, scores.argmax(1), scores, [f"c{i}" for i in range(5)]))
    for name in ["c0", "c4", "macro avg", "weighted avg", "accuracy"]:
        assert name in text
    assert "top-5" not in text  # 5 classes: top-5 is 1 by definition
    scores6 = np.concatenate([scores, np.zeros((len(y), 1))], 1)
    six = format_report(classification_metrics(y, scores6.argmax(1), scores6, [f"c{i}" for i in range(6)]))
    assert "top-5" in six


def test_normalised_confusion_over_true_pred_and_all_match_scikit_learn(random_preds):
    from cnnlab.evaluation.metrics import normalize_confusion

    y, scores = random_preds
    pred = scores.argmax(1)
    cm = confusion_matrix(y, pred, 5)
    for over in ("true", "pred", "all"):
        assert np.allclose(normalize_confusion(cm, over), skm.confusion_matrix(y, pred, normalize=over))
    with pytest.raises(ValueError):
        normalize_confusion(cm, "rows")


def test_topk_accuracies_and_report_rows(random_preds):
    from cnnlab.evaluation.metrics import report_rows, topk_accuracies

    y, scores = random_preds
    acc = topk_accuracies(scores, y, (1, 3, 5, 10))
    assert list(acc) == ["top1", "top3", "top5"]  # k above the class count is left out
    assert acc["top3"] == pytest.approx(skm.top_k_accuracy_score(y, scores, k=3))
    assert acc["top1"] == pytest.approx(skm.accuracy_score(y, scores.argmax(1)))
    rows = report_rows(classification_metrics(y, scores.argmax(1), scores))
    assert [r["class"] for r in rows[-2:]] == ["macro avg", "weighted avg"] and len(rows) == 7
    assert rows[-1]["support"] == len(y)
