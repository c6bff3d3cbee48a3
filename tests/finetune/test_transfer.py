"""cnnlab.finetune.transfer on synthetic tensors: strategies, head and stem surgery, loading weights."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.finetune.transfer import (
    STRATEGIES,
    adapt_in_channels,
    apply_strategy,
    feature_extraction,
    find_head,
    finetune_all,
    finetune_top,
    load_pretrained,
    lr_by_parameter,
    model_blocks,
    param_groups,
    parse_schedule,
    replace_head,
    set_frozen_bn_eval,
    unfreeze_for_epoch,
)
from cnnlab.models import create_model

# one model per kind of anatomy: flat Sequential, features/classifier, stages + fc, torchvision, aux heads
MODELS = ["lenet5", "vgg11_bn_cifar", "resnet18_cifar", "resnet18", "googlenet_cifar", "mobilenet_v2_cifar"]


def build(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    size = 32 if name in ("lenet5", "resnet18") else 8
    return create_model(name, num_classes=3, input_size=size, **kw), size


def step_and_moved(model: nn.Module, size: int) -> set[str]:
    """One SGD step on a random batch; returns the names of the parameters that changed."""
    c = model.state_dict()[next(k for k in model.state_dict() if k.endswith("weight"))].shape[1]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # over all parameters: frozen ones have no grad
    model.train()
    out = model(torch.randn(2, c, size, size))
    logits = out[0] if isinstance(out, tuple) else out
    nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    opt.step()
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def names_in(model: nn.Module, blocks: list[str]) -> set[str]:
    """Parameter names of the given blocks (by identity, so grouped blocks work too)."""
    wanted = {id(p) for name, m in model_blocks(model) if name in blocks for p in m.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in wanted}


@pytest.mark.parametrize("name", MODELS)
def test_model_blocks_cover_every_parameter_once_with_the_head_last(name):
    model, _ = build(name)
    blocks = model_blocks(model)
    ids = [id(p) for _, m in blocks for p in m.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    head = model.get_submodule(find_head(model))
    assert any(head is m for m in blocks[-1][1].modules())
    assert len(blocks) >= 3


@pytest.mark.parametrize("name", MODELS)
def test_feature_extraction_moves_only_the_head(name):
    model, size = build(name)
    trainable = feature_extraction(model)
    expected = names_in(model, trainable)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    moved = step_and_moved(model, size)
    # parameters can stay put only when their gradient is exactly zero (e.g. a bias behind a dead ReLU)
    assert moved <= expected and find_head(model) + ".weight" in moved


@pytest.mark.parametrize("name", MODELS)
def test_finetune_top_moves_the_top_blocks_and_head(name):
    model, size = build(name)
    trainable = finetune_top(model, 2)
    blocks = [n for n, _ in model_blocks(model)]
    assert trainable == blocks[-3:]
    expected = names_in(model, trainable)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    moved = step_and_moved(model, size)
    assert moved <= expected
    lower = names_in(model, [blocks[-3]])
    assert moved & lower  # the lowest unfrozen block really trains


def test_finetune_all_moves_everything():
    model, size = build("resnet18_cifar")
    feature_extraction(model)
    finetune_all(model)
    assert all(p.requires_grad for p in model.parameters())
    moved = step_and_moved(model, size)
    assert len(moved) > 0.9 * len(list(model.parameters()))


def test_progressive_unfreezing_follows_the_schedule():
    model, _ = build("resnet18_cifar")
    schedule = {0: 0, 2: 1, 4: "all"}
    counts = []
    for epoch in range(6):
        unfreeze_for_epoch(model, epoch, schedule)
        counts.append(sum(p.requires_grad for p in model.parameters()))
    head = sum(p.numel() > 0 for p in model.fc.parameters())
    assert counts[0] == counts[1] == head
    assert head < counts[2] == counts[3] < counts[4] == counts[5] == len(list(model.parameters()))
    assert unfreeze_for_epoch(model, 3, "0:0,2:1,4:all")[-2:] == ["layer4", "fc"]


@pytest.mark.parametrize("bad", ["", "0-1", "a:1", "1:x"])
def test_bad_schedules_are_clear_errors(bad):
    with pytest.raises(CnnlabError, match="schedule"):
        parse_schedule(bad)


def test_param_groups_decay_from_the_head_down():
    model, _ = build("resnet18_cifar")
    groups = param_groups(model, base_lr=1e-2, decay=0.5)
    assert [g["name"] for g in groups] == [n for n, _ in reversed(model_blocks(model))]
    assert [g["lr"] for g in groups] == pytest.approx([1e-2 * 0.5**i for i in range(len(groups))])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    opt = torch.optim.AdamW(groups)  # accepted as-is by a torch optimiser
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    with pytest.raises(CnnlabError, match="decay"):
        param_groups(model, 1e-2, decay=0)
    by_name = lr_by_parameter(model, 1e-2, 0.5)
    assert by_name["fc.weight"] == pytest.approx(1e-2) and by_name["layer4.0.conv1.weight"] == pytest.approx(5e-3)
    assert by_name["stem.0.weight"] == pytest.approx(min(by_name.values()))


def test_strategy_registry():
    model, _ = build("vgg11_bn_cifar")
    assert set(STRATEGIES) == {"feature_extraction", "finetune_top", "finetune_all", "progressive"}
    assert apply_strategy(model, "finetune_top", n_blocks=1) == [n for n, _ in model_blocks(model)][-2:]
    assert apply_strategy(model, "progressive", epoch=0) == ["classifier"]
    with pytest.raises(CnnlabError, match="feature_extraction"):
        apply_strategy(model, "feature_extractio")


def test_frozen_batch_norm_can_keep_its_statistics():
    model, _ = build("resnet18_cifar")
    feature_extraction(model)
    model.train()
    assert set_frozen_bn_eval(model) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    running = model.stem[1].running_mean.clone()
    model(torch.randn(2, 3, 8, 8))
    assert torch.equal(model.stem[1].running_mean, running)


@pytest.mark.parametrize("name", ["resnet18", "googlenet_cifar", "vgg11_bn_cifar", "lenet5"])
def test_replace_head(name):
    model, size = build(name, **({"aux_logits": True} if "googlenet" in name else {}))
    body = {k: v.clone() for k, v in model.state_dict().items()}
    replace_head(model, 7)
    head = find_head(model)
    kept = {k for k, v in model.state_dict().items() if k in body and torch.equal(v, body[k])}
    assert body.keys() - kept and all(k.startswith((head, "aux")) for k in body.keys() - kept)
    out = model.train()(torch.randn(2, 1 if name == "lenet5" else 3, size, size))
    outputs = out if isinstance(out, tuple) else (out,)
    assert all(o.shape == (2, 7) for o in outputs)  # aux heads too


@pytest.mark.parametrize(("old", "new"), [(3, 1), (1, 3), (3, 4)])
def test_adapt_in_channels_keeps_the_output_on_grey_images(old, new):
    model, _ = build("resnet18_cifar", in_channels=old)
    model.eval()
    grey = torch.rand(2, 1, 8, 8)
    before = model(grey.expand(-1, old, -1, -1))
    adapt_in_channels(model, new)
    assert model.stem[0].in_channels == new
    after = model(grey.expand(-1, new, -1, -1))
    assert torch.allclose(before, after, atol=1e-5)


def test_adapt_in_channels_on_a_torchvision_stem():
    model, _ = build("resnet18")
    model.eval()
    grey = torch.rand(1, 1, 32, 32)
    before = model(grey.expand(-1, 3, -1, -1))
    adapt_in_channels(model, 1)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert torch.allclose(before, model(grey), atol=1e-5)


# ---------------------------------------------------------------- loading weights


def test_load_a_torchvision_style_pth(tmp_path):
    source, _ = build("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    target = create_model("resnet18", num_classes=3)
    report = load_pretrained(target, path)
    assert report["loaded"] == len(source.state_dict())
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())


def test_files_without_batch_norm_step_counters_load(tmp_path):
    """torchvision's older weight files have no num_batches_tracked buffers."""
    source, _ = build("resnet18")
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    target = create_model("resnet18", num_classes=3)
    assert load_pretrained(target, tmp_path / "old.pth")["loaded"] == len(state)
    assert torch.equal(target.layer1[0].bn1.running_var, source.layer1[0].bn1.running_var)


def test_torchvision_densenet_legacy_names_and_googlenet_aux_tensors_load(tmp_path):
    source, _ = build("densenet121")
    legacy = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in source.state_dict().items()
    }
    assert any(".norm.1." in k for k in legacy)
    torch.save(legacy, tmp_path / "densenet.pth")
    target = create_model("densenet121", num_classes=3)
    load_pretrained(target, tmp_path / "densenet.pth")
    conv = "features.denseblock1.denselayer1.conv2.weight"
    assert torch.equal(target.state_dict()[conv], source.state_dict()[conv])

    with_aux, _ = build("googlenet", aux_logits=True)
    torch.save(with_aux.state_dict(), tmp_path / "googlenet.pth")
    plain = create_model("googlenet", num_classes=3)
    report = load_pretrained(plain, tmp_path / "googlenet.pth")
    assert report["excluded"] and all(k.startswith("aux") for k in report["excluded"])
    assert torch.equal(plain.inception5b.branch1.conv.weight, with_aux.inception5b.branch1.conv.weight)


def test_load_checkpoint_dicts_and_safetensors_and_model_folders(tmp_path):
    source, _ = build("seed_cnn")
    state = source.state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "ckpt.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    folder = tmp_path / "run" / "model"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "weights.safetensors"))
    (folder / "model.json").write_text("{}")
    for path in (tmp_path / "ckpt.pt", tmp_path / "w.safetensors", folder, tmp_path / "run"):
        target, _ = build("seed_cnn")
        target.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None)
        load_pretrained(target, path)
        assert torch.equal(target.classifier[-1].weight, source.classifier[-1].weight), path


def test_mismatch_lists_the_tensors_that_differ(tmp_path):
    source, _ = build("wrn16_4_cifar")
    state = source.state_dict()
    state.pop("layer1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    target = create_model("wrn16_4_cifar", num_classes=5)
    with pytest.raises(CnnlabError) as err:
        load_pretrained(target, path)
    msg = str(err.value)
    assert "missing from the file (1): layer1.0.conv1.weight" in msg
    assert "unexpected in the file (1): extra.weight" in msg
    assert "fc.weight file (3, 256) vs model (5, 256)" in msg and "exclude_head" in msg


def test_exclude_head_loads_the_body_for_a_new_class_count(tmp_path):
    source, _ = build("wrn16_4_cifar")
    torch.save(source.state_dict(), tmp_path / "w.pth")
    target = create_model("wrn16_4_cifar", num_classes=5)
    head_before = target.fc.weight.clone()
    report = load_pretrained(target, tmp_path / "w.pth", exclude_head=True)
    assert report["excluded"] == ["fc.bias", "fc.weight"]
    assert torch.equal(target.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(target.fc.weight, head_before)


def test_rgb_weights_load_into_a_grey_model(tmp_path):
    source, _ = build("wrn16_4_cifar")
    torch.save(source.state_dict(), tmp_path / "w.pth")
    target = create_model("wrn16_4_cifar", num_classes=3, in_channels=1)
    report = load_pretrained(target, tmp_path / "w.pth")
    assert report["adapted"] == ["stem.weight"]
    reference = adapt_in_channels(copy.deepcopy(source), 1)
    assert torch.equal(target.stem.weight, reference.stem.weight)
    with pytest.raises(CnnlabError, match="stem.weight file"):
        load_pretrained(create_model("wrn16_4_cifar", num_classes=3, in_channels=1), tmp_path / "w.pth",
                        adapt_channels=False)  # fmt: skip


def test_unreadable_or_missing_weights_are_clear_errors(tmp_path):
    model, _ = build("lenet5")
    with pytest.raises(CnnlabError, match="not found"):
        load_pretrained(model, tmp_path / "none.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CnnlabError, match="cannot read"):
        load_pretrained(model, junk)
    torch.save({"epoch": 1}, tmp_path / "nostate.pt")
    with pytest.raises(CnnlabError, match="no state dict"):
        load_pretrained(model, tmp_path / "nostate.pt")
