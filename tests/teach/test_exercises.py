"""The graders of the coding exercises: the reference solutions pass, the stubs are "not answered yet",
and the common slips are named."""

from __future__ import annotations

import numpy as np
import pytest
from exercise_solutions import SOLUTIONS

from cnnlab.teach.exercises import GRADERS, grade


def _load(name: str, code: str):
    ns = {"np": np}
    exec(code, ns)
    return ns[name]


@pytest.mark.parametrize("name", GRADERS.names())
def test_reference_solution_is_graded_correct(name, capsys):
    assert grade(name, _load(name, SOLUTIONS[name]))
    assert capsys.readouterr().out.strip() == f"exercise {name}: correct"


def test_a_stub_is_not_answered_and_an_exception_is_one_line(capsys):
    def stub(*args):
        raise NotImplementedError

    assert not grade("conv2d_forward", stub)
    assert "not answered yet" in capsys.readouterr().out
    assert not grade("conv2d_forward", lambda *a: 1 / 0)
    assert "raised ZeroDivisionError" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "old", "new", "hint"),
    [
        ("conv2d_forward", "+ b\n", "\n", "bias is missing"),
        ("conv2d_forward", "np.tensordot(patch, w,", "np.tensordot(patch, w[..., ::-1, ::-1],", "kernel is flipped"),
        (
            "conv2d_forward",
            "np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))",
            "x",
            "padding is ignored",
        ),
        ("maxpool2d_backward", "+= dy[:, :, i, j]", "+= dy[:, :, i, j] * 0.5", "differs most at index"),
        ("batchnorm_forward", "keepdims=True)\n    x_hat", "keepdims=True, ddof=1)\n    x_hat", "unbiased"),
        ("batchnorm_forward", "axis=(0, 2, 3)", "axis=(1, 2, 3)", "one mean and variance per channel"),
        ("softmax_cross_entropy_grad", "p / len(labels)", "p", "divide by the batch size"),
        ("softmax_cross_entropy_grad", "p / len(labels)", "-p / len(labels)", "sign is flipped"),
    ],
)
def test_a_wrong_answer_gets_a_helpful_message(name, old, new, hint, capsys):
    assert old in SOLUTIONS[name]
    assert not grade(name, _load(name, SOLUTIONS[name].replace(old, new)))
    out = capsys.readouterr().out
    assert out.startswith(f"exercise {name}: not quite") and hint in out, out


def test_max_pool_spread_over_the_window_is_named(capsys):
    def spread(dy, x, k):
        return np.repeat(np.repeat(dy, k, axis=2), k, axis=3) / (k * k)

    assert not grade("maxpool2d_backward", spread)
    assert "belongs to the one input that was the max" in capsys.readouterr().out
