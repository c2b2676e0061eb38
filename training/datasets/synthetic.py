"""The synthetic generator: category datasets with known 3D, written in the real datasets' layouts.

Contract:

- ``generate(out, config)`` makes ``config.n`` objects of ``config.category`` ("bird", "car", "chair";
  ``synthetic_categories``: a few deformed superquadrics, symmetric about x = 0, front towards +Z, procedural
  symmetric textures), renders each from ``config.views`` cameras (Lambert shading, anti-aliased, over a
  "plain", "noise" or "image" background) and writes them in ``config.layout`` ("shapenet", "cub",
  "folder"; ``synthetic_writers``), with every object's ground-truth mesh and a ``synthetic.json``
  describing the set (category, keypoint and part names and their left/right permutations, cameras,
  splits, seed). Objects go to the splits in order (the first ``train`` fraction to "train", ...).
- Cameras: the "shapenet" layout with 24 views uses SoftRas's (elevation 30, distance 2.732, azimuth
  -15 k); other view counts and the "folder" layout draw look-at cameras from the category's ranges
  (``synthetic_render.CAMERA_RANGES``); the "cub" layout renders with the weak-perspective cameras of such
  views (CMR's camera model, so the written sfm poses are exact).
- Backgrounds: "plain" is one random colour per image, except in the "shapenet" layout where it is black
  like NMR's renders; "noise" and "image" as ``synthetic_texture.background`` (``background_images``:
  photos to crop backgrounds from, else procedural scenes).
- Reproducible: object i draws its shape and texture from ``default_rng((seed, category, i, 0))`` and its
  cameras, lighting and backgrounds from ``default_rng((seed, category, i, 1))``, so the same seed gives
  byte-identical arrays (and each object is independent of ``n`` and of the split fractions).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from backend.geometry.camera import SOFTRAS_VIEWING_ANGLE
from training.datasets.shapenet import SOFTRAS_NUM_VIEWS, softras_cameras
from training.datasets.synthetic_categories import (
    check_category,
    keypoint_names,
    keypoint_permutation,
    part_names,
    part_permutation,
)
from training.datasets.synthetic_object import SyntheticObject, make_object
from training.datasets.synthetic_render import (
    CAMERA_RANGES,
    RenderedViews,
    look_at_cameras,
    random_lighting,
    render_views,
    sample_views,
    weak_perspective_camera,
    weak_perspective_from_views,
)
from training.datasets.synthetic_texture import BACKGROUNDS, background
from training.datasets.synthetic_writers import CubWriter, FolderWriter, ShapeNetWriter

CATEGORIES = ("bird", "car", "chair")
LAYOUTS = ("shapenet", "cub", "folder")
Layout = Literal["shapenet", "cub", "folder"]
DEFAULT_SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    Attributes:
        category: "bird", "car" or "chair".
        n: number of objects.
        size: image side in pixels; None: 64 for the "shapenet" layout (SoftRas's), else 128.
        layout: "shapenet", "cub" or "folder".
        views: renders per object; None: 24 for "shapenet" (SoftRas's cameras), else 1.
        seed: seed of every random choice.
        background: "plain", "noise" or "image".
        background_images: photos to crop "image" backgrounds from (procedural scenes when empty).
        splits: (name, fraction) pairs; fractions are normalised, counts rounded down with the rest to
            the first split.
    """

    category: str
    n: int = 2000
    size: int | None = None
    layout: Layout = "shapenet"
    views: int | None = None
    seed: int = 0
    background: str = "plain"
    background_images: tuple[Path, ...] = ()
    splits: tuple[tuple[str, float], ...] = field(default=DEFAULT_SPLITS)

    def __post_init__(self) -> None:
        check_category(self.category)
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}: expected one of {LAYOUTS}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}: expected one of {BACKGROUNDS}")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.size is not None and not 8 <= self.size <= 1024:
            raise ValueError(f"size must lie in 8..1024, got {self.size}")
        if self.views is not None and self.views < 1:
            raise ValueError(f"views must be at least 1, got {self.views}")
        split_counts(self.n, self.splits)  # validates the fractions

    @property
    def image_size(self) -> int:
        return self.size if self.size is not None else (64 if self.layout == "shapenet" else 128)

    @property
    def num_views(self) -> int:
        return (
            self.views if self.views is not None else (SOFTRAS_NUM_VIEWS if self.layout == "shapenet" else 1)
        )

    @property
    def softras_views(self) -> bool:
        """Whether the renders use SoftRas's fixed 24 cameras."""
        return self.layout == "shapenet" and self.num_views == SOFTRAS_NUM_VIEWS


def split_counts(n: int, fractions: Sequence[tuple[str, float]]) -> list[tuple[str, int]]:
    """Objects per split: ``floor(n f / sum f)``, the remainder to the first split.

    >>> split_counts(10, [("train", 0.8), ("val", 0.1), ("test", 0.1)])
    [('train', 8), ('val', 1), ('test', 1)]
    """
    names = [name for name, _ in fractions]
    if not fractions or len(set(names)) != len(names):
        raise ValueError(f"splits must be distinct (name, fraction) pairs, got {list(fractions)}")
    total = sum(f for _, f in fractions)
    if any(f < 0 for _, f in fractions) or total <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {list(fractions)}")
    counts = [int(np.floor(n * f / total + 1e-9)) for _, f in fractions]
    counts[0] += n - sum(counts)
    return list(zip(names, counts, strict=True))


def parse_split_fractions(text: str) -> tuple[tuple[str, float], ...]:
    """ "train=0.8,val=0.1,test=0.1" or "0.8,0.1,0.1" (train, val, test) -> (name, fraction) pairs.

    >>> parse_split_fractions("0.9,0.1")
    (('train', 0.9), ('val', 0.1))
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    default_names = [name for name, _ in DEFAULT_SPLITS]
    pairs = []
    try:
        for position, item in enumerate(items):
            if "=" in item:
                name, value = item.split("=", 1)
                pairs.append((name.strip(), float(value)))
            elif position < len(default_names):
                pairs.append((default_names[position], float(item)))
            else:
                raise ValueError(f"a fourth fraction needs a name (name=fraction): {item!r}")
    except ValueError as error:
        raise ValueError(f"cannot read split fractions {text!r}: {error}") from error
    return tuple(pairs)


def metadata(config: SyntheticConfig, counts: list[tuple[str, int]]) -> dict[str, Any]:
    """The ``synthetic.json`` of a generated set (module docstring)."""
    ranges = CAMERA_RANGES[config.category]
    cameras: str | dict[str, Any] = "softras"
    if not config.softras_views:
        cameras = {
            "kind": "weak_perspective" if config.layout == "cub" else "look_at",
            "azimuth": list(ranges.azimuth),
            "elevation": list(ranges.elevation),
            "distance": list(ranges.distance),
            "viewing_angle": SOFTRAS_VIEWING_ANGLE,
        }
    return {
        "format": 1,
        "generator": "mono2mesh make-synthetic",
        "category": config.category,
        "layout": config.layout,
        "n": config.n,
        "size": config.image_size,
        "views": config.num_views,
        "seed": config.seed,
        "background": config.background,
        "splits": dict(counts),
        "frame": "Y up, front towards +Z, left towards +X, symmetric about x = 0, inside [-0.5, 0.5]^3",
        "cameras": cameras,
        "keypoint_names": list(keypoint_names(config.category)),
        "keypoint_permutation": list(keypoint_permutation(config.category)),
        "part_names": list(part_names(config.category)),
        "part_permutation": list(part_permutation(config.category)),
    }


def _views_of(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if config.softras_views:
        return softras_cameras(SOFTRAS_NUM_VIEWS)
    return sample_views(config.category, config.num_views, rng)


def _render(
    config: SyntheticConfig, obj: SyntheticObject, rng: np.random.Generator
) -> tuple[RenderedViews, dict[str, np.ndarray], np.ndarray | None]:
    """Render one object for the layout: (renders, look-at views, weak-perspective cameras or None)."""
    views = _views_of(config, rng)
    size, count = config.image_size, config.num_views
    if config.layout == "shapenet" and config.background == "plain":
        backgrounds = np.zeros((count, size, size, 3), dtype=np.float32)
    else:
        images = config.background_images
        backgrounds = np.stack([background(config.background, size, rng, images) for _ in range(count)])
    lighting = random_lighting(rng)
    if config.layout == "cub":
        cameras = weak_perspective_from_views(views, rng)
        return (
            render_views(obj, weak_perspective_camera(cameras), size, backgrounds, lighting),
            views,
            cameras,
        )
    return render_views(obj, look_at_cameras(views), size, backgrounds, lighting), views, None


def generate(
    out: str | Path, config: SyntheticConfig, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Generate the set into ``out`` (created); ``progress(k)`` is called after every k objects.

    Returns the metadata written to ``out/synthetic.json``.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    counts = split_counts(config.n, config.splits)
    code = CATEGORIES.index(config.category)
    first = 0
    for split, count in counts:
        if count == 0:
            continue
        writer: ShapeNetWriter | CubWriter | FolderWriter
        if config.layout == "shapenet":
            writer = ShapeNetWriter(
                root, config.category, split, count, config.num_views, config.image_size,
                record_cameras=not config.softras_views,
            )  # fmt: skip
        elif config.layout == "cub":
            writer = CubWriter(root, config.category, split, config.image_size)
        else:
            writer = FolderWriter(root, config.category, split)
        for index in range(first, first + count):
            obj = make_object(
                config.category,
                np.random.default_rng((config.seed, code, index, 0)),
                with_voxels=config.layout == "shapenet",
            )
            rendered, views, cameras = _render(
                config, obj, np.random.default_rng((config.seed, code, index, 1))
            )
            if isinstance(writer, CubWriter) and cameras is not None:
                writer.add(obj, rendered, cameras)
            elif not isinstance(writer, CubWriter):
                writer.add(obj, rendered, views)
            if progress is not None:
                progress(1)
        writer.close()
        first += count
    data = metadata(config, counts)
    (root / "synthetic.json").write_text(json.dumps(data, indent=1))
    return data
