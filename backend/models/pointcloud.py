"""The DPC-style point-cloud network of ``pointcloud-poisson``: one image in, a point cloud and poses out.

Architecture (Insafutdinov & Dosovitskiy 2018, "DPC", whose network the seed paper reuses; the sizes
are DPC's configuration):

- Encoder on the RGBA input (B, 4, S, S) (``inputs.model_input``; values mapped to [-1, 1] as DPC does):
  a 5x5 stride-2 convolution with ``channels`` (DPC's f_dim 16) filters, then blocks of
  [3x3 stride 2, 3x3 stride 1] convolutions doubling the channels until the map is 4 x 4 (three blocks
  at S = 64, four at DPC's S = 128), leaky ReLU (slope 0.2, TensorFlow's default) after each; the
  flattened map goes through two fully connected layers of ``hidden`` units (DPC's fc_dim 1024, leaky
  ReLU). The shape code is a third such layer of ``z_dim`` units (DPC: 1024, leaky ReLU); the pose code
  another one on the second layer (ReLU, TensorFlow-slim's default activation, as DPC).
- Shape decoder: one fully connected layer from the shape code to N x 3 values; points are
  ``tanh(.) / 2``, inside the cube [-0.5, 0.5]^3 of the object frame (Y up, like the meshes).
  DPC's optional occupancy scale belongs to its renderer and is left out.
- Pose: ``pose_candidates`` branches (DPC: 4) and one student branch on the pose code, each DPC's
  three fully connected layers (32, 32 units with leaky ReLU, then 4), giving a quaternion (w, x, y, z)
  that is normalised. A quaternion is the rotation object -> view of the input image (``p_view = R p +
  t``, the convention of ``Camera.view_transform``). The trainer picks the best candidate per sample and
  distils it into the student (DPC's weight 20); the student is the pose used at test time.

Initialisation as DPC: He-normal weights (its ``variance_scaling_initializer``) and zero biases, the
point layer's weights normal with standard deviation 0.025 (``pc_decoder_init_stddev``), so the untrained
network already predicts a cloud spread over the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn

from backend.config import Config

__all__ = [
    "TEMPLATE_ID",
    "PointCloudModel",
    "PointCloudModelConfig",
    "PointCloudPrediction",
]

TEMPLATE_ID = "point-cloud"
"""Topology id of every ``pointcloud-poisson`` checkpoint (the output is a point set, no template mesh)."""

MIN_POINTS = 2000
MAX_POINTS = 16000
LEAKY_SLOPE = 0.2
POINT_INIT_STD = 0.025
"""Standard deviation of the point layer's initial weights (DPC's pc_decoder_init_stddev)."""
POSE_WIDTH = 32
"""Units of the hidden layers of every pose branch (DPC's pose_net)."""


class PointCloudModelConfig(Config):
    """What the backend needs to rebuild the network from a checkpoint's JSON (``config["model"]``)."""

    image_size: int = 64
    """Side of the square RGBA input, a power of two >= 8 (DPC: 128; the seed paper's Table 3 also 64)."""
    num_points: int = 8000
    """Points per predicted cloud, 2000..16000 (DPC and the seed paper: 8000)."""
    channels: int = 16
    """Filters of the first convolution, doubled at every block (DPC's f_dim: 16)."""
    z_dim: int = 1024
    """Width of the shape code and of the pose code (DPC: 1024)."""
    hidden: int = 1024
    """Width of the encoder's two fully connected layers (DPC's fc_dim: 1024)."""
    pose_candidates: int = 4
    """Candidate pose heads of the ensemble (DPC: 4)."""

    @model_validator(mode="after")
    def _check_pointcloud_model(self) -> Self:
        size = self.image_size
        if size < 8 or size & (size - 1):
            raise ValueError(f"model.image_size must be a power of two >= 8, got {size}")
        if not MIN_POINTS <= self.num_points <= MAX_POINTS:
            raise ValueError(
                f"model.num_points must lie in {MIN_POINTS}..{MAX_POINTS}, got {self.num_points}"
            )
        for name in ("channels", "z_dim", "hidden", "pose_candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        return self

    @property
    def num_blocks(self) -> int:
        """Blocks of [3x3 s2, 3x3 s1] convolutions after the first one: S / 2 / 2^blocks = 4."""
        return int(math.log2(self.image_size)) - 3


@dataclass(frozen=True)
class PointCloudPrediction:
    """What the network predicts for B images.

    Attributes:
        points: (B, N, 3) in [-0.5, 0.5]^3, the object frame (Y up).
        candidates: (B, K, 4) unit quaternions (w, x, y, z), rotation object -> input view.
        student: (B, 4) unit quaternion, the pose used at test time.
    """

    points: Tensor
    candidates: Tensor
    student: Tensor


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


def _linear(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features), nn.LeakyReLU(LEAKY_SLOPE))


def _pose_branch(in_features: int) -> nn.Sequential:
    """DPC's pose branch: (B, in_features) -> (B, 4) unnormalised quaternion."""
    return nn.Sequential(
        _linear(in_features, POSE_WIDTH), _linear(POSE_WIDTH, POSE_WIDTH), nn.Linear(POSE_WIDTH, 4)
    )


class PointCloudModel(nn.Module):
    """RGBA images (B, 4, S, S) -> ``PointCloudPrediction`` (module docstring)."""

    def __init__(self, config: PointCloudModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PointCloudModelConfig()
        layers = [_conv(4, config.channels, 5, 2)]
        width = config.channels
        for block in range(config.num_blocks):
            out = config.channels * 2 ** (block + 1)
            layers += [_conv(width, out, 3, 2), _conv(out, out, 3, 1)]
            width = out
        self.convolutions = nn.Sequential(*layers)
        self.trunk = nn.Sequential(
            _linear(width * 4 * 4, config.hidden), _linear(config.hidden, config.hidden)
        )
        self.shape_code = _linear(config.hidden, config.z_dim)
        self.pose_code = nn.Sequential(nn.Linear(config.hidden, config.z_dim), nn.ReLU())
        self.point_head = nn.Linear(config.z_dim, config.num_points * 3)
        self.candidate_heads = nn.ModuleList(
            _pose_branch(config.z_dim) for _ in range(config.pose_candidates)
        )
        self.student_head = _pose_branch(config.z_dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)  # type: ignore[arg-type]
        nn.init.trunc_normal_(
            self.point_head.weight, std=POINT_INIT_STD, a=-2 * POINT_INIT_STD, b=2 * POINT_INIT_STD
        )

    @property
    def num_points(self) -> int:
        return self.config.num_points

    def forward(self, images: Tensor, pose_gradient: bool = True) -> PointCloudPrediction:
        """images (B, 4, S, S) RGBA in [0, 1] -> points (B, N, 3), candidates (B, K, 4), student (B, 4).

        ``pose_gradient=False`` stops the pose branches' gradients at the shared encoder: the pose code and
        branches still learn, the encoder learns from the point losses only.
        """
        size = self.config.image_size
        if images.dim() != 4 or images.shape[1] != 4 or images.shape[-2:] != (size, size):
            raise ValueError(f"expected RGBA images (B, 4, {size}, {size}), got {tuple(images.shape)}")
        grid = self.convolutions(images * 2 - 1)  # (B, C, 4, 4)
        features = self.trunk(grid.flatten(1))  # (B, hidden)
        batch = images.shape[0]
        points = torch.tanh(self.point_head(self.shape_code(features))) / 2  # (B, N * 3)
        pose = self.pose_code(features if pose_gradient else features.detach())  # (B, z_dim)
        candidates = torch.stack([head(pose) for head in self.candidate_heads], dim=1)  # (B, K, 4)
        student = self.student_head(pose)  # (B, 4)
        return PointCloudPrediction(
            points=points.view(batch, self.config.num_points, 3),
            candidates=F.normalize(candidates, dim=-1),
            student=F.normalize(student, dim=-1),
        )
