"""Finite-difference checks of every NumPy-engine layer and the loss (float64, central differences)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.numpy_engine import gradcheck as gc
from cnnlab.numpy_engine.layers import Linear


@pytest.mark.parametrize("name,factory,shape", gc.MODULE_CASES, ids=[c[0] for c in gc.MODULE_CASES])
def test_module_gradients_match_finite_differences(name, factory, shape):
    results = gc.check_module(name, factory(), shape)
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    # every parameter and the input were checked
    assert len(results) == 1 + len(list(factory().named_parameters()))


@pytest.mark.parametrize("name,factory,batch,classes", gc.LOSS_CASES, ids=[c[0] for c in gc.LOSS_CASES])
def test_loss_gradient_matches_finite_differences(name, factory, batch, classes):
    (result,) = gc.check_loss(name, factory(), batch, classes)
    assert result.passed, result.line()


class _WrongLinear(Linear):
    """dL/dx off by a factor of 1.01: the check must notice."""

    def backward(self, dy):
        return 1.01 * super().backward(dy)


def test_gradcheck_detects_a_wrong_backward():
    results = gc.check_module("wrong", _WrongLinear(4, 3), (2, 4))
    by_tensor = {r.tensor: r.passed for r in results}
    assert by_tensor == {"input": False, "weight": True, "bias": True}


def test_numeric_grad_of_a_quadratic_is_exact():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = gc.numeric_grad(lambda: float((x**2).sum()), x)
    np.testing.assert_allclose(g, 2 * x, atol=1e-8)


def test_run_all_filters_by_name():
    results = gc.run_all("tanh")
    assert {r.case for r in results} == {"Tanh"} and all(r.passed for r in results)


def test_a_conv_bias_before_batchnorm_is_explained():
    """Its true gradient is 0 (the batch mean cancels it), so rel error ~1 is expected and the line says why."""
    from cnnlab.numpy_engine.gradcheck import run_all

    lines = {r.tensor: r for r in run_all("Sequential(conv,bn")}
    assert lines["0.bias"].passed and "conv bias before BatchNorm" in lines["0.bias"].line()
    assert lines["0.weight"].note == "" and "(" not in lines["0.weight"].line().split("max rel=")[1]
