"""cnnlab.models.custom: sequential nets from YAML specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.custom import CustomNet, load_spec

SPECS = Path(__file__).resolve().parents[2] / "configs" / "models"
EXAMPLES = sorted(SPECS.glob("*.yaml"))


def test_examples_exist():
    assert {p.stem for p in EXAMPLES} >= {"small_cnn", "blocks_tour", "rf_stack"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize(("c", "size"), [(1, 28), (3, 32)])
def test_example_specs_build_and_train(path, c, size):
    model = create_model("custom", spec=str(path), num_classes=4, in_channels=c, input_size=size)
    out = model(torch.randn(2, c, size, size))
    assert out.shape == (2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_in_channels_and_features_are_inferred():
    layers = [{"conv": 6}, "bn", {"act": "relu"}, {"pool": "max"}, "flatten", {"linear": "classes"}]
    model = create_model("custom", spec=layers, num_classes=3, in_channels=2, input_size=8)
    assert isinstance(model, CustomNet)
    conv, linear = model[0], model[-1]
    assert conv.in_channels == 2 and conv.padding == (1, 1)  # "same" padding by default
    assert linear.in_features == 6 * 4 * 4 and linear.out_features == 3
    assert model.spec == layers  # kept for the model file


def test_spec_as_mapping_and_file_agree(tmp_path):
    layers = [{"conv": {"out": 4, "k": 5, "p": 0}}, {"act": "gelu"}, "gap", "flatten", {"linear": "classes"}]
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"name": "net", "layers": layers}))
    from_file = create_model("custom", spec=str(path), input_size=16)
    from_dict = create_model("custom", spec={"layers": layers}, input_size=16)
    assert [type(m) for m in from_file] == [type(m) for m in from_dict]
    assert from_file.spec_name == "net" and from_file[0].kernel_size == (5, 5)
    assert load_spec(str(path))[1] == layers


@pytest.mark.parametrize(
    ("layers", "pattern"),
    [
        ([{"conv": {"out": 8, "kernel": 3}}], r"layer 0 \(conv\): unknown key 'kernel'.*Allowed: out, k"),
        ([{"conv": 8}, "bnn"], r"layer 1: unknown layer type 'bnn'. Did you mean 'bn'"),
        ([{"conv": {"k": 3}}], r"layer 0 \(conv\): missing required key 'out'"),
        ([{"conv": 8}, {"linear": 10}], r"layer 1 \(linear\): needs flat features.*flatten"),
        ([{"conv": 8}, "flatten", {"pool": "max"}], r"layer 2 \(pool\): needs a feature map"),
        ([{"conv": 8}, {"act": "relux"}], r"layer 1 \(act\): unknown activation 'relux'"),
        ([{"conv": 8}, {"flatten": 3}], r"layer 1 \(flatten\): takes no value"),
        ([{"conv": 8}, {"conv": 8, "bn": None}], r"layer 1: expected a name"),
        ([{"conv": {"out": 8, "k": 64, "p": 0}}], r"layer 0 \(conv\).*on input \(3, 32, 32\)"),
        ([{"conv": {"out": -1}}], r"layer 0 \(conv\).*positive integer"),
        ([{"conv": 8}, "gap", "flatten", {"linear": 5}], r"ends with output shape \(5,\)"),
        ([], "non-empty list"),
    ],
)
def test_bad_specs_name_the_layer_and_key(layers, pattern):
    with pytest.raises(CnnlabError, match=pattern):
        create_model("custom", spec=layers, num_classes=10, input_size=32)


def test_missing_spec_and_bad_files(tmp_path):
    with pytest.raises(CnnlabError, match="needs spec"):
        create_model("custom")
    with pytest.raises(CnnlabError, match="not found"):
        create_model("custom", spec=str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [conv: {out: 8\n")
    with pytest.raises(CnnlabError, match="not valid YAML"):
        create_model("custom", spec=str(bad))
    odd = tmp_path / "odd.yaml"
    odd.write_text("name: x\nlayer: []\n")
    with pytest.raises(CnnlabError, match="'layers'"):
        create_model("custom", spec=str(odd))
