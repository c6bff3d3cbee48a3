"""Vectorised building blocks of the NumPy engine: padding, im2col / col2im, convolution and pooling.

Seed 003 convolved one single-channel image at a time with Python loops over patches. Here every
operation works on a whole batch ``(B, C, H, W)`` at once: ``windows`` builds a zero-copy strided
view of all k x k patches, convolution becomes one matrix product for the whole batch
(``W2 @ cols``), and the backward pass scatters patch gradients back with ``col2im``, which loops
only over the k x k kernel offsets (25 iterations for a 5x5 kernel), never over samples or pixels.
The derivations are in ``docs/learn/backprop.md``.

Layout conventions (same as torch): activations ``(B, C, H, W)``, conv weights ``(Co, C, kh, kw)``
(Co = output channels). Outputs may be non-contiguous views (a convolution returns its
(Co, B, ...) result with the axes swapped); every function here accepts any strides.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    """Turn ``3`` into ``(3, 3)``; leave a pair as it is (the torch convention for kernel/stride/padding)."""
    if isinstance(v, (tuple, list)):
        a, b = v
        return int(a), int(b)
    return int(v), int(v)


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a sliding window: floor((size + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad2d(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of ``x`` (B, C, H, W); returns ``x`` itself when there is no padding.

    A preallocated array plus one slice assignment is several times faster than ``np.pad``.
    """
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    B, C, H, W = x.shape
    out = np.full((B, C, H + 2 * ph, W + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph : ph + H, pw : pw + W] = x
    return out


def unpad2d(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pad2d` (a view): drop ``padding`` rows/columns on each side."""
    ph, pw = padding
    H, W = x.shape[2], x.shape[3]
    return x[:, :, ph : H - ph, pw : W - pw]


def windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """All sliding windows of an already padded ``xp`` (B, C, H, W) as a read-only strided view.

    Returns shape ``(B, C, kh, kw, Ho, Wo)``: element ``[b, c, i, j, y, x]`` is
    ``xp[b, c, y*sh + i, x*sw + j]``. Putting the kernel offsets before the output positions makes
    the later reshape to ``(B, C*kh*kw, Ho*Wo)`` copy long contiguous runs along ``Wo``.
    No data is copied here.
    """
    (kh, kw), (sh, sw) = kernel, stride
    B, C, H, W = xp.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    bs, cs, hs, ws = xp.strides
    return as_strided(xp, (B, C, kh, kw, Ho, Wo), (bs, cs, hs, ws, hs * sh, ws * sw), writeable=False)


def im2col(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Patch matrix of a padded batch: ``(C*kh*kw, B*Ho*Wo)`` (one contiguous copy).

    Column ``(b, y, x)`` holds the flattened receptive field of output pixel (y, x) of image b, in the
    same ``(c, i, j)`` order as a flattened weight ``W[o]``, so that ``W.reshape(Co, -1) @ cols`` is
    the convolution of the whole batch in one matrix product.
    """
    win = windows(xp, kernel, stride)  # (B, C, kh, kw, Ho, Wo)
    B, C, kh, kw, Ho, Wo = win.shape
    return win.transpose(1, 2, 3, 0, 4, 5).reshape(C * kh * kw, B * Ho * Wo)


def col2im(
    cols: np.ndarray, padded_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int]
) -> np.ndarray:
    """Adjoint of :func:`windows`: sum patch gradients back into a padded image gradient.

    ``cols`` has shape ``(B, C, kh, kw, Ho, Wo)`` (any layout). Every input pixel receives the sum of
    the gradients of all windows that contain it. When windows do not overlap (stride == kernel,
    the usual 2x2 pooling) this is a pure reshape; otherwise we loop over the kh*kw kernel offsets
    and add one strided slab per offset, which is vectorised over batch, channels and positions.
    """
    (kh, kw), (sh, sw) = kernel, stride
    B, C, _, _, Ho, Wo = cols.shape
    dx = np.zeros(padded_shape, dtype=cols.dtype)
    if (sh, sw) == (kh, kw):
        # (B, C, kh, kw, Ho, Wo) -> (B, C, Ho, kh, Wo, kw) -> (B, C, Ho*kh, Wo*kw)
        dx[:, :, : Ho * kh, : Wo * kw] = cols.transpose(0, 1, 4, 2, 5, 3).reshape(B, C, Ho * kh, Wo * kw)
        return dx
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i : i + sh * (Ho - 1) + 1 : sh, j : j + sw * (Wo - 1) + 1 : sw] += cols[:, :, i, j]
    return dx


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def conv2d_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, tuple]:
    """Cross-correlation (what deep learning calls convolution) of ``x`` (B, C, H, W) with ``weight``.

    Returns ``(y, cache)`` with ``y`` (B, Co, Ho, Wo). The whole batch is one matrix product
    ``W2 @ cols + bias`` with ``W2 = weight.reshape(Co, C*kh*kw)`` and ``cols`` the im2col patch
    matrix (C*kh*kw, B*L); ``cache`` keeps ``cols`` for the backward pass. ``y`` is a view of that
    product's (Co, B, ...) memory with the axes swapped, so no copy is made to reorder it.
    Stride-1 convolutions take the faster "wide" path (see :func:`_wide_im2col`).
    """
    Co, C, kh, kw = weight.shape
    B = x.shape[0]
    Ho, Wo = out_size(x.shape[2], kh, stride[0], padding[0]), out_size(x.shape[3], kw, stride[1], padding[1])
    if stride == (1, 1):
        cols, geom = _wide_im2col(x, (kh, kw), padding)
        row = geom[1]  # wide rows: Wp columns, the last kw-1 are wrap-around garbage
    else:
        cols, geom, row = im2col(pad2d(x, padding), (kh, kw), stride), None, Wo
    y = weight.reshape(Co, -1) @ cols  # (Co, CKK) @ (CKK, B*L) -> (Co, B*L)
    if bias is not None:
        y += bias[:, None]
    y = y.reshape(Co, B, Ho, row)[..., :Wo].transpose(1, 0, 2, 3)  # (B, Co, Ho, Wo) view
    return y, (cols, geom)


def _wide_im2col(x: np.ndarray, kernel: tuple[int, int], padding: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    """im2col for stride 1 with long contiguous runs ("wide" outputs).

    Flatten each padded image to one row of Hp*Wp pixels. Output pixel (y, x) then reads input
    pixel ``p + i*Wp + j`` with ``p = y*Wp + x``: every kernel offset (i, j) is a plain shift of
    the flat image. Computing outputs for all Wp columns (the last kw-1 of each row are wrap-around
    garbage that callers slice off) makes each (c, i, j, b) run of ``cols`` one contiguous slice of
    Ho*Wp floats, which copies several times faster than 2-D windows. Returns ``(cols, (Hp, Wp))``
    with ``cols`` (C*kh*kw, B*Ho*Wp).
    """
    (kh, kw), (ph, pw) = kernel, padding
    B, C, H, W = x.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, n = Hp - kh + 1, Hp * Wp
    # channel-major (C, B, Hp, Wp) images, plus kw-1 spare elements so the last wrap-around read stays in bounds
    buf = np.zeros(C * B * n + kw - 1, dtype=x.dtype)
    buf[: C * B * n].reshape(C, B, Hp, Wp)[:, :, ph : ph + H, pw : pw + W] = x.transpose(1, 0, 2, 3)
    e = buf.itemsize
    win = as_strided(buf, (C, kh, kw, B, Ho * Wp), (B * n * e, Wp * e, e, n * e, e), writeable=False)
    return win.reshape(C * kh * kw, B * Ho * Wp), (Hp, Wp)


def _wide_col2im(
    dcols: np.ndarray, shape: tuple[int, ...], kernel: tuple[int, int], geom: tuple[int, int]
) -> np.ndarray:
    """Adjoint of :func:`_wide_im2col`: add each (i, j) slab of ``dcols`` back at flat offset i*Wp + j.

    ``dcols`` is (C*kh*kw, B*Ho*Wp) with zeros in the wrap-around columns. Returns the padded input
    gradient as a (B, C, Hp, Wp) view; 25 contiguous slab additions for a 5x5 kernel.
    """
    (kh, kw), (Hp, Wp) = kernel, geom
    B, C = shape[0], shape[1]
    L = dcols.shape[1] // B
    d = dcols.reshape(C, kh, kw, B, L)
    dx = np.zeros((C, B, Hp * Wp + kw - 1), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            off = i * Wp + j
            dx[:, :, off : off + L] += d[:, i, j]
    return dx[:, :, : Hp * Wp].reshape(C, B, Hp, Wp).transpose(1, 0, 2, 3)


def conv2d_backward(
    dy: np.ndarray,
    cache: tuple,
    weight: np.ndarray,
    x_shape: tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward`: returns ``(dx, dweight, dbias)``.

    With ``Y2 = W2 @ cols`` (Y2 the output as a (Co, B*L) matrix): ``dW2 = dY2 @ cols.T`` and
    ``dcols = W2.T @ dY2``, two matrix products for the whole batch; col2im then adds each patch
    gradient back onto the pixels it came from. ``need_dx=False`` skips the input gradient (the
    first layer of a network never needs it).
    """
    cols, geom = cache
    Co, C, kh, kw = weight.shape
    B, _, Ho, Wo = dy.shape
    db = dy.sum(axis=(0, 2, 3))
    row = geom[1] if geom is not None else Wo
    dy2 = np.zeros((Co, B, Ho, row), dtype=dy.dtype)  # wide layout: zero gradient for wrap-around columns
    dy2[..., :Wo] = dy.transpose(1, 0, 2, 3)
    dy2 = dy2.reshape(Co, -1)  # (Co, B*L)
    dw = (dy2 @ cols.T).reshape(weight.shape)  # (Co, B*L) @ (B*L, CKK)
    if not need_dx:
        return None, dw, db
    dcols = weight.reshape(Co, -1).T @ dy2  # (CKK, Co) @ (Co, B*L) -> (CKK, B*L)
    if geom is not None:
        dxp = _wide_col2im(dcols, x_shape, (kh, kw), geom)
    else:
        H, W = x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]
        d6 = dcols.reshape(C, kh, kw, B, Ho, Wo).transpose(3, 0, 1, 2, 4, 5)  # (B, C, kh, kw, Ho, Wo) view
        dxp = col2im(d6, (B, C, H, W), (kh, kw), stride)
    return unpad2d(dxp, padding), dw, db


# ----------------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------------


def maxpool2d_forward(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling of ``x`` (B, C, H, W). Returns ``(y, idx)``; ``idx`` (B, C, Ho, Wo) is the winner's
    position ``i*kw + j`` inside its window.

    Tie rule: when several pixels of a window share the maximum, the first one in row-major window
    order (top-most row, then left-most column) wins and receives the whole gradient. torch's CPU
    kernel scans windows in the same order and keeps the first maximum, so gradients match torch
    even with ties (e.g. after a ReLU, where whole windows are 0). Padding counts as -inf.
    """
    kh, kw = kernel
    if stride == kernel and padding == (0, 0):
        return _maxpool_tiles(x, kernel)
    win = windows(pad2d(x, padding, value=-np.inf), kernel, stride)  # (B, C, kh, kw, Ho, Wo) view
    B, C, _, _, Ho, Wo = win.shape
    flat = win.reshape(B, C, kh * kw, Ho, Wo)  # copy
    idx = flat.argmax(axis=2)  # np.argmax returns the first maximum: the tie rule
    y = np.take_along_axis(flat, idx[:, :, None], axis=2)[:, :, 0]
    return y, idx


def _first_max(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise max over same-shape arrays and the index (int16) of the first maximal one.

    Only comparisons, ``np.maximum`` and integer arithmetic: several times faster than ``np.where``
    on these strided views. ``sel += better * (k - sel)`` sets ``sel`` to ``k`` exactly where ``v``
    beat every earlier value (strict ``>``: an equal later value never replaces an earlier one).
    """
    best, sel = parts[0], None
    for k, v in enumerate(parts[1:], start=1):
        better = v > best
        best = np.maximum(best, v)
        if sel is None:  # k == 1: the index is 1 exactly where the second value won
            sel = better.astype(np.int16)
        else:
            sel += better * (k - sel)
    if sel is None:  # a window of one element
        sel = np.zeros(best.shape, dtype=np.int16)
    return best, sel


def _maxpool_tiles(x: np.ndarray, kernel: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows (stride == kernel, no padding), the usual 2x2 case, without copies.

    First the max over the kw columns of each window row (first column wins ties), then the max
    over those kh row winners (first row wins ties): together the first maximum in row-major order.
    """
    kh, kw = kernel
    B, C, H, W = x.shape
    Ho, Wo = H // kh, W // kw
    xc = x[:, :, : Ho * kh, : Wo * kw]
    rows, jsel = _first_max([xc[..., j::kw] for j in range(kw)])  # (B, C, Ho*kh, Wo)
    rows, jsel = rows.reshape(B, C, Ho, kh, Wo), jsel.reshape(B, C, Ho, kh, Wo)
    y, isel = _first_max([rows[:, :, :, i] for i in range(kh)])  # (B, C, Ho, Wo)
    jwin = jsel[:, :, :, 0].copy()  # column of the winner inside the winning row
    for i in range(1, kh):
        jwin += (isel == i) * (jsel[:, :, :, i] - jwin)
    return y, isel * kw + jwin


def maxpool2d_backward(
    dy: np.ndarray,
    idx: np.ndarray,
    x_shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Route each output gradient to the single input pixel that won its window (see the tie rule)."""
    kh, kw = kernel
    B, C, Ho, Wo = dy.shape
    if stride == kernel and padding == (0, 0):
        # windows do not overlap: write the gradient of window position (i, j) into its strided slab
        dx = np.zeros(x_shape, dtype=dy.dtype)
        for i in range(kh):
            for j in range(kw):
                np.multiply(dy, idx == i * kw + j, out=dx[:, :, i : Ho * kh : kh, j : Wo * kw : kw])
        return dx
    # one-hot over the kh*kw window positions times the upstream gradient: (B, C, kh*kw, Ho, Wo)
    onehot = np.arange(kh * kw, dtype=idx.dtype)[:, None, None] == idx[:, :, None]
    dcols = onehot * dy[:, :, None]
    padded = (B, C, x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    dxp = col2im(dcols.reshape(B, C, kh, kw, Ho, Wo), padded, kernel, stride)
    return unpad2d(dxp, padding)


def avgpool2d_forward(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Average pooling; zero padding is counted in the average (torch's ``count_include_pad=True``)."""
    win = windows(pad2d(x, padding), kernel, stride)  # (B, C, kh, kw, Ho, Wo)
    return win.mean(axis=(2, 3), dtype=x.dtype)


def avgpool2d_backward(
    dy: np.ndarray, x_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Each of the kh*kw pixels of a window receives 1/(kh*kw) of the window's gradient."""
    kh, kw = kernel
    B, C, Ho, Wo = dy.shape
    share = (dy / (kh * kw))[:, :, None, None]  # (B, C, 1, 1, Ho, Wo)
    dcols = np.broadcast_to(share, (B, C, kh, kw, Ho, Wo))
    padded = (B, C, x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    return unpad2d(col2im(dcols, padded, kernel, stride), padding)


# ----------------------------------------------------------------------------------------------
# Softmax
# ----------------------------------------------------------------------------------------------


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis: z - max - log(sum(exp(z - max)))."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (stable: the row maximum is subtracted before exp)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
