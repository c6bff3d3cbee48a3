"""The plain PyTorch reference of issue 18: MNIST to >= 99 % in one epoch, nothing but torch and NumPy.

Data as tensors in memory, a 16-32-64 Conv-BN-ReLU-MaxPool CNN, SGD with Nesterov momentum under a
one-cycle schedule peaking at 0.2, batch 128, random shifts of up to 2 pixels, one epoch.
Prints one JSON line: test accuracy, seconds after the imports and seconds since the process began.

Run:  python benchmarks/mnist_plain.py ../shared/data 0
"""

import gzip  # noqa: E401 - a plain script, kept short on purpose
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

t_imports = time.time()
root, seed = sys.argv[1], int(sys.argv[2])
torch.manual_seed(seed)


def idx(name, offset):  # the MNIST IDX files: a header, then uint8 values
    return np.frombuffer(gzip.open(f"{root}/MNIST/raw/{name}-ubyte.gz").read(), np.uint8, offset=offset)


def images(name):  # (N, 1, 28, 28) normalised float
    return (torch.from_numpy(idx(name, 16).copy()).view(-1, 1, 28, 28).float() / 255 - 0.1307) / 0.3081


x_train, x_test = images("train-images-idx3"), images("t10k-images-idx3")
y_train, y_test = (torch.from_numpy(idx(n, 8).astype(np.int64)) for n in ("train-labels-idx1", "t10k-labels-idx1"))


def stage(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]


model = nn.Sequential(*stage(1, 16), *stage(16, 32), *stage(32, 64), nn.Flatten(), nn.Linear(64 * 3 * 3, 10))
batch, steps = 128, -(-len(x_train) // 128)
opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=steps)
ar, background = torch.arange(28), float(x_train.min())  # 0 before normalising
model.train()
for idx_b in torch.randperm(len(x_train)).split(batch):
    b = len(idx_b)
    dy, dx = torch.randint(0, 5, (b,)), torch.randint(0, 5, (b,))  # shift by -2..2 px (pad 2, crop 28)
    padded = F.pad(x_train[idx_b], (2, 2, 2, 2), value=background)
    xb = padded[torch.arange(b)[:, None, None], 0, (dy[:, None] + ar)[:, :, None], (dx[:, None] + ar)[:, None, :]]
    loss = F.cross_entropy(model(xb[:, None]), y_train[idx_b])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
model.eval()
with torch.inference_mode():
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in zip(x_test.split(2000), y_test.split(2000)))
done = time.time()
print(json.dumps({"accuracy": correct / len(x_test), "after_imports_s": done - t_imports, "seed": seed}))
