"""Training ``mesh-inversion-gan``: MeshInversion's 3-D GAN, the generative prior its inversion searches.

MeshInversion (after ConvMesh) pre-trains a GAN whose generator G(z) gives a mesh as a displacement map of
the UV sphere (M x M, ``backend.geometry.uv_displacement``) and a texture map (T x T) in the same UV layout
(``backend.models.mesh_inversion.MeshGenerator``). It learns from a pseudo ground truth: for each training
photo, the UV sphere deformed to fit it (its displacement map), the photo projected onto that mesh through
its camera (a texture with its visibility mask) and the camera itself
(``training.mesh_inversion.pseudo_gt``). Each step (``training.mesh_inversion.method``):

- D_uv (``UvDiscriminator``) tells pseudo-GT (displacement, texture) pairs from generated ones in UV space,
  both seen through pseudo-GT visibility masks (eq. 2);
- D_I (pix2pix's 70 x 70 PatchGAN, ndf 64) tells the real masked photos from the generated meshes rendered
  with the pseudo-GT cameras (eq. 3; MeshInversion's addition to ConvMesh);
- G descends ``lambda_uv * uv_gan + lambda_I * image_gan`` (eq. 1; lambda_I = img_gan_loss_wt 0.2) plus
  ConvMesh's mesh regulariser (flatness, 1e-4). Least-squares GAN losses; one optimiser with the
  frozen-critic scheme (``training.losses.adversarial.two_player_losses``), Adam with lr_g 1e-4 and lr_d
  4e-4, an EMA of the generator (0.999).

Data: a CUB layout (``training.datasets.cub.CubDataset``: real CUB with CMR's annotations, or
``mono2mesh-train make-synthetic --layout cub``), cropped to ``image_size`` without augmentation. Its pseudo
ground truth is built on first use and cached (``pseudo_gt_dir``; by default ``<data>/cache/mesh-inversion``
beside the dataset, as ConvMesh caches its own, or ``<out>/pseudo-gt`` when the data folder is read-only);
later runs with the same settings reuse it. Evaluation and the image grids use its first ``eval_items``
items (a GAN has no held-out target: the scores compare real and generated distributions).

The final checkpoint (``<out>/mesh-inversion.safetensors + .json``) has method ``mesh-inversion``, template
``uvsphere-482``, ``config["model"]`` the generator's ``MeshInversionModelConfig`` and only the generator's
weights (its moving average): ``backend.models.mesh_inversion.build_generator`` rebuilds it and the
``mesh-inversion`` method inverts it. The discriminators live in the resumable training state only.
"""

# The package, by what each module holds (this one: the data, ``run`` and the command):
# - ``config``: ``MeshInversionTrainConfig`` and its presets;
# - ``pseudo_gt``: the pseudo ground truth (built from the CUB-layout photos, cached on disk);
# - ``method``: ``MeshInversionTraining`` (the loop's method) and ``MeshInversionNetwork``.

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from backend.devices import resolve_device
from training.commands import TrainerSpec
from training.datasets.cub import CubDataset
from training.evaluation import camera_from_vector
from training.losses.fid import inception_available
from training.mesh_inversion.config import MeshInversionTrainConfig
from training.mesh_inversion.method import (
    EVAL_SEED,
    METHOD,
    MeshInversionNetwork,
    MeshInversionTraining,
    real_rgba,
    render_rgba,
)
from training.mesh_inversion.pseudo_gt import PseudoGroundTruth, PseudoGtSettings, build_pseudo_ground_truth

__all__ = [
    "COMMAND",
    "EVAL_SEED",
    "METHOD",
    "MeshInversionNetwork",
    "MeshInversionTrainConfig",
    "MeshInversionTraining",
    "camera_from_vector",
    "datasets",
    "pseudo_gt_folder",
    "pseudo_gt_settings",
    "real_rgba",
    "render_rgba",
    "run",
]


def pseudo_gt_folder(config: MeshInversionTrainConfig) -> Path:
    """Where the pseudo ground truth is cached: ``pseudo_gt_dir``, else a folder named after the split and
    sizes (one cache holds one build) in ``<data>/cache/mesh-inversion`` when the data folder is writable,
    else in ``<out>/pseudo-gt``."""
    if config.pseudo_gt_dir:
        return Path(config.pseudo_gt_dir)
    model = config.model
    name = f"{config.train_split}-{config.image_size}px-map{model.mesh_size}-tex{model.texture_size}"
    data = Path(config.data)
    cache = data / "cache"
    if os.access(cache if cache.is_dir() else data, os.W_OK):
        return cache / "mesh-inversion" / name
    return Path(config.out) / "pseudo-gt" / name


def pseudo_gt_settings(config: MeshInversionTrainConfig) -> PseudoGtSettings:
    """The pseudo ground truth's settings: the generator's map sizes and the config's fit."""
    return PseudoGtSettings(
        map_size=config.model.mesh_size,
        texture_size=config.model.texture_size,
        fit_iterations=config.pseudo_gt_fit_iterations,
        fit_resolution=config.pseudo_gt_fit_resolution,
        seed=config.seed,
    )


def datasets(config: MeshInversionTrainConfig) -> tuple[Dataset[Any], Dataset[Any] | None]:
    """The pseudo ground truth of the ``train_split`` crops (built and cached on first use) and its first
    ``eval_items`` items for evaluation and pictures.

    Items: displacement (3, M, M), texture (3, T, T), texture_mask (1, T, T), camera (7,), image (3, S, S),
    mask (1, S, S) (``training.mesh_inversion.pseudo_gt``).
    """
    if not config.data:
        raise ValueError("no data folder: pass --data DIR (a CUB layout: images/, data/, sfm/)")
    if not Path(config.data).is_dir():
        raise FileNotFoundError(f"data folder not found: expected the directory {config.data}")
    photos = CubDataset(
        config.data, config.train_split, annotation_root=config.annotation_root or None,
        image_size=config.image_size, augment=False, seed=config.seed,
    )  # fmt: skip
    device = resolve_device(config.device)
    folder = build_pseudo_ground_truth(
        photos, pseudo_gt_folder(config), pseudo_gt_settings(config), device=device
    )
    train_set = PseudoGroundTruth(folder)
    eval_set = Subset(train_set, range(min(config.eval_items, len(train_set))))
    return train_set, eval_set


def _prepare(
    config: MeshInversionTrainConfig, train_set: Dataset[Any], eval_set: Dataset[Any] | None
) -> tuple[MeshInversionTraining, dict[str, Any]]:
    """The loop's method and the dataset record (with whether FID is measured, and why not)."""
    with_fid = inception_available(config.pretrained, config.pretrained_path or None)
    info = {
        "name": "cub-layout pseudo ground truth",
        "root": str(Path(config.data).resolve()) if config.data else type(train_set).__name__,
        "train_split": config.train_split,
        "train_items": len(train_set),  # type: ignore[arg-type]
        "pseudo_gt": str(getattr(train_set, "directory", "")) or "given",
        "eval_items": len(eval_set) if eval_set is not None else 0,  # type: ignore[arg-type]
        "fid": "inception-v3"
        if with_fid
        else "skipped: no Inception-v3 ImageNet weights (or pretrained=none)",
    }
    return MeshInversionTraining(config), info


COMMAND = TrainerSpec(
    "mesh-inversion-gan", "pre-train MeshInversion's textured-mesh GAN (method mesh-inversion)", __doc__,
    MeshInversionTrainConfig, datasets, _prepare,
)  # fmt: skip
"""``mono2mesh-train mesh-inversion-gan``: every field of ``MeshInversionTrainConfig`` as a flag."""

run = COMMAND.run
"""``run(config, train_set=None, eval_set=None)``: train as ``config`` says (module docstring); the result
names the final checkpoint. The data sets default to ``datasets(config)``."""
