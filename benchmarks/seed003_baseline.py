"""Seed 003's way of running a CNN in NumPy, rebuilt as a speed baseline for the NumPy engine.

Seed 003 ("Convolutional Neural Networks From Scratch") trained on one image at a time: a
``patches_generator`` walks every output position with Python loops and yields the patch under
the kernel; ``forward_prop`` multiplies each patch with all kernels; ``back_prop`` walks the
patches again to accumulate kernel gradients, and the pooling layer loops over the elements of
every patch to find where the maximum came from. Its network had one convolution and worked on a
single channel only.

To compare speed on the *same* network, this module applies that approach to LeNet-5 (two 5x5
convolutions with 6 and 16 channels, 2x2 max pooling, 120-84-10 dense head, ReLU), extending the
patch loop to several input channels (the seed could not do that) and keeping everything else as
in the seed: image layout (H, W, C), batch size 1, plain SGD update after every image. The code
is written from the seed's description, not copied. ``check_against_engine`` verifies that one
step gives the same gradients as ``cnnlab.numpy_engine``, so the speed ratio compares equal work.
"""

from __future__ import annotations

import numpy as np


class PatchConv:
    """Convolution by looping over output positions; kernels (F, kh, kw, C), image (H, W, C)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, padding: int = 0):
        self.kernels = weight.transpose(0, 2, 3, 1).copy()  # (O, C, kh, kw) -> (F, kh, kw, C)
        self.bias = bias.copy()
        self.padding = padding

    def patches(self, image: np.ndarray):
        """Yield (patch, h, w) for every output position (the seed's patches_generator)."""
        k = self.kernels.shape[1]
        for h in range(image.shape[0] - k + 1):
            for w in range(image.shape[1] - k + 1):
                yield image[h : h + k, w : w + k], h, w

    def forward(self, image: np.ndarray) -> np.ndarray:
        p = self.padding
        image = np.pad(image, ((p, p), (p, p), (0, 0)))
        self.image = image
        k, f = self.kernels.shape[1], self.kernels.shape[0]
        out = np.zeros((image.shape[0] - k + 1, image.shape[1] - k + 1, f))
        for patch, h, w in self.patches(image):
            out[h, w] = np.sum(patch * self.kernels, axis=(1, 2, 3)) + self.bias
        return out

    def backward(self, d_out: np.ndarray, lr: float, need_input_grad: bool = True) -> np.ndarray | None:
        d_kernels = np.zeros_like(self.kernels)
        d_image = np.zeros_like(self.image)
        k = self.kernels.shape[1]
        for patch, h, w in self.patches(self.image):
            for f in range(self.kernels.shape[0]):
                d_kernels[f] += patch * d_out[h, w, f]
                if need_input_grad:
                    d_image[h : h + k, w : w + k] += self.kernels[f] * d_out[h, w, f]
        self.grads = (d_kernels, d_out.sum(axis=(0, 1)))
        self.kernels -= lr * d_kernels
        self.bias -= lr * self.grads[1]
        if not need_input_grad:
            return None
        p = self.padding
        return d_image[p : d_image.shape[0] - p, p : d_image.shape[1] - p] if p else d_image


class PatchMaxPool:
    """2x2 max pooling by looping over patches, and over patch elements in the backward pass."""

    def __init__(self, size: int = 2):
        self.size = size

    def patches(self, image: np.ndarray):
        s = self.size
        for h in range(image.shape[0] // s):
            for w in range(image.shape[1] // s):
                yield image[h * s : h * s + s, w * s : w * s + s], h, w

    def forward(self, image: np.ndarray) -> np.ndarray:
        self.image = image
        s = self.size
        out = np.zeros((image.shape[0] // s, image.shape[1] // s, image.shape[2]))
        for patch, h, w in self.patches(image):
            out[h, w] = np.amax(patch, axis=(0, 1))
        return out

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        d_image = np.zeros_like(self.image)
        s = self.size
        for patch, h, w in self.patches(self.image):
            top = np.amax(patch, axis=(0, 1))
            for c in range(patch.shape[2]):
                done = False  # gradient to the first maximum only (the engine's tie rule)
                for i in range(s):
                    for j in range(s):
                        if not done and patch[i, j, c] == top[c]:
                            d_image[h * s + i, w * s + j, c] = d_out[h, w, c]
                            done = True
        return d_image


class Dense:
    """Fully connected layer on a flat vector, weight (out, in) as in torch."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        self.weight, self.bias = weight.copy(), bias.copy()

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return self.weight @ x + self.bias

    def backward(self, d_out: np.ndarray, lr: float) -> np.ndarray:
        d_x = self.weight.T @ d_out
        self.grads = (np.outer(d_out, self.x), d_out)
        self.weight -= lr * self.grads[0]
        self.bias -= lr * d_out
        return d_x


class SeedStyleLeNet:
    """LeNet-5 run the seed-003 way: one (H, W, C) image per step, SGD after every image."""

    def __init__(self, state: dict[str, np.ndarray], padding: int):
        f64 = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
        self.conv1 = PatchConv(f64["0.weight"], f64["0.bias"], padding)
        self.pool1 = PatchMaxPool(2)
        self.conv2 = PatchConv(f64["3.weight"], f64["3.bias"])
        self.pool2 = PatchMaxPool(2)
        self.fcs = [Dense(f64[f"{i}.weight"], f64[f"{i}.bias"]) for i in (7, 9, 11)]

    def train_step(self, image: np.ndarray, label: int, lr: float) -> float:
        """Forward, cross-entropy, backward and update for one image; returns the loss."""
        a1 = np.maximum(self.conv1.forward(image), 0)
        p1 = self.pool1.forward(a1)
        a2 = np.maximum(self.conv2.forward(p1), 0)
        p2 = self.pool2.forward(a2)
        h = p2.transpose(2, 0, 1).reshape(-1)  # flatten in (C, H, W) order, like the engine
        acts = []
        for i, fc in enumerate(self.fcs):
            h = fc.forward(h)
            if i < 2:
                h = np.maximum(h, 0)
                acts.append(h)
        e = np.exp(h - h.max())
        probs = e / e.sum()
        d = probs.copy()
        d[label] -= 1  # softmax + cross-entropy: y_hat - y
        for i in (2, 1, 0):
            d = self.fcs[i].backward(d, lr)
            if i > 0:
                d = d * (acts[i - 1] > 0)
        d = d.reshape(p2.shape[2], p2.shape[0], p2.shape[1]).transpose(1, 2, 0)
        d = self.pool2.backward(d) * (a2 > 0)
        d = self.conv2.backward(d, lr)
        d = self.pool1.backward(d) * (a1 > 0)
        self.conv1.backward(d, lr, need_input_grad=False)
        return float(-np.log(probs[label]))


def check_against_engine(seed: int = 0) -> float:
    """One image, one step: max relative difference between this baseline's and the engine's conv1 gradient."""
    import cnnlab.numpy_engine as ne

    ne.manual_seed(seed)
    model = ne.lenet(dtype=np.float64)
    base = SeedStyleLeNet(model.state_dict(), padding=2)
    rng = np.random.default_rng(seed)
    x = rng.random((1, 1, 28, 28))
    label = 3
    loss_fn = ne.CrossEntropyLoss()
    loss_fn(model(x), np.array([label]))
    model.backward(loss_fn.backward(), input_grad=False)
    base.train_step(x[0].transpose(1, 2, 0), label, lr=0.0)
    ours = model[0].params["weight"].grad.transpose(0, 2, 3, 1)
    theirs = base.conv1.grads[0]
    return float(np.abs(ours - theirs).max() / np.abs(ours).max())
