"""The camera hypotheses a fit starts from and the camera variables it optimises."""

from __future__ import annotations

import math

import torch

from backend.fitting.camera import CameraVariables, initial_cameras, initial_rotations
from backend.geometry.camera import Camera


def test_initial_rotations_are_evenly_spaced_azimuths() -> None:
    rotations = initial_rotations(4)
    assert rotations.shape == (4, 4)
    from backend.geometry.camera import quaternion_to_matrix

    matrices = quaternion_to_matrix(rotations)
    azimuths = torch.rad2deg(torch.atan2(matrices[:, 0, 2], matrices[:, 0, 0])) % 360
    torch.testing.assert_close(azimuths, torch.tensor([45.0, 135.0, 225.0, 315.0]), atol=1e-3, rtol=0)


def test_initial_cameras_look_at_the_mask_centroid() -> None:
    target = torch.zeros(32, 32)
    target[4:12, 20:28] = 1.0  # centre at column 23.5, row 7.5: NDC (0.5, 0.5), y up
    cameras = initial_cameras(target, 3, radius=2.0)
    assert cameras.log_scale.shape == (3,) and cameras.rotation.shape == (3, 4)
    torch.testing.assert_close(cameras.log_scale, torch.full((3,), math.log(0.3)))
    torch.testing.assert_close(cameras.translation, torch.tensor([[0.5, 0.5]]).expand(3, 2))


def test_camera_variables_round_trip_and_select() -> None:
    rotation = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    camera = Camera.weak_perspective(
        torch.tensor([0.5, 2.0]), torch.tensor([[0.1, 0.2], [0.0, -0.1]]), rotation
    )
    variables = CameraVariables.from_camera(camera, torch.device("cpu"))
    torch.testing.assert_close(variables.camera().weak.scale, camera.weak.scale)
    chosen = variables.select(1)
    assert chosen.log_scale.shape == (1,) and not chosen.rotation.requires_grad
    result = chosen.result()  # unit quaternion, detached
    torch.testing.assert_close(result.weak.rotation, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    torch.testing.assert_close(result.weak.translation, torch.tensor([[0.0, -0.1]]))


def test_a_positive_start_elevation_looks_down_on_the_object() -> None:
    from backend.geometry.camera import quaternion_to_matrix

    for elevation in (20.0, -15.0):
        matrices = quaternion_to_matrix(initial_rotations(8, elevation))  # (8, 3, 3) object -> view
        top = matrices @ torch.tensor([0.0, 1.0, 0.0])  # (8, 3) the object's up axis in the view
        # the view's z points at the camera: the top tilts towards a camera above it
        torch.testing.assert_close(top[:, 2], torch.full((8,), math.sin(math.radians(elevation))))
        cameras = initial_cameras(torch.ones(16, 16), 8, 1.0, elevation)
        torch.testing.assert_close(cameras.rotation, initial_rotations(8, elevation))
