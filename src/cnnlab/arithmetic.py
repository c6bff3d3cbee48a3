"""Convolution arithmetic: output sizes, parameter and MAC counts, receptive fields.

Pure Python (no NumPy, no torch) so that model summaries, the ``cnnlab calc`` command and the
learning pages can all share one set of formulas. The output-size rule is the one of seeds 001,
002 and 004, ``out = floor((n + 2p - d(k-1) - 1) / s) + 1`` (with d = 1 this is the familiar
``floor((n + 2p - k) / s) + 1``); the receptive-field recurrence follows Dumoulin & Visin, "A guide
to convolution arithmetic for deep learning" (2016) and Araujo et al., "Computing receptive fields
of convolutional neural networks" (Distill, 2019): ``rf_out = rf_in + (k_eff - 1) * jump_in`` and
``jump_out = jump_in * stride``, where ``k_eff = d(k - 1) + 1`` is the dilated kernel's extent.
Seed 002 writes the same sum as ``1 + Σ (k - 1) Π strides``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from cnnlab.errors import CnnlabError


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if int(v) != v or v < 1:
            raise CnnlabError(f"{name} must be a positive integer, got {v!r}.")


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: ``d (k - 1) + 1`` (a 3x3 kernel with d=2 covers 5x5)."""
    _check_positive(kernel=kernel, dilation=dilation)
    return dilation * (kernel - 1) + 1


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial output size of a convolution along one axis.

    ``out = floor((size + 2 padding - k_eff) / stride) + 1`` with ``k_eff = dilation (kernel - 1) + 1``.

    Raises:
        CnnlabError: when the (padded) input is smaller than the kernel, i.e. the output would be < 1.
    """
    _check_positive(size=size, kernel=kernel, stride=stride, dilation=dilation)
    if padding < 0:
        raise CnnlabError(f"padding must be >= 0, got {padding}.")
    k_eff = effective_kernel(kernel, dilation)
    span = size + 2 * padding - k_eff
    if span < 0:
        raise CnnlabError(
            f"kernel {kernel} (effective {k_eff} with dilation {dilation}) does not fit into input {size} "
            f"with padding {padding}: ({size} + 2*{padding} - {k_eff}) / {stride} + 1 < 1. "
            "Use a larger input, more padding or a smaller kernel."
        )
    return span // stride + 1


def pool_output_size(
    size: int,
    kernel: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Spatial output size of a pooling window along one axis (stride defaults to the kernel size).

    Same formula as :func:`conv_output_size`; with ``ceil_mode`` the division rounds up, and (as in
    torch) a last window that would start entirely inside the right padding is dropped.
    """
    stride = kernel if stride is None else stride
    if padding * 2 > kernel:
        raise CnnlabError(f"pool padding {padding} must be at most half the kernel size {kernel}.")
    out = conv_output_size(size, kernel, stride, padding, dilation)  # validates and floors
    if ceil_mode:
        k_eff = effective_kernel(kernel, dilation)
        out = math.ceil((size + 2 * padding - k_eff) / stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
    return out


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the size unchanged at stride 1: ``(k_eff - 1) / 2``.

    Raises:
        CnnlabError: for an even effective kernel, which needs asymmetric padding (not one integer).
    """
    k_eff = effective_kernel(kernel, dilation)
    if k_eff % 2 == 0:
        raise CnnlabError(
            f"an even effective kernel ({k_eff}) cannot keep the size with symmetric padding; "
            "use an odd kernel or pad asymmetrically (total padding k_eff - 1)."
        )
    return (k_eff - 1) // 2


def conv_transpose_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output size of a transposed convolution (torch ``ConvTranspose2d``):

    ``out = (size - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1``.
    """
    _check_positive(size=size, kernel=kernel, stride=stride, dilation=dilation)
    if not 0 <= output_padding < max(stride, dilation):
        raise CnnlabError(f"output_padding must be in [0, max(stride, dilation)), got {output_padding}.")
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if out < 1:
        raise CnnlabError(f"transposed conv output would be {out} < 1; reduce padding ({padding}).")
    return out


def _pair(k: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(k, int):
        return (k, k)
    kh, kw = k
    return (int(kh), int(kw))


def conv_params(in_ch: int, out_ch: int, kernel: int | Sequence[int], bias: bool = True, groups: int = 1) -> int:
    """Learnable parameters of a Conv2d: ``out (in / groups) kh kw + out`` (the bias term)."""
    _check_positive(in_ch=in_ch, out_ch=out_ch, groups=groups)
    if in_ch % groups or out_ch % groups:
        raise CnnlabError(f"groups={groups} must divide in_ch={in_ch} and out_ch={out_ch}.")
    kh, kw = _pair(kernel)
    return out_ch * (in_ch // groups) * kh * kw + (out_ch if bias else 0)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Learnable parameters of a fully connected layer: ``in out + out``."""
    _check_positive(in_features=in_features, out_features=out_features)
    return in_features * out_features + (out_features if bias else 0)


def conv_macs(
    in_ch: int,
    out_ch: int,
    kernel: int | Sequence[int],
    out_h: int,
    out_w: int | None = None,
    groups: int = 1,
) -> int:
    """Multiply-accumulates of one Conv2d forward pass for one image (bias adds are not counted).

    Each of the ``out_ch out_h out_w`` outputs is a dot product of length ``(in / groups) kh kw``.
    """
    out_w = out_h if out_w is None else out_w
    _check_positive(out_h=out_h, out_w=out_w)
    kh, kw = _pair(kernel)
    return out_ch * out_h * out_w * (in_ch // groups) * kh * kw


def linear_macs(in_features: int, out_features: int) -> int:
    """Multiply-accumulates of a fully connected layer for one example."""
    return in_features * out_features


def receptive_field_step(rf: int, jump: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """One layer of the receptive-field recurrence.

    Args:
        rf: receptive field (in input pixels) of one unit of the layer's input.
        jump: distance in input pixels between neighbouring units of the layer's input.

    Returns:
        ``(rf_out, jump_out)`` with ``rf_out = rf + (k_eff - 1) jump`` and ``jump_out = jump stride``.
    """
    _check_positive(rf=rf, jump=jump, stride=stride)
    k_eff = effective_kernel(kernel, dilation)
    return rf + (k_eff - 1) * jump, jump * stride


def receptive_field(layers: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Receptive field and jump after each layer, starting from the input (rf 1, jump 1).

    Args:
        layers: ``(kernel, stride)`` or ``(kernel, stride, dilation)`` per layer; activations,
            batch norm and other pointwise layers are ``(1, 1)`` and change nothing.

    Returns:
        One ``(rf, jump)`` per layer, in order.
    """
    rf, jump = 1, 1
    out: list[tuple[int, int]] = []
    for layer in layers:
        if len(layer) not in (2, 3):
            raise CnnlabError(f"a layer is (kernel, stride) or (kernel, stride, dilation), got {layer!r}.")
        rf, jump = receptive_field_step(rf, jump, *layer)
        out.append((rf, jump))
    return out


_TOKEN = re.compile(r"(conv|pool)(\d+)((?:[sdp]\d+)*)")


def parse_layers(text: str) -> list[dict]:
    """Parse a readable layer list such as ``"conv3,pool2,conv3s2d2"``.

    Each comma-separated token is ``convK`` or ``poolK`` followed by optional ``sS`` (stride),
    ``dD`` (dilation) and ``pP`` (padding). Convolutions default to stride 1 and "same" padding,
    pooling to stride K and padding 0.

    Returns:
        One dict per layer with ``name``, ``kind``, ``kernel``, ``stride``, ``dilation``, ``padding``.
    """
    layers = []
    for token in filter(None, (t.strip().lower() for t in text.split(","))):
        m = _TOKEN.fullmatch(token)
        if not m:
            raise CnnlabError(
                f"cannot read layer {token!r}: write convK or poolK, optionally with sS, dD, pP "
                "(e.g. conv3, pool2, conv3s2, conv3d2p2)."
            )
        kind, k = m.group(1), int(m.group(2))
        opts = {key: int(val) for key, val in re.findall(r"([sdp])(\d+)", m.group(3))}
        d = opts.get("d", 1)
        stride = opts.get("s", 1 if kind == "conv" else k)
        pad = opts.get("p", same_padding(k, d) if kind == "conv" and effective_kernel(k, d) % 2 else 0)
        layers.append({"name": token, "kind": kind, "kernel": k, "stride": stride, "dilation": d, "padding": pad})
    if not layers:
        raise CnnlabError("the layer list is empty; give e.g. 'conv3,conv3,pool2'.")
    return layers
