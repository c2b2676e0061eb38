"""``Unsup3dTrainConfig``: every setting of ``unsup3d`` training, and its presets.

On top of ``training.config.TrainConfig``: the networks (``model``, the backend's ``Unsup3dModelConfig``,
stored in every checkpoint), the data (a folder and what it holds), the loss weights and the ablation
switches. Sources (the reference's ``model.py`` and ``experiments/train_*.yml``): Adam lr 1e-4, betas
(0.9, 0.999), weight decay 5e-4, batch 64; 30 epochs for CelebA and its synthetic faces, 200 for cats;
``lam_flip`` 0.5 and ``lam_perc`` 1. ``lam_flip_start_epoch`` (``flip_start_epoch``) is 10 only for
the cats (0 for CelebA and synface): before that epoch the flipped terms weigh 1, not 0.5 (the reference:
``lam_flip = 1 if epoch < lam_flip_start_epoch else lam_flip``), so the symmetric branch is always on.
The views move by +-0.1 along z for the cats and not at all for CelebA and synface
(``z_translation_range``).

Presets: ``paper`` (CelebA / synthetic faces: the defaults), ``paper-cat`` (the cats: 200 epochs, flip
weight 1 until epoch 10, z translations) and ``cpu``: 32 x 32, quarter-width networks, batch 16, lr 3e-4,
2000 steps (about 0.2 s each on one busy core: minutes), two departures measured on synthetic faces:
no perceptual term (VGG16 takes three quarters of a CPU step; ``--perceptual-weight 1`` puts it back) and
the reference's optional depth smoothness at weight 1 (its synthetic cars use 0.1): from random
networks the depth starts as pixel noise (MAD about 75 degrees on the faces) and without the term the
first thousand steps at this scale fit the colours, not the shape (SIDE and MAD do not move).

Ablations (the paper's Table 2 at CPU scale): ``flip=false`` drops the symmetric branch (no flipped
reconstruction, no flipped terms); ``model.confidence=false`` trains without confidence maps (sigma 1:
plain L1 and squared feature distance).
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import model_validator

from backend.models.unsup3d import Unsup3dModelConfig
from training.config import TrainConfig

DataKind = Literal["auto", "synthetic-faces", "celeba", "folder"]

PAPER_MODEL = Unsup3dModelConfig(z_translation_range=0.0)
"""The reference's networks at 64 x 64, views without z translation (its CelebA and synface settings)."""
CAT_MODEL = Unsup3dModelConfig(z_translation_range=0.1)
"""The reference's cat settings: views with +-0.1 z translation."""
CPU_MODEL = Unsup3dModelConfig(
    image_size=32, nf=16, zdim=64, confidence_zdim=32, encoder_nf=16, z_translation_range=0.0
)
"""Quarter-width networks at 32 x 32, for minutes-long runs on a CPU."""


class Unsup3dTrainConfig(TrainConfig):
    """Unsup3d's training (module docstring); the defaults are the "paper" preset (CelebA)."""

    model: Unsup3dModelConfig = PAPER_MODEL
    """Network hyper-parameters (saved in every checkpoint; the backend rebuilds the networks from them).
    model.image_size is the training images' side; model.confidence=false is the no-confidence ablation."""

    data: str = ""
    """The images: a synthetic face set (make-synthetic --category face), CelebA (the photos with
    celeba_crop_bbox.txt, or celeba_cropped/<split>/), or any folder of crops (<data>/<split>/ when it
    exists, else <data> itself: the cat faces' cat_combined/train, your own photos)."""

    data_kind: DataKind = "auto"
    """What data holds: auto (synthetic-faces when its synthetic.json says face, celeba when it has the
    box file or celeba_cropped/, else folder), or one of synthetic-faces, celeba, folder."""

    train_split: str = "train"
    """Split trained on (a sub-folder of data, or CelebA's split)."""

    eval_split: str = "val"
    """Split evaluated during training and at the end ("" for none); a missing split is skipped."""

    eval_items: int = 256
    """Evaluate only the first N items of the evaluation split; 0 evaluates all."""

    augment: bool = True
    """Mirror each training image with probability 1/2 (the reference's only augmentation), drawn in the
    step from a generator seeded by (seed, step)."""

    flip: bool = True
    """The symmetric branch: the flipped canonical depth and albedo reconstruct the image too (the
    paper's key idea). false: the ablation without symmetry (no flipped reconstruction or terms)."""

    flip_weight: float = 0.5
    """lambda_flip: weight of the flipped reconstruction's terms from flip_start_epoch on (reference 0.5)."""

    flip_start_epoch: int = 0
    """Epoch from which the flipped terms weigh flip_weight; before it they weigh 1 (the reference's
    lam_flip_start_epoch: 0 for CelebA and synface, 10 for cats)."""

    perceptual_weight: float = 1.0
    """lambda_perc: weight of the VGG16 relu3_3 perceptual terms (reference 1); 0 drops VGG altogether."""

    depth_smoothness_weight: float = 0.0
    """lam_depth_sm: weight of the reference's optional canonical-depth smoothness term (mean absolute
    neighbour differences over the depth range); the reference uses 0.1 for its synthetic cars only, 0
    elsewhere."""

    vgg_path: str = ""
    """VGG16 ImageNet weights (a file or folder); "" looks in the usual places, and without them the
    perceptual loss uses fixed random VGG16 features (the report says which)."""

    batch_size: int = 64
    """Global batch (the reference: 64)."""

    epochs: int = 30
    """Passes over the training set (the reference: 30 for CelebA and synface, 200 for cats)."""

    lr: float = 1e-4
    """Adam learning rate (the reference: 1e-4)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's betas (the reference's)."""

    weight_decay: float = 5e-4
    """Adam's weight decay (the reference: 5e-4)."""

    out: str = "runs/unsup3d"
    """Run folder (checkpoints, final unsup3d.safetensors + .json, history, report)."""

    @model_validator(mode="after")
    def _check_unsup3d(self) -> Self:
        for name in ("flip_weight", "perceptual_weight", "depth_smoothness_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("flip_start_epoch", "eval_items"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        return self


Unsup3dTrainConfig.PRESETS = {
    "paper": Unsup3dTrainConfig(model=PAPER_MODEL, batch_size=64, epochs=30, flip_start_epoch=0),
    "paper-cat": Unsup3dTrainConfig(model=CAT_MODEL, batch_size=64, epochs=200, flip_start_epoch=10),
    "cpu": Unsup3dTrainConfig(
        model=CPU_MODEL, batch_size=16, epochs=0, iterations=2000, lr=3e-4, perceptual_weight=0.0,
        depth_smoothness_weight=1.0, eval_items=64, log_every=50, eval_every=500, image_every=500,
        checkpoint_every=500,
    ),
}  # fmt: skip
