"""The background-thread loader gives exactly the batches of the plain loop and resumes mid-epoch."""

import torch

from cnnlab.data.augment import build_augment
from cnnlab.data.loaders import TensorLoader, balanced_weights


def _loader(prefetch, seed=0, **kw):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(50) % 5
    return TensorLoader(
        images,
        labels,
        8,
        [0.5] * 3,
        [0.2] * 3,
        shuffle=True,
        augment=build_augment("seed", 3),
        generator=torch.Generator().manual_seed(seed),
        channels_last=True,
        prefetch=prefetch,
        **kw,
    )


def test_prefetch_is_bit_identical_and_tracks_the_consumed_state():
    plain, ahead = _loader(False), _loader(True)
    for _ in range(2):  # two epochs: the epoch seeds follow the augmentation draws
        for (xa, ya), (xb, yb) in zip(plain, ahead):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert xb.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(plain.generator.get_state(), ahead.consumed_generator_state())


def test_mid_epoch_state_resumes_the_same_batches():
    a = _loader(True)
    it = iter(a)
    for _ in range(3):
        next(it)
    state, gen_state = a.state_dict(), a.consumed_generator_state()
    rest = [x for x, _ in it]
    b = _loader(True, seed=123)  # another generator: everything must come from the saved state
    b.load_state_dict(state)
    b.generator.set_state(gen_state)
    again = [x for x, _ in b]
    assert len(again) == len(rest) == len(a) - 3 and all(torch.equal(p, q) for p, q in zip(rest, again))


def test_balanced_sampler_draws_classes_equally():
    labels = torch.tensor([0] * 90 + [1] * 10)
    w = balanced_weights(labels)
    loader = TensorLoader(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), labels, 100, [0.0], [1.0], weights=w)
    counts = torch.zeros(2)
    for _ in range(20):
        for _, y in loader:
            counts += torch.bincount(y, minlength=2)
    assert abs(float(counts[1] / counts.sum()) - 0.5) < 0.05


def test_folder_loader_balanced_sampling_and_resume(tmp_path):
    from PIL import Image

    from cnnlab.data.loaders import FolderImages, FolderLoader

    items = []
    for i in range(40):
        path = tmp_path / f"{i}.png"
        Image.new("L", (4, 4), color=i * 5).save(path)
        items.append((path, 0 if i < 36 else 1))  # 36 vs 4
    w = balanced_weights([lab for _, lab in items])

    def make():
        ds = FolderImages(items, 1, 4)
        return FolderLoader(
            ds, 10, [0.5], [0.25], shuffle=True, generator=torch.Generator().manual_seed(3), num_workers=0, weights=w
        )

    loader = make()
    ys = torch.cat([y for _ in range(10) for _, y in loader])
    assert abs(float(ys.float().mean()) - 0.5) < 0.1  # class 1 is 10 % of the files, half of the draws
    a = make()
    it = iter(a)
    next(it)
    state, rest = a.state_dict(), [x for x, _ in it]
    b = make()
    b.load_state_dict(state)
    again = [x for x, _ in b]
    assert len(again) == len(rest) == 3 and all(torch.equal(p, q) for p, q in zip(rest, again))


def test_first_images_are_the_unaugmented_normalised_start_of_the_dataset(tmp_path):
    """What data-dependent initialisations (airbench's whitening stem) see, from either loader."""
    from PIL import Image

    from cnnlab.data.loaders import FolderImages, FolderLoader

    pixels = torch.arange(6, dtype=torch.uint8).mul(40).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    flip = build_augment("flip", 1)
    tensors = TensorLoader(pixels, torch.zeros(6, dtype=torch.long), 2, [0.5], [0.25], shuffle=True, augment=flip)
    items = []
    for i in range(6):
        Image.fromarray(pixels[i, 0].numpy()).save(tmp_path / f"{i}.png")
        items.append((tmp_path / f"{i}.png", 0))
    files = FolderLoader(FolderImages(items, 1, 4), 2, [0.5], [0.25], shuffle=True, augment=flip, num_workers=0)
    expected = (pixels[:4].float() / 255 - 0.5) / 0.25
    assert torch.allclose(tensors.first_images(4), expected, atol=1e-6)
    assert torch.allclose(files.first_images(4), expected, atol=1e-6)
    assert files.first_images(100).shape == (6, 1, 4, 4)  # no more than the dataset holds


def test_prefetch_runs_only_where_a_core_is_spare(monkeypatch):
    import cnnlab.data.loaders as loaders

    started = []
    real_thread = loaders.threading.Thread
    monkeypatch.setattr(loaders.threading, "Thread", lambda *a, **k: started.append(1) or real_thread(*a, **k))
    import cnnlab.devices as devices

    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # both cores train: augmenting in line is faster than a thread preempting one
        assert not loaders.prefetch_pays(torch.device("cpu"))
        list(_loader(None))
        assert started == []
        torch.set_num_threads(1)  # a core to spare: the thread augments there
        assert loaders.prefetch_pays(torch.device("cpu"))
        list(_loader(None))
        assert started == [1]
        list(_loader(False))  # asked for by name either way
        assert started == [1]
    finally:
        torch.set_num_threads(threads)
    assert loaders.prefetch_pays(torch.device("cuda"))  # on a GPU the thread only queues work
