"""Duplicate groups for splits: exact copies always together, near-duplicates together unless they chain."""

from pathlib import Path

import numpy as np

from cnnlab.data.screening import MAX_NEAR_GROUP, duplicate_groups


def _far_hashes(n: int, seed: int = 0) -> list[int]:
    """n random 64-bit hashes; random pairs differ in ~32 bits, far above the 4-bit threshold."""
    rng = np.random.default_rng(seed)
    return [int(v) for v in rng.integers(0, 2**63, size=n, dtype=np.int64)]


def test_exact_and_near_duplicates_are_grouped_and_distinct_images_are_not():
    h = _far_hashes(6)
    prints = {Path(f"f{i}.jpg"): (f"digest{i}", h[i], h[i]) for i in range(6)}
    prints[Path("f0 copy.jpg")] = ("digest0", h[0], h[0])  # byte-identical copy
    prints[Path("f1-small.jpg")] = ("other", h[1] ^ 0b11, h[1] ^ 0b1)  # 2 and 1 bits away: near-duplicate
    groups = [sorted(map(str, g)) for g in duplicate_groups(prints)]
    assert sorted(groups) == [["f0 copy.jpg", "f0.jpg"], ["f1-small.jpg", "f1.jpg"]]


def test_a_long_chain_of_look_alikes_is_not_one_group_but_exact_copies_still_are():
    base = _far_hashes(1, seed=1)[0]
    chain = [base ^ ((1 << (i + 1)) - 1) for i in range(MAX_NEAR_GROUP + 5)]  # neighbours differ by one bit
    prints = {Path(f"digit{i}.png"): (f"d{i}", v, v) for i, v in enumerate(chain)}
    prints[Path("digit0 copy.png")] = ("d0", chain[0], chain[0])
    groups = [sorted(map(str, g)) for g in duplicate_groups(prints)]
    assert groups == [["digit0 copy.png", "digit0.png"]]
