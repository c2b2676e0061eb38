"""Tests of the typed camera's parameters and ``Camera.turned``."""

from __future__ import annotations

import pytest
import torch

from backend.geometry.camera import (
    SOFTRAS_VIEWING_ANGLE,
    Camera,
    LookAtParams,
    WeakPerspectiveParams,
    quaternion_to_matrix,
)


def test_params_are_typed_per_kind_and_the_other_kind_is_refused() -> None:
    weak = Camera.weak_perspective(torch.ones(2), torch.zeros(2, 2), torch.tensor([[1.0, 0, 0, 0]] * 2))
    orbit = Camera.look_at(2.0, 30.0, torch.tensor([0.0, 90.0]))
    assert isinstance(weak.params, WeakPerspectiveParams) and weak.kind == "weak_perspective"
    assert isinstance(orbit.params, LookAtParams) and orbit.kind == "look_at"
    assert weak.weak.translation.shape == (2, 2)
    assert torch.equal(orbit.orbit.viewing_angle, torch.full((2,), SOFTRAS_VIEWING_ANGLE))
    with pytest.raises(ValueError, match="expected a look_at camera, got weak_perspective"):
        _ = weak.orbit
    with pytest.raises(ValueError, match="expected a weak_perspective camera, got look_at"):
        _ = orbit.weak
    assert list(orbit.tensors()) == ["distance", "elevation", "azimuth", "viewing_angle"]
    assert torch.equal(Camera.cat([orbit, orbit[1]]).orbit.azimuth, torch.tensor([0.0, 90.0, 90.0]))
    detached = Camera.weak_perspective(torch.ones(1, requires_grad=True), torch.zeros(1, 2), torch.eye(4)[:1])
    assert not detached.detach().weak.scale.requires_grad


def test_parameters_must_share_batch_and_be_finite() -> None:
    with pytest.raises(ValueError, match="different batch sizes"):
        Camera(LookAtParams(torch.ones(2), torch.zeros(1), torch.zeros(2), torch.full((2,), 15.0)))
    with pytest.raises(ValueError, match="scale contains NaN"):
        Camera.weak_perspective(torch.tensor([float("nan")]), torch.zeros(1, 2), torch.eye(4)[:1])


def test_turned_weak_perspective_rotates_the_object_about_its_up_axis() -> None:
    camera = Camera.weak_perspective(torch.ones(2), torch.zeros(2, 2), torch.tensor([[1.0, 0, 0, 0]] * 2))
    point = torch.tensor([[[0.3, 0.2, 0.0]]]).expand(2, 1, 3)
    same = camera.turned(torch.zeros(2)).project(point)
    half = camera.turned(torch.full((2,), 180.0)).project(point)
    torch.testing.assert_close(same, camera.project(point))
    torch.testing.assert_close(half[..., :2], point[..., :2] * torch.tensor([-1.0, 1.0]), atol=1e-6, rtol=0)
    quarter = camera.turned(90.0).project(torch.tensor([[[0.0, 0.0, 0.5]]]).expand(2, 1, 3))
    turn = quaternion_to_matrix(camera.turned(90.0).weak.rotation)[0]  # R_y(90): +z -> +x
    torch.testing.assert_close(turn @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(quarter[0, 0, :2], torch.tensor([0.5, 0.0]), atol=1e-6, rtol=0)


def test_turned_look_at_keeps_its_viewing_angle_and_sees_what_the_turned_object_shows() -> None:
    camera = Camera.look_at(
        torch.tensor([2.5, 3.0]), torch.tensor([20.0, -10.0]), torch.tensor([0.0, 40.0]), 25.0
    )
    turned = camera.turned(torch.tensor([30.0, -75.0]))
    assert torch.equal(turned.orbit.viewing_angle, camera.orbit.viewing_angle)
    assert torch.equal(turned.orbit.azimuth, torch.tensor([30.0, -35.0]))
    points = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    # the turned camera on the points == the camera on the points turned by R_y(turn)
    angle = torch.deg2rad(torch.tensor([30.0, -75.0]))
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros(2), torch.ones(2)
    rotation = torch.stack(
        [
            torch.stack([cos, zero, sin], 1),
            torch.stack([zero, one, zero], 1),
            torch.stack([-sin, zero, cos], 1),
        ],
        1,
    )  # (2, 3, 3) R_y
    rotated = torch.einsum("bij,bnj->bni", rotation, points)
    torch.testing.assert_close(turned.project(points), camera.project(rotated), atol=1e-5, rtol=1e-5)
    weak = Camera.weak_perspective(torch.ones(2), torch.zeros(2, 2), torch.tensor([[1.0, 0, 0, 0]] * 2))
    torch.testing.assert_close(
        weak.turned(torch.tensor([30.0, -75.0])).project(points)[..., :2],
        weak.project(rotated)[..., :2],
        atol=1e-5,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="azimuth must be a number or"):
        camera.turned(torch.zeros(3))
