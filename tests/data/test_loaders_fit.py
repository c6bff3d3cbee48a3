"""The one resize rule: whole image to the square, or (pretrained weights) shorter side then centre crop."""

import pytest
import torch

from cnnlab.data.loaders import describe_resize, fit_to_input


@pytest.mark.parametrize("shape", [(3, 300, 400), (3, 400, 300), (1, 256, 256), (3, 230, 1000)])
def test_resize_then_centre_crop_is_torchvisions_transform(shape):
    from torchvision.transforms import v2

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    reference = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(x)
    got = fit_to_input(x, 224, 256)
    assert got.shape == (shape[0], 224, 224)
    assert torch.allclose(got, reference, atol=1e-5)


def test_without_resize_size_the_whole_image_becomes_the_square():
    x = torch.rand(2, 3, 20, 40)
    got = fit_to_input(x, 16)
    ref = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    assert torch.equal(got, ref)
    assert torch.equal(fit_to_input(x[:, :, :16, :16], 16), x[:, :, :16, :16])  # already the size: unchanged
    assert "central 224x224" in describe_resize(224, 256) and "square" in describe_resize(32)
