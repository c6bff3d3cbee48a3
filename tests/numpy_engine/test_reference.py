"""The plain-loop reference (numpy_engine/reference.py) is the oracle: the fast im2col engine must agree
with it, and the reference itself agrees with finite differences (and with torch where it is installed)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.numpy_engine import functional as Fn
from cnnlab.numpy_engine import reference as R
from cnnlab.numpy_engine.gradcheck import numeric_grad

CONV_CASES = [  # (x shape, Co, k, stride, padding): odd sizes so off-by-one errors cannot hide
    ((2, 3, 7, 6), 4, 3, 1, 0),
    ((2, 2, 7, 5), 3, 3, 2, 1),
    ((1, 1, 5, 5), 1, 3, 1, 0),
    ((2, 2, 6, 7), 2, 5, 1, 2),
    ((1, 3, 8, 7), 2, 2, 3, 0),
]


@pytest.mark.parametrize("shape,co,k,s,p", CONV_CASES)
def test_fast_conv_matches_the_loops(shape, co, k, s, p):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((co, shape[1], k, k)), rng.standard_normal(co)
    y_ref = R.conv2d(x, w, b, s, p)
    y, cache = Fn.conv2d_forward(x, w, b, (s, s), (p, p))
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = R.conv2d_backward(dy, x, w, s, p)
    dx, dw, db = Fn.conv2d_backward(dy, cache, w, x.shape, (s, s), (p, p))
    for fast, ref in ((dx, dx_ref), (dw, dw_ref), (db, db_ref)):
        np.testing.assert_allclose(fast, ref, rtol=1e-10, atol=1e-12)


def test_reference_conv_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2)
    dy = rng.standard_normal(R.conv2d(x, w, b, 2, 1).shape)

    def loss() -> float:
        return float((R.conv2d(x, w, b, 2, 1) * dy).sum())

    dx, dw, db = R.conv2d_backward(dy, x, w, 2, 1)
    for analytic, tensor in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(analytic, numeric_grad(loss, tensor), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape,k,s", [((2, 3, 6, 8), 2, 2), ((2, 2, 7, 5), 2, 2), ((1, 2, 7, 7), 3, 2)])
def test_fast_pooling_matches_the_loops(shape, k, s):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    x[0, 0, :2, :2] = 1.0  # a tie: the first maximum (row-major) must win in both
    y, idx = Fn.maxpool2d_forward(x, (k, k), (s, s), (0, 0))
    np.testing.assert_array_equal(y, R.maxpool2d(x, k, s))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(Fn.maxpool2d_backward(dy, idx, x.shape, (k, k), (s, s), (0, 0)),
                               R.maxpool2d_backward(dy, x, k, s))  # fmt: skip
    np.testing.assert_allclose(Fn.avgpool2d_forward(x, (k, k), (s, s), (0, 0)), R.avgpool2d(x, k, s))
    np.testing.assert_allclose(Fn.avgpool2d_backward(dy, x.shape, (k, k), (s, s), (0, 0)),
                               R.avgpool2d_backward(dy, x, k, s))  # fmt: skip


def test_maxpool_routes_the_whole_gradient_to_one_pixel_per_window():
    x = np.array([[[[1.0, 3, 2, 4], [5, 6, 1, 2], [7, 8, 9, 1], [3, 4, 2, 5]]]])
    dx = R.maxpool2d_backward(np.ones((1, 1, 2, 2)), x)
    assert dx.sum() == 4 and (dx > 0).sum() == 4
    assert [tuple(p) for p in np.argwhere(dx[0, 0])] == [(0, 3), (1, 1), (2, 1), (2, 2)]  # the 6, 4, 8 and 9


def test_reference_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=2, padding=1)
    np.testing.assert_allclose(R.conv2d(x, w, b, 2, 1), yt.detach().numpy(), rtol=1e-10)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(dy))
    for ours, t in zip(R.conv2d_backward(dy, x, w, 2, 1), (xt, wt, bt), strict=True):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("page", ["01-convolution.md", "backprop.md"])
def test_the_pages_quote_the_reference_code_as_it_is(page):
    """docs/learn shows reference.py's loops inline: every quoted line must still be in the file."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    source = {line.strip() for line in (repo / "src/cnnlab/numpy_engine/reference.py").read_text().splitlines()}
    blocks = [b.split("```")[0] for b in (repo / "docs/learn" / page).read_text().split("```python\n")[1:]]
    quoted = [line.strip() for b in blocks for line in b.splitlines() if line.strip()]
    assert len(quoted) >= 8
    assert [q for q in quoted if q not in source] == []
