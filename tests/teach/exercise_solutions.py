"""Reference solutions of the notebooks' coding exercises, for the tests only (the notebooks ship the stubs).

Written independently of cnnlab.numpy_engine, which the graders compare them with."""

SOLUTIONS = {
    "conv2d_forward": (
        "def conv2d_forward(x, w, b, stride, padding):\n"
        "    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))\n"
        "    B, C, H, W = xp.shape\n"
        "    Co, _, k, _ = w.shape\n"
        "    Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1\n"
        "    y = np.empty((B, Co, Ho, Wo))\n"
        "    for i in range(Ho):\n"
        "        for j in range(Wo):\n"
        "            patch = xp[:, :, i * stride : i * stride + k, j * stride : j * stride + k]  # (B, C, k, k)\n"
        "            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b\n"
        "    return y"
    ),
    "maxpool2d_backward": (
        "def maxpool2d_backward(dy, x, k):\n"
        "    dx = np.zeros_like(x)\n"
        "    B, C, Ho, Wo = dy.shape\n"
        "    for i in range(Ho):\n"
        "        for j in range(Wo):\n"
        "            win = x[:, :, i * k : (i + 1) * k, j * k : (j + 1) * k].reshape(B, C, -1)\n"
        "            r, c = np.unravel_index(win.argmax(axis=2), (k, k))  # the winner of each window\n"
        "            bi, ci = np.indices((B, C))\n"
        "            dx[bi, ci, i * k + r, j * k + c] += dy[:, :, i, j]\n"
        "    return dx"
    ),
    "batchnorm_forward": (
        "def batchnorm_forward(x, gamma, beta, eps):\n"
        "    mean = x.mean(axis=(0, 2, 3), keepdims=True)\n"
        "    var = x.var(axis=(0, 2, 3), keepdims=True)\n"
        "    x_hat = (x - mean) / np.sqrt(var + eps)\n"
        "    return gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)"
    ),
    "softmax_cross_entropy_grad": (
        "def softmax_cross_entropy_grad(logits, labels):\n"
        "    e = np.exp(logits - logits.max(axis=1, keepdims=True))\n"
        "    p = e / e.sum(axis=1, keepdims=True)\n"
        "    p[np.arange(len(labels)), labels] -= 1\n"
        "    return p / len(labels)"
    ),
}
