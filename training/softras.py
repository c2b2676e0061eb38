"""Training the ``softras`` method: SoftRas's ShapeNet recipe on the shared loop.

Data: ``ShapeNetRenderings`` (the SoftRas/NMR npz layout, or the synthetic generator's copies of it),
two random views of one object per item. Each view's image (RGBA, 64 x 64) gives a mesh
(``backend.models.softras.SoftRasModel``); the loss is SoftRas's:

    multi-view 1 - soft IoU (``training.losses.silhouette.multiview_iou_loss``, sigma 1e-4)
    + 5e-3 * Laplacian (summed over vertices) + 5e-4 * flatten,

Adam 1e-4, batch 64, 250k iterations, learning rate and sigma x 0.3 at 150k (``lr_schedule="step"``
and ``sigma_follows_lr``). These defaults are the recipe; the ``cpu`` preset is a minutes-long run.

Evaluation (SoftRas's protocol): for each object of the evaluation split and each of ``eval_views``
views, the mesh predicted from that view is voxelised on SoftRas's 32^3 grid and compared with the
dataset's voxels: 3D IoU x 100 per category (``iou3d/<category>``), ``iou3d`` the mean over
categories. Also the silhouette IoU of the hard render at the input view against its mask, and, when
the dataset has ground-truth meshes (the synthetic sets), the Chamfer distance x 100 between
surface samples (``chamfer``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Self

import torch
from pydantic import model_validator
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backend.geometry.camera import Camera
from backend.geometry.metrics import chamfer_distance, mask_iou, voxel_iou
from backend.geometry.ops import EdgeAdjacency, edge_adjacent_faces, uniform_laplacian
from backend.geometry.sampling import sample_surface
from backend.models.inputs import model_input
from backend.models.softras import TEMPLATE_ID, SoftRasModel, SoftRasModelConfig
from backend.render.renderer import Lighting, render
from backend.render.settings import RasterSettings
from training.batches import base_dataset
from training.commands import TrainerSpec, renderings_datasets, renderings_prepare
from training.config import Schedule, TrainConfig, lr_factor
from training.datasets.shapenet import voxelize_like_softras
from training.distributed import unwrap_model
from training.evaluation import category_metrics, ground_truth_surface, mean_metrics
from training.losses.compose import Term, weighted_total
from training.losses.regularisers import softras_flatten, softras_laplacian
from training.losses.silhouette import multiview_iou_loss

CHAMFER_POINTS = 2048
"""Surface samples per mesh for the evaluation Chamfer distance."""


class SoftRasTrainConfig(TrainConfig):
    """SoftRas's ShapeNet recipe (defaults) on top of the shared training settings."""

    model: SoftRasModelConfig = SoftRasModelConfig()
    """Network hyper-parameters (saved in every checkpoint; the backend rebuilds the network from them)."""

    data: str = ""
    """Folder with <category>_<split>_images.npz (+ _voxels.npz): the SoftRas/NMR set or a synthetic copy."""

    categories: tuple[str, ...] = ()
    """Synsets or synthetic category names to train on; empty: every category found in data."""

    train_split: str = "train"
    """Split the network learns from."""

    eval_split: str = "val"
    """Split evaluated (SoftRas's test.py evaluates val)."""

    views_per_item: int = 2
    """Views of one object per training item (SoftRas: 2, rendered at both)."""

    eval_views: int = 24
    """Input views per evaluation object (SoftRas: all 24); fewer make evaluation faster."""

    eval_objects: int = 0
    """Evaluate only the first N objects of the evaluation split; 0 evaluates all."""

    sigma: float = 1e-4
    """Soft rasterizer sharpness (SoftRas: 1e-4)."""

    sigma_follows_lr: bool = True
    """Multiply sigma by the learning-rate schedule's factor (SoftRas: both x 0.3 at 150k)."""

    laplacian_weight: float = 5e-3
    """Weight of the Laplacian term, summed over vertices as SoftRas does."""

    flatten_weight: float = 5e-4
    """Weight of SoftRas's flatten term."""

    iterations: int = 250_000
    """Optimiser steps (SoftRas: 250k)."""

    lr_schedule: Schedule = "step"
    """SoftRas multiplies the learning rate (and sigma) by lr_gamma at each milestone."""

    lr_milestones: tuple[int, ...] = (150_000,)
    """SoftRas: x 0.3 at 150k."""

    out: str = "runs/softras"
    """Run folder (checkpoints, final softras.safetensors + .json, history, report, tensorboard)."""

    @model_validator(mode="after")
    def _check_softras(self) -> Self:
        if self.views_per_item < 2:
            raise ValueError(
                f"views_per_item must be at least 2 (the loss needs two views), got {self.views_per_item}"
            )
        for name in ("sigma", "eval_views"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        return self


SoftRasTrainConfig.PRESETS = {
    "paper": SoftRasTrainConfig(),
    "cpu": SoftRasTrainConfig(
        iterations=3000, batch_size=32, lr=1e-3, lr_milestones=(2000,), eval_views=4, eval_every=1000,
        image_every=1000, checkpoint_every=1000, log_every=50,
    ),
}  # fmt: skip


class SoftRasTraining:
    """The ``softras`` method for ``training.loop.train`` (module docstring)."""

    name = "softras"
    template = TEMPLATE_ID

    def __init__(self, config: SoftRasTrainConfig) -> None:
        self.config = config
        self._laplacian_cache: Tensor | None = None  # built once per device
        self._adjacency_cache: EdgeAdjacency | None = None

    def build_model(self) -> nn.Module:
        return SoftRasModel(self.config.model)

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        network: SoftRasModel = unwrap_model(model)  # type: ignore[assignment]
        image, mask = batch["image"], batch["mask"]  # (B, V', 3, S, S), (B, V', 1, S, S)
        vertices = model(model_input(image.flatten(0, 1), mask.flatten(0, 1)))  # (B V', V, 3)
        vertices = vertices.view(*image.shape[:2], *vertices.shape[1:])  # (B, V', V, 3)
        total, logged = weighted_total(self.loss_terms(network, vertices, batch, step), self.loss_weights())
        return {"loss": total, **logged}

    def loss_weights(self) -> dict[str, float]:
        """The weight of each term of ``loss_terms`` (SoftRas: 1, 5e-3, 5e-4)."""
        c = self.config
        return {"silhouette": 1.0, "laplacian": c.laplacian_weight, "flatten": c.flatten_weight}

    def loss_terms(
        self, network: SoftRasModel, vertices: Tensor, batch: Mapping[str, Any], step: int
    ) -> dict[str, Term]:
        """SoftRas's terms for meshes ``vertices`` (B, V', V, 3) predicted from the batch's V' views (the
        first two are rendered): multi-view 1 - soft IoU, and Laplacian and flatten, means over the B V'
        meshes (all three always computed and logged)."""
        sigma = self.config.sigma
        if self.config.sigma_follows_lr:
            sigma *= lr_factor(self.config, step, self.config.iterations)
        silhouette = multiview_iou_loss(
            vertices[:, 0], vertices[:, 1], network.faces, views_camera(batch, 0), views_camera(batch, 1),
            batch["mask"][:, 0, 0], batch["mask"][:, 1, 0],
            RasterSettings(image_size=batch["image"].shape[-1], sigma=sigma),
        )  # fmt: skip
        flat = vertices.flatten(0, 1)  # (B V', V, 3)
        laplacian = softras_laplacian(flat, network.faces, self._laplacian(network)).mean()
        return {
            "silhouette": silhouette,
            "laplacian": laplacian,
            "flatten": softras_flatten(flat, network.faces, self._adjacency(network)).mean(),
        }

    def _laplacian(self, network: SoftRasModel) -> Tensor:
        cached = self._laplacian_cache
        if cached is None or cached.device != network.faces.device:
            cached = uniform_laplacian(network.faces, network.num_vertices, device=network.faces.device)
            self._laplacian_cache = cached
        return cached

    def _adjacency(self, network: SoftRasModel) -> EdgeAdjacency:
        cached = self._adjacency_cache
        if cached is None or cached.edges.device != network.faces.device:
            cached = edge_adjacent_faces(network.faces)
            self._adjacency_cache = cached
        return cached

    # -- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        network: SoftRasModel = unwrap_model(model)  # type: ignore[assignment]
        dataset = base_dataset(loader.dataset)  # eval_objects is applied by ``datasets`` (a Subset)
        per_category: dict[str, list[float]] = defaultdict(list)
        silhouettes: list[float] = []
        chamfers: list[float] = []
        generator = torch.Generator().manual_seed(0)
        for batch in loader:
            image, mask = batch["image"], batch["mask"]  # (B, V', 3, S, S), (B, V', 1, S, S)
            items, views, size = image.shape[0], image.shape[1], image.shape[-1]
            vertices = network(model_input(image.flatten(0, 1), mask.flatten(0, 1)))
            vertices = vertices.view(items, views, -1, 3)
            for item in range(items):
                category = str(batch["category"][item])
                for view in range(views):
                    predicted = vertices[item, view].float().cpu()
                    if "voxels" in batch:
                        grid = voxelize_like_softras(predicted, network.faces.cpu())
                        per_category[category].append(
                            100 * float(voxel_iou(grid, batch["voxels"][item].cpu()))
                        )
                    camera = views_camera(batch, view)[item]
                    hard = render(
                        predicted.to(image.device), network.faces, camera, RasterSettings(size, soft=False)
                    )
                    silhouettes.append(
                        float(mask_iou(hard.alpha[0, ..., 0], mask[item, view, 0] > 0.5, soft=False))
                    )
                    truth = ground_truth_surface(dataset, int(batch["index"][item]))
                    if truth is not None:
                        ours = sample_surface(predicted, network.faces.cpu(), CHAMFER_POINTS, generator)
                        theirs = sample_surface(truth[0], truth[1], CHAMFER_POINTS, generator)
                        chamfers.append(float(chamfer_distance(ours, theirs).total))
        metrics = mean_metrics({"silhouette_iou": silhouettes})
        if per_category:
            metrics.update(category_metrics("iou3d", per_category))
        if chamfers:
            metrics.update(mean_metrics({"chamfer": chamfers}))
        return metrics

    @torch.no_grad()
    def visualise(self, model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        """Rows: input view | reconstruction at that view | at +90 and +180 degrees azimuth (shaded)."""
        network: SoftRasModel = unwrap_model(model)  # type: ignore[assignment]
        image, mask = batch["image"][:, 0], batch["mask"][:, 0]  # (B, 3, S, S), (B, 1, S, S)
        size = image.shape[-1]
        vertices = network(model_input(image, mask))  # (B, V, 3)
        camera = views_camera(batch, 0)
        lighting = Lighting(ambient=0.4, diffuse=0.6, background=(1.0, 1.0, 1.0))
        grey = torch.full((len(vertices), network.num_vertices, 3), 0.8, device=vertices.device)
        columns = [image * mask + (1 - mask)]
        for turn in (0.0, 90.0, 180.0):
            turned = camera.turned(turn)
            shaded = render(
                vertices, network.faces, turned, RasterSettings(size, soft=False),
                vertex_colors=grey, lighting=lighting,
            ).rgb  # fmt: skip
            columns.append(shaded.permute(0, 3, 1, 2))
        rows = torch.cat(columns, dim=3)  # (B, 3, S, 4 S)
        return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1]).clamp(0, 1)


def views_camera(batch: Mapping[str, Any], view: int) -> Camera:
    """The look-at cameras (B,) of view slot ``view`` of a multi-view batch."""
    return Camera.look_at(batch["distance"][:, view], batch["elevation"][:, view], batch["azimuth"][:, view])


# -- command line ---------------------------------------------------------------------------------------
COMMAND = TrainerSpec(
    "softras", "train the Soft Rasterizer baseline (method softras)", __doc__, SoftRasTrainConfig,
    renderings_datasets, renderings_prepare(SoftRasTraining),
)  # fmt: skip
"""``mono2mesh-train softras``: every field of ``SoftRasTrainConfig`` as a flag, presets, --set."""

datasets = renderings_datasets
"""The training set (``views_per_item`` views) and the evaluation set (``eval_views`` views)."""

run = COMMAND.run
"""``run(config, train_set=None, eval_set=None)``: train as ``config`` says (module docstring); the result
names the final checkpoint. The data sets default to ``datasets(config)``."""
