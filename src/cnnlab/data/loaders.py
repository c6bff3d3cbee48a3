"""Batches for training and evaluation: one interface, two paths.

* :class:`TensorLoader` — the fast path for in-memory datasets. The whole split stays a uint8
  tensor (N, C, H, W) on the training device; each batch is an index gather, a float conversion,
  a vectorised augmentation and a normalisation. No DataLoader, no workers, no PIL.
* :func:`folder_loader` — image folders: a DataLoader whose workers decode files with the one
  decoding rule of :mod:`cnnlab.data.images`; augmentation then runs on the collated batch with
  the same functions, so both paths have the same semantics.

Both yield ``(x, y)`` with x float32 normalised (B, C, H, W) and y int64 (B,). Each epoch draws
one seed from the data generator and derives its order from it (a permutation, or class-balanced
sampling with replacement when ``weights`` are given), so ``state_dict()`` — the epoch seed and the
batches consumed — is enough to resume mid-epoch: the order is rebuilt and the consumed batches are
skipped without being loaded. Augmentation draws continue from the saved generator state.
``preserved()`` puts all of it back after a look at the data (the LR finder), so the next epoch is
the one it would have been.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.augment import Augment, BatchPosition, augment_batch
from cnnlab.data.images import load_image
from cnnlab.devices import available_cores, spare_core


def epoch_order(n: int, seed: int, shuffle: bool, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Sample indices for one epoch: weighted sampling with replacement, a permutation, or 0..n-1."""
    g = torch.Generator().manual_seed(seed)
    if weights is not None:
        return torch.multinomial(weights, n, replacement=True, generator=g)
    return torch.randperm(n, generator=g) if shuffle else torch.arange(n)


def balanced_weights(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-sample weights 1 / count(class), so every class is drawn equally often (``--balance sampler``)."""
    y = torch.as_tensor(np.asarray(labels)).long().cpu()
    counts = torch.bincount(y).float()
    return (1.0 / counts.clamp_min(1))[y].double()


class _EpochPlan:
    """The epoch seed and position of a loader; mixed into both loaders (saved for mid-epoch resume)."""

    generator: torch.Generator
    shuffle: bool
    weights: torch.Tensor | None
    rank: int = 0  # data-parallel shard of this process (see cnnlab.engine.distributed)
    world: int = 1
    epoch: int = 0  # the run's epoch, for augmentations that change with it (alternating flips)

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next iteration belongs to (the Trainer sets it before every epoch)."""
        self.epoch = int(epoch)

    def _position(self, index: torch.Tensor, n: int) -> BatchPosition:
        return BatchPosition(index, self.epoch, self.generator.initial_seed(), n)

    def shard(self, rank: int, world: int) -> None:
        """Serve only ``order[rank::world]`` of each epoch (padded by wrap-around to equal length)."""
        self.rank, self.world = rank, world

    def _shard_len(self, n: int) -> int:
        return -(-n // self.world)

    def _begin_epoch(self, n: int) -> tuple[torch.Tensor, int]:
        resume = getattr(self, "_resume", None)
        if resume is not None:
            seed, start = resume
            self._resume = None
        else:
            random = self.shuffle or self.weights is not None
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator)) if random else 0
            start = 0
        self._epoch_seed, self.position = seed, start
        order = epoch_order(n, seed, self.shuffle, self.weights)
        if self.world > 1:  # every rank draws the same order (same seed) and keeps its slice
            total = self._shard_len(n) * self.world
            order = torch.cat([order, order[: total - n]])[self.rank :: self.world]
        return order, start

    @contextmanager
    def preserved(self) -> Iterator[None]:
        """Everything iterating changes is put back on exit: the epoch plan (epoch, seed, position, a pending
        resume), the data generator and the worker pool (:meth:`_restore_extra`), so that a look at the data
        (the LR finder) leaves the next epoch exactly as it would have been. Iterators opened inside must be
        closed before the block ends (a prefetch thread still drawing would move the generator on)."""
        saved, gen, extra = dict(vars(self)), self.generator.get_state(), self._save_extra()
        try:
            yield
        finally:
            self._restore_extra(extra)
            # every attribute an iteration sets, whichever class set it: rebinding them all is exact
            vars(self).clear()
            vars(self).update(saved)
            self.generator.set_state(gen)

    def _save_extra(self):
        return None

    def _restore_extra(self, extra) -> None:
        pass

    def state_dict(self) -> dict:
        return {"epoch_seed": getattr(self, "_epoch_seed", 0), "position": getattr(self, "position", 0)}

    def load_state_dict(self, state: dict) -> None:
        """The next iteration continues the saved epoch at the saved batch."""
        self._resume = (int(state["epoch_seed"]), int(state["position"]))


class TensorLoader(_EpochPlan):
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
        weights: torch.Tensor | None = None,  # per-sample sampling weights (class-balanced sampling)
        prefetch: bool | None = None,  # augment the next batch in a background thread; None: where it pays
    ):
        self.images, self.labels, self.weights = images, labels, weights
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.generator = generator or torch.Generator().manual_seed(0)
        self.drop_last, self.channels_last, self.prefetch = drop_last, channels_last, prefetch
        dev = images.device
        mean_t = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        inv_std = 1.0 / torch.tensor(std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        # (x - mean) / std as one fused x * scale + shift; from uint8 directly when nothing augments.
        self.scale, self.shift = inv_std, -mean_t * inv_std
        self.scale_u8 = inv_std / 255.0
        self._consumed_gen: torch.Tensor | None = None

    def __len__(self) -> int:
        n = self._shard_len(len(self.labels))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def _batch(self, order: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = order[i * self.batch_size : (i + 1) * self.batch_size]
        x = self.images[idx]  # (B, C, H, W) uint8
        if self.augment is not None:
            where = self._position(idx, len(self.labels))
            x = augment_batch(self.augment, x.float().div_(255.0), self.generator, where)  # work in [0, 1]
            scale = self.scale
        else:
            scale = self.scale_u8
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device, memory_format=fmt)
        return torch.addcmul(self.shift, x, scale, out=out), self.labels[idx]  # normalise + layout in one pass

    def first_images(self, n: int) -> torch.Tensor:
        """The first ``n`` images in dataset order, normalised and not augmented (for data-dependent inits)."""
        return torch.addcmul(self.shift, self.images[:n].float(), self.scale_u8)

    def unaugmented(self, size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image (all ranks' shards) in dataset order, normalised and not augmented, ``size`` at a time;
        draws no random numbers (the fine-tune recipe's head fit)."""
        for i in range(0, len(self.labels), size):
            yield torch.addcmul(self.shift, self.images[i : i + size].float(), self.scale_u8), self.labels[i : i + size]

    def consumed_generator_state(self) -> torch.Tensor:
        """The data generator's state after the last batch handed out (the producer may be ahead)."""
        return self._consumed_gen if self._consumed_gen is not None else self.generator.get_state()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, start = self._begin_epoch(len(self.labels))
        order = order.to(self.images.device)
        self._consumed_gen = None
        wanted = self.prefetch if self.prefetch is not None else prefetch_pays(self.images.device)
        background = wanted and self.augment is not None and not getattr(self.augment, "global_rng", False)
        if background:
            yield from self._prefetched(order, start)
            return
        for i in range(start, len(self)):
            x, y = self._batch(order, i)
            self.position = i + 1
            yield x, y

    def _prefetched(self, order: torch.Tensor, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches made by one producer thread, two ahead, so augmentation overlaps the training step.

        One thread draws from the generator in batch order, so the random stream (and the run) is the
        same as without prefetching; the generator state after each batch travels with it so that a
        checkpoint records the state of the batches actually consumed.
        """
        q: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for i in range(start, len(self)):
                    x, y = self._batch(order, i)
                    if not put((i, x, y, self.generator.get_state())):
                        return
                put(None)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                put(exc)

        thread = threading.Thread(target=produce, name="cnnlab-prefetch", daemon=True)
        thread.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                i, x, y, gen_state = item
                self.position, self._consumed_gen = i + 1, gen_state
                yield x, y
        finally:
            stop.set()
            thread.join()


def prefetch_pays(device: torch.device) -> bool:
    """Whether a background thread should augment the next batch while the current one trains.

    On a GPU the thread only queues work, so it always pays. On a CPU it pays only with a core no
    intra-op thread uses: on 2 cores training with 2 threads the thread preempts one of them, and
    every parallel region waits for it (MNIST's fast recipe on a quiet 2-core Xeon: steps 1.29x as
    slow with the thread as with the same augmentation in line; ``benchmarks/bench_mnist_parts.py``).
    """
    return device.type != "cpu" or spare_core()


def to_tensor_images(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, C) NumPy -> contiguous uint8 (N, C, H, W) tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


def fit_to_input(x: torch.Tensor, size: int, resize_size: int | None = None) -> torch.Tensor:
    """Images (C, H, W) or (N, C, H, W), float -> ``size`` x ``size``: the one resize rule of training,
    evaluation, predict, serve and export (bilinear, antialiased, ``align_corners=False``).

    Without ``resize_size`` the whole image is resized to the square. With it (pretrained weights'
    own transform, e.g. torchvision's 256 then 224), the shorter side is resized to ``resize_size``
    keeping the aspect ratio (``torchvision.transforms.Resize(int)``), then the central
    ``size`` x ``size`` is kept (``CenterCrop``). Values are not clamped here.
    """
    batch = x if x.dim() == 4 else x[None]
    h, w = batch.shape[2:]
    if resize_size and resize_size > size:
        short, long_ = (h, w) if h <= w else (w, h)
        new_long = max(size, int(resize_size * long_ / short))
        nh, nw = (resize_size, new_long) if h <= w else (new_long, resize_size)
        batch = _bilinear(batch, nh, nw) if (nh, nw) != (h, w) else batch
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        batch = batch[:, :, top : top + size, left : left + size]
    elif (h, w) != (size, size):
        batch = _bilinear(batch, size, size)
    return batch if x.dim() == 4 else batch[0]


def describe_resize(size: int, resize_size: int | None = None) -> str:
    """The rule of :func:`fit_to_input` in words (exported files carry it)."""
    if resize_size and resize_size > size:
        return (
            f"shorter side to {resize_size} (bilinear, antialias=True, align_corners=False), then the central "
            f"{size}x{size}, then clamp to [0, 1]"
        )
    return "bilinear, antialias=True, align_corners=False, to the square input size, then clamp to [0, 1]"


def _bilinear(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


PARALLEL_DECODE_BYTES = 32 << 20  # compressed bytes of a split above which preload decodes on every core


class FolderImages(Dataset):
    """Decode image files to float (C, size, size) in [0, 1] with the shared decoding rule; after
    :meth:`preload`, the same tensors from memory."""

    def __init__(self, items: list[tuple[Path, int]], channels: int, size: int, resize_size: int | None = None):
        self.items, self.channels, self.size, self.resize_size = items, channels, size, resize_size
        self.memory: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def nbytes(self) -> int:
        """What :meth:`preload` holds: every image as float32 at the input size."""
        return len(self.items) * self.channels * self.size * self.size * 4

    def preload(self) -> None:
        """Decode every image once into one tensor: a small folder then costs no decoding after its first
        pass, and no workers. Big files decode on a thread per core (PIL's decoder releases the GIL); small
        ones in line, where the per-file Python work (opening, checking, resizing) holds the lock and
        threads would only take turns."""
        if self.memory is not None or not self.items:
            return
        indices = range(len(self.items))
        if sum(_file_size(path) for path, _ in self.items) <= PARALLEL_DECODE_BYTES:
            self.memory = torch.stack([self._decode(i) for i in indices])
            return
        with ThreadPoolExecutor(available_cores()) as pool:
            self.memory = torch.stack(list(pool.map(self._decode, indices)))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return (self._decode(i) if self.memory is None else self.memory[i]), self.items[i][1]

    def _decode(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(load_image(self.items[i][0], self.channels)).permute(2, 0, 1)  # (C, H, W)
        return fit_to_input(x, self.size, self.resize_size).clamp_(0, 1)


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:  # gone since it was screened: decoding it says so in one line
        return 0


class _OrderSampler(torch.utils.data.Sampler):
    """Yields the owning loader's current epoch order (so persistent workers survive across epochs)."""

    def __init__(self, owner: FolderLoader):
        self.owner = owner

    def __iter__(self):
        return iter(self.owner._current.tolist())

    def __len__(self) -> int:
        return len(self.owner._current)


class FolderLoader(_EpochPlan):
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
        weights=None,
    ):
        self.generator = generator or torch.Generator().manual_seed(0)
        self.augment, self.channels_last, self.device = augment, channels_last, torch.device(device)
        self.shuffle, self.weights, self.batch_size = shuffle, weights, batch_size
        self._current = torch.arange(len(dataset))
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=_OrderSampler(self),
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,
        )
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return -(-self._shard_len(len(self.loader.dataset)) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.loader.dataset)

    def first_images(self, n: int) -> torch.Tensor:
        """The first ``n`` images in dataset order, normalised and not augmented (for data-dependent inits)."""
        dataset = self.loader.dataset
        return self._normalise(torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))]).to(self.device))

    def unaugmented(self, size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image (all ranks' shards) in dataset order, normalised and not augmented, ``size`` at a time;
        draws no random numbers (the fine-tune recipe's head fit)."""
        dataset = self.loader.dataset
        for i in range(0, len(dataset), size):
            x, y = zip(*(dataset[j] for j in range(i, min(i + size, len(dataset)))), strict=True)
            yield self._normalise(torch.stack(x).to(self.device)), torch.tensor(y, device=self.device)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std

    def _save_extra(self):
        return self.loader._iterator  # torch keeps the persistent workers' iterator here

    def _restore_extra(self, iterator) -> None:
        """Shut down workers started inside :meth:`preserved`. torch draws the workers' base seed from the
        global RNG only when it starts them, so a pool left running would skip that draw on the next
        epoch and shift every later global random number (dropout, global-RNG augmentations)."""
        current = self.loader._iterator
        if current is not iterator:
            shutdown = getattr(current, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self.loader._iterator = iterator

    def __iter__(self):
        order, start = self._begin_epoch(len(self.loader.dataset))
        self._current = order[start * self.batch_size :]
        for k, (x, y) in enumerate(self.loader):
            self.position += 1
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.augment is not None:
                where = self._position(self._current[k * self.batch_size : (k + 1) * self.batch_size], self.num_samples)
                x = augment_batch(self.augment, x, self.generator, where)
            x = self._normalise(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
