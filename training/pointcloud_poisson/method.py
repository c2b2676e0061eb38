"""``PointCloudTraining``, the ``pointcloud-poisson`` method for ``training.loop.train``.

- ``training_step``: the clouds predicted from every view, projected into the views of their object with
  the dataset's cameras (``pose_mode="known"``: ``_known_pose_terms``) or with each candidate camera
  (``"learned"``: ``_learned_pose_terms``), the effective loss (``training.losses.effective``) and DPC's
  pose terms (``training.losses.pose.pose_ensemble_loss``), weighted by ``loss_weights``.
- ``evaluate``: ``chamfer``, ``iou3d`` (per category too), ``inside`` and ``pose_error_deg`` (the package
  docstring); ``visualise``: input | points over its mask | points at +90 and +180 degrees.
- The cameras of the multi-view batches: ``all_views_camera`` (look-at), ``ground_truth_rotations`` and
  ``dataset_scale`` (the weak-perspective scale of a look-at view).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backend.geometry.camera import (
    SOFTRAS_VIEWING_ANGLE,
    Camera,
    quaternion_to_matrix,
)
from backend.geometry.image_points import points_in_mask, splat_points
from backend.geometry.metrics import chamfer_distance, voxel_iou
from backend.geometry.rotations import rotation_angle_deg, rotation_distance
from backend.geometry.sampling import sample_surface
from backend.geometry.volumes import voxel_shell, voxelize_points
from backend.models.inputs import model_input
from backend.models.pointcloud import (
    TEMPLATE_ID,
    PointCloudModel,
    PointCloudPrediction,
)
from training.batches import base_dataset
from training.config import TrainConfig
from training.datasets.shapenet import SOFTRAS_VOXEL_SCALE
from training.distributed import unwrap_model
from training.evaluation import category_metrics, ground_truth_surface
from training.losses.compose import weighted_total
from training.losses.effective import (
    EffectiveLoss,
    distance_field,
    effective_loss,
    first_term,
    second_term,
)
from training.losses.pose import pose_ensemble_loss
from training.pointcloud_poisson.config import METHOD, PointCloudTrainConfig


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
        """Eq. 6 over projections (M, G, N, 2) and masks (M, G, H, W) (field: their processed copies); in
        fp32 under autocast (the neighbour-grid kernel sums take one dtype)."""
        c = self.config
        with torch.autocast(points_ndc.device.type, enabled=False):
            return effective_loss(
                points_ndc.float(), masks.float(), alpha=c.alpha, beta=c.beta, theta=c.theta,
                distance_transform=c.distance_transform, scales=c.scales, chunk_size=c.chunk_size,
                field=None if field is None else field.float(), cutoff=c.cutoff,
            )  # fmt: skip

    def _effective_per_set(self, points_ndc: Tensor, masks: Tensor, field: Tensor | None) -> EffectiveLoss:
        """Eq. 6 of each of M sets of projections (M, G, N, 2) against masks (M, G, H, W): (M,) values (in
        fp32 under autocast, as ``_effective``)."""
        with torch.autocast(points_ndc.device.type, enabled=False):
            return self._effective_per_set_fp32(
                points_ndc.float(), masks.float(), None if field is None else field.float()
            )

    def _effective_per_set_fp32(
        self, points_ndc: Tensor, masks: Tensor, field: Tensor | None
    ) -> EffectiveLoss:
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
