"""Transfer learning through a real training run: pretrain on the MNIST sample, fine-tune on digits."""

import copy

import pytest
import torch

import cnnlab
from cnnlab.engine.finetune import keep_frozen_bn_in_eval
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.runs.model_file import load_model

COMMON = {"epochs": 1, "image_size": 16, "log": lambda s: None}
QUIET = {"output.progress": False, "train.threads": 1, "output.plots": False}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    return cnnlab.train(data="mnist-sample", model="seed_cnn", out=out, overrides=QUIET, **COMMON).run_dir


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


# seed_cnn's blocks (models.transfer.model_blocks): features.0, features.1, features.2, classifier (the MLP head)
@pytest.mark.parametrize(
    ("strategy", "extra", "moving_prefixes"),
    [
        ("feature_extraction", {}, ("classifier.",)),  # the conv base is frozen, the MLP head learns
        ("finetune_top", {"model.finetune_blocks": 1}, ("features.2.", "classifier.")),
        ("finetune_all", {}, ("features.", "classifier.")),
    ],
)
def test_strategies_move_exactly_the_expected_parameters(pretrained, tmp_path, strategy, extra, moving_prefixes):
    pre, _ = load_model(pretrained)
    before = {k: v.clone() for k, v in pre.state_dict().items()}
    r = cnnlab.train(
        data="digits",
        model="seed_cnn",
        pretrained=str(pretrained),
        finetune=strategy,
        out=tmp_path,
        overrides={**QUIET, **extra},
        **COMMON,
    )
    after = load_model(r.run_dir)[0].state_dict()
    body = {k for k in before if not k.startswith("classifier.3.")}  # the head is new: not comparable
    moved = _changed({k: before[k] for k in body}, {k: after[k] for k in body})
    assert moved and all(k.startswith(moving_prefixes) for k in moved), sorted(moved)
    frozen = {k for k in body if not k.startswith(moving_prefixes)}
    assert not frozen & moved  # frozen blocks, their BatchNorm running statistics included, did not change
    if strategy == "feature_extraction":
        assert any("running_mean" in k for k in frozen)
    if strategy == "finetune_all":
        assert any(k.startswith("features.0.") for k in moved)  # even the first conv moved


def test_progressive_unfreezes_on_schedule(pretrained, tmp_path):
    lines = []
    cnnlab.train(
        data="digits",
        model="seed_cnn",
        pretrained=str(pretrained),
        finetune="progressive",
        out=tmp_path,
        overrides={**QUIET, "model.unfreeze_schedule": "0:0,1:all"},
        epochs=2,
        image_size=16,
        log=lines.append,
    )
    assert any("unfreezing for epoch 2" in line for line in lines)


def test_discriminative_lrs_decay_from_the_head(pretrained, tmp_path):
    from cnnlab.config import ModelConfig, OptimConfig
    from cnnlab.engine.finetune import setup_finetune

    model = create_model("seed_cnn", num_classes=10, in_channels=1, input_size=16)
    optim, _ = setup_finetune(
        model, ModelConfig(pretrained=str(pretrained), lr_decay=0.5), OptimConfig(lr=0.1), log=lambda s: None
    )
    lrs = optim.group_lr
    assert set(lrs) == {n for n, _ in model.named_parameters()}
    # blocks: features.0, features.1, features.2, classifier (head) -> 0.0125, 0.025, 0.05, 0.1
    assert lrs["classifier.3.weight"] == 0.1 and lrs["features.2.0.weight"] == 0.05
    assert lrs["features.0.0.weight"] == pytest.approx(0.0125)
    r = cnnlab.train(
        data="digits",
        model="seed_cnn",
        pretrained=str(pretrained),
        out=tmp_path,
        overrides={**QUIET, "model.lr_decay": 0.5},
        **COMMON,
    )
    assert r.metrics["accuracy"] > 0.1


def test_mismatched_weights_name_the_tensors(pretrained, tmp_path):
    with pytest.raises(CnnlabError, match=r"(?s)do not match.*missing from the file.*0.weight"):
        cnnlab.train(
            data="digits", model="mnist_cnn", pretrained=str(pretrained), out=tmp_path, overrides=QUIET, **COMMON
        )


def test_frozen_batchnorm_stays_in_eval_and_copies_behave():
    model = create_model("seed_cnn", num_classes=3, in_channels=1, input_size=16)
    for p in model.features.parameters():
        p.requires_grad_(False)
    keep_frozen_bn_in_eval(model)
    model.train()
    assert not model.features[0][1].training and model.classifier[1][1].training
    twin = copy.deepcopy(model)
    twin.eval()
    assert model.classifier[1][1].training  # evaluating a copy (EMA) leaves the original alone
    twin.train()
    assert twin.classifier[1][1].training and not twin.features[0][1].training
