"""The second pass's topics checked against independent computations: torch, scikit-learn and counting
by hand (why-cnn, diagnose, roc, the seeds' metric and convolution examples, AlexNet and VGG counts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def test_why_cnn_counts_and_equivariance():
    from cnnlab.teach.why_cnn import param_counts, shift_experiment

    counts = param_counts()
    assert counts["plain_mlp"]["total"] == 535_818 and counts["mnist_cnn"]["total"] == 1_625_866
    assert counts["mnist_cnn"]["fc1"] == 12_544 * 128 + 128
    c = shift_experiment()["changes"]
    assert c["conv output, shifted back"] == 0 and c["global max pool"] == 0  # equivariant; invariant
    assert c["2x2 max pool, 2-px shift, shifted back"] == 0
    assert (
        c["conv output, as computed"] > 1 and c["2x2 max pool, 1-px shift"] > 0 and c["dense layer on the pixels"] > 0
    )


def test_early_stopping_and_the_seed_rule():
    from cnnlab.teach.diagnose import early_stop, seed000_rule_stops

    losses = [1.0, 0.8, 0.7, 0.72, 0.69, 0.71, 0.73, 0.74, 0.75, 0.76, 0.77]
    assert early_stop(losses) == (5, 10)
    assert early_stop([3.0, 2.0, 1.0]) == (3, 3)  # never patient long enough: runs to the end
    plateau = [0.5, 0.8, 0.9] + [0.87] * 30  # stuck 3 points below its best
    assert seed000_rule_stops(plateau) is None and early_stop([-a for a in plateau]) == (3, 8)
    assert seed000_rule_stops([0.9, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5]) == 7


def test_weight_decay_step_matches_torch():
    from cnnlab.teach.diagnose import sgd_step

    s = sgd_step()
    assert s["plain"] == pytest.approx(0.497)
    w = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.01, weight_decay=0.1)
    w.grad = torch.tensor([0.3], dtype=torch.float64)
    opt.step()
    assert float(w.detach()) == pytest.approx(s["torch_weight_decay"]) == pytest.approx(0.4965)
    assert s["penalty_lambda_w2"] == pytest.approx(0.5 - 0.01 * (0.3 + 2 * 0.1 * 0.5))


def test_initial_loss_and_gradient_noise():
    from cnnlab.teach.diagnose import CrossEntropyLoss, _data, _mlp, gradient_noise

    xt, yt, *_, x_all, y_all = _data()
    assert CrossEntropyLoss().forward(_mlp(64, scale=0.1).forward(xt), yt) == pytest.approx(math.log(10), abs=0.01)
    noise = gradient_noise(x_all, y_all, sizes=(4, 64), draws=20)
    assert noise[4] / noise[64] == pytest.approx(4.0, rel=0.25)  # sqrt(64 / 4)


def test_roc_auc_counts_pairs_and_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    from cnnlab.teach.roc import pairwise_auc, roc_example

    v = roc_example().values
    assert v["auc"] == pytest.approx(v["pairwise_auc"]) == pytest.approx(roc_auc_score(v["labels"], v["scores"]))
    c = v["counts"]
    assert v["fdr"] == pytest.approx(1 - v["precision"]) and v["fpr_at_threshold"] == c["fp"] / (c["fp"] + c["tn"])
    assert v["fdr"] != pytest.approx(v["fpr_at_threshold"])  # the two rates the source conflates
    assert pairwise_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == 0.75


def test_focal_loss_and_class_weights_match_the_training_losses():
    from cnnlab.engine.losses import FocalLoss, class_weights
    from cnnlab.teach.roc import COUNTS, focal_loss

    assert class_weights(COUNTS).tolist() == pytest.approx([1000 / 2700, 1000 / 270, 1000 / 30])
    p = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).log()], dim=1)  # two classes: softmax gives p to class 0
    for gamma in (0.0, 2.0):
        per_example = [float(FocalLoss(gamma=gamma)(logits[i : i + 1], torch.tensor([0]))) for i in range(3)]
        assert per_example == pytest.approx(focal_loss(p.numpy(), gamma).tolist())


def test_seed_metric_examples():
    from cnnlab.teach.metrics import seed_examples

    v = seed_examples()
    m = v["metrics"]
    assert m["accuracy"] == pytest.approx(142 / 150) and m["macro"]["recall"] == pytest.approx(m["accuracy"])
    assert v["precision_80"] == v["recall_80"] == 0.8
    assert [r["precision"] for r in m["per_class"]] == pytest.approx([45 / 48, 48 / 51, 49 / 51])


def test_seed_convolution_minus_six_matches_torch():
    from cnnlab.teach.conv import LEFT_MINUS_RIGHT, NUMBERS, conv_example

    out = conv_example("numbers").values["output"]
    ref = torch.nn.functional.conv2d(torch.tensor(NUMBERS, dtype=torch.float64)[None, None],
                                     torch.tensor(LEFT_MINUS_RIGHT, dtype=torch.float64)[None, None])  # fmt: skip
    assert np.asarray(out).tolist() == ref[0, 0].tolist() == [[-6.0]]


def test_alexnet_paper_and_vgg16_counts():
    from cnnlab.teach.arch import _alexnet_paper_params, _vgg16_imagenet_lines

    paper = torch.nn.Sequential(
        torch.nn.Conv2d(3, 96, 11, 4), torch.nn.Conv2d(96, 256, 5, padding=2, groups=2),
        torch.nn.Conv2d(256, 384, 3), torch.nn.Conv2d(384, 384, 3, groups=2), torch.nn.Conv2d(384, 256, 3, groups=2),
        torch.nn.Linear(9216, 4096), torch.nn.Linear(4096, 4096), torch.nn.Linear(4096, 1000),
    )  # fmt: skip
    assert _alexnet_paper_params() == sum(p.numel() for p in paper.parameters()) == 60_965_224
    text = " ".join(_vgg16_imagenet_lines())
    assert "138,357,544" in text and "123,642,856" in text and "527.8 MiB" in text


def test_dropout_both_forms_keep_the_expected_value():
    from cnnlab.teach.numbers import batchnorm_example

    m = batchnorm_example().values["dropout_means"]
    assert m["inverted"][0] == pytest.approx(m["inverted"][1], abs=0.03)
    assert m["classic"][0] == pytest.approx(m["classic"][1], abs=0.02)
