"""Batches for training and evaluation: one interface, two paths.

* :class:`TensorLoader` — the fast path for in-memory datasets. The whole split stays a uint8
  tensor (N, C, H, W) on the training device; each batch is an index gather, a float conversion,
  a vectorised augmentation and a normalisation. No DataLoader, no workers, no PIL.
* :func:`folder_loader` — image folders: a DataLoader whose workers decode files with the one
  decoding rule of :mod:`cnnlab.data.images`; augmentation then runs on the collated batch with
  the same functions, so both paths have the same semantics.

Both yield ``(x, y)`` with x float32 normalised (B, C, H, W) and y int64 (B,), and both draw
their shuffling from a torch.Generator whose state can be saved for exact resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.augment import Augment
from cnnlab.data.images import load_image


class TensorLoader:
    """Iterate over an in-memory uint8 image tensor in (optionally shuffled, augmented) batches."""

    def __init__(
        self,
        images: torch.Tensor,  # uint8 (N, C, H, W)
        labels: torch.Tensor,  # int64 (N,)
        batch_size: int,
        mean: list[float],
        std: list[float],
        shuffle: bool = False,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
    ):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.generator = generator or torch.Generator().manual_seed(0)
        self.drop_last, self.channels_last = drop_last, channels_last
        dev = images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx].float().div_(255.0)  # (B, C, H, W) in [0, 1]
            if self.augment is not None:
                x = self.augment(x, self.generator)
            x = (x - self.mean) * self.inv_std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


def to_tensor_images(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, C) NumPy -> contiguous uint8 (N, C, H, W) tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


class FolderImages(Dataset):
    """Decode image files to float (C, size, size) in [0, 1] with the shared decoding rule."""

    def __init__(self, items: list[tuple[Path, int]], channels: int, size: int):
        self.items, self.channels, self.size = items, channels, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        x = torch.from_numpy(load_image(path, self.channels)).permute(2, 0, 1)  # (C, H, W)
        if x.shape[1:] != (self.size, self.size):
            x = F.interpolate(
                x[None], size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )[0]
        return x.clamp_(0, 1), label


class FolderLoader:
    """DataLoader over files, then the same augment + normalise steps as TensorLoader."""

    def __init__(
        self,
        dataset: FolderImages,
        batch_size: int,
        mean,
        std,
        shuffle=False,
        augment=None,
        generator=None,
        num_workers=2,
        device="cpu",
        channels_last=False,
    ):
        self.generator = generator or torch.Generator().manual_seed(0)
        self.augment, self.channels_last, self.device = augment, channels_last, torch.device(device)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=self.generator,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,
        )
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return len(self.loader.dataset)

    def __iter__(self):
        for x, y in self.loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.augment is not None:
                x = self.augment(x, self.generator)
            x = (x - self.mean) * self.inv_std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
