"""The newer teach topics: backprop by hand, schedules, initialisation, architectures. Each number is checked
against an independent computation (torch autograd, torch.nn.init, the zoo's modules, the engine's schedules)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _teach(argv):
    from cnnlab.cli import teach

    parser = argparse.ArgumentParser()
    teach.add_parser(parser.add_subparsers())
    args = parser.parse_args(["teach", *argv])
    return args.func(args)


# --- backprop --------------------------------------------------------------------------------------
def test_backprop_matches_autograd_and_routes_through_the_winners(tmp_path):
    from cnnlab.teach.backprop import UPSTREAM, backprop_example

    r = backprop_example(out_dir=tmp_path)
    v = r.values
    x = torch.tensor(v["x"], dtype=torch.float64, requires_grad=True)[None, None]
    x.retain_grad()
    w = torch.tensor(v["w"], dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.conv2d(x, w[None, None])
    y.retain_grad()
    torch.nn.functional.max_pool2d(y, 2, stride=1).backward(torch.tensor(UPSTREAM, dtype=torch.float64)[None, None])
    np.testing.assert_array_equal(v["dy"], y.grad[0, 0].numpy())
    np.testing.assert_array_equal(v["dW"], w.grad.numpy())
    np.testing.assert_array_equal(v["dX"], x.grad[0, 0].numpy())
    assert v["db"] == float(y.grad.sum())
    # y[1,1] wins two overlapping windows and receives both gradients: -1 + 0.5
    assert v["dy"][1, 1] == -0.5 and (v["dy"] != 0).sum() == 3
    assert json.loads(r.json.read_text())["panels"] == 6


def test_teach_backprop_prints_the_routing(tmp_path, capsys):
    assert _teach(["backprop", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "window (1,1): max(4, 3, 3, 4) is y[1,1] (first of 2 tied maxima) -> dy[1,1] += 0.5" in out
    assert "torch autograd agrees: max |difference| dW 0.0e+00" in out


# --- schedules -------------------------------------------------------------------------------------
def test_schedules_cover_every_registered_schedule_and_match_the_engine(tmp_path):
    from cnnlab.engine.schedulers import SCHEDULERS
    from cnnlab.teach import schedules as S

    r = S.schedules_example(out_dir=tmp_path)
    curves = r.values["curves"]
    assert set(SCHEDULERS.names()) <= set(curves)
    n = S.EPOCHS * S.STEPS_PER_EPOCH
    assert all(len(c["lr"]) == n for c in curves.values())
    step = curves["step"]["lr"]
    assert step[0] == pytest.approx(0.1) and step[100] == pytest.approx(0.01) and step[200] == pytest.approx(0.001)
    cos = curves["cosine"]["lr"]
    assert cos[n // 2] == pytest.approx(0.05, rel=0.05) and cos[-1] < 1e-3
    warm = curves["cosine+warmup"]["lr"]
    assert warm[0] < 0.01 and max(warm) == pytest.approx(0.1, rel=1e-6)  # rises to the LR, then decays
    onecycle = curves["onecycle"]["lr"]
    assert onecycle[0] == pytest.approx(0.1 / 25) and max(onecycle) == pytest.approx(0.1, rel=1e-3)
    assert json.loads(r.json.read_text())["panels"] == len(curves)
    assert "cosine_restarts" in S.schedules_text(r)


# --- initialisation --------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme,torch_init", [
    ("xavier_normal", torch.nn.init.xavier_normal_),
    ("he_normal", lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu", mode="fan_in")),
])  # fmt: skip
def test_init_stds_are_torch_nn_init(scheme, torch_init):
    from cnnlab.teach.initialisation import SCHEMES

    w = torch.empty(300, 200)  # fan_out 300, fan_in 200
    torch_init(w)
    assert SCHEMES[scheme](200, 300) == pytest.approx(float(w.std()), rel=0.02)


def test_init_statistics_show_vanishing_exploding_and_the_fixes(tmp_path, capsys):
    assert _teach(["init", "--out", str(tmp_path)]) == 0
    stats = json.loads((tmp_path / "init.json").read_text())["values"]["stats"]
    relu, tanh = stats["relu"], stats["tanh"]
    assert relu["normal 0.01"]["activation_std"][-1] < 1e-6  # vanishing
    assert relu["normal 1"]["activation_std"][-1] > 1e6  # exploding
    he = relu["he_normal"]["activation_std"]
    assert 0.5 < he[-1] / he[0] < 2  # He keeps ReLU's spread
    assert relu["xavier_normal"]["activation_std"][-1] < he[-1] / 10  # Xavier halves it per ReLU layer
    assert all(s == 0 for s in tanh["zero"]["activation_std"])  # symmetry: nothing flows
    assert "he_normal" in capsys.readouterr().out


# --- architectures ---------------------------------------------------------------------------------
def _n(m):
    return sum(p.numel() for p in m.parameters())


def test_arch_vgg_uses_the_zoo_convolutions(tmp_path):
    from cnnlab.teach.arch import arch_example

    r = arch_example("vgg", out_dir=tmp_path)
    C = 256
    assert r.values["bars"]["3 x (3x3)"] == 27 * C * C and r.values["bars"]["one 7x7"] == 49 * C * C
    assert json.loads(r.json.read_text())["panels"] == 2


def test_arch_googlenet_corrects_the_twenty_times():
    from cnnlab.models import create_model
    from cnnlab.teach.arch import arch_example, arch_text

    text = arch_text(arch_example("googlenet"))
    ratio = _n(create_model("alexnet")) / _n(create_model("googlenet"))
    assert f"the correct value is {ratio:.1f}x" in text and round(ratio, 1) == 9.2


def test_arch_resnet_gradient_path():
    from cnnlab.teach.arch import residual_gradients

    g = residual_gradients()
    assert g["plain"][0] / g["plain"][-1] < 1e-4  # vanishes towards the input without shortcuts
    assert g["residual"][0] / g["residual"][-1] > 1  # the +1 path carries it back


def test_arch_se_and_mobilenet_counts():
    from cnnlab.models import create_model
    from cnnlab.teach.arch import arch_example

    se = arch_example("se").values["bars"]
    assert se["se_resnet18_cifar"] - se["resnet18_cifar"] == _n(create_model("se_resnet18_cifar")) - _n(
        create_model("resnet18_cifar")
    )
    mb = arch_example("mobilenet").values["bars"]
    assert mb["standard 3x3"] == 9 * 32 * 64 and mb["depthwise + pointwise"] == 9 * 32 + 32 * 64


def test_arch_unknown_name_and_missing_name_are_user_errors(tmp_path):
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="resnet"):
        _teach(["arch", "resnt", "--out", str(tmp_path)])
    with pytest.raises(CnnlabError, match="needs a name"):
        _teach(["arch", "--out", str(tmp_path)])


def test_efficientnet_compound_scaling_doubles_per_step():
    from cnnlab.teach.arch import arch_example

    bars = arch_example("efficientnet").values["bars"]
    assert bars["phi=1"] == pytest.approx(1.2 * 1.1**2 * 1.15**2) and math.isclose(bars["phi=0"], 1.0)


# --- normalisation layers, metrics, the engine's optimisers ----------------------------------------
def test_norms_match_torch_modules(tmp_path):
    from cnnlab.teach.norms import norms_example

    r = norms_example(out_dir=tmp_path)
    x = torch.tensor(r.values["x"])
    n, c = x.shape[:2]
    modules = {
        "batch": torch.nn.BatchNorm2d(c, affine=False).double().train(),
        "layer": torch.nn.LayerNorm(list(x.shape[1:]), elementwise_affine=False).double(),
        "instance": torch.nn.InstanceNorm2d(c).double(),
        "group": torch.nn.GroupNorm(2, c, affine=False).double(),
    }
    for kind, module in modules.items():
        np.testing.assert_allclose(r.values["norms"][kind]["y"], module(x).detach().numpy(), rtol=1e-9, atol=1e-9)
    assert [r.values["norms"][k]["sets"] for k in modules] == [c, n, n * c, n * 2]
    assert json.loads(r.json.read_text())["panels"] == 4


def test_metrics_worked_example_counts(tmp_path):
    from cnnlab.teach.metrics import metrics_example, metrics_text

    r = metrics_example(out_dir=tmp_path)
    m = r.values["metrics"]
    assert m["accuracy"] == 8 / 12
    cat, dog, bird = m["per_class"]
    assert (cat["precision"], cat["recall"]) == (3 / 4, 3 / 5)
    assert (dog["precision"], dog["recall"]) == (3 / 6, 3 / 4)
    assert (bird["precision"], bird["recall"]) == (1.0, 2 / 3)
    assert m["macro"]["f1"] == pytest.approx((2 / 3 + 0.6 + 0.8) / 3)
    assert r.values["top2_accuracy"] == 11 / 12
    assert "dog   precision = 3/6 = 0.5000" in metrics_text(r)


def test_engine_adam_path_is_the_numpy_adam_path():
    from cnnlab.teach import optim as teaching_optim
    from cnnlab.teach.optim_engine import engine_optimizers_example, engine_path

    s = teaching_optim.SURFACES.create("quadratic")
    ours = teaching_optim.Adam(0.3)
    w, expected = np.array(s.start), [np.array(s.start)]
    for _ in range(10):
        w = ours.step(w, s.grad(w))
        expected.append(w)
    np.testing.assert_allclose(engine_path(s, "adam", 10), expected, rtol=1e-10)
    paths = engine_optimizers_example().values["paths"]
    assert all(p["final_loss"] < p["start_loss"] for p in paths.values())
    assert paths["adagrad"]["final_loss"] < 1e-3 and paths["adadelta"]["final_loss"] > 1  # adadelta starts slowly


# --- transfer learning, and the learning pages' other commands ---------------------------------------
def test_transfer_counts_match_requires_grad(tmp_path):
    from cnnlab.finetune.transfer import apply_strategy
    from cnnlab.models import create_model
    from cnnlab.teach.transfer import transfer_example

    r = transfer_example(out_dir=tmp_path)
    model = create_model("resnet18_cifar")
    apply_strategy(model, "finetune_top", n_blocks=1)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert r.values["strategies"]["finetune_top (1)"]["trainable"] == trainable
    assert r.values["strategies"]["feature_extraction"]["trainable"] == 512 * 10 + 10  # the head only
    lrs = list(r.values["lrs"].values())
    assert lrs[0] == 1e-3 and all(b == a / 2 for a, b in zip(lrs, lrs[1:], strict=False))


def test_learning_pages_other_commands_run(tmp_path, monkeypatch, capsys):
    """`$ cnnlab augment-preview ...` transcripts in docs/learn print what the page shows."""
    from pathlib import Path

    from cnnlab.cli.main import main

    monkeypatch.chdir(tmp_path)
    docs = Path(__file__).resolve().parents[2] / "docs" / "learn"
    ran = 0
    for page in sorted(docs.glob("*.md")):
        for block in page.read_text().split("```console\n")[1:]:
            for chunk in block.split("```")[0].split("$ cnnlab ")[1:]:
                command, _, expected = chunk.partition("\n")
                if command.split()[0] == "augment-preview":
                    assert main(command.split()) == 0
                    assert capsys.readouterr().out.strip() == expected.strip(), f"{page.name}: {command}"
                    ran += 1
    assert ran >= 1


def test_every_teach_topic_is_shown_on_a_learning_page():
    """Each `cnnlab teach TOPIC` appears as a transcript in docs/learn (so the page test runs it)."""
    from pathlib import Path

    from cnnlab.cli.teach import TOPICS

    docs = Path(__file__).resolve().parents[2] / "docs" / "learn"
    shown = {
        chunk.split()[1]
        for page in docs.glob("*.md")
        for block in page.read_text().split("```console\n")[1:]
        for chunk in block.split("```")[0].split("$ cnnlab ")[1:]
        if chunk.startswith("teach ")
    }
    assert set(TOPICS.names()) <= shown, set(TOPICS.names()) - shown
