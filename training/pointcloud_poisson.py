"""Training ``pointcloud-poisson``'s network: DPC's point-cloud network with the seed paper's effective loss.

Data: ``ShapeNetRenderings`` (the SoftRas/NMR layout, or the synthetic generator's copies of it),
``views_per_item`` views of one object per item (DPC: 4 of its 5 renders per step). Each view's image
(RGBA, ``model_input``) gives a point cloud in the object frame and pose predictions
(``backend.models.pointcloud``).

Loss with ``pose_mode="known"`` (the paper's Table 1 setting, the default): the cloud predicted from
view k is projected (``Camera.project``, NDC) into every view of its object with the dataset's look-at
cameras, and the effective loss (``training.losses.effective.effective_loss``, eq. 6: alpha M1 + beta L2
averaged over points and views) is computed against those views' masks. The pose branches learn DPC's
ensemble against the ground-truth rotation of the input view: each sample's closest candidate
(distance ``1 - <q, q_gt>^2``, the one DPC's student loss uses) gets the gradient (DPC's min over
candidates), and the student is regressed onto the best candidate's detached quaternion with weight
``student_weight`` (DPC: 20)::

    loss = effective + pose_weight * (min_k d(q_k, q_gt) + student_weight * d(q_student, q_best))

By default the pose terms do not reach the shared encoder (``pose_encoder_gradient``): DPC balances its
student weight 20 against a projection loss summed over pixels, while eq. 6 is a mean of order 0.01, so
the pose terms dominate the encoder's gradient. In 300-step CPU runs on a synthetic bird set (32 px,
2000 points, batch 4 x 3 views) the held-out Chamfer x100 went from 5.6 (untrained network: 8.5) to 9.7
when they did; with them stopped at the encoder the shape is that of training without pose terms.

``pose_mode="learned"`` is DPC's unsupervised setting: the cloud from view k is projected into view j
with each candidate camera of view j (a weak-perspective camera with the candidate's rotation and the
dataset's scale ``1 / (distance tan 15 deg)``), the per-candidate effective loss of view j is averaged
over the source views k and the minimum over candidates is taken per view (DPC's min-loss); the
student is distilled from the winner as above, and every term trains the encoder. Ground-truth poses
are then used only by the metrics, which are not aligned to the learned frame (DPC aligns with ICP).

Adam with weight decay 1e-3 on the weights (DPC's L2 regulariser, biases excluded), lr 1e-4, batch
8 objects x 4 views, 600k iterations (DPC). The ``cpu`` preset is a minutes-long run.

Evaluation, for each object of the evaluation split and each of ``eval_views`` input views:

- ``chamfer``: Chamfer distance x 100 (DPC's definition, ``backend.geometry.metrics``) between the
  predicted points and ``ground_truth_points`` samples of the ground-truth surface (synthetic sets);
- ``iou3d``: volumetric IoU x 100 on 32^3 voxels between the voxelised predicted cloud and the
  voxelised ground-truth samples (a voxel is 1 when it holds a point, as the paper says); on data
  without meshes (the real SoftRas set) against the surface shell of the dataset's solid voxels;
- ``inside``: fraction of the projected points inside the input view's mask;
- ``pose_error_deg``: median angle between the student's rotation and the ground-truth one.

``chamfer`` and ``iou3d`` also come per category (``chamfer/<category>``), the headline values being
the means over categories as in ``training.softras``.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

import torch
from pydantic import model_validator
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from backend.geometry.camera import (
    SOFTRAS_VIEWING_ANGLE,
    Camera,
    quaternion_to_matrix,
)
from backend.geometry.image_points import points_in_mask, splat_points
from backend.geometry.metrics import chamfer_distance, voxel_iou
from backend.geometry.rotations import quaternion_distance, rotation_angle_deg, rotation_distance
from backend.geometry.sampling import sample_surface
from backend.geometry.volumes import voxel_shell, voxelize_points
from backend.models.inputs import model_input
from backend.models.pointcloud import (
    TEMPLATE_ID,
    PointCloudModel,
    PointCloudModelConfig,
    PointCloudPrediction,
)
from training.commands import register_training_command
from training.config import TrainConfig
from training.datasets.shapenet import (
    SOFTRAS_VOXEL_SCALE,
    ShapeNetRenderings,
    renderings_info,
    renderings_splits,
)
from training.distributed import unwrap_model
from training.evaluation import category_metrics, ground_truth_surface
from training.loop import RunResult, base_dataset, train
from training.losses.compose import weighted_total
from training.losses.effective import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_SCALES,
    DEFAULT_THETA,
    EffectiveLoss,
    distance_field,
    effective_loss,
    first_term,
    second_term,
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


# -- pose terms ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoseLoss:
    """DPC's ensemble terms, scalars: ``candidates`` (mean over samples of the best candidate's distance),
    ``student`` (mean distance of the student to the detached best candidate), ``best`` (B,) indices."""

    candidates: Tensor
    student: Tensor
    best: Tensor


def pose_ensemble_loss(candidate_costs: Tensor, candidates: Tensor, student: Tensor) -> PoseLoss:
    """Min-over-candidates loss and student distillation.

    Args:
        candidate_costs: (B, K) cost of each candidate (differentiable); only each sample's smallest is
            kept, so only the best candidate of each sample gets a gradient.
        candidates: (B, K, 4) unit quaternions.
        student: (B, 4) unit quaternion, pulled to the best candidate (detached).
    """
    if candidate_costs.shape != candidates.shape[:2] or student.shape != (candidates.shape[0], 4):
        raise ValueError(
            f"shapes do not fit: costs {tuple(candidate_costs.shape)}, candidates "
            f"{tuple(candidates.shape)}, student {tuple(student.shape)}"
        )
    best_cost, best = candidate_costs.min(dim=1)  # (B,), (B,)
    target = candidates[torch.arange(len(best), device=best.device), best].detach()  # (B, 4)
    return PoseLoss(best_cost.mean(), quaternion_distance(student, target).mean(), best)


# -- cameras of the datasets ----------------------------------------------------------------------------
def dataset_scale(distance: Tensor) -> Tensor:
    """Weak-perspective scale (...,) matching look-at views at ``distance`` (...,): 1 / (d tan 15 deg)."""
    return 1.0 / (distance * math.tan(math.radians(SOFTRAS_VIEWING_ANGLE)))


def all_views_camera(batch: Mapping[str, Any]) -> Camera:
    """The look-at cameras (B V',) of every view of a multi-view batch, item-major."""
    return Camera.look_at(
        batch["distance"].flatten(),
        batch["elevation"].flatten(),
        batch["azimuth"].flatten(),
        SOFTRAS_VIEWING_ANGLE,
    )


def ground_truth_rotations(batch: Mapping[str, Any]) -> Tensor:
    """(B V', 3, 3) rotation object -> view of every view of a multi-view batch, item-major."""
    return all_views_camera(batch).view_transform()[0]


class PointCloudTraining:
    """The ``pointcloud-poisson`` method for ``training.loop.train`` (module docstring)."""

    name = METHOD
    template = TEMPLATE_ID

    def __init__(self, config: PointCloudTrainConfig) -> None:
        self.config = config

    def build_model(self) -> nn.Module:
        return PointCloudModel(self.config.model)

    def configure_optimizer(self, model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        """Adam; weight decay on the weights only (DPC regularises the weights, not the biases)."""
        decayed = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("bias")]
        plain = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("bias")]
        groups = [
            {"params": decayed, "weight_decay": config.weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ]
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas)

    def _field(self, masks: Tensor) -> Tensor | None:
        """The processed silhouettes (B, V', H, W) of masks (B, V', H, W), computed once per batch."""
        return (
            distance_field(masks.flatten(0, 1)).view(masks.shape) if self.config.distance_transform else None
        )

    def _effective(self, points_ndc: Tensor, masks: Tensor, field: Tensor | None) -> EffectiveLoss:
        """Eq. 6 over projections (M, G, N, 2) and masks (M, G, H, W) (field: their processed copies)."""
        c = self.config
        return effective_loss(
            points_ndc, masks, alpha=c.alpha, beta=c.beta, theta=c.theta,
            distance_transform=c.distance_transform, scales=c.scales, chunk_size=c.chunk_size, field=field,
            cutoff=c.cutoff,
        )  # fmt: skip

    def _effective_per_set(self, points_ndc: Tensor, masks: Tensor, field: Tensor | None) -> EffectiveLoss:
        """Eq. 6 of each of M sets of projections (M, G, N, 2) against masks (M, G, H, W): (M,) values."""
        c = self.config
        first = first_term(points_ndc, masks, distance_transform=c.distance_transform, field=field)
        second = (
            second_term(
                points_ndc, masks, theta=c.theta, scales=c.scales, chunk_size=c.chunk_size, cutoff=c.cutoff
            )
            if c.beta > 0
            else torch.zeros_like(first)
        )  # (M, G, N)
        first, second = first.mean(dim=(1, 2)), second.mean(dim=(1, 2))  # (M,)
        return EffectiveLoss(c.alpha * first + c.beta * second, first, second)

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        image, mask = batch["image"], batch["mask"]  # (B, V', 3, S, S), (B, V', 1, S, S)
        items, views = image.shape[:2]
        pose_gradient = self.config.pose_mode == "learned" or self.config.pose_encoder_gradient
        prediction: PointCloudPrediction = model(
            model_input(image.flatten(0, 1), mask.flatten(0, 1)), pose_gradient=pose_gradient
        )
        points = prediction.points.view(items, views, -1, 3)  # (B, V', N, 3), from each view
        candidates = prediction.candidates  # (B V', K, 4)
        if self.config.pose_mode == "known":
            terms, logs = self._known_pose_terms(batch, points, candidates, prediction.student)
        else:
            terms, logs = self._learned_pose_terms(batch, points, candidates, prediction.student)
        total, _ = weighted_total(terms, self.loss_weights())
        return {"loss": total, **logs}

    def loss_weights(self) -> dict[str, float]:
        """Known poses: the effective loss 1 and the pose term ``pose_weight``; learned poses: the effective
        loss under the best candidate cameras 1 and the student's distillation ``student_weight``."""
        if self.config.pose_mode == "known":
            return {"effective": 1.0, "pose": self.config.pose_weight}
        return {"effective": 1.0, "pose_student": self.config.student_weight}

    def pose_weights(self) -> dict[str, float]:
        """Inside the known mode's pose term: the candidates' min loss 1, the student ``student_weight``."""
        return {"pose_candidates": 1.0, "pose_student": self.config.student_weight}

    def _known_pose_terms(
        self, batch: Mapping[str, Any], points: Tensor, candidates: Tensor, student: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Terms ``effective`` and ``pose`` (DPC's ensemble terms, composed with ``pose_weights``) of clouds
        (B, V', N, 3) seen by every view of their object, and what is logged: ``effective``, its first and
        second terms and the two pose terms."""
        items, views, count = points.shape[:3]
        masks = batch["mask"][:, :, 0]  # (B, V', H, W)
        # cloud of source view k (dim 1) seen by every target view j (dim 2)
        distance, elevation, azimuth = (
            batch[key][:, None, :].expand(items, views, views).flatten()  # (B V' V',) of the target views
            for key in ("distance", "elevation", "azimuth")
        )
        camera = Camera.look_at(distance, elevation, azimuth, SOFTRAS_VIEWING_ANGLE)
        sources = points[:, :, None].expand(items, views, views, count, 3).flatten(0, 2)  # (B V' V', N, 3)
        xy_ndc = camera.project(sources)[..., :2].view(items * views, views, count, 2)  # (B V', V', N, 2)
        field = self._field(masks)  # (B, V', H, W) or None

        def each_source(images: Tensor) -> Tensor:  # (B, V', H, W) -> (B V', V', H, W)
            return images[:, None].expand(items, views, *images.shape[1:]).flatten(0, 1)

        effective = self._effective(xy_ndc, each_source(masks), None if field is None else each_source(field))
        truth = ground_truth_rotations(batch)  # (B V', 3, 3)
        k = candidates.shape[1]
        matrices = quaternion_to_matrix(candidates.reshape(-1, 4)).view(-1, k, 3, 3)  # (B V', K, 3, 3)
        costs = rotation_distance(matrices, truth[:, None])  # (B V', K), = 1 - <q_k, q_gt>^2
        pose = pose_ensemble_loss(costs, candidates, student)
        pose_total, pose_terms = weighted_total(
            {"pose_candidates": pose.candidates, "pose_student": pose.student}, self.pose_weights()
        )
        terms = {"effective": effective.total, "pose": pose_total}
        logs = {"effective": effective.total, "first": effective.first, "second": effective.second}
        return terms, {**logs, **pose_terms}

    def _learned_pose_terms(
        self, batch: Mapping[str, Any], points: Tensor, candidates: Tensor, student: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Terms ``effective`` (each view's effective loss under its best candidate camera, DPC's min-loss)
        and ``pose_student`` of clouds (B, V', N, 3), and what is logged: both, and the winners' first and
        second terms."""
        items, views, count = points.shape[:3]
        k = candidates.shape[1]
        masks = batch["mask"][:, :, 0]  # (B, V', H, W)
        scale = dataset_scale(batch["distance"])  # (B, V')
        # cloud of source view s seen by the candidate cameras c of target view j: index (b, j, c, s)
        rotation = candidates.view(items, views, k, 1, 4).expand(items, views, k, views, 4).reshape(-1, 4)
        camera = Camera.weak_perspective(
            scale[:, :, None, None].expand(items, views, k, views).flatten(),
            rotation.new_zeros(rotation.shape[0], 2),
            rotation,
        )
        sources = points[:, None, None].expand(items, views, k, views, count, 3).flatten(0, 3)
        xy_ndc = camera.project(sources)[..., :2].view(
            items * views * k, views, count, 2
        )  # (B V' K, V', N, 2)
        field = self._field(masks)  # (B, V', H, W) or None

        def each_set(images: Tensor) -> Tensor:  # (B, V', H, W) -> (B V' K, V', H, W), image j for (b, j, c)
            return images[:, :, None, None].expand(items, views, k, views, *images.shape[2:]).flatten(0, 2)

        per_set = self._effective_per_set(xy_ndc, each_set(masks), None if field is None else each_set(field))
        costs = per_set.total.view(items * views, k)  # (B V', K)
        pose = pose_ensemble_loss(costs, candidates, student)
        chosen = torch.arange(items * views, device=costs.device) * k + pose.best  # winning (b, j, c) sets
        terms = {"effective": pose.candidates, "pose_student": pose.student}
        first, second = per_set.first[chosen].detach().mean(), per_set.second[chosen].detach().mean()
        return terms, {**terms, "first": first, "second": second}

    # -- evaluation ------------------------------------------------------------------------------------
    def _input_view_camera(self, batch: Mapping[str, Any], student: Tensor) -> Camera:
        """Cameras (B V',) of every input view: the dataset's (known) or the student's (learned)."""
        if self.config.pose_mode == "known":
            return all_views_camera(batch)
        scale = dataset_scale(batch["distance"].flatten())
        return Camera.weak_perspective(scale, student.new_zeros(len(student), 2), student)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        network: PointCloudModel = unwrap_model(model)  # type: ignore[assignment]
        dataset = base_dataset(loader.dataset)  # eval_objects is applied by ``datasets`` (a Subset)
        chamfers: dict[str, list[float]] = defaultdict(list)
        ious: dict[str, list[float]] = defaultdict(list)
        inside: list[Tensor] = []
        angles: list[Tensor] = []
        generator = torch.Generator().manual_seed(0)
        for batch in loader:
            image, mask = batch["image"], batch["mask"]  # (B, V', 3, S, S), (B, V', 1, S, S)
            items, views = image.shape[:2]
            prediction = network(model_input(image.flatten(0, 1), mask.flatten(0, 1)))
            camera = self._input_view_camera(batch, prediction.student)
            xy_ndc = camera.project(prediction.points)[..., :2]  # (B V', N, 2)
            inside.append(points_in_mask(xy_ndc, mask.flatten(0, 1)[:, 0]).float().mean(dim=1).cpu())
            student = quaternion_to_matrix(prediction.student)  # (B V', 3, 3)
            angles.append(rotation_angle_deg(student, ground_truth_rotations(batch)).cpu())
            points = prediction.points.view(items, views, -1, 3).float().cpu()  # (B, V', N, 3)
            for item in range(items):
                category = str(batch["category"][item])
                mesh = ground_truth_surface(dataset, int(batch["index"][item]))
                if mesh is not None:
                    samples = sample_surface(mesh[0], mesh[1], self.config.ground_truth_points, generator)
                    reference = voxelize_points(samples)
                    for view in range(views):
                        chamfers[category].append(float(chamfer_distance(points[item, view], samples).total))
                        ious[category].append(
                            100 * float(voxel_iou(voxelize_points(points[item, view]), reference))
                        )
                elif "voxels" in batch:  # the real SoftRas set: its voxels are scaled by 31/32
                    reference = voxel_shell(batch["voxels"][item].cpu())
                    for view in range(views):
                        grid = voxelize_points(points[item, view] * SOFTRAS_VOXEL_SCALE)
                        ious[category].append(100 * float(voxel_iou(grid, reference)))
        metrics: dict[str, float] = {
            "inside": float(torch.cat(inside).mean()) if inside else float("nan"),
            "pose_error_deg": float(torch.cat(angles).median()) if angles else float("nan"),
        }
        for name, values in (("chamfer", chamfers), ("iou3d", ious)):
            metrics.update(category_metrics(name, values))
        return metrics

    @torch.no_grad()
    def visualise(self, model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        """Rows: input view | points over its mask (grey) | points seen at +90 and +180 degrees azimuth."""
        network: PointCloudModel = unwrap_model(model)  # type: ignore[assignment]
        image, mask = batch["image"][:, 0], batch["mask"][:, 0]  # (B, 3, S, S), (B, 1, S, S)
        size = image.shape[-1]
        prediction = network(model_input(image, mask))
        first = {k: batch[k][:, :1] for k in ("distance", "elevation", "azimuth")}
        camera = self._input_view_camera(first, prediction.student)
        ink = torch.tensor([0.1, 0.2, 0.8], device=image.device)[None, :, None, None]  # (1, 3, 1, 1)
        columns = [image * mask + (1 - mask)]
        for turn in (0.0, 90.0, 180.0):
            turned = camera.turned(turn)
            hit = splat_points(turned.project(prediction.points)[..., :2], size)[
                :, None
            ].float()  # (B, 1, S, S)
            paper = 1 - 0.3 * mask if turn == 0.0 else torch.ones_like(mask)  # the mask only at the input
            columns.append(paper * (1 - hit) + ink * hit)
        rows = torch.cat(columns, dim=3)  # (B, 3, S, 4 S)
        return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1]).clamp(0, 1)


def datasets(config: PointCloudTrainConfig) -> tuple[ShapeNetRenderings, ShapeNetRenderings | None]:
    """The training set (``views_per_item`` views) and the evaluation set (``eval_views`` views)."""
    return renderings_splits(config, config.model.image_size)


def run(
    config: PointCloudTrainConfig,
    train_set: Dataset[Any] | None = None,
    eval_set: Dataset[Any] | None = None,
) -> RunResult:
    """Train as ``config`` says (module docstring); the result names the final checkpoint.

    The data sets default to ``datasets(config)``.
    """
    if train_set is None:
        train_set, eval_set = datasets(config)
    return train(
        PointCloudTraining(config),
        config,
        train_set,
        eval_set,
        dataset_info=renderings_info(config, train_set, eval_set),
    )


# -- command line ---------------------------------------------------------------------------------------
def register(subparsers: Any) -> argparse.ArgumentParser:
    """``mono2mesh-train pointcloud-poisson``: every field of ``PointCloudTrainConfig`` as a flag, presets."""
    return register_training_command(
        subparsers,
        METHOD,
        "train the point-cloud network of pointcloud-poisson (DPC network, effective loss)",
        __doc__,
        PointCloudTrainConfig,
        datasets,
        run,
    )
