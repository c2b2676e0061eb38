"""Training ``unsup3d``: Unsup3d (Wu, Rupprecht, Vedaldi 2020), symmetric objects from raw images.

Five networks read one image (``backend.models.unsup3d.Unsup3dNet``): a canonical depth map and albedo, a
light (ambient, diffuse, direction) and a view (rotation, translation), and confidence maps. The canonical
albedo, shaded by the canonical depth's normals and the light, is warped to the view through the depth
grid (``warp_to_view``); so are the left-right flips of the canonical depth and albedo (the symmetric
branch). Each step (``training.unsup3d.method``) compares both reconstructions with the input: the
confidence-weighted L1 and VGG16 relu3_3 perceptual terms, the flipped ones weighted by lambda_flip (0.5,
1 before ``flip_start_epoch``), Adam 1e-4 with weight decay 5e-4. No masks, keypoints or cameras.

Data (``data_kind``, "auto" by default, decides from what ``data`` holds):

- "synthetic-faces": ``mono2mesh-train make-synthetic --category face`` (``SyntheticFaces``: images with
  ground-truth depth and masks), where the evaluation also reports SIDE and MAD (``metrics``);
- "celeba": CelebA, cropped with Unsup3d's boxes (``CelebACrops``);
- "folder": any folder of crops (``ImageFolderDataset`` without cropping): ``<data>/<split>/`` when it
  exists (the cat faces' ``cat_combined/train`` and ``test``), else ``<data>`` itself (no evaluation).

Images are resized to ``model.image_size``; the training images are mirrored at random in the step
(``augment``). Evaluation and the image grids use the first ``eval_items`` items of ``eval_split`` (none
when that split does not exist).

The final checkpoint (``<out>/unsup3d.safetensors + .json``) has method ``unsup3d``, template
``depthgrid-64``, ``config["model"]`` the ``Unsup3dModelConfig`` and the weights of ``Unsup3dNet`` only
(``build_unsup3d(config["model"])`` rebuilds it); the VGG features are never saved.
"""

# The package, by what each module holds (this one: the data, ``run`` and the command):
# - ``config``: ``Unsup3dTrainConfig`` and its presets;
# - ``metrics``: SIDE and MAD;
# - ``terms``: the image formation and loss terms of one step;
# - ``pictures``: the image grid;
# - ``method``: ``Unsup3dTraining`` (the loop's method).

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from training.commands import TrainerSpec
from training.datasets.celeba import BOX_FILE, CelebACrops
from training.datasets.folder import ImageFolderDataset
from training.datasets.synthetic_faces import GROUND_TRUTH_FILE, SyntheticFaces, is_synthetic_faces
from training.unsup3d.config import Unsup3dTrainConfig
from training.unsup3d.method import METHOD, Unsup3dTraining

__all__ = ["COMMAND", "METHOD", "Unsup3dTrainConfig", "Unsup3dTraining", "data_kind", "datasets", "run"]


def data_kind(config: Unsup3dTrainConfig) -> str:
    """What ``config.data`` holds: ``config.data_kind``, or the one "auto" finds (module docstring)."""
    if config.data_kind != "auto":
        return config.data_kind
    root = Path(config.data)
    if is_synthetic_faces(root):
        return "synthetic-faces"
    if (root / BOX_FILE).is_file() or (root / "celeba_cropped").is_dir():
        return "celeba"
    return "folder"


def _split(config: Unsup3dTrainConfig, kind: str, split: str, required: bool) -> Dataset[Any] | None:
    """One split of the data (None when it is absent and not ``required``)."""
    root, size = Path(config.data), config.model.image_size
    if kind == "synthetic-faces":
        if not required and not (root / split / GROUND_TRUTH_FILE).is_file():
            return None
        return SyntheticFaces(root, split, image_size=size)
    if kind == "celeba":
        try:
            return CelebACrops(root, split, image_size=size, augment=False)
        except FileNotFoundError:
            if required:
                raise
            return None
    folder = root / split
    if not folder.is_dir():
        if required:  # a plain folder of photos: all of them train
            return ImageFolderDataset(root, image_size=size, crop=False)
        return None
    return ImageFolderDataset(folder, image_size=size, crop=False)


def datasets(config: Unsup3dTrainConfig) -> tuple[Dataset[Any], Dataset[Any] | None]:
    """The training split and the first ``eval_items`` items of the evaluation split (module docstring).

    Items: "image" (3, S, S) in [0, 1], "mask" (1, S, S), and for synthetic faces "depth" (S, S).
    """
    if not config.data:
        raise ValueError("no data folder: pass --data DIR (synthetic faces, CelebA, or a folder of crops)")
    if not Path(config.data).is_dir():
        raise FileNotFoundError(f"data folder not found: expected the directory {config.data}")
    kind = data_kind(config)
    train_set = _split(config, kind, config.train_split, required=True)
    if train_set is None:  # _split raises instead
        raise FileNotFoundError(f"no {config.train_split!r} split under {config.data}")
    eval_set = _split(config, kind, config.eval_split, required=False) if config.eval_split else None
    if eval_set is not None and config.eval_items:
        eval_set = Subset(eval_set, range(min(config.eval_items, len(eval_set))))  # type: ignore[arg-type]
    return train_set, eval_set


def _prepare(
    config: Unsup3dTrainConfig, train_set: Dataset[Any], eval_set: Dataset[Any] | None
) -> tuple[Unsup3dTraining, dict[str, Any]]:
    """The loop's method (knowing the epoch length, for ``flip_start_epoch``) and the dataset record."""
    steps_per_epoch = len(train_set) // config.batch_size  # type: ignore[arg-type]
    method = Unsup3dTraining(config, steps_per_epoch)
    info = {
        "name": data_kind(config) if config.data else type(train_set).__name__,
        "root": str(Path(config.data).resolve()) if config.data else "given",
        "train_split": config.train_split,
        "train_items": len(train_set),  # type: ignore[arg-type]
        "eval_split": config.eval_split,
        "eval_items": len(eval_set) if eval_set is not None else 0,  # type: ignore[arg-type]
        "perceptual_features": f"vgg16 relu3_3, {method.vgg_weights} weights",
    }
    return method, info


COMMAND = TrainerSpec(
    "unsup3d", "train Unsup3d: symmetric depth, albedo, light and view from raw images (method unsup3d)",
    __doc__, Unsup3dTrainConfig, datasets, _prepare,
)  # fmt: skip
"""``mono2mesh-train unsup3d``: every field of ``Unsup3dTrainConfig`` as a flag."""

run = COMMAND.run
"""``run(config, train_set=None, eval_set=None)``: train as ``config`` says (module docstring); the result
names the final checkpoint. The data sets default to ``datasets(config)``."""
