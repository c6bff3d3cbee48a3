"""Augmentation ops: what each one does, the spec grammar, the v2 policies, MixUp/CutMix."""

import pytest
import torch

from cnnlab.data.augment import (
    AUGMENTATIONS,
    BatchMixer,
    affine,
    build_augment,
    crop_flip,
    cutout,
    erase,
    hflip,
    parse_spec,
    random_crop,
    resized_crop,
)
from cnnlab.errors import CnnlabError

FAST_OPS = [n for n in AUGMENTATIONS.names() if n not in ("randaugment", "trivialaugment", "autoaugment", "augmix")]


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", FAST_OPS)
def test_each_op_keeps_shape_and_range_and_is_seeded(name):
    x = torch.rand(8, 3, 16, 16)
    aug = AUGMENTATIONS.create(name)
    if aug is None:
        return
    a, b = aug(x.clone(), _g(1)), aug(x.clone(), _g(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 + 1e-6


def test_crop_flip_equals_crop_then_flip_in_distribution():
    x = torch.rand(64, 1, 6, 6)
    one = crop_flip(x, _g(3), pad=2, p=1.0)
    # With p=1 every image is flipped: undoing the flip leaves a pure pad-and-crop of the input.
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    unflipped = one.flip(3)
    for i in range(4):
        windows = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(unflipped[i], w) for w in windows)
    assert torch.equal(crop_flip(x, _g(3), pad=0, p=0.0), x)
    assert torch.equal(random_crop(x, _g(0), pad=0), x) and torch.equal(hflip(x, _g(0), p=1.0), x.flip(3))


def test_reflect_padding_mirrors_the_border_instead_of_black_bars():
    x = torch.rand(32, 3, 6, 6) + 0.5  # no zero pixels anywhere
    reflect = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for aug in (lambda g: crop_flip(x, g, pad=2, p=0.0, padding="reflect"), lambda g: random_crop(x, g, 2, "reflect")):
        out = aug(_g(5))
        assert float(out.min()) >= 0.5  # no zero fill came in
        for i in range(8):
            windows = [reflect[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
            assert any(torch.equal(out[i], w) for w in windows)
    assert float(crop_flip(x, _g(5), pad=2).min()) == 0.0  # the default still pads with zeros
    aug = build_augment("crop_flip(pad=2, padding=reflect)", 3)
    assert torch.equal(aug(x, _g(5)), crop_flip(x, _g(5), pad=2, padding="reflect"))
    with pytest.raises(CnnlabError, match="zeros or reflect"):
        crop_flip(x, _g(), padding="wrap")
    with pytest.raises(CnnlabError, match="larger than 6 px"):
        random_crop(x, _g(), pad=6, padding="reflect")


def test_geometric_ops_move_pixels_as_asked():
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 4] = 1.0  # a dot in the centre
    assert torch.allclose(affine(x, _g(), degrees=90.0 * 0), x, atol=1e-6)  # identity parameters
    shifted = affine(x, _g(), translate=0.25)  # moves by up to 2.25 px: the dot leaves the centre
    assert shifted[..., 4, 4] < 1.0 and float(shifted.sum()) > 0.5
    full = resized_crop(torch.rand(4, 3, 8, 8), _g(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert full.shape == (4, 3, 8, 8)


def test_erase_and_cutout_zero_a_box():
    x = torch.ones(16, 3, 10, 10)
    e = erase(x, _g(), p=1.0, scale=(0.1, 0.1), ratio=(1.0, 1.0))
    zeros = (e == 0).all(1).flatten(1).sum(1)  # pixels zeroed per image
    assert torch.all(zeros == 9) or torch.all((zeros >= 9) & (zeros <= 16))
    c = cutout(x, _g(), size=4)
    assert torch.all((c == 0).all(1).flatten(1).sum(1) <= 16) and float(c.min()) == 0.0


def test_spec_grammar_and_errors():
    assert parse_spec("crop(pad=4)+hflip+erase(p=0.5, scale=[0.1, 0.2])") == [
        ("crop", {"pad": 4}),
        ("hflip", {}),
        ("erase", {"p": 0.5, "scale": (0.1, 0.2)}),
    ]
    assert build_augment("none", 3) is None and build_augment("auto", 1) is None
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(build_augment("hflip(p=1.0)", 3)(x, _g()), x.flip(3))
    with pytest.raises(CnnlabError, match="unknown augmentation"):
        build_augment("hflipp", 3)
    with pytest.raises(CnnlabError, match="hflip"):
        build_augment("hflip(q=1)", 3)


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment", "augmix"])
def test_v2_policies_are_reproducible_from_the_generator(name):
    x = torch.rand(4, 3, 16, 16)
    aug = AUGMENTATIONS.create(name)
    a, b, c = aug(x, _g(5)), aug(x, _g(5)), aug(x, _g(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


def test_mixup_and_cutmix_mix_images_and_report_lam():
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(6)])
    y = torch.arange(6)
    mx, yb, lam = BatchMixer(mixup=0.4, cutmix=0.0, generator=_g())(x, y)
    assert 0 <= lam <= 1 and torch.allclose(mx[:, 0, 0, 0], lam * y.float() + (1 - lam) * yb.float())
    cx, yb, lam = BatchMixer(mixup=0.0, cutmix=1.0, generator=_g(2))(x, y)
    own = (cx == x).flatten(1).float().mean(1)  # share of each image kept (pairs with itself count fully)
    moved = yb != y
    assert torch.allclose(own[moved], torch.full_like(own[moved], lam), atol=1e-6)


def _flipped(out: torch.Tensor, x: torch.Tensor) -> list[bool]:
    """Per image: is ``out`` the mirror of ``x`` (and not ``x`` itself)?"""
    return [bool(torch.equal(o, i.flip(2)) and not torch.equal(o, i)) for o, i in zip(out, x)]


def test_alternating_flips_mirror_a_fixed_half_then_alternate():
    from cnnlab.data.augment import BatchPosition, augment_batch

    x = torch.rand(200, 3, 4, 4)
    aug = build_augment("altflip", 3)
    at = [_flipped(augment_batch(aug, x, _g(), BatchPosition(torch.arange(200), e, 7, 200)), x) for e in range(3)]
    assert 70 < sum(at[0]) < 130  # a random half in the first epoch
    assert at[1] == [not f for f in at[0]]  # every image shows its other side in the next epoch
    assert at[2] == at[0]
    other_seed = _flipped(augment_batch(aug, x, _g(), BatchPosition(torch.arange(200), 0, 8, 200)), x)
    assert other_seed != at[0]
    # the coin belongs to the image, not to its place in the batch
    some = torch.tensor([5, 150, 2])
    part = _flipped(augment_batch(aug, x[some], _g(), BatchPosition(some, 1, 7, 200)), x[some])
    assert part == [at[1][5], at[1][150], at[1][2]]
    crop_then_flip = build_augment("random_crop(pad=0)+altflip", 3)  # a composition passes the position on
    assert _flipped(augment_batch(crop_then_flip, x, _g(), BatchPosition(torch.arange(200), 1, 7, 200)), x) == at[1]


def test_loaders_give_alternating_flips_the_images_and_the_epoch(tmp_path):
    from PIL import Image

    from cnnlab.data.loaders import FolderImages, FolderLoader, TensorLoader

    n = 12
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8)
    kw = dict(mean=[0.0] * 3, std=[1.0] * 3, shuffle=True, augment=build_augment("altflip", 3), generator=_g(3))
    tensor = TensorLoader(images, torch.arange(n), batch_size=5, prefetch=False, **kw)
    items = []
    for i in range(n):
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(tmp_path / f"{i}.png")
        items.append((tmp_path / f"{i}.png", i))  # the label names the image
    folder = FolderLoader(FolderImages(items, 3, 4), batch_size=5, num_workers=0, **kw)
    for loader in (tensor, folder):
        seen = {}
        for epoch in range(3):
            loader.set_epoch(epoch)
            for x, y in loader:
                for img, label in zip(x, y.tolist()):
                    orig = images[label].float() / 255.0
                    assert torch.allclose(img, orig, atol=1e-6) or torch.allclose(img, orig.flip(2), atol=1e-6)
                    seen.setdefault(label, []).append(torch.allclose(img, orig.flip(2), atol=1e-6))
        assert sorted(seen) == list(range(n))
        assert all(f[1] != f[0] and f[2] == f[0] for f in seen.values()), type(loader).__name__
        assert 0 < sum(f[0] for f in seen.values()) < n


@pytest.mark.parametrize("shape", [(9, 1, 7, 7), (5, 3, 6, 11), (4, 2, 10, 5)])
@pytest.mark.parametrize(("pad", "padding"), [(0, "zeros"), (1, "zeros"), (2, "zeros"), (3, "reflect")])
def test_random_crop_cuts_the_window_its_draws_name(shape, pad, padding):
    """Each image is the window at the drawn (dy, dx) of the padded batch: the same draws, in the same
    order, as the pad-and-crop it has always been (a run's batches do not change with the implementation)."""
    x = torch.rand(shape)
    b, _, h, w = shape
    for layout in (torch.contiguous_format, torch.channels_last):
        out = random_crop(x.contiguous(memory_format=layout), _g(7), pad=pad, padding=padding)
        g = _g(7)
        dy, dx = torch.randint(0, 2 * pad + 1, (b,), generator=g), torch.randint(0, 2 * pad + 1, (b,), generator=g)
        mode = "reflect" if padding == "reflect" else "constant"
        padded = torch.nn.functional.pad(x, (pad,) * 4, mode=mode)
        expected = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
        assert out.shape == x.shape and torch.equal(out, expected)
