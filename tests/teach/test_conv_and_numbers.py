"""Tests for the teaching visuals: the numbers (checked against torch and the seeds' corrected
values), the figures (pixel size and panel count from the PNG and its JSON) and ``cnnlab teach``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.teach import activations as teaching_activations
from cnnlab.teach import conv as teaching
from cnnlab.teach import numbers as teaching_numbers
from cnnlab.teach import optim as teaching_optim

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _check_files(result, panels: int) -> dict:
    """The PNG exists with the pixel size the JSON reports, and the JSON matches the result."""
    meta = json.loads(result.json.read_text())
    assert meta["panels"] == result.panels == panels
    with Image.open(result.png) as im:
        assert list(im.size) == meta["size_px"] == list(result.size_px)
        # not a blank canvas: a drawn figure has many distinct colours
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 20
    return meta


def _torch_conv(image, kernel) -> np.ndarray:
    x = torch.tensor(np.asarray(image, dtype=np.float64))[None, None]
    k = torch.tensor(np.asarray(kernel, dtype=np.float64))[None, None]
    return F.conv2d(x, k)[0, 0].numpy()


# --- convolution -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(teaching.CONV_EXAMPLES))
def test_conv_examples_match_torch(name):
    ex = teaching.CONV_EXAMPLES[name]
    r = teaching.conv_example(name)
    np.testing.assert_allclose(r.values["output"], _torch_conv(ex["image"], ex["kernel"]))


def test_conv_binary_first_output_is_four_and_figure(tmp_path):
    r = teaching.conv_example("binary", out_dir=tmp_path)
    assert r.values["first_output"] == 4
    assert r.values["output_shape"] == [3, 3]
    # 9 window positions + the filter + the output map
    meta = _check_files(r, panels=11)
    np.testing.assert_allclose(meta["values"]["output"], r.values["output"])
    assert meta["values"]["positions_shown"] == [[i, j] for i in range(3) for j in range(3)]


def test_conv_edge_example_corrects_the_source():
    out = teaching.conv_example("edge").values["output"]
    seed_printed = np.array([[0, 0, 270]] * 3)
    assert not np.array_equal(out, seed_printed)
    # the seed's own step ("position (1,1)" = top-left window) gives 90; the map agrees
    assert out[0, 0] == 90
    # the bright block starts in row 2, so the response grows row by row and the last column is flat
    assert list(out[:, 0]) == [90, 180, 270] and list(out[:, 2]) == [0, 0, 0]


def test_conv_patch_and_text():
    r = teaching.conv_example("patch")
    assert r.values["output"][0, 0] == 60  # -10+0+30-40+0+60-70+0+90
    text = teaching.conv_example_text(r)
    assert "= 60" in text and "floor((3 + 2*0 - 3) / 1) + 1 = 1" in text


def test_conv_steps_with_stride_and_padding_match_torch():
    rng = np.random.default_rng(0)
    image, kernel = rng.normal(size=(7, 7)), rng.normal(size=(3, 3))
    calc = teaching.conv2d_steps(image, kernel, stride=2, padding=1)
    x = torch.tensor(image)[None, None]
    expected = F.conv2d(x, torch.tensor(kernel)[None, None], stride=2, padding=1)[0, 0].numpy()
    np.testing.assert_allclose(calc["output"], expected)
    assert len(calc["steps"]) == expected.size


def test_unknown_example_is_a_user_error():
    with pytest.raises(CnnlabError, match="binary"):
        teaching.conv_example("binar")


# --- pooling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(teaching.POOL_EXAMPLES))
def test_pool_examples_match_torch(name, tmp_path):
    x = torch.tensor(np.array(teaching.POOL_EXAMPLES[name]["matrix"], dtype=np.float64))[None, None]
    r = teaching.pool_example(name, out_dir=tmp_path)
    np.testing.assert_allclose(r.values["max"], F.max_pool2d(x, 2)[0, 0].numpy())
    np.testing.assert_allclose(r.values["avg"], F.avg_pool2d(x, 2)[0, 0].numpy())
    assert r.values["global_avg"] == pytest.approx(F.adaptive_avg_pool2d(x, 1).item())
    assert r.values["global_max"] == F.adaptive_max_pool2d(x, 1).item()
    meta = _check_files(r, panels=5)
    assert meta["values"]["global_avg"] == r.values["global_avg"]


def test_pool_seed_values():
    s1 = teaching.pool_example("sequence").values
    assert s1["max"].tolist() == [[6, 8], [14, 16]]  # the source prints this, correctly
    s2 = teaching.pool_example("mixed").values
    assert s2["max"].tolist() == [[6, 4], [8, 9]]  # the source prints [[3, 4], [8, 9]]
    assert s2["avg"].tolist() == [[3.75, 2.25], [5.5, 4.25]]
    assert s2["global_avg"] == 63 / 16 != 3.875  # the source prints 3.875
    text = teaching.pool_example_text(teaching.pool_example("mixed"))
    assert "global average = 63 / 16 = 3.9375" in text
    assert "the source prints global average 3.875; the correct value is 3.9375, because" in text
    assert "the source prints" not in teaching.pool_example_text(teaching.pool_example("sequence"))


# --- activations -----------------------------------------------------------------------------
TORCH_ACT = {
    "relu": F.relu,
    "leaky_relu": lambda t: F.leaky_relu(t, teaching_activations.LEAKY_SLOPE),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "elu": lambda t: F.elu(t, teaching_activations.ELU_ALPHA),
    "softplus": F.softplus,
}


@pytest.mark.parametrize("name", [*teaching_activations.ACTIVATION_ORDER, "swish"])
def test_activation_values_and_derivatives_match_torch(name):
    x = np.concatenate([np.linspace(-6, 6, 241), [-40.0, -1e-3, 1e-3, 40.0]])
    f, df = teaching_activations.activation(name)
    t = torch.tensor(x, requires_grad=True)
    y = TORCH_ACT[name](t)
    y.sum().backward()
    np.testing.assert_allclose(f(x), y.detach().numpy(), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(df(x), t.grad.numpy(), rtol=1e-6, atol=1e-10)


def test_activation_figure(tmp_path):
    r = teaching_activations.activation_plots(out_dir=tmp_path)
    meta = _check_files(r, panels=8)
    acts = meta["values"]["activations"]
    assert set(acts) == set(teaching_activations.ACTIVATION_ORDER)
    assert acts["sigmoid"]["max_derivative"] == pytest.approx(0.25, abs=1e-4)  # vanishing gradients
    assert acts["relu"]["derivative_at_minus_4"] == 0.0  # a dead unit passes no gradient
    assert "sigmoid'" in teaching_activations.activation_text(r)


# --- softmax + cross-entropy ---------------------------------------------------------------------
def test_softmax_example_matches_torch(tmp_path):
    r = teaching_numbers.softmax_example(out_dir=tmp_path)
    z = torch.tensor(teaching_numbers.DEFAULT_LOGITS, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(r.values["probabilities"], torch.softmax(z, 0).detach().numpy())
    for k, loss in enumerate(r.values["cross_entropy_per_target"]):
        assert loss == pytest.approx(F.cross_entropy(z[None], torch.tensor([k])).item())
    F.cross_entropy(z[None], torch.tensor([0])).backward()
    np.testing.assert_allclose(r.values["gradient_if_target_0"], z.grad.numpy(), atol=1e-12)
    # the source prints [0.76, 0.21, 0.03]; the correct rounding is [0.76, 0.17, 0.07]
    assert np.round(r.values["probabilities"], 2).tolist() == [0.76, 0.17, 0.07]
    assert r.values["example_loss_cat"] == pytest.approx(2.302585, abs=1e-6)
    _check_files(r, panels=4)


def test_cross_entropy_is_stable_for_large_logits():
    assert teaching_numbers.cross_entropy([1000.0, 0.0], 1) == pytest.approx(1000.0)
    assert np.isfinite(teaching_numbers.softmax([1000.0, -1000.0])).all()


# --- 1x1 convolutions and parameter counts ----------------------------------------------------
def _n_params(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_onebyone_bottleneck_counts_match_torch(tmp_path):
    r = teaching_numbers.onebyone_example(out_dir=tmp_path)
    ex = r.values["examples"][teaching_numbers.ONE_BY_ONE_EXAMPLES[0][0]]
    nn = torch.nn
    direct = nn.Conv2d(256, 128, 5, padding=2, bias=False)
    reduce, conv = nn.Conv2d(256, 64, 1, bias=False), nn.Conv2d(64, 128, 5, padding=2, bias=False)
    assert ex["no_bias"]["direct_params"] == _n_params(direct) == 819_200  # the source prints 820,000
    assert ex["no_bias"]["kxk_after_params"] == _n_params(conv) == 204_800  # the source prints 102,400
    assert ex["no_bias"]["bottleneck_params"] == _n_params(reduce, conv) == 221_184  # the source prints 118,784
    assert ex["with_bias"]["bottleneck_params"] == _n_params(nn.Conv2d(256, 64, 1), nn.Conv2d(64, 128, 5))
    # MACs: every output position of a 'same' conv costs one dot product per output channel
    x = torch.zeros(1, 256, 32, 32)
    assert ex["no_bias"]["direct_macs"] == direct(x).numel() * 5 * 5 * 256
    _check_files(r, panels=2)


def test_onebyone_googlenet_and_depthwise():
    r = teaching_numbers.onebyone_example()
    g = r.values["examples"][teaching_numbers.ONE_BY_ONE_EXAMPLES[1][0]]["no_bias"]
    assert (g["direct_params"], g["bottleneck_params"]) == (614_400, 325_632)  # printed correctly by the source
    assert round(g["param_reduction_pct"]) == 47
    d = r.values["depthwise_separable"]
    assert (d["standard"], d["separable"]) == (6_912, 795)
    assert "3.70x fewer weights" in teaching_numbers.onebyone_text(r)


def test_params_examples_match_torch_modules():
    nn = torch.nn
    ex = teaching_numbers.params_examples()
    assert ex["conv 3x3, 1 -> 16"]["value"] == _n_params(nn.Conv2d(1, 16, 3)) == 160
    assert ex["dense 128 -> 64"]["value"] == _n_params(nn.Linear(128, 64)) == 8256
    assert ex["batch norm, 16 channels"]["value"] == _n_params(nn.BatchNorm2d(16))
    assert ex["dense 1024 -> 512"]["value"] == _n_params(nn.Linear(1024, 512))
    blocks = [m for c_in, c_out in [(3, 32), (32, 64), (64, 128)] for m in (nn.Conv2d(c_in, c_out, 3, padding=1),
              nn.BatchNorm2d(c_out))]  # fmt: skip
    head = [nn.Linear(2048, 512), nn.BatchNorm1d(512), nn.Linear(512, 256), nn.BatchNorm1d(256), nn.Linear(256, 10)]
    seed_cnn = nn.Sequential(*blocks, *head)
    assert ex[teaching_numbers.SEED_CNN_TOTAL]["value"] == _n_params(seed_cnn)  # the source prints ~1,276,734


# --- optimisers --------------------------------------------------------------------------------
def _torch_opt(name, params):
    o = torch.optim
    return {
        "gd": lambda: o.SGD(params, lr=0.1),
        "momentum": lambda: o.SGD(params, lr=0.1, momentum=0.9),
        "damped": lambda: o.SGD(params, lr=0.1, momentum=0.9, dampening=0.9),
        "nesterov": lambda: o.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
        "rmsprop": lambda: o.RMSprop(params, lr=0.1, alpha=0.9),
        "adam": lambda: o.Adam(params, lr=0.1),
    }[name]()


OURS = {
    "gd": lambda: teaching_optim.GD(0.1),
    "momentum": lambda: teaching_optim.Momentum(0.1, 0.9),
    "damped": lambda: teaching_optim.Momentum(0.1, 0.9, dampening=0.9),  # the moving-average form
    "nesterov": lambda: teaching_optim.Nesterov(0.1, 0.9),
    "rmsprop": lambda: teaching_optim.RMSProp(0.1, alpha=0.9),
    "adam": lambda: teaching_optim.Adam(0.1),
}


@pytest.mark.parametrize("surface", ["quadratic", "himmelblau", "wells"])
@pytest.mark.parametrize("name", list(OURS))
def test_update_rules_match_torch_optim(name, surface):
    s = teaching_optim.SURFACES.create(surface)
    ours = OURS[name]()
    w = np.array(s.start)
    p = torch.nn.Parameter(torch.tensor(s.start, dtype=torch.float64))
    opt = _torch_opt(name, [p])
    for _ in range(5):  # the first step, and the ones after it where the buffers matter
        g = s.grad(w)
        w = ours.step(w, g)
        p.grad = torch.tensor(s.grad(p.detach().numpy()))
        opt.step()
        np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("surface", teaching_optim.SURFACE_ORDER)
def test_surface_gradients_match_finite_differences(surface):
    s = teaching_optim.SURFACES.create(surface)
    rng = np.random.default_rng(1)
    for w in rng.uniform(-2, 2, size=(5, 2)):
        h = 1e-6
        fd = [(s.value(w + h * e) - s.value(w - h * e)) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(s.grad(w), fd, rtol=1e-5, atol=1e-6)


def test_sgd_noise_is_seeded_and_zero_noise_is_gd():
    s = teaching_optim.SURFACES.create("quadratic")
    a, b = teaching_optim.run_path(s, "sgd", seed=3), teaching_optim.run_path(s, "sgd", seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, teaching_optim.run_path(s, "sgd", seed=4))
    w, g = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    np.testing.assert_allclose(teaching_optim.SGD(0.1, noise=0.0).step(w, g), teaching_optim.GD(0.1).step(w, g))


def test_adam_first_step_has_length_lr_per_coordinate():
    # m^/sqrt(v^) = g/|g| on step 1, so every coordinate moves by lr whatever the gradient's scale
    w = np.array([3.0, -2.0])
    step = teaching_optim.Adam(0.05).step(w, np.array([1e3, -1e-2])) - w
    np.testing.assert_allclose(np.abs(step), [0.05, 0.05], rtol=1e-5)


def test_saddle_stalls_plain_gd_but_noise_escapes():
    import dataclasses

    s = dataclasses.replace(teaching_optim.SURFACES.create("saddle"), start=(-2.0, 0.0))
    gd = teaching_optim.path_summary(s, teaching_optim.run_path(s, "gd"))
    sgd = teaching_optim.path_summary(s, teaching_optim.run_path(s, "sgd"))
    assert gd["end"][1] == 0.0 and abs(gd["end"][0]) < 1e-2  # stuck at the stationary point
    assert sgd["left_box"] and sgd["final_loss"] < gd["final_loss"]


def test_optimizer_figure_and_json(tmp_path):
    r = teaching_optim.optimizer_paths(out_dir=tmp_path)
    meta = _check_files(r, panels=len(teaching_optim.SURFACE_ORDER))
    funcs = meta["values"]["functions"]
    assert list(funcs) == teaching_optim.SURFACE_ORDER
    for name in teaching_optim.OPTIMIZER_ORDER:
        quad = funcs["quadratic"]["paths"][name]
        assert quad["final_loss"] < quad["start_loss"] / 100  # all of them make progress on a bowl
        assert funcs["saddle"]["paths"][name]["left_box"]  # start 0.01 off the ridge: all slide off
    wells = funcs["wells"]["paths"]
    # from the same start, some optimisers settle in the local well and some reach the global one
    assert {p["nearest_minimum"] for p in wells.values()} == {0, 1}
    assert "himmelblau" in teaching_optim.optimizer_paths_text(r).lower()


# --- the teach command -----------------------------------------------------------------------
def _teach(argv):
    from cnnlab.cli import teach

    parser = argparse.ArgumentParser()
    teach.add_parser(parser.add_subparsers())
    args = parser.parse_args(["teach", *argv])
    return args.func(args)


def test_teach_command_prints_and_writes(tmp_path, capsys):
    assert _teach(["conv", "edge", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "out[0,0] = " in out and "= 90" in out and "11 panels" in out
    assert (tmp_path / "conv_edge.png").exists() and (tmp_path / "conv_edge.json").exists()
    assert _teach(["softmax", "1,2,3", "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "softmax_1_2_3.json").read_text())
    assert meta["values"]["logits"] == [1.0, 2.0, 3.0]
    assert _teach(["params", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1,278,218" in out and "the source prints about 1,276,734" in out
    assert "seed 0" not in out


@pytest.mark.parametrize("topic", ["params", "batchnorm", "activations", "pool", "onebyone"])
def test_every_topic_writes_a_png_and_json(topic, tmp_path, capsys):
    assert _teach([topic, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path}" in out and "seed 0" not in out.lower() and "seed0" not in out.lower()
    assert list(tmp_path.glob("*.png")) and list(tmp_path.glob("*.json"))


def test_custom_softmax_and_rf_do_not_overwrite_the_defaults(tmp_path, capsys):
    for argv in (["softmax"], ["softmax", "1,2,3"], ["rf"], ["rf", "conv3,pool2"]):
        assert _teach([*argv, "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["receptive_field.json", "receptive_field_conv3_pool2_in32.json", "softmax.json",
                     "softmax_1_2_3.json"]  # fmt: skip
    assert json.loads((tmp_path / "softmax.json").read_text())["values"]["logits"] == [2.5, 1.0, 0.1]
    out = capsys.readouterr().out
    assert out.count("the source prints") == 2  # the defaults carry their corrections, custom runs none


def test_teach_conv_stride_padding_channels_match_torch(tmp_path, capsys):
    assert _teach(["conv", "--stride", "2", "--padding", "1", "--channels", "3", "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "conv_binary_c3_s2_p1.json").read_text())
    x = torch.tensor(meta["values"]["image"], dtype=torch.float64)[None]  # (1, 3, 5, 5)
    w = torch.tensor(meta["values"]["kernel"], dtype=torch.float64)[None]  # (1, 3, 3, 3)
    np.testing.assert_allclose(meta["values"]["output"], F.conv2d(x, w, stride=2, padding=1)[0, 0].numpy())
    out = capsys.readouterr().out
    assert "channel 2:" in out and "out = floor((5 + 2*1 - 3) / 2) + 1 = 3" in out


def test_teach_conv_own_image_file_and_kernel(tmp_path, capsys):
    rgb = np.zeros((40, 20, 3), dtype=np.uint8)
    rgb[:, 10:] = 255  # a vertical edge down the middle
    path = tmp_path / "edge.png"
    Image.fromarray(rgb).save(path)
    argv = ["conv", "--image", str(path), "--channels", "3", "--kernel", "[[-1,0,1],[-1,0,1],[-1,0,1]]"]
    assert _teach([*argv, "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "conv_image_kernel_c3.json").read_text())
    assert np.shape(meta["values"]["image"]) == (3, 32, 16)  # shrunk to 32 px on the long side
    out = np.asarray(meta["values"]["output"])
    assert out.shape == (30, 14) and out.max() > 0 and (out[:, 0] == 0).all()  # only windows on the edge respond
    assert "more windows" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["conv", "--kernel", "[[1,2],[3"], "--kernel must be a matrix"),
    (["conv", "--image", "/no/such.png"], "no such file"),
    (["conv", "--stride", "0"], "--stride must be at least 1"),
    (["conv", "--kernel", "[[[1]],[[1]]]"], "the kernel has 2 channel"),
    (["softmax", "a,b"], "comma-separated numbers"),
])  # fmt: skip
def test_teach_bad_input_is_a_user_error(argv, match, tmp_path):
    with pytest.raises(CnnlabError, match=match):
        _teach([*argv, "--out", str(tmp_path)])


def test_teach_optimizers_step_matches_torch_adam(tmp_path, capsys):
    from cnnlab.teach import adam as teaching_adam

    assert _teach(["optimizers", "--step", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "m_hat = m / (1 - 0.9^1)" in out and "the source prints v_t = beta2*v_(t-1) + (1 - beta1)*g_t^2" in out
    r = teaching_adam.adam_steps("quadratic")
    s = teaching_optim.SURFACES.create("quadratic")
    p = torch.nn.Parameter(torch.tensor(s.start, dtype=torch.float64))
    opt = torch.optim.Adam([p], lr=r.values["lr"])
    for row in r.values["steps"]:
        p.grad = torch.tensor(s.grad(p.detach().numpy()))
        opt.step()
        np.testing.assert_allclose(row["w"], p.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(row["v"], opt.state[p]["exp_avg_sq"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.abs(r.values["steps"][0]["step"]), r.values["lr"])  # step 1: lr per coordinate
    np.testing.assert_allclose(np.abs(r.values["slipped_first_step"]), r.values["lr"] / 10)


# --- batch norm and dropout ----------------------------------------------------------------------
def test_batchnorm_example_matches_torch():
    r = teaching_numbers.batchnorm_example()
    v = r.values
    bn = torch.nn.BatchNorm1d(2, eps=v["eps"], momentum=v["momentum"]).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(v["gamma"]))
        bn.bias.copy_(torch.tensor(v["beta"]))
    x = torch.tensor(v["x"])
    np.testing.assert_allclose(v["y_train"], bn.train()(x).detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(v["running_mean"], bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(v["running_var"], bn.running_var.numpy(), rtol=1e-12)
    np.testing.assert_allclose(v["y_eval"], bn.eval()(x).detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(v["x_hat"].mean(0), 0, atol=1e-12)  # each channel normalised to mean 0


def test_dropout_example_scales_kept_units():
    v = teaching_numbers.batchnorm_example(p_drop=0.25, seed=5).values
    kept = v["dropout_out"][v["dropout_mask"] == 1]
    np.testing.assert_allclose(kept, 1 / (1 - 0.25))
    assert (v["dropout_out"][v["dropout_mask"] == 0] == 0).all()
    text = teaching_numbers.batchnorm_text(teaching_numbers.batchnorm_example())
    assert "running var  = 0.9*1 + 0.1*var*N/(N-1)" in text


# --- the learning pages quote real output ---------------------------------------------------------
def _doc_transcripts():
    """(page, command, expected output) for every `$ cnnlab calc|teach ...` in docs/learn."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "learn"
    for page in sorted(docs.glob("*.md")):
        for block in page.read_text().split("```console\n")[1:]:
            body = block.split("```")[0]
            for chunk in body.split("$ cnnlab ")[1:]:
                command, _, output = chunk.partition("\n")
                if command.split()[0] in ("calc", "teach") and output.strip():
                    yield page.name, command, output


@pytest.mark.slow
def test_learning_pages_show_the_commands_real_output(tmp_path, monkeypatch, capsys):
    from cnnlab.cli import calc, teach

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    calc.add_parser(sub)
    teach.add_parser(sub)
    monkeypatch.chdir(tmp_path)  # teach writes into ./teach, as in the pages
    transcripts = list(_doc_transcripts())
    assert len(transcripts) >= 15
    for page, command, expected in transcripts:
        args = parser.parse_args(command.split())
        assert args.func(args) == 0
        assert capsys.readouterr().out.strip() == expected.strip(), f"{page}: cnnlab {command}"


# --- receptive field -------------------------------------------------------------------------------
def test_receptive_field_figure_matches_arithmetic(tmp_path):
    from cnnlab.arithmetic import receptive_field
    from cnnlab.teach import rf as teaching_rf

    r = teaching_rf.receptive_field_example(out_dir=tmp_path)
    rows = r.values["rows"]
    assert [(row["rf"], row["jump"]) for row in rows] == receptive_field([(3, 1), (2, 2)] * 3)
    assert [row["size"] for row in rows] == [32, 16, 16, 8, 8, 4]
    assert rows[-1]["rf"] == 22  # the source prints 15
    meta = _check_files(r, panels=6)
    assert meta["values"]["rows"] == rows


def test_receptive_field_centre_matches_gradient_support():
    """The input pixels that move one output unit form the square the figure draws for it."""
    from cnnlab.teach import rf as teaching_rf

    row = teaching_rf.receptive_field_table(teaching_rf.SEED_CNN_LAYERS, 32)[-1]
    layers = []
    for _ in range(3):  # the seed CNN's geometry; average pooling so every covered pixel gets gradient
        conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        torch.nn.init.constant_(conv.weight, 1.0)
        layers += [conv, torch.nn.AvgPool2d(2)]
    x = torch.ones(1, 1, 32, 32, requires_grad=True)
    torch.nn.Sequential(*layers)(x)[0, 0, 2, 2].backward()
    cols = (x.grad[0, 0].sum(0) != 0).nonzero().flatten().double()
    centre = row["start"] + 2 * row["jump"]
    assert (cols.min().item(), cols.max().item()) == (centre - (row["rf"] - 1) / 2, centre + (row["rf"] - 1) / 2)
