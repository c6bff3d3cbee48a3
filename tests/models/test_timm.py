"""timm backbones as ``timm:NAME``: build for any classes/channels, list, train a step, rebuild from the model file,
and named weights from a Hugging Face cache laid out here (never the network)."""

from __future__ import annotations

import sys

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models
from cnnlab.runs.model_file import load_model

QUIET = {"output.progress": False, "output.plots": False, "train.threads": 1}
SMALL = "mobilenetv3_small_050"  # 1.6M parameters; timm publishes mobilenetv3_small_050.lamb_in1k


@pytest.fixture
def timm():
    return pytest.importorskip("timm")


def test_builds_for_the_dataset_classes_and_channels_and_learns(timm):
    torch.manual_seed(0)
    model = create_model(f"timm:{SMALL}", num_classes=4, in_channels=1, input_size=32)
    x, y = torch.randn(8, 1, 32, 32), torch.arange(8) % 4
    assert model(x).shape == (8, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_listing_holds_cnns_with_their_parameter_counts(timm):
    from cnnlab.cli.models import model_rows

    names = list_models("timm:resnet1*")
    assert "timm:resnet18" in names and all(n.startswith("timm:resnet1") for n in names)
    assert not any("vit" in n for n in list_models("timm:*vit*"))  # transformers are not listed
    (row,) = model_rows("timm:resnet18d")
    assert row["error"] is None and row["input"] == "3x224x224"
    assert row["params"] == sum(p.numel() for p in timm.create_model("resnet18d").parameters())


def test_cli_lists_timm_models_line_by_line(timm, capsys):
    from cnnlab.cli.main import main

    assert main(["models", "timm:resnet18d"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["timm:resnet18d", "3x224x224", "11,708,744", "2,053.7"]
    assert out[-1].startswith("1 model(s)")


def test_unknown_names_suggest_close_ones(timm):
    with pytest.raises(CnnlabError, match="timm has no model 'resnet19'. Did you mean"):
        create_model("timm:resnet19", num_classes=2)


def test_without_timm_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(CnnlabError, match=r"pip install 'cnnlab\[timm\]'"):
        create_model("timm:resnet18", num_classes=2)


def test_trains_and_the_model_file_rebuilds_it(timm, tmp_path):
    r = cnnlab.train(
        data="mnist-sample",
        model=f"timm:{SMALL}",
        epochs=1,
        image_size=32,
        out=tmp_path,
        overrides={**QUIET, "data.train_fraction": 0.1},
        log=lambda s: None,
    )
    assert ":" not in r.run_dir.name  # timm:NAME -> a portable folder name
    model, meta = load_model(r.run_dir)
    assert meta["architecture"] == f"timm:{SMALL}" and type(model).__module__.startswith("timm.")
    x = torch.rand(2, 1, 32, 32)
    assert model(x).shape == (2, 10)


def _fake_hf_cache(root, repo_id: str, state: dict) -> None:
    """huggingface_hub's cache layout: models--ORG--NAME/refs/main -> snapshots/<rev>/model.safetensors."""
    from safetensors.torch import save_file

    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))


def test_named_weights_come_from_the_hugging_face_cache(timm, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from cnnlab.config import Config
    from cnnlab.finetune.recipe import resolve_weights

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    cfg = Config()
    cfg.model.name, cfg.model.pretrained = f"timm:{SMALL}", "imagenet"
    with pytest.raises(CnnlabError, match="timm/mobilenetv3_small_050.lamb_in1k are not in the Hugging Face cache"):
        resolve_weights(cfg, log=lambda s: None)

    torch.manual_seed(1)
    published = timm.create_model(SMALL).state_dict()  # stands in for the ImageNet weights
    _fake_hf_cache(tmp_path / "hf", f"timm/{SMALL}.lamb_in1k", published)
    resolved_cfg, weights = resolve_weights(cfg, log=lambda s: None)
    pre = weights.preprocessing
    assert (pre.weights, pre.image_size, pre.resize_size, pre.interpolation) == (
        f"timm:{SMALL}.lamb_in1k",
        224,
        256,
        "bicubic",
    )
    assert resolved_cfg.data.image_size == 224  # the weights' size unless data.image_size is given

    r = cnnlab.train(
        data="mnist-sample",
        model=f"timm:{SMALL}",
        weights="lamb_in1k",
        finetune="feature_extraction",
        epochs=1,
        image_size=32,  # given: wins over the weights' 224 (keeps the test fast)
        out=tmp_path / "runs",
        overrides={**QUIET, "data.train_fraction": 0.1, "data.channels": 3},
        log=lambda s: None,
    )
    model, meta = load_model(r.run_dir)
    assert meta["input_shape"] == [3, 32, 32] and meta["preprocessing"]["weights"] == f"timm:{SMALL}.lamb_in1k"
    assert meta["mean"] == pytest.approx(list(pre.mean))
    state = model.state_dict()
    body = [k for k in published if not k.startswith("classifier.") and not k.endswith("num_batches_tracked")]
    assert body and all(torch.equal(state[k], published[k]) for k in body)


def test_unknown_weights_tags_are_listed(timm):
    from cnnlab.finetune.weights import resolve_pretrained

    with pytest.raises(CnnlabError, match="timm has no published weights 'resnet18.nope'. Known: resnet18.a1_in1k"):
        resolve_pretrained("timm:resnet18", weights="nope")
