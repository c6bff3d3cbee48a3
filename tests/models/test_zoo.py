"""Every registered model: builds, runs forward and backward, has the published parameter count.

Shapes are checked on torch's meta device (the real module code, no arithmetic): 3x32x32 and 1x28x28
for small-input models, 3x224x224 for ImageNet-shaped ones. Numbers are checked for real on the smallest
input each network accepts (8x8 for most small-input ones, 32x32 with a 1-channel stem for ImageNet-shaped
ones), so the zoo trains one step in well under a minute on two busy cores. ImageNet-shaped networks run
for real once per torchvision family (``REAL_IMAGENET``); MobileNet V2 also runs at 224 px.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.models import create_model, list_models
from cnnlab.models.summary import default_input_shape, summary

SPECS = Path(__file__).resolve().parents[2] / "configs" / "models"
EXTRA = {"custom": {"spec": str(SPECS / "small_cnn.yaml")}}  # builders with a required argument
ALL = list_models()
IMAGENET = [n for n in ALL if default_input_shape(n)[1] == 224]
SMALL = [n for n in ALL if n not in IMAGENET]
# ImageNet-shaped networks that also run for real: one per torchvision family plus our MobileNet V1 (the
# rest are the same torchvision classes at other depths/widths, checked for shapes and counts on meta).
REAL_IMAGENET = ["resnet18", "resnet50", "densenet121", "googlenet", "mobilenet_v1", "mobilenet_v2", "efficientnet_b0"]

# Published parameter counts. ImageNet-shaped: torchvision's documented figures at 1000 classes (and
# Keras' trainable count for MobileNet V1). Small-input (10 classes, 3x32x32): the seeds, the papers'
# CIFAR networks (DenseNet-BC-100 0.8M, WRN-28-10 36.5M, WRN-16-4 2.7M, WRN-40-2 2.2M) and the widely used
# CIFAR adaptations (kuangliu/pytorch-cifar) whose exact counts are quoted in many papers.
PUBLISHED = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "googlenet": 6_624_904,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "seed_cnn": 1_278_218,
    "plain_mlp": 535_818,
    "mnist_cnn": 1_625_866,
    "lenet5": 61_706,
    "resnet18_cifar": 11_173_962,
    "resnet34_cifar": 21_282_122,
    "resnet50_cifar": 23_520_842,
    "resnet101_cifar": 42_512_970,
    "resnet152_cifar": 58_156_618,
    "vgg11_bn_cifar": 9_231_114,
    "vgg13_bn_cifar": 9_416_010,
    "vgg16_bn_cifar": 14_728_266,
    "vgg19_bn_cifar": 20_040_522,
    "mobilenet_v1_cifar": 3_217_226,
    "densenet121_cifar": 6_956_298,
    "densenet_bc100_cifar": 769_162,
    "wrn28_10_cifar": 36_479_194,
    "wrn16_4_cifar": 2_748_890,
    "wrn40_2_cifar": 2_243_546,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **{**EXTRA.get(name, {}), **kw})


def check_train_step(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """Forward in train mode gives (B, classes) finite logits; backward reaches every trainable parameter
    (a network may keep some fixed by design: airbench's BatchNorm scales)."""
    model.train()
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (x.shape[0], num_classes)
    assert torch.isfinite(logits).all()
    loss = nn.functional.cross_entropy(logits, torch.arange(x.shape[0]) % num_classes)
    loss.backward()
    fixed = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(".norm" in n and n.endswith(".weight") for n in fixed), f"frozen at build time: {fixed[:5]}"
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_registry_has_every_family():
    families = ["alexnet", "vgg", "googlenet", "resnet", "preact_resnet", "wrn", "densenet", "mobilenet_v1"]
    families += ["mobilenet_v2", "se_resnet", "efficientnet_b0", "custom", "seed_cnn", "lenet5"]
    for family in families:
        assert any(n.startswith(family) for n in ALL), family
    for name in SMALL:
        assert name in EXTRA or default_input_shape(name)[1] in (28, 32), name


# Smallest input each network's downsampling accepts: the numerics checks run there (2 busy cores).
TINY = {"alexnet_cifar": 16, "lenet5": 16, "alexnet": 64, "airbench": 16}


@pytest.mark.parametrize("name", SMALL)
def test_small_forward_shapes_and_parameter_count(name):
    """3x32x32 and 1x28x28 (MNIST) give (classes,) -- the summary's meta-device pass checks every shape --
    and at its own default input with 10 classes the model has its published parameter count."""
    default = default_input_shape(name)
    for shape in dict.fromkeys([default, (3, 32, 32), (1, 28, 28)]):
        s = summary(name, shape, num_classes=10, **EXTRA.get(name, {}))
        assert s.output_shape == (10,)
        if shape == default and name in PUBLISHED:
            assert s.total_params == PUBLISHED[name]


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_shape_at_224_and_parameter_count(name):
    s = summary(name, (3, 224, 224))
    assert s.output_shape == (1000,)
    if name in PUBLISHED:
        assert s.total_params == PUBLISHED[name]


def test_published_counts_cover_the_imagenet_zoo():
    assert set(IMAGENET) <= set(PUBLISHED)
    assert set(PUBLISHED) <= set(ALL)


# The deepest/widest small variants reuse the classes of shallower ones (same blocks, more of them or wider),
# so their numerics add nothing but minutes; their shapes and counts are still checked above.
SAME_CODE_AS_SMALLER = {"resnet101_cifar", "resnet152_cifar", "wrn28_10_cifar"}


@pytest.mark.parametrize("name", [n for n in SMALL if n not in SAME_CODE_AS_SMALLER] + REAL_IMAGENET)
def test_train_step_reaches_every_parameter(name):
    """Real numbers: finite logits, and a gradient for every parameter, on the smallest sensible input."""
    torch.manual_seed(0)
    c = default_input_shape(name)[0] if name in SMALL else 1  # ImageNet-shaped: also swaps the stem conv
    size = TINY.get(name, 8 if name in SMALL else 32)
    model = create_model(name, num_classes=5, in_channels=c, input_size=size, **EXTRA.get(name, {}))
    check_train_step(model, torch.randn(2, c, size, size), 5)


def test_real_forward_at_224():
    model = create_model("mobilenet_v2").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "weights"),
    [
        ("resnet18", "ResNet18_Weights"),
        ("vgg16", "VGG16_Weights"),
        ("mobilenet_v2", "MobileNet_V2_Weights"),
        ("efficientnet_b0", "EfficientNet_B0_Weights"),
        ("googlenet", "GoogLeNet_Weights"),
        ("densenet121", "DenseNet121_Weights"),
        ("alexnet", "AlexNet_Weights"),
    ],
)
def test_macs_match_torchvision_documented_ops(name, weights):
    import torchvision.models as tvm

    documented = next(iter(getattr(tvm, weights))).meta["_ops"]  # GMACs at 224 px, rounded to 3 decimals
    assert math.isclose(summary(name).total_macs / 1e9, documented, abs_tol=6e-4)


def test_own_imagenet_configs_reproduce_torchvision_counts():
    """MobileNet V2 and EfficientNet-B0 written here, built with ImageNet strides, equal torchvision's."""
    from cnnlab.models.efficientnet import EfficientNet
    from cnnlab.models.mobilenet import MobileNetV2

    with torch.device("meta"):
        v2 = MobileNetV2(num_classes=1000, stem_stride=2, second_stride=2)
        b0 = EfficientNet(num_classes=1000, stem_stride=2, second_stride=2)
    assert n_params(v2) == n_params(meta_model("mobilenet_v2"))
    assert n_params(b0) == n_params(meta_model("efficientnet_b0"))


@pytest.mark.parametrize("name", ["googlenet_cifar", "googlenet"])
def test_googlenet_aux_output_contract(name):
    size = 32 if name.endswith("cifar") else 64
    model = create_model(name, num_classes=4, aux_logits=True)
    assert model.aux_loss_weight == pytest.approx(0.3)
    x = torch.randn(2, 3, size, size)
    out = model.train()(x)
    assert out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert all(t.shape == (2, 4) for t in out)
    y = torch.tensor([0, 3])
    loss = nn.functional.cross_entropy(out[0], y)
    loss = loss + model.aux_loss_weight * sum(nn.functional.cross_entropy(a, y) for a in out[1:])
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("aux"))
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 4)  # eval: the logits tensor alone


def test_googlenet_aux_heads_add_parameters():
    assert n_params(meta_model("googlenet", aux_logits=True)) > n_params(meta_model("googlenet"))


def test_torchvision_stem_is_replaced_for_other_channels():
    model = meta_model("resnet18", in_channels=1)
    assert model.conv1.in_channels == 1 and model.conv1.out_channels == 64
    assert n_params(model) == PUBLISHED["resnet18"] - 2 * 64 * 7 * 7  # two input channels fewer


def test_se_resnet_adds_excitation_weights():
    base, se = n_params(meta_model("resnet18_cifar")), n_params(meta_model("se_resnet18_cifar"))
    # per basic block: 1x1 convs C -> C/16 -> C with biases
    widths = [64, 64, 128, 128, 256, 256, 512, 512]
    assert se - base == sum(c * (c // 16) * 2 + c // 16 + c for c in widths)
