"""Synthetic test images shared by the serve and explain tests."""

import numpy as np
from PIL import Image


def digit_like(size: int = 28, seed: int = 0) -> Image.Image:
    """A grayscale image with some structure (a bright blob on dark), mode L."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    arr = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 6) ** 2))
    return Image.fromarray(arr.astype(np.uint8))
