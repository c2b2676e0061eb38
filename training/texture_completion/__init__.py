"""Training ``texture-completion``: the texture-completion network of ``pointcloud-poisson``'s last stage.

The backend bakes the photo onto the Poisson mesh's atlas; the visible and mirrored texels are known, the
rest is filled by ``backend.models.texture_completion.TextureGenerator`` (``complete_texture``). Training
needs no meshes: it learns the same completion on real image crops (image + mask datasets: the "folder"
layout, ``ImageFolderDataset``, or the "cub" layout, ``CubDataset``). Each step:

- ``random_holes`` (``training.datasets.holes``) hides part of each crop: free-form strokes (polylines of
  random width, as the free-form masks of DeepFill v2, Yu et al. 2019), boxes, and sometimes a whole
  half-plane (like the hidden side of an object), drawn from a generator seeded by ``(seed, step)`` so that
  a resumed run draws the same holes. The object pixels outside the holes are known; the hidden object
  pixels are the target; the background outside the object mask is unknown and unsupervised, as the gutter
  between atlas charts.
- The generator gets the known colours (zeros elsewhere) and the known mask; its output is composited with
  the known pixels (``completed``), as the backend does.
- ``l1``: mean |output - photo| over the hidden object pixels (and channels), weight ``l1_weight``.
- ``gan``: the generator's adversarial loss against a ``PatchDiscriminator`` (pix2pix's 70x70 PatchGAN,
  fewer layers for small crops) that sees real crops ``image * mask`` and completed crops
  ``completed * mask`` (same silhouette, same known pixels: only the holes differ). LSGAN (Mao et al. 2017;
  pix2pix/CycleGAN's "lsgan") or hinge (SN-PatchGAN, DeepFill v2).
- ``discriminator``: the discriminator's loss on real vs. detached completed crops.

One optimiser trains both players (the shared loop has one) with the frozen-critic scheme of
``training.losses.adversarial.two_player_losses``: one backward gives each network the gradient of its own
objective, with any GAN loss (gradient reversal is exact only for the zero-sum WGAN loss).
``configure_optimizer`` gives the discriminator its own parameter group (learning rate
``lr * discriminator_lr_factor``; TTUR, Heusel et al. 2017, when != 1).

Weights (ours; sources): ``l1_weight`` 100 and ``gan_weight`` 1 are pix2pix's lambda = 100 (Isola et al.
2017, sec. 4.1), with our L1 averaged over the hidden pixels rather than the whole image; Adam lr 2e-4,
betas (0.5, 0.999), weights N(0, 0.02) are pix2pix's too. A smaller ``l1_weight`` (e.g. 10) gives the
discriminator more say: sharper, riskier fills.

Evaluation, on the evaluation split with holes drawn from a fixed seed (the same for every run): ``l1`` and
``psnr`` over the hidden object pixels, ``l1_mean_fill`` (the same L1 for the trivial fill with each
crop's mean known colour: the bar to beat) and, when Inception-v3 ImageNet weights are on this machine,
``fid`` between real and completed crops (``training.losses.fid.FidMetric``; skipped otherwise, as the
run's dataset information records).

The final checkpoint (``<out>/texture-completion.safetensors + .json``) has method ``TEXTURE_METHOD``,
template ``TEXTURE_TEMPLATE``, ``config["model"]`` the generator's settings and only the generator's
weights (``export_weights``): ``backend.methods.checkpointed.load_method_network`` rebuilds it.
"""

# The package, by what each module holds (this one: the data, ``run`` and the command):
# - ``config``: ``TextureCompletionTrainConfig`` and its presets (the holes: ``training.datasets.holes``);
# - ``method``: ``TextureCompletionTraining`` (the loop's method) and ``TextureCompletionNetwork``
#   (generator + discriminator).

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from backend.models.texture_completion import TEXTURE_METHOD
from training.commands import TrainerSpec
from training.datasets.cub import CubDataset
from training.datasets.folder import ImageFolderDataset
from training.datasets.holes import HoleConfig
from training.losses.fid import inception_available
from training.texture_completion.config import TextureCompletionTrainConfig
from training.texture_completion.method import (
    EVAL_SEED,
    Completion,
    TextureCompletionNetwork,
    TextureCompletionTraining,
    masked_l1,
)

__all__ = [
    "COMMAND",
    "EVAL_SEED",
    "Completion",
    "HoleConfig",
    "TextureCompletionNetwork",
    "TextureCompletionTrainConfig",
    "TextureCompletionTraining",
    "datasets",
    "masked_l1",
    "run",
]

log = logging.getLogger(__name__)


def _train_folder(config: TextureCompletionTrainConfig) -> Path:
    """The folder layout's ``data/<train_split>``, or ``data`` itself when it has no split folders."""
    root = Path(config.data)
    if (root / config.train_split).is_dir():
        return root / config.train_split
    splits = sorted(child.name for child in root.iterdir() if (child / "images").is_dir())
    if splits:
        raise FileNotFoundError(f"{root} has the split folders {splits} but no {config.train_split!r}")
    return root


def _folder_dataset(config: TextureCompletionTrainConfig, folder: Path, training: bool) -> ImageFolderDataset:
    return ImageFolderDataset(
        folder, image_size=config.model.image_size, augment=training and config.augment, seed=config.seed
    )


def datasets(config: TextureCompletionTrainConfig) -> tuple[Dataset[Any], Dataset[Any] | None]:
    """The training crops (augmented when ``augment``) and the evaluation crops (None when absent).

    Items carry "image" (3, S, S) and "mask" (1, S, S) with S = ``model.image_size``.
    """
    if not config.data:
        raise ValueError(
            "no data folder: pass --data DIR (images + masks, or a CUB layout with --layout cub)"
        )
    if not Path(config.data).is_dir():
        raise FileNotFoundError(f"data folder not found: expected the directory {config.data}")
    eval_set: Dataset[Any] | None
    if config.layout == "folder":
        train_set: Dataset[Any] = _folder_dataset(config, _train_folder(config), True)
        eval_folder = Path(config.data) / config.eval_split
        eval_set = _folder_dataset(config, eval_folder, False) if eval_folder.is_dir() else None
    elif config.layout == "cub":
        common: dict[str, Any] = {
            "annotation_root": config.annotation_root or None,
            "image_size": config.model.image_size,
            "seed": config.seed,
        }
        train_set = CubDataset(config.data, config.train_split, augment=config.augment, **common)
        try:
            eval_set = CubDataset(config.data, config.eval_split, augment=False, **common)
        except FileNotFoundError:
            eval_set = None
    else:
        raise ValueError(f"layout must be 'folder' or 'cub', got {config.layout!r}")
    if eval_set is not None and config.eval_items:
        eval_set = Subset(eval_set, range(min(config.eval_items, len(eval_set))))
    return train_set, eval_set


def _prepare(
    config: TextureCompletionTrainConfig, train_set: Dataset[Any], eval_set: Dataset[Any] | None
) -> tuple[TextureCompletionTraining, dict[str, Any]]:
    """The loop's method and the dataset record (with whether FID is measured, and why not)."""
    with_fid = inception_available(config.pretrained, config.pretrained_path or None)
    fid_note = (
        "inception-v3" if with_fid
        else "skipped: no Inception-v3 ImageNet weights on this machine (or pretrained=none)"
    )  # fmt: skip
    if eval_set is not None and not with_fid:
        log.warning("texture-completion: %s; evaluating L1 and PSNR only", fid_note.removeprefix("skipped: "))
    info = {
        "name": f"{config.layout}-layout",
        "root": str(Path(config.data).resolve()) if config.data else type(train_set).__name__,
        "train_split": config.train_split,
        "train_items": len(train_set),  # type: ignore[arg-type]
        "eval_split": config.eval_split,
        "eval_items": len(eval_set) if eval_set is not None else 0,  # type: ignore[arg-type]
        "fid": fid_note,
    }
    return TextureCompletionTraining(config), info


COMMAND = TrainerSpec(
    TEXTURE_METHOD, "train the texture-completion network of pointcloud-poisson (method texture-completion)",
    __doc__, TextureCompletionTrainConfig, datasets, _prepare,
)  # fmt: skip
"""``mono2mesh-train texture-completion``: every field of ``TextureCompletionTrainConfig`` as a flag."""

run = COMMAND.run
"""``run(config, train_set=None, eval_set=None)``: train as ``config`` says (module docstring); the result
names the final checkpoint. The data sets default to ``datasets(config)``."""
