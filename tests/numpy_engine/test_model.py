"""Sequential, state dicts, save/load, modes and the registered NumPy-engine models."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab.numpy_engine as ne
from cnnlab.errors import CnnlabError
from cnnlab.numpy_engine.model import init_weight


@pytest.mark.parametrize("name", ne.NUMPY_MODELS.names())
@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32)])
def test_registered_models_forward_backward(name, in_channels, size):
    m = ne.create_model(name, in_channels=in_channels, input_size=size, num_classes=7)
    x = np.random.default_rng(0).random((3, in_channels, size, size), dtype=np.float32)
    y = m(x)
    assert y.shape == (3, 7) and y.dtype == np.float32 and np.isfinite(y).all()
    loss = ne.CrossEntropyLoss()
    loss(y, np.array([0, 1, 2]))
    m.backward(loss.backward(), input_grad=False)
    assert all(p.grad is not None and p.grad.shape == p.data.shape for p in m.parameters())


def test_lenet_parameter_count_is_lenet5():
    # conv 6*25+6, conv 16*150+16, fc 400*120+120, 120*84+84, 84*10+10
    assert ne.lenet().num_parameters() == 156 + 2416 + 48120 + 10164 + 850


def test_state_dict_uses_torch_sequential_names():
    keys = set(ne.allconv().state_dict())
    assert {"0.weight", "0.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "11.weight"} <= keys


def test_save_and_load_npz_roundtrip(tmp_path):
    ne.manual_seed(1)
    a = ne.allconv()
    a.train()
    a(np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32))  # move running stats
    path = ne.save_npz(a, tmp_path / "m.npz", meta={"model": "allconv"})
    ne.manual_seed(2)
    b = ne.allconv()
    assert ne.load_npz(b, path) == {"model": "allconv"}
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    x = np.random.default_rng(3).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(a.eval()(x), b.eval()(x))


def test_load_refuses_a_different_architecture(tmp_path):
    path = ne.save_npz(ne.lenet(), tmp_path / "m.npz")
    with pytest.raises(CnnlabError, match="missing"):
        ne.load_npz(ne.allconv(), path)
    with pytest.raises(CnnlabError, match="not found"):
        ne.load_npz(ne.lenet(), tmp_path / "nope.npz")


def test_train_eval_switch_reaches_every_layer_and_changes_dropout():
    m = ne.Sequential(ne.Linear(4, 4), ne.Dropout(0.5))
    x = np.ones((8, 4), dtype=np.float32)
    m.eval()
    assert not any(layer.training for layer in m.layers)
    np.testing.assert_array_equal(m(x), m(x))  # deterministic in eval
    m.train()
    assert all(layer.training for layer in m.layers)
    assert not np.array_equal(m(x), m(x))


def test_dropout_is_inverted_and_keeps_the_mean():
    d = ne.Dropout(0.25, rng=np.random.default_rng(0))
    y = d(np.ones((200, 500), dtype=np.float32))
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs(y.mean() - 1.0) < 0.01 and abs((y == 0).mean() - 0.25) < 0.01


def test_zero_grad_and_accumulation():
    m = ne.Sequential(ne.Linear(3, 2))
    x = np.ones((1, 3), dtype=np.float32)
    for _ in range(2):
        m(x)
        m.backward(np.ones((1, 2), dtype=np.float32))
    np.testing.assert_array_equal(m.parameters()[1].grad, [2.0, 2.0])  # accumulated like torch
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_astype_float64_converts_parameters_and_buffers():
    m = ne.allconv().astype(np.float64)
    assert all(v.dtype == np.float64 for k, v in m.state_dict().items() if "num_batches" not in k)


@pytest.mark.parametrize("scheme,expected_std", [("he", np.sqrt(2 / 200)), ("xavier", np.sqrt(2 / 300))])
def test_init_schemes_have_the_right_scale(scheme, expected_std):
    w = init_weight((100, 200), scheme, np.float64, np.random.default_rng(0))
    assert abs(w.std() / expected_std - 1) < 0.02


def test_unknown_model_name_suggests_a_fix():
    with pytest.raises(CnnlabError, match="lenet"):
        ne.create_model("lenett")
