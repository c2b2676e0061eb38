"""``PointCloudTrainConfig``: every setting of ``pointcloud-poisson``'s network training, and its presets.

DPC's network and schedule (``model``: the backend's ``PointCloudModelConfig``) with the seed paper's
effective loss (``alpha``, ``beta``, ``theta``, ...: the defaults of ``training.losses.effective``), the pose
mode and weights, and the data (the SoftRas/NMR layout). Presets: ``paper`` (the defaults) and ``cpu``, a
minutes-long run. The validator refuses fewer than 2 views per item and non-positive sizes or weights.
``METHOD`` is the method's registry name.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import model_validator

from backend.models.pointcloud import PointCloudModelConfig
from training.config import TrainConfig
from training.losses.effective import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_SCALES,
    DEFAULT_THETA,
)

METHOD = "pointcloud-poisson"
"""Registry name of the method (checkpoints, the training command)."""

PoseMode = Literal["known", "learned"]


class PointCloudTrainConfig(TrainConfig):
    """DPC's network and schedule with the seed paper's effective loss (defaults) on the shared settings."""

    model: PointCloudModelConfig = PointCloudModelConfig()
    """Network hyper-parameters (saved in every checkpoint; the backend rebuilds the network from them)."""

    data: str = ""
    """Folder with <category>_<split>_images.npz (+ _voxels.npz): the SoftRas/NMR set or a synthetic copy."""

    categories: tuple[str, ...] = ()
    """Synsets or synthetic category names to train on; empty: every category found in data."""

    train_split: str = "train"
    """Split the network learns from."""

    eval_split: str = "val"
    """Split evaluated."""

    views_per_item: int = 4
    """Views of one object per training item; each cloud is projected into all of them (DPC's step_size 4)."""

    eval_views: int = 5
    """Input views per evaluation object (DPC averages its Chamfer distance over 5 views)."""

    eval_objects: int = 0
    """Evaluate only the first N objects of the evaluation split; 0 evaluates all."""

    ground_truth_points: int = 10_000
    """Samples of each ground-truth surface for Chamfer and IoU (DPC: ~100k, voxel-downsampled at 0.01)."""

    pose_mode: PoseMode = "known"
    """"known": project with the dataset's cameras, pose heads learn the true rotation (the paper's Table
    1); "learned": project with each candidate camera, min over candidates (DPC's unsupervised mode)."""

    alpha: float = DEFAULT_ALPHA
    """Weight of the modified first term M1 (eq. 6; the paper gives no value: training.losses.effective)."""

    beta: float = DEFAULT_BETA
    """Weight of the second term L2 (eq. 6; chosen in training.losses.effective on the Figure-5 setup)."""

    theta: float = DEFAULT_THETA
    """Decay of the second term's exp(-d / theta), d in image sides (eq. 5; training.losses.effective)."""

    distance_transform: bool = True
    """Read M1 from the distance-transformed silhouette (eq. 2-3); false: the plain mask (eq. 1)."""

    scales: tuple[float, ...] = DEFAULT_SCALES
    """Half sides in pixels of the squares whose corner reads give the boundary bias mu (eq. 5)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Rows per block of the pairwise second term (memory: chunk x N per projection set)."""

    cutoff: float | None = None
    """Second term over neighbours only: pairs farther than cutoff * theta are dropped (each dropped pair's
    kernel is below exp(-cutoff)); None sums over all pairs as eq. 5 writes it. CPU runs: 10."""

    pose_weight: float = 1.0
    """Weight of the pose terms (candidates' min loss + student_weight * student loss) in known mode."""

    pose_encoder_gradient: bool = False
    """Known mode: let the pose terms train the shared encoder too (false: only the pose code and branches
    learn from them; the encoder follows the effective loss alone)."""

    student_weight: float = 20.0
    """Weight of the student's distillation from the best candidate (DPC: 20)."""

    batch_size: int = 8
    """Objects per optimiser step, each with views_per_item views (DPC: 8)."""

    iterations: int = 600_000
    """Optimiser steps (DPC: 600k)."""

    weight_decay: float = 1e-3
    """L2 weight decay of the weights, not the biases (DPC: 1e-3)."""

    out: str = "runs/pointcloud-poisson"
    """Run folder (checkpoints, final pointcloud-poisson.safetensors + .json, history, report)."""

    @model_validator(mode="after")
    def _check_pointcloud(self) -> Self:
        if self.views_per_item < 2:
            raise ValueError(
                f"views_per_item must be at least 2 (several views per object), got {self.views_per_item}"
            )
        for name in ("eval_views", "ground_truth_points", "theta", "chunk_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("alpha", "beta", "pose_weight", "student_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cutoff is not None and not self.cutoff > 0:
            raise ValueError(f"cutoff must be positive (in units of theta) or None, got {self.cutoff}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive pixel scales, got {list(self.scales)}")
        return self


PointCloudTrainConfig.PRESETS = {
    "paper": PointCloudTrainConfig(),
    # 2000 points, pairs within 10 theta: 400 steps in about 7 minutes on one CPU core
    "cpu": PointCloudTrainConfig(
        model=PointCloudModelConfig(num_points=2000), cutoff=10.0, iterations=400, batch_size=4,
        views_per_item=3, lr=1e-3, eval_views=2, eval_objects=16, ground_truth_points=4000, eval_every=200,
        image_every=200, checkpoint_every=200, log_every=20,
    ),
}  # fmt: skip
