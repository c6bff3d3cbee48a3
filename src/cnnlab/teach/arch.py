"""The arithmetic behind each classic architecture, with the numbers taken from cnnlab's own zoo.

``cnnlab teach arch NAME`` builds the zoo model (``cnnlab.models``), reads the layer that carries
the idea and prints the calculation that motivates it, next to a block diagram:

* lenet: conv + pool feature extractor, then dense layers; where the parameters are;
* alexnet: 11x11 stride-4 first layer (its output size needs padding 2), and the dense layers
  holding most of the 61 M weights;
* vgg: two 3x3 convs see 5x5 with 18C^2 weights instead of 25C^2, three see 7x7 with 27C^2 instead of 49C^2;
* googlenet: Inception's 1x1 reductions before the 5x5 branch, and the size against AlexNet;
* resnet: ``y = x + F(x)`` so ``dy/dx = 1 + dF/dx``: the gradient reaching each layer of a deep
  plain stack and of the same stack with shortcuts, measured; the zoo's identity/projection shortcuts;
* densenet: every layer adds ``k`` channels (the growth rate), so layer l sees C0 + l k inputs;
* mobilenet: depthwise separable (k^2 C + C C') and inverted residual (expand, depthwise, project) costs;
* se: squeeze-and-excitation's extra weights (2 C^2 / r per block) against the whole network;
* efficientnet: compound scaling depth alpha^phi, width beta^phi, resolution gamma^phi with
  alpha beta^2 gamma^2 ~ 2, so each phi step doubles the multiply-accumulates.

Sources: LeCun et al. 1998; Krizhevsky et al. 2012; Simonyan & Zisserman 2015; Szegedy et al. 2015;
He et al. 2016; Huang et al. 2017; Howard et al. 2017; Sandler et al. 2018; Hu et al. 2018; Tan & Le 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.teach.base import TeachingResult, correction, new_figure, save_result

ARCHS: dict[str, Callable[[], dict[str, Any]]] = {}


def _arch(name: str):
    def add(fn):
        ARCHS[name] = fn
        return fn

    return add


def _model(name: str, **kw):
    """A zoo model on the "meta" device: shapes and parameter counts without allocating or initialising
    the weights (AlexNet's 61 M would take seconds); the gradient experiment builds its own layers."""
    from cnnlab.models.summary import meta_model

    return meta_model(name, **kw)


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


@_arch("lenet")
def _lenet() -> dict[str, Any]:
    m = _model("lenet5")
    convs = sum(_n(x) for x in m.modules() if x.__class__.__name__ == "Conv2d")
    total = _n(m)
    return {
        "stages": ["1x32x32", "conv 5x5 (6)", "pool 2", "conv 5x5 (16)", "pool 2", "dense 120", "dense 84", "10"],
        "bars": {"conv weights": convs, "dense weights": total - convs},
        "ylabel": "parameters",
        "lines": [f"lenet5: {total:,} parameters; the two convolutions hold {convs:,} ({100 * convs / total:.1f} %),",
                  "the dense layers the rest: convolutions share 25 weights per filter over every position."],
    }  # fmt: skip


@_arch("alexnet")
def _alexnet() -> dict[str, Any]:
    from cnnlab.arithmetic import conv_output_size

    m = _model("alexnet")
    conv1 = next(x for x in m.modules() if x.__class__.__name__ == "Conv2d")
    k, s, p = conv1.kernel_size[0], conv1.stride[0], conv1.padding[0]
    dense = sum(_n(x) for x in m.modules() if x.__class__.__name__ == "Linear")
    total = _n(m)
    no_pad, zoo = conv_output_size(224, k, s, 0), conv_output_size(224, k, s, p)
    return {
        "stages": ["3x224x224", f"conv {k}x{k} s{s} p{p} (64)", "pool", "conv 5x5", "pool", "3 conv 3x3", "pool",
                   "dense 4096", "dense 4096", "1000"],
        "bars": {"conv weights": total - dense, "dense weights": dense},
        "ylabel": "parameters",
        "lines": [f"conv1: {k}x{k}, stride {s}: floor((224 - {k}) / {s}) + 1 = {no_pad}; with the zoo's padding {p}: "
                  f"floor((224 + {2 * p} - {k}) / {s}) + 1 = {zoo}",
                  f"alexnet: {total:,} parameters, {dense:,} ({100 * dense / total:.1f} %) in the three dense layers",
                  correction("55x55x96 after conv1 on a 224x224 input without padding", str(no_pad),
                             f"floor((224 - 11) / 4) + 1 = {no_pad}; 55 needs padding 2 or a 227x227 input"),
                  f"the paper's conv1 has 96 filters, 48 on each of two GPUs, and conv2/4/5 see only their GPU's half "
                  f"(groups 2): {_alexnet_paper_params():,} parameters. The zoo follows torchvision's one-GPU "
                  f"version (Krizhevsky, One weird trick, 2014): 64 filters in conv1, no groups, no LRN, {total:,}."],
    }  # fmt: skip


def _alexnet_paper_params() -> int:
    """Krizhevsky et al. (2012), Figure 2: conv2, conv4 and conv5 are split in two groups (one per GPU)."""
    from cnnlab.arithmetic import conv_params, linear_params

    convs = [(3, 96, 11, 1), (96, 256, 5, 2), (256, 384, 3, 1), (384, 384, 3, 2), (384, 256, 3, 2)]
    dense = [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    return sum(conv_params(i, o, k, groups=g) for i, o, k, g in convs) + sum(linear_params(i, o) for i, o in dense)


@_arch("vgg")
def _vgg() -> dict[str, Any]:
    m = _model("vgg16_cifar")
    conv = next(x for x in m.modules() if x.__class__.__name__ == "Conv2d" and x.in_channels == x.out_channels == 256)
    C = conv.in_channels
    three, seven = 3 * conv.weight.numel(), 7 * 7 * C * C
    two, five = 2 * conv.weight.numel(), 5 * 5 * C * C
    return {
        "stages": ["3x32x32", "2 conv3 (64)", "pool", "2 conv3 (128)", "pool", "3 conv3 (256)", "pool",
                   "3 conv3 (512)", "pool", "3 conv3 (512)", "dense"],
        "bars": {"3 x (3x3)": three, "one 7x7": seven, "2 x (3x3)": two, "one 5x5": five},
        "ylabel": "weights at C = 256 channels",
        "lines": [f"vgg16_cifar's 3x3 convs at C = {C} channels have {conv.weight.numel():,} weights each (9 C^2)",
                  f"three stacked see 7x7: 27 C^2 = {three:,} weights vs one 7x7: 49 C^2 = {seven:,} "
                  f"({seven / three:.2f}x more), and they add two more non-linearities",
                  f"two stacked see 5x5: 18 C^2 = {two:,} vs 25 C^2 = {five:,} ({five / two:.2f}x)",
                  *_vgg16_imagenet_lines()],
    }  # fmt: skip


def _vgg16_imagenet_lines() -> list[str]:
    """VGG-16 on 224x224 ImageNet (the zoo's torchvision copy): where its 138 M parameters are."""
    m = _model("vgg16", num_classes=1000, input_size=224)
    total = _n(m)
    dense = sum(_n(x) for x in m.modules() if x.__class__.__name__ == "Linear")
    mib = total * 4 / 2**20  # float32
    return [f"vgg16 on 224x224 ImageNet: {total:,} parameters; the three dense layers (25,088 -> 4,096 -> 4,096 -> "
            f"1,000) hold {dense:,} ({100 * dense / total:.1f} %), the 13 convs {total - dense:,}",
            f"as float32 that is {total * 4:,} bytes = {mib:.1f} MiB (the '528 MB' usually quoted)"]  # fmt: skip


@_arch("googlenet")
def _googlenet() -> dict[str, Any]:
    m = _model("googlenet_cifar")
    inc = m.inception3a
    r5, c5 = inc.branch5[0], inc.branch5[1]
    c_in, mid, c_out = _conv(r5).in_channels, _conv(r5).out_channels, _conv(c5).out_channels
    with_1x1 = _conv(r5).weight.numel() + _conv(c5).weight.numel()
    direct = 5 * 5 * c_in * c_out
    alex, goog = _n(_model("alexnet")), _n(_model("googlenet"))
    return {
        "stages": ["3x224x224", "stem (192)", "inception 3a (256)", "3b (480)", "pool", "4a .. 4e (512..832)",
                   "pool", "5a (832)", "5b (1024)", "avg pool", "dense (1000)"],
        "bars": {"5x5 direct": direct, "1x1 then 5x5": with_1x1},
        "ylabel": "weights of the 5x5 branch",
        "lines": [f"inception 3a, 5x5 branch: {c_in} -> {c_out} channels directly is 5*5*{c_in}*{c_out} = {direct:,} "
                  f"weights; a 1x1 to {mid} first: {c_in}*{mid} + 5*5*{mid}*{c_out} = {with_1x1:,} "
                  f"({direct / with_1x1:.1f}x fewer)",
                  f"whole networks (224x224, 1000 classes): alexnet {alex:,}, googlenet {goog:,} "
                  f"parameters: {alex / goog:.1f}x fewer",
                  correction("about 7 million parameters, 20x fewer than AlexNet", f"{alex / goog:.1f}x",
                             f"the zoo counts {alex:,} / {goog:,}; even the rounded 60 M / 6.8 M is 8.8x")],
    }  # fmt: skip


def _conv(module):
    """The Conv2d inside a ConvNormAct-style block (or the module itself)."""
    return next(x for x in module.modules() if x.__class__.__name__ == "Conv2d")


def residual_gradients(depth: int = 30, width: int = 64, seed: int = 0) -> dict[str, list[float]]:
    """Gradient norm reaching each layer's weights in a deep stack of Linear + tanh blocks (torch's default
    init, no normalisation), plain ``x <- f(x)`` against residual ``x <- x + f(x)``."""
    import torch

    out = {}
    for kind in ("plain", "residual"):
        torch.manual_seed(seed)
        layers = [torch.nn.Linear(width, width) for _ in range(depth)]
        x = torch.randn(16, width)
        for layer in layers:
            fx = torch.tanh(layer(x))
            x = x + fx if kind == "residual" else fx
        x.pow(2).sum().backward()
        out[kind] = [float(layer.weight.grad.norm()) for layer in layers]
        out[f"{kind}_output_norm"] = float(x.detach().norm())
    return out


@_arch("resnet")
def _resnet() -> dict[str, Any]:
    from cnnlab.models.resnet import BasicBlock

    m = _model("resnet18_cifar")
    blocks = [b for b in m.modules() if isinstance(b, BasicBlock)]
    identity = sum(b.shortcut.__class__.__name__ == "Identity" for b in blocks)
    projection = sum(_n(b.shortcut) for b in blocks)
    g = residual_gradients()
    picks = [0, 9, 19, 29]
    return {
        "stages": ["3x32x32", "conv3 (64)", "2 blocks (64)", "2 blocks (128)", "2 blocks (256)", "2 blocks (512)",
                   "avg pool", "dense"],
        "bars": {f"layer {i + 1}\n{kind}": g[kind][i] for kind in ("plain", "residual") for i in picks},
        "lines": ["a residual block outputs y = x + F(x), so dy/dx = 1 + dF/dx: the '+1' passes the gradient back "
                  "unchanged, whatever F does",
                  f"resnet18_cifar: {len(blocks)} blocks; {identity} shortcuts are identities (0 weights), the other "
                  f"{len(blocks) - identity} are 1x1 projections where the shape changes ({projection:,} weights)",
                  "gradient norm at the weights of layer l, 30 blocks of Linear(64) + tanh, default init, no BN:",
                  *[f"  layer {i + 1:>2}: plain {g['plain'][i]:.3g}   residual {g['residual'][i]:.3g}" for i in picks],
                  f"layer 1 / layer 30: plain {g['plain'][0] / g['plain'][-1]:.3g}, "
                  f"residual {g['residual'][0] / g['residual'][-1]:.3g}",
                  "without shortcuts every block multiplies the gradient by its own derivative (< 1 here), so it "
                  "vanishes towards the input; with them it does not",
                  f"the residual norms of ~1e4 are not an explosion: each block adds to x, so the output's norm grows "
                  f"to {g['residual_output_norm']:.0f} (plain: {g['plain_output_norm']:.2g}) and the loss sum(x^2) "
                  f"hands back 2x; what matters is that layer 1 gets about as much as layer 30"],
        "skips": [2, 3, 4, 5],  # the stages whose blocks carry a shortcut
        "ylabel": "gradient norm at the layer's weights",
    }  # fmt: skip


@_arch("densenet")
def _densenet() -> dict[str, Any]:
    from cnnlab.models.densenet import DenseLayer

    m = _model("densenet_bc100_cifar")
    layers = [x for x in m.modules() if isinstance(x, DenseLayer)]
    k = layers[0].conv2.out_channels
    first_block = [x.norm1.num_features for x in layers][:16]
    return {
        "stages": ["stem", "dense block", "transition", "dense block", "transition", "dense block", "avg pool",
                   "dense"],
        "bars": {f"layer {i + 1}": c for i, c in enumerate(first_block)},
        "ylabel": "input channels",
        "lines": [f"densenet_bc100_cifar: growth rate k = {k}; each layer concatenates its {k} new channels to "
                  "everything before it, so layer l of a block sees C0 + (l - 1) k channels:",
                  "  inputs of the first block's layers: " + ", ".join(map(str, first_block)),
                  f"  {len(layers)} dense layers, {_n(m):,} parameters in all (each layer's 1x1 bottleneck keeps "
                  f"its 3x3 at {4 * k} channels)"],
    }  # fmt: skip


@_arch("mobilenet")
def _mobilenet() -> dict[str, Any]:
    from cnnlab.models.blocks import DepthwiseSeparableConv
    from cnnlab.models.mobilenet import InvertedResidual

    v1 = _model("mobilenet_v1_cifar")
    ds = next(x for x in v1.modules() if isinstance(x, DepthwiseSeparableConv))
    dw, pw = _conv(ds[0]), _conv(ds[1])
    C, C2, k = dw.in_channels, pw.out_channels, dw.kernel_size[0]
    separable, standard = dw.weight.numel() + pw.weight.numel(), k * k * C * C2
    v2 = _model("mobilenet_v2_cifar")
    ir = [x for x in v2.modules() if isinstance(x, InvertedResidual)][1]
    convs = [x for x in ir.modules() if x.__class__.__name__ == "Conv2d"]
    parts = " + ".join(f"{c.weight.numel():,}" for c in convs)
    ir_total = sum(c.weight.numel() for c in convs)
    return {
        "stages": ["3x32x32", "conv3 (32)", "depthwise 3x3", "pointwise 1x1", "x 13", "avg pool", "dense"],
        "bars": {"standard 3x3": standard, "depthwise + pointwise": separable},
        "ylabel": "weights",
        "lines": [f"mobilenet_v1_cifar's first block: depthwise {k}x{k} on {C} channels + pointwise {C} -> {C2}: "
                  f"{k * k}*{C} + {C}*{C2} = {separable:,} weights vs a standard {k}x{k} conv {k * k}*{C}*{C2} = "
                  f"{standard:,} ({standard / separable:.2f}x fewer)",
                  f"mobilenet_v2_cifar inverted residual ({convs[0].in_channels} -> expand {convs[0].out_channels} "
                  f"-> depthwise -> project {convs[-1].out_channels}): {parts} = {ir_total:,}"
                  " weights; the expansion works in a wide space, the block's input and output stay narrow"],
    }  # fmt: skip


@_arch("se")
def _se() -> dict[str, Any]:
    from cnnlab.models.blocks import SqueezeExcite

    plain, se = _n(_model("resnet18_cifar")), _model("se_resnet18_cifar")
    first = next(x for x in se.modules() if isinstance(x, SqueezeExcite))
    C, squeeze = first.fc1.in_channels, first.fc1.out_channels
    return {
        "stages": ["block output (C x H x W)", "global avg pool (C)", "FC C -> C/r", "ReLU", "FC C/r -> C",
                   "sigmoid", "scale channels"],
        "bars": {"resnet18_cifar": plain, "se_resnet18_cifar": _n(se)},
        "ylabel": "parameters",
        "lines": [f"one SE module at C = {C}, r = {C // squeeze}: {C}*{squeeze} + {squeeze} + {squeeze}*{C} + {C} = "
                  f"{_n(first):,} weights (about 2 C^2 / r)",
                  f"se_resnet18_cifar {_n(se):,} vs resnet18_cifar {plain:,}: +{_n(se) - plain:,} "
                  f"({100 * (_n(se) - plain) / plain:.2f} %) for a learned per-channel gate"],
    }  # fmt: skip


@_arch("efficientnet")
def _efficientnet() -> dict[str, Any]:
    alpha, beta, gamma = 1.2, 1.1, 1.15  # Tan & Le 2019, grid-searched for B0
    m = _model("efficientnet_b0_cifar")
    rows = [(phi, alpha**phi, beta**phi, gamma**phi, (alpha * beta**2 * gamma**2) ** phi) for phi in range(4)]
    return {
        "stages": ["stem", "MBConv1 k3", "MBConv6 k3 x2", "MBConv6 k5 x2", "MBConv6 k3 x3", "MBConv6 k5 x3",
                   "MBConv6 k5 x4", "MBConv6 k3", "conv1x1 1280", "pool + dense"],
        "bars": {f"phi={phi}": f for phi, *_, f in rows},
        "ylabel": "FLOPs relative to B0",
        "lines": [f"compound scaling: depth x alpha^phi, width x beta^phi, resolution x gamma^phi with "
                  f"alpha = {alpha}, beta = {beta}, gamma = {gamma}: "
                  f"alpha*beta^2*gamma^2 = {alpha * beta**2 * gamma**2:.3f} ~ 2",
                  *[f"  phi={phi}: depth x{d:.2f}, width x{w:.2f}, resolution x{r:.2f} -> MACs x{f:.2f}"
                    for phi, d, w, r, f in rows],
                  f"the zoo's efficientnet_b0_cifar (phi = 0) has {_n(m):,} parameters"],
    }  # fmt: skip


def _diagram(ax, stages: list[str], skips: list[int] = ()) -> None:
    """Boxes left to right (wrapping into rows of 4) joined by arrows; a stage in ``skips`` gets a shortcut
    drawn as an arc over its box into a '+' (its blocks add their input to their output). Channel counts
    are in parentheses in the stage names."""
    per_row = 4
    for i, label in enumerate(stages):
        r, c = divmod(i, per_row)
        x, y = c * 2.6, -r * 1.7
        ax.text(x, y, label.replace(" (", "\n("), ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "fc": "lightsteelblue", "ec": "k"})  # fmt: skip
        if i + 1 < len(stages) and (i + 1) % per_row:
            ax.annotate("", (x + 1.6, y), (x + 1.0, y), arrowprops={"arrowstyle": "->"})
        if i in skips:
            ax.annotate(
                "",
                (x + 0.95, y + 0.2),
                (x - 0.95, y + 0.2),
                arrowprops={"arrowstyle": "->", "color": "tab:red", "connectionstyle": "arc3,rad=-0.6"},
            )
            ax.text(x + 1.05, y + 0.2, "+", color="tab:red", fontsize=11, ha="left", va="center", weight="bold")
    if skips:
        ax.text(-1.2, 0.95, "red arcs: shortcut x added to the blocks' output F(x)", color="tab:red", fontsize=8)
    rows = -(-len(stages) // per_row)
    ax.set_xlim(-1.3, per_row * 2.6 - 1.1)
    ax.set_ylim(-(rows - 1) * 1.7 - 0.8, 1.1)
    ax.axis("off")


def arch_example(name: str, out_dir: str | Path | None = None) -> TeachingResult:
    """The block diagram and the motivating arithmetic of one architecture (``ARCHS``)."""
    if name not in ARCHS:
        raise CnnlabError(f"unknown architecture {name!r}.{did_you_mean(name, ARCHS)} Known: {', '.join(ARCHS)}.")
    info = ARCHS[name]()
    import textwrap

    fig = new_figure(13, 4.6)
    _diagram(fig.add_subplot(1, 2, 1), info["stages"], info.get("skips", []))
    ax = fig.add_subplot(1, 2, 2)
    bars = ax.bar(list(info["bars"]), list(info["bars"].values()), color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:,.3g}" if v < 1000 else f"{v:,.0f}" for v in info["bars"].values()], fontsize=8)
    ax.tick_params(axis="x", labelsize=8, rotation=30)
    ax.tick_params(axis="y", labelsize=8)
    heights = [v for v in info["bars"].values() if v > 0]
    if heights and max(heights) / min(heights) > 1000:  # orders of magnitude apart: a log axis shows them all
        ax.set_yscale("log")
    ax.margins(y=0.15)  # room for the bar labels above the tallest bar
    ax.set_ylabel(info.get("ylabel", ""), fontsize=8)
    ax.set_title(textwrap.fill(info["lines"][0], 80), fontsize=8)  # the whole sentence, wrapped, never cut
    fig.suptitle(f"{name}: block diagram and the arithmetic behind it")
    fig.tight_layout()
    values = {"name": name, "stages": info["stages"], "bars": info["bars"], "lines": info["lines"]}
    return save_result(fig, TeachingResult(f"arch_{name}", values), out_dir)


def arch_text(result: TeachingResult) -> str:
    v = result.values
    return "\n".join([" -> ".join(v["stages"]), *v["lines"]])


def arch_names() -> list[str]:
    return list(ARCHS)
