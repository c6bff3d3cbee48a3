"""airbench's initialisation: the whitening stem from training images, identity convs, BN without a learned scale."""

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model


def _net(**kw):
    torch.manual_seed(0)
    return create_model("airbench", num_classes=10, in_channels=3, input_size=16, widths=[8, 16, 16], **kw)


def _correlated_images(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 16, 16, generator=g)
    x[:, 1] += 0.9 * x[:, 0]  # correlated channels
    x[..., 1:, :] += 0.7 * x[..., :-1, :].clone()  # and correlated neighbours
    return x


def test_whitening_stem_decorrelates_the_patches_it_was_fitted_on():
    model, x = _net(), _correlated_images()
    model.init_from_data(x)
    w = model.stem.weight
    out = nn.functional.conv2d(x, w[:12]).permute(0, 2, 3, 1).reshape(-1, 12)  # 12 = 3 channels x 2 x 2
    cov = out.T @ out / len(out)
    assert torch.allclose(cov, torch.eye(12), atol=0.02)  # unit variance, no correlation (eps 5e-4 aside)
    assert torch.equal(w[12:24], -w[:12])  # each direction with both signs, for the GELU after it
    assert not w.requires_grad and model.stem.bias.requires_grad  # fixed filters, learned bias


def test_stem_too_narrow_for_whitening_is_refused():
    model = _net(stem_width=8)
    try:
        model.init_from_data(_correlated_images(4))
    except ValueError as e:
        assert "2 x 12 filters" in str(e)
    else:
        raise AssertionError("an 8-wide stem cannot hold 24 whitening filters")


def test_identity_convolutions_and_fixed_batchnorm_scale():
    model = _net()
    conv = model.groups[1].conv1  # 8 -> 16 channels: the first 8 filters pass their channel through
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(nn.functional.conv2d(x, conv.weight[:8], padding=1), x, atol=1e-6)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)


def test_training_fits_the_stem_to_the_first_training_images(fast_overrides):
    """The engine calls the hook on a fresh run with the first training images, unaugmented; the
    stem's filters and the BN scales stay fixed through training (finetune_all, the default strategy,
    unfreezes only what a strategy froze), so what the run saves equals a fresh fit."""
    from cnnlab.api import make_config, train
    from cnnlab.workflow import load_data, start_session

    ov = {**fast_overrides, "model.name": "airbench", "data.image_size": 16, "train.epochs": 1}
    ov["model.kwargs"] = {"widths": [8, 8, 8], "stem_width": 8}
    r = train(make_config(None, ov), log=lambda s: None)
    state = torch.load(r.run_dir / "checkpoints" / "last.pt", weights_only=False)["model"]
    saved = state["stem.weight"]
    assert torch.equal(state["groups.0.norm1.weight"], torch.ones(8))  # the default strategy unfroze nothing
    _, data = load_data(start_session(make_config(None, ov), log=lambda s: None))
    fresh = create_model("airbench", num_classes=10, in_channels=1, input_size=16, widths=[8, 8, 8], stem_width=8)
    fresh.init_from_data(data.train.first_images(5000))
    assert torch.allclose(saved[:8], fresh.stem.weight[:8], atol=1e-5)  # 8 = 2 x (1 channel x 2 x 2)


def test_unbuildable_settings_are_clear_errors(fast_overrides):
    """A builder's or the hook's refusal reaches the user as one CnnlabError naming what to change."""
    from cnnlab.api import train

    ov = {**fast_overrides, "model.name": "airbench"}  # digits are 8x8: too small for three poolings
    with pytest.raises(CnnlabError, match="cannot build airbench for 1x8x8 inputs.*--image-size"):
        train(overrides=ov, log=lambda s: None)
    ov.update({"data.image_size": 16, "model.kwargs": {"stem_width": 6}})
    with pytest.raises(CnnlabError, match="stem_width is 6"):
        train(overrides=ov, log=lambda s: None)
