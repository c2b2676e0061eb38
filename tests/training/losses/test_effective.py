"""The effective loss (seed 001, eq. 1-6) on hand-made silhouettes and points, against loop oracles
(its kernel sums: tests/training/ops; the exact distance transform: tests/backend/imaging).

Pixel (row, col) of an S x S image has its centre at NDC ``((2 col + 1) / S - 1, 1 - (2 row + 1) / S)``;
points placed on pixel centres read pixel values exactly, which makes hand computations possible.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from tests.training.ops.kernel_oracles import truncated_kernel_sum
from training.losses.effective import (
    boundary_bias,
    distance_field,
    effective_loss,
    first_term,
    sample_bilinear,
    second_term,
)

SIZE = 8


def _centre(row: int, col: int, size: int = SIZE) -> list[float]:
    """NDC centre (x right, y up) of pixel (row, col) of a size x size image."""
    return [(2 * col + 1) / size - 1, 1 - (2 * row + 1) / size]


def _square_mask() -> Tensor:
    """(1, 1, 8, 8): foreground rows 2-5, columns 2-5."""
    mask = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.float64)
    mask[..., 2:6, 2:6] = 1
    return mask


def _disc_mask(size: int = 32, radius: float = 0.3) -> Tensor:
    """(1, 1, size, size) disc of NDC radius ``radius`` centred at the origin."""
    centres = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1
    y, x = torch.meshgrid(-centres, centres, indexing="ij")
    return ((x**2 + y**2) < radius**2).to(torch.float64)[None, None]


def _points(*cells: tuple[int, int], size: int = SIZE) -> Tensor:
    """(1, 1, N, 2) float64 points at the centres of the given pixels."""
    return torch.tensor([[[_centre(r, c, size) for r, c in cells]]], dtype=torch.float64)


def _grad(loss: Tensor, points: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(loss, points)
    return grad


# -- distance field (eq. 2) ------------------------------------------------------------------------------


def test_distance_field_is_one_inside_and_a_min_max_ramp_outside() -> None:
    generator = torch.Generator().manual_seed(1)
    masks = (torch.rand(2, 20, 16, generator=generator) > 0.93).float()
    field = distance_field(masks)
    assert field.shape == masks.shape and field.dtype == torch.float32
    for m in range(2):
        mask = masks[m].numpy() > 0.5
        distance = distance_transform_edt(~mask)
        low, high = distance[~mask].min(), distance[~mask].max()
        expected = np.where(mask, 1.0, 1 - (distance - low + 1) / (high - low + 2))
        np.testing.assert_allclose(field[m].numpy(), expected, atol=1e-6)
        background = field[m].numpy()[~mask]
        assert background.min() > 0 and background.max() < 1  # the open interval (0, 1) of eq. 2


def test_distance_field_by_hand_and_edge_cases() -> None:
    field = distance_field(_square_mask()[0])[0]
    far = 2 * math.sqrt(2)  # corner pixel (0, 0) to (2, 2)
    assert float(field[1, 3]) == pytest.approx(1 - 1 / (far + 1))  # one pixel above the square
    assert float(field[0, 0]) == pytest.approx(1 - far / (far + 1))
    assert float(field[2:6, 2:6].min()) == 1.0
    assert field.dtype == torch.float64
    assert torch.equal(distance_field(torch.zeros(1, 4, 4)), torch.zeros(1, 4, 4))  # no foreground
    assert torch.equal(distance_field(torch.ones(1, 4, 4)), torch.ones(1, 4, 4))  # no background
    with pytest.raises(ValueError, match="B, H, W"):
        distance_field(torch.zeros(4, 4))


# -- bilinear reads -------------------------------------------------------------------------------------


def test_sample_bilinear_reads_pixel_centres_and_interpolates() -> None:
    image = torch.arange(12, dtype=torch.float64).view(1, 3, 4)
    at_centres = torch.tensor(
        [[[_centre(0, 0, 4)[0], 1 - 1 / 3], [_centre(0, 2, 4)[0], 1 - 5 / 3]]], dtype=torch.float64
    )
    values = sample_bilinear(image, at_centres)
    assert values.tolist() == [[0.0, 10.0]]  # pixel (0, 0) and pixel (2, 2)
    halfway = torch.tensor([[[-0.5, 0.0]]], dtype=torch.float64)  # between columns 0 and 1 of row 1
    assert float(sample_bilinear(image, halfway)) == pytest.approx((4 + 5) / 2)
    outside = torch.tensor([[[3.0, 0.0]]], dtype=torch.float64)
    assert float(sample_bilinear(image, outside)) == 0.0  # zeros padding


def test_reads_outside_the_image_fall_linearly_and_pull_points_back() -> None:
    image = torch.ones(1, 4, 4, dtype=torch.float64)
    edge = 1 - 1 / 4  # last pixel centre
    points = torch.tensor([[[edge + 0.5, 0.0], [0.0, -edge - 1.0]]], dtype=torch.float64, requires_grad=True)
    values = sample_bilinear(image, points, outside_slope=0.1)
    # 0.5 NDC = 1 pixel, 1.0 NDC = 2 pixels beyond the rectangle of pixel centres
    assert values.detach()[0].tolist() == pytest.approx([0.9, 0.8])
    grad = _grad(values.sum(), points)
    assert float(grad[0, 0, 0]) < 0 and float(grad[0, 1, 1]) > 0  # the value grows toward the image
    with pytest.raises(ValueError, match="images"):
        sample_bilinear(image, points[0])


# -- first term (eq. 1 and 3) ---------------------------------------------------------------------------


def test_first_term_by_hand() -> None:
    mask = _square_mask()
    far = 2 * math.sqrt(2)
    values = first_term(_points((3, 3), (1, 3), (0, 7)), mask)
    assert values.shape == (1, 1, 3)
    assert values[0, 0].tolist() == pytest.approx([0.0, 1 / (far + 1), far / (far + 1)])
    plain = first_term(_points((3, 3), (1, 3), (0, 7)), mask, distance_transform=False)
    assert plain[0, 0].tolist() == [0.0, 1.0, 1.0]


def test_first_term_is_zero_inside_with_zero_gradient() -> None:
    points = torch.tensor([[[[0.05, -0.1], [-0.12, 0.08]]]], dtype=torch.float64, requires_grad=True)
    for distance_transform in (True, False):
        values = first_term(points, _disc_mask(), distance_transform=distance_transform)
        assert values.detach().abs().max() == 0
        assert _grad(values.sum(), points).abs().max() == 0


def test_modified_first_term_pulls_outside_points_toward_the_silhouette() -> None:
    # background points inside the image, and one beyond its right edge
    points = torch.tensor([[[[0.7, 0.1], [-0.3, -0.75], [0.2, 0.9], [1.6, -0.3]]]], dtype=torch.float64)
    points.requires_grad_(True)
    grad = _grad(first_term(points, _disc_mask()).sum(), points)[0, 0]  # (4, 2)
    toward_centre = -points.detach()[0, 0]  # the disc is centred at the origin
    cosine = torch.nn.functional.cosine_similarity(-grad, toward_centre, dim=-1)
    assert (cosine > 0.8).all(), cosine


def test_plain_first_term_has_no_gradient_far_outside() -> None:
    points = torch.tensor([[[[0.7, 0.1], [-0.3, -0.75], [1.6, -0.3]]]], dtype=torch.float64)
    points.requires_grad_(True)
    grad = _grad(first_term(points, _disc_mask(), distance_transform=False).sum(), points)[0, 0]
    assert grad[:2].abs().max() == 0  # stalls in the background (Figure 4)
    assert float(grad[2, 0]) > 0  # beyond the image it is still pulled back (reading 2)
    near = torch.tensor([[[[0.31, 0.0]]]], dtype=torch.float64, requires_grad=True)  # within a pixel
    assert float(_grad(first_term(near, _disc_mask(), distance_transform=False).sum(), near)[0, 0, 0, 0]) > 0


def test_first_term_uses_a_given_field() -> None:
    mask = _disc_mask()
    points = torch.rand(1, 1, 50, 2, dtype=torch.float64) * 2.4 - 1.2
    field = distance_field(mask[0])[None]
    assert torch.equal(first_term(points, mask, field=field), first_term(points, mask))
    with pytest.raises(ValueError, match="field"):
        first_term(points, mask, field=field[..., :-1])


# -- boundary bias and second term (eq. 4-5) ------------------------------------------------------------


def test_boundary_bias_by_hand_and_smaller_near_the_boundary() -> None:
    mask = _square_mask()
    bias = boundary_bias(_points((3, 3), (2, 2), (0, 0)), mask, scales=(1,))
    assert bias[0, 0].tolist() == [1.0, 0.25, 0.0]  # corners (r +- 1, c +- 1) of the 3 pixels
    disc = _disc_mask(64, 0.6)
    depths = torch.tensor([0.58, 0.5, 0.3, 0.0], dtype=torch.float64)  # toward the centre
    ray = torch.stack([depths, torch.zeros(4, dtype=torch.float64)], dim=-1)[None, None]
    mu = boundary_bias(ray, disc)[0, 0]
    assert float(mu[-1]) == 1.0 and float(mu[-2]) == 1.0  # deep inside
    assert float(mu[0]) < float(mu[1]) < 1.0


def test_second_term_by_hand() -> None:
    theta = 0.1
    points = _points((3, 3), (3, 4), (2, 2), (0, 0))  # A, B, C in the square, D on the background
    values = second_term(points, _square_mask(), theta=theta, scales=(1,))[0, 0]
    pixel = 1 / SIZE  # image sides
    d_ab, d_ac, d_bc = pixel, math.sqrt(2) * pixel, math.sqrt(5) * pixel
    k = {key: math.exp(-d / theta) for key, d in {"ab": d_ab, "ac": d_ac, "bc": d_bc}.items()}
    n = 4
    expected = [
        math.e * (k["ab"] + k["ac"]) / n,  # w = 1, mu = 1; D has w = 0
        math.e * (k["ab"] + k["bc"]) / n,
        math.exp(0.25) * (k["ac"] + k["bc"]) / n,  # corner pixel: mu = 1/4
        0.0,
    ]
    assert values.tolist() == pytest.approx(expected, rel=1e-12)


def test_second_term_pushes_close_points_apart() -> None:
    points = torch.tensor(
        [[[[0.01, 0.0], [-0.01, 0.0], [0.0, 0.2]]]], dtype=torch.float64, requires_grad=True
    )
    grad = _grad(second_term(points, _disc_mask(64, 0.6)).sum(), points)[0, 0]
    assert float(grad[0, 0]) < 0 < float(grad[1, 0])  # descent moves 0 right and 1 left
    assert float(grad[2, 1]) < 0  # and the third one up, away from both


def test_background_points_take_no_part_in_the_second_term() -> None:
    mask = _disc_mask(32, 0.5)
    inside = [[0.05, 0.0], [-0.02, 0.03], [0.0, -0.04]]
    values = []
    for outside in ([0.8, 0.8], [0.9, -0.6]):
        points = torch.tensor([[[*inside, outside]]], dtype=torch.float64, requires_grad=True)
        l2 = second_term(points, mask)
        grad = _grad(l2.sum(), points)[0, 0]
        assert float(l2[0, 0, 3].detach()) == 0.0 and grad[3].abs().max() == 0
        values.append(l2[0, 0, :3].detach())
    assert torch.equal(values[0], values[1])


# -- memory of the chunked pairwise sum -----------------------------------------------------------------


def test_8000_points_in_two_views_fit_in_chunk_sized_memory() -> None:
    """Forward + backward of N = 8000 in B * G = 2 views; the peak resident memory it adds stays well
    below one dense N x N float32 matrix per view (2 x 256 MB), measured in a fresh process."""
    script = textwrap.dedent(
        """
        import resource, torch
        from training.losses.effective import effective_loss
        torch.set_num_threads(1)
        torch.manual_seed(0)
        points = (torch.rand(1, 2, 8000, 2) * 1.2 - 0.6).requires_grad_(True)
        masks = torch.zeros(1, 2, 64, 64)
        masks[:, :, 12:52, 16:48] = 1
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loss = effective_loss(points, masks, chunk_size=256)
        loss.total.backward()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        finite = bool(torch.isfinite(points.grad).all()) and bool(points.grad.abs().sum() > 0)
        print((after - before) / 1024, finite)
        """
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    added_mb, finite = output.stdout.split()
    assert finite == "True"
    assert float(added_mb) < 200, f"forward + backward added {added_mb} MB"


# -- the second term with a neighbour limit -------------------------------------------------------------


def test_second_term_with_a_cutoff_matches_the_truncated_sum() -> None:
    generator = torch.Generator().manual_seed(10)
    points = (torch.rand(2, 3, 300, 2, dtype=torch.float64, generator=generator) * 2.4 - 1.2).requires_grad_(
        True
    )
    masks = _disc_mask(32, 0.7).expand(2, 3, -1, -1)
    theta, cutoff = 0.01, 6.0
    local = second_term(points, masks, theta=theta, cutoff=cutoff)
    full = second_term(points, masks, theta=theta)
    weights = sample_bilinear((masks > 0.5).flatten(0, 1).double(), points.detach().flatten(0, 1))
    bias = boundary_bias(points, masks).flatten(0, 1)
    reference = (
        weights * bias.exp() / 300 * truncated_kernel_sum(points.flatten(0, 1) / 2, weights, theta, cutoff)
    )
    torch.testing.assert_close(local, reference.view(2, 3, 300), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(
        _grad(local.sum(), points), _grad(reference.sum(), points), rtol=1e-10, atol=1e-9
    )
    # dropped pairs: under exp(-cutoff) each, a mean over N (reading 6) times w exp(mu) <= e
    assert float((full - local).detach().abs().max()) < math.e * math.exp(-cutoff)
    assert float((full - local).detach().abs().max()) > 0
    loss = effective_loss(points, masks, theta=theta, cutoff=cutoff)
    assert loss.second.item() == pytest.approx(local.mean().item(), rel=1e-12)
    # the reference formulation (every pair, truncated at the cutoff) and the explicit PyTorch grid agree
    local_grad = _grad(second_term(points, masks, theta=theta, cutoff=cutoff).sum(), points)
    for pairs in ("reference", "torch"):
        other = second_term(points, masks, theta=theta, cutoff=cutoff, pairs=pairs)
        torch.testing.assert_close(other, local, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(_grad(other.sum(), points), local_grad, rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError, match="pairs"):
        second_term(points, masks, cutoff=cutoff, pairs="fast")  # type: ignore[arg-type]


# -- total (eq. 6) --------------------------------------------------------------------------------------


def test_effective_loss_combines_the_terms() -> None:
    generator = torch.Generator().manual_seed(6)
    points = (torch.rand(2, 3, 40, 2, dtype=torch.float64, generator=generator) * 2 - 1).requires_grad_(True)
    masks = _disc_mask(16, 0.5).expand(2, 3, -1, -1)
    loss = effective_loss(points, masks, alpha=0.5, beta=2.0, theta=0.05, chunk_size=16)
    first = first_term(points, masks).mean()
    second = second_term(points, masks, theta=0.05).mean()
    assert loss.first.item() == pytest.approx(first.item())
    assert loss.second.item() == pytest.approx(second.item())
    assert loss.total.item() == pytest.approx(0.5 * first.item() + 2.0 * second.item())
    # M1 has no detached part, so finite differences see all of it (w and mu of L2 are held fixed by
    # design, reading 4, and only the pairwise part is checked that way above)
    outside = (torch.rand(1, 1, 12, 2, dtype=torch.float64, generator=generator) * 3 - 1.5).requires_grad_(
        True
    )
    assert torch.autograd.gradcheck(lambda p: first_term(p, masks[:1, :1]), outside)
    only_first = effective_loss(points, masks, beta=0.0)
    assert only_first.second.item() == 0.0 and only_first.total.item() == pytest.approx(first.item())


def test_effective_loss_validates_its_inputs() -> None:
    points = torch.zeros(1, 2, 5, 2)
    masks = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="cutoff"):
        effective_loss(torch.rand(2, 5, 2, dtype=torch.float64)[None], torch.ones(1, 2, 4, 4), cutoff=0.0)
    with pytest.raises(ValueError, match="B, G, N, 2"):
        effective_loss(points[0], masks)
    with pytest.raises(ValueError, match="masks"):
        effective_loss(points, masks[:, :1])
    with pytest.raises(TypeError, match="floating"):
        effective_loss(points.long(), masks)
    with pytest.raises(ValueError, match="theta"):
        effective_loss(points, masks, theta=0.0)
    with pytest.raises(ValueError, match="scales"):
        effective_loss(points, masks, scales=())
    with pytest.raises(ValueError, match="alpha and beta"):
        effective_loss(points, masks, beta=-1.0)
