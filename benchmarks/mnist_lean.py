"""The leanest plain PyTorch reference of issue 30: MNIST to >= 99 % in one epoch, torch and NumPy only.

What an expert writes when every second counts: the data as normalised tensors in memory, the same
16-32-64 Conv-BN-ReLU-MaxPool network as ``mnist_plain.py`` in channels_last, batch 128 (469 steps),
each batch shifted as a whole by one ``torch.roll`` of up to 2 px (one random shift per batch instead
of ``mnist_plain.py``'s per-image crops), label smoothing 0.1, one-cycle Nesterov SGD peaking at 0.2,
one epoch, and the test set scored in batches of 2,000 under ``inference_mode``.
With a third argument ``bf16``, training and scoring run under bf16 autocast, as ``configs/mnist_fast.yaml``
does: on a CPU with bf16 kernels (AVX-512 BF16, AMX) the expert's one-line speed-up; everything else the same.
Prints one JSON line: test accuracy, seconds after the imports and the seed.

Run:  python benchmarks/mnist_lean.py ../shared/data 0 [bf16]
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
amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=sys.argv[3:] == ["bf16"])


def idx(name, offset):  # the MNIST IDX files: a header, then uint8 values
    return np.frombuffer(gzip.open(f"{root}/MNIST/raw/{name}-ubyte.gz").read(), np.uint8, offset=offset)


def images(name):  # (N, 1, 28, 28) normalised float, channels_last like the network
    x = (torch.from_numpy(idx(name, 16).copy()).view(-1, 1, 28, 28).float() / 255 - 0.1307) / 0.3081
    return x.contiguous(memory_format=torch.channels_last)


x_train, x_test = images("train-images-idx3"), images("t10k-images-idx3")
y_train, y_test = (torch.from_numpy(idx(n, 8).astype(np.int64)) for n in ("train-labels-idx1", "t10k-labels-idx1"))


def stage(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]


model = nn.Sequential(*stage(1, 16), *stage(16, 32), *stage(32, 64), nn.Flatten(), nn.Linear(64 * 3 * 3, 10))
model = model.to(memory_format=torch.channels_last)
batch = 128
order = torch.randperm(len(x_train)).split(batch)
opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=len(order))
shifts = torch.randint(-2, 3, (len(order), 2)).tolist()  # one (dy, dx) per batch
model.train()
for idx_b, (dy, dx) in zip(order, shifts):
    xb = torch.roll(x_train[idx_b], shifts=(dy, dx), dims=(2, 3))
    with amp:
        loss = F.cross_entropy(model(xb), y_train[idx_b], label_smoothing=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
model.eval()
with torch.inference_mode(), amp:
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in zip(x_test.split(2000), y_test.split(2000)))
done = time.time()
print(json.dumps({"accuracy": correct / len(x_test), "after_imports_s": done - t_imports, "seed": seed}))
