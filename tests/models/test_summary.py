"""cnnlab.models.summary and the `cnnlab summary` / `cnnlab models` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models
from cnnlab.models.summary import (
    _conv_shape,
    _shape_only_layers,
    build_model,
    default_input_shape,
    parse_input_shape,
    summary,
    totals,
)

SPECS = Path(__file__).resolve().parents[2] / "configs" / "models"


def weight_rows(s):
    return [r for r in s.rows if r.type in ("Conv2d", "Linear")]


def test_seed_cnn_matches_the_seed_table():
    s = summary("seed_cnn", (3, 32, 32))
    # seed 000's per-layer table: three convs and three linear layers
    assert [r.params for r in weight_rows(s)] == [896, 18_496, 73_856, 1_049_088, 131_328, 2_570]
    assert s.total_params == s.trainable_params == 1_278_218  # the table's ~1,276,734 omits the FC BatchNorms
    assert [r.output_shape for r in weight_rows(s)][:3] == [(32, 32, 32), (64, 16, 16), (128, 8, 8)]
    assert s.rf_exact


def test_stacked_3x3_convs_have_rf_3_5_7():
    s = summary("custom", (1, 28, 28), spec=str(SPECS / "rf_stack.yaml"))
    convs = [r for r in s.rows if r.type == "Conv2d"]
    assert [(r.rf, r.jump) for r in convs] == [(3, 1), (5, 1), (7, 1)]
    assert s.rf_exact


def test_rf_follows_the_recurrence_through_pooling():
    # conv3 -> pool2 -> conv3: rf 3, then 3 + 1*1 = 4 (jump 2), then 4 + 2*2 = 8 (seed 002 formula)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3))
    s = summary(model, (1, 16, 16))
    assert [(r.rf, r.jump) for r in s.rows] == [(3, 1), (4, 2), (8, 2)]


def test_adaptive_pool_that_upsamples_keeps_the_receptive_field():
    # torchvision VGG on 32 px: five pools leave 1x1, AdaptiveAvgPool2d((7, 7)) copies it to 7x7
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(7), nn.Conv2d(2, 2, 1), nn.AdaptiveAvgPool2d(11))
    s = summary(net, (1, 3, 3))
    assert [r.output_shape for r in s.rows] == [(2, 1, 1), (2, 7, 7), (2, 7, 7), (2, 11, 11)]
    assert [r.rf for r in s.rows] == [3, 3, 3, 4]  # 7 -> 11: bins of up to two inputs
    assert summary("vgg11", (3, 32, 32)).rows[-1].rf == 150


def test_published_receptive_fields_of_branchy_and_deep_nets():
    # Araujo et al. (Distill 2019) list 435 px for ResNet-18's last conv; VGG-16's conv5_3/pool5 are 196/212
    res = {r.name: r.rf for r in summary("resnet18").rows}
    vgg = [r.rf for r in summary("vgg16").rows if r.type in ("Conv2d", "MaxPool2d")]
    assert res["layer4.1.conv2"] == 435
    assert vgg[-2:] == [196, 212]
    assert not summary("resnet18").rf_exact  # residual additions: flagged approximate


def test_macs_params_and_memory_of_a_conv():
    s = summary(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False)), (3, 10, 10))
    (row,) = s.rows
    assert row.params == 8 * 3 * 3 * 3
    assert row.macs == 8 * 10 * 10 * 3 * 3 * 3  # one multiply-add per weight and output pixel
    assert row.activation_bytes == 8 * 10 * 10 * 4
    assert s.param_bytes == row.params * 4


def test_module_summary_on_cpu_equals_named_summary_on_meta():
    model = create_model("mobilenet_v2_cifar")
    mine, named = summary(model, (3, 32, 32)), summary("mobilenet_v2_cifar", (3, 32, 32))
    assert [(r.name, r.output_shape, r.macs, r.rf) for r in mine.rows] == [
        (r.name, r.output_shape, r.macs, r.rf) for r in named.rows
    ]
    assert model.training  # mode restored
    assert not any("forward" in vars(m) for m in model.modules())  # no stand-in left behind


def test_frozen_parameters_are_reported_as_non_trainable():
    model = create_model("lenet5")
    model[0].requires_grad_(False)
    s = summary(model, (1, 32, 32))
    assert s.non_trainable_params == 6 * 25 + 6
    assert s.rows[0].trainable == 0 and s.rows[0].params == 156


def test_table_shows_rows_and_totals():
    text = summary("lenet5").table()
    assert "Total params: 61,706" in text
    assert "Conv2d" in text and "RF" in text and "Receptive field: exact" in text


@pytest.mark.parametrize("bad", ["3x32", "3x32x0", "axbxc", "", "3x32x32x1"])
def test_bad_input_shape_is_a_clear_error(bad):
    with pytest.raises(CnnlabError, match="CxHxW"):
        parse_input_shape(bad)


def test_parse_and_default_input_shapes():
    assert parse_input_shape("1x28x28") == (1, 28, 28)
    assert parse_input_shape("3,224,224") == (3, 224, 224)
    assert default_input_shape("plain_mlp") == (1, 28, 28)
    assert default_input_shape("resnet50") == (3, 224, 224)


def test_unknown_model_suggests_names():
    with pytest.raises(CnnlabError, match="resnet18"):
        summary("resnt18")


def test_model_that_cannot_take_the_input_is_a_clear_error():
    with pytest.raises(CnnlabError, match="cannot"):
        summary("vgg11", (3, 28, 28))


def test_cli_summary(capsys):
    assert main(["summary", "lenet5", "--input", "1x28x28", "--classes", "5"]) == 0
    out = capsys.readouterr().out
    assert "Total params:" in out and "(5,)" in out


def test_cli_summary_of_a_spec_file(capsys):
    assert main(["summary", str(SPECS / "small_cnn.yaml"), "--input", "1x28x28"]) == 0
    assert "small_cnn.yaml" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "seed_cnn", "--input", "3x32"], "CxHxW"),
        (["summary", "sed_cnn"], "seed_cnn"),
        (["summary", "missing.yaml"], "not found"),
        (["models", "zzzz"], "no registered model"),
    ],
)
def test_cli_user_errors(capsys, argv, message):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_shipped_model_table_lists_every_registered_model():
    from cnnlab.cli.models import table_rows

    assert [r["name"] for r in table_rows()] == list_models()


@pytest.mark.parametrize("name", list_models())
def test_shipped_model_table_row_is_the_model_built_now(name):
    # `cnnlab models` lists this table instead of building the zoo; it must say what summary() says now
    from cnnlab.cli.models import at_classes, model_row, table_rows, zoo_table_row

    (shipped,) = [r for r in table_rows(name) if r["name"] == name]
    assert shipped == zoo_table_row(name), "models/zoo_table.json is stale: run python scripts/build_model_table.py"
    # --classes K moves a row along its growth per class, measured at one class more: a third count must
    # give what the network built for it gives
    assert {k: v for k, v in at_classes(shipped, 3).items() if k not in ("classes", "per_class")} == model_row(
        name, num_classes=3
    )


def test_cli_models_at_another_class_count_are_the_built_networks(capsys):
    def params_listed(argv):
        assert main(argv) == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("resnet18_cifar "))
        return int(line.split()[2].replace(",", ""))

    for k in (1, 7, 1000):
        built = sum(p.numel() for p in create_model("resnet18_cifar", num_classes=k).parameters())
        assert params_listed(["models", "resnet18_c", "--classes", str(k)]) == built
    assert main(["models", "--classes", "0"]) == 1
    assert "--classes must be a positive integer" in capsys.readouterr().err


def test_cli_models_builds_only_the_models_whose_own_input_differs(capsys, monkeypatch):
    import cnnlab.cli.models as cli_models

    built = []
    real_row = cli_models.model_row
    monkeypatch.setattr(cli_models, "model_row", lambda name, *a: built.append(name) or real_row(name, *a))
    assert main(["models", "resnet18", "--input", "3x32x32", "--classes", "7"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert built == ["resnet18"]  # resnet18_cifar, preact_ and se_ take 3x32x32 already: read from the table
    for name in ("resnet18", "resnet18_cifar", "se_resnet18_cifar"):
        net = sum(p.numel() for p in create_model(name, num_classes=7, input_size=32).parameters())
        assert lines[name][1:3] == ["3x32x32", f"{net:,}"]


def test_cli_models_lists_params_and_macs(capsys):
    assert main(["models", "lenet", "--input", "1x32x32"]) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "61,706" in out


def test_cli_models_markdown(capsys):
    assert main(["models", "resnet18*", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| model |")
    assert any("`resnet18`" in line and "11,689,512" in line for line in lines)


def test_summary_runs_non_square_module_inputs():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    s = summary(model, (1, 20, 12))
    assert s.rows[0].output_shape == (4, 18, 10)
    assert s.output_shape == (2,)
    assert torch.get_num_threads() >= 1


def test_cli_summary_of_a_saved_model_folder(tmp_path, capsys):
    from cnnlab.runs.model_file import save_model_file

    model = create_model("lenet5", num_classes=3, in_channels=1, input_size=28)
    meta = {"architecture": "lenet5", "kwargs": {}, "classes": ["a", "b", "c"], "input_shape": [1, 28, 28]}
    save_model_file(tmp_path / "model", model, {**meta, "mean": [0.5], "std": [0.25]})
    assert main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "input 1x28x28 -> output 3" in out
    assert f"Total params: {sum(p.numel() for p in model.parameters()):,}" in out


def _real_pass(name: str, shape: tuple[int, int, int]):
    """The summary of the real network: every layer computed on the CPU (zeroed weights: values do not
    change shapes, and zeros keep the test fast)."""
    model = build_model(name, shape, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            t.zero_()
    s = summary(model, shape, device="cpu")
    s.model = name
    return s


@pytest.mark.parametrize("name", [n for n in list_models() if n != "custom"])
def test_shape_only_summary_equals_the_real_forward_for_every_model(name):
    # named summaries run convs and linear layers as shape stand-ins; every row must be what the real pass gives
    c, h, _ = default_input_shape(name)
    shape = (c, min(h, 64), min(h, 64))  # ImageNet-shaped nets at 64 px: the same layers, a faster real pass
    s = summary(name, shape)
    assert s == _real_pass(name, shape)
    assert totals(name, shape) == (s.total_params, s.total_macs)  # what `cnnlab models --input` lists


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 4, 3),
        nn.Conv2d(3, 4, 3, padding=1, stride=2),
        nn.Conv2d(3, 4, (3, 5), padding=(1, 0), stride=(2, 1), dilation=(1, 2)),
        nn.Conv2d(4, 8, 3, padding="same", dilation=2, groups=2),
        nn.Conv2d(3, 4, 4, padding="valid", stride=3),
        nn.Conv2d(3, 6, 7, padding=3, stride=2, bias=False),
    ],
)
@pytest.mark.parametrize("hw", [(7, 7), (9, 12), (32, 31)])
def test_conv_stand_in_shape_is_torchs(conv, hw):
    x = torch.zeros(2, conv.in_channels, *hw)
    try:
        want = tuple(conv(x).shape)
    except RuntimeError:  # an input smaller than the (dilated) kernel: the stand-in must refuse it too
        want = None
    assert _conv_shape(conv, x) == want


def test_stand_in_runs_the_real_layer_on_an_input_it_would_refuse():
    net = nn.Sequential(nn.Conv2d(3, 4, 5), nn.Flatten(), nn.Linear(4, 2))
    _shape_only_layers(net)
    with pytest.raises(RuntimeError, match="channels"):
        net(torch.zeros(1, 2, 8, 8))  # torch's own message: expected input to have 3 channels
    with pytest.raises(RuntimeError, match="[Kk]ernel size"):
        net(torch.zeros(1, 3, 4, 4))  # smaller than the kernel
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        net(torch.zeros(1, 3, 6, 6))  # 2x2x4 features into a Linear(4, ...)
    assert net(torch.zeros(1, 3, 5, 5)).shape == (1, 2)


def test_batch_norm_stand_in_hands_its_input_on_and_refuses_what_torch_refuses():
    bn = nn.BatchNorm2d(4).eval()
    _shape_only_layers(nn.Sequential(bn))
    x = torch.zeros(1, 4, 6, 6)
    assert bn(x) is x  # the same shape, no pass over the activations
    with pytest.raises(ValueError, match="expected 4D input"):
        bn(torch.zeros(1, 4, 6))
    with pytest.raises(RuntimeError, match="running_mean should contain 5 elements not 4"):
        bn(torch.zeros(1, 5, 6, 6))


@pytest.mark.slow  # a fresh interpreter: its import of torch is most of the time
def test_named_summary_imports_neither_dynamo_nor_sympy():
    # a forward on the meta device, or initialisers through torch's Python references, import TorchDynamo
    # and sympy: ~2 s on a 2-core machine, more than the summary itself (issue 30)
    import subprocess
    import sys

    # every model that torchvision does not build (those are TORCHVISION_BUILT, whose summaries are shipped)
    from cnnlab.models._common import TORCHVISION_BUILT

    names = [n for n in list_models() if n != "custom" and n not in TORCHVISION_BUILT]
    assert len(names) > 30
    code = (
        "import sys\n"
        "from cnnlab.models.summary import summary\n"
        f"for n in {names}: summary(n)\n"
        "summary('resnet18_cifar', (1, 40, 40), num_classes=3)\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
