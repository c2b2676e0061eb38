"""The RGBA input convention of the softras and point-cloud networks: RGB times the mask, mask as alpha."""

from __future__ import annotations

import torch

from backend.models.inputs import model_input


def test_model_input_is_rgba_with_a_black_background() -> None:
    image = torch.ones(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    rgba = model_input(image, mask)
    assert rgba.shape == (1, 4, 8, 8)
    assert rgba[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.0] and rgba[0, :, 3, 3].tolist() == [1.0] * 4


def test_model_input_keeps_the_batch_and_multiplies_partial_masks() -> None:
    image = torch.rand(3, 3, 4, 4)
    mask = torch.rand(3, 1, 4, 4)
    rgba = model_input(image, mask)
    assert rgba.shape == (3, 4, 4, 4)
    torch.testing.assert_close(rgba[:, :3], image * mask)
    torch.testing.assert_close(rgba[:, 3:], mask)
