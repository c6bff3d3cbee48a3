"""A blank Grad-CAM overlay comes with a warning that says why (no positive evidence at the layer)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cnnlab.viz import inspect as I  # noqa: E402


def _negative_evidence_run():
    """conv (all-ones filter) -> ReLU -> global average -> linear whose class-0 weight is negative: for class 0
    every channel's mean gradient is negative while the activations are positive, so Grad-CAM is 0."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    torch.nn.init.constant_(conv.weight, 1.0)
    torch.nn.init.zeros_(conv.bias)
    fc = torch.nn.Linear(1, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        fc.bias.zero_()
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), fc)
    x = torch.rand(1, 1, 8, 8) + 0.1
    logits = model(x).detach().numpy()
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return SimpleNamespace(
        model=model, targets=np.array([0]), ids=["img0"], classes=["zero", "one"], logits=logits, probs=probs,
        split="test", inputs=lambda idx: x, images=lambda idx: [x[0].permute(1, 2, 0).numpy()],
    )  # fmt: skip


def test_all_zero_grad_cam_warns_on_stderr_and_in_the_json(tmp_path, capsys):
    rp = _negative_evidence_run()
    heat, t = I.grad_cam(rp.model, rp.inputs([0]), target=0)
    assert t == 0 and not np.any(heat > 0)
    (path,) = I.VISUALS["gradcam"](rp, tmp_path, 0, target=0)
    err = capsys.readouterr().err
    assert "cnnlab: warning: the Grad-CAM map for class 'zero' is all zero" in err and "--layer" in err
    meta = json.loads(path.with_suffix(".json").read_text())
    assert "all zero" in meta["warning"]


def test_non_zero_grad_cam_has_no_warning(tmp_path, capsys):
    rp = _negative_evidence_run()
    (path,) = I.VISUALS["gradcam"](rp, tmp_path, 0, target=1)  # class 1's weight is positive
    assert "warning" not in capsys.readouterr().err
    assert "warning" not in json.loads(path.with_suffix(".json").read_text())
