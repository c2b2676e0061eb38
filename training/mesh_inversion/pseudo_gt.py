"""ConvMesh's pseudo ground truth: each training photo's mesh as a displacement map and its texture in UV.

MeshInversion pre-trains its GAN (ConvMesh) on per-photo *pseudo ground truth*: the object's mesh as a
``(3, M, M)`` displacement map of the UV-sphere template (``backend.geometry.uv_displacement``) and the
photo projected into the texture's UV space, with the mask of the texels the photo actually sees.
ConvMesh gets the mesh from its first stage (a mesh-estimation network trained for 1000 epochs on the
same photos) and marks visible texels by the nonzero gradient of a render w.r.t. the texture. We have no
such network before training, so:

- **Mesh**: a per-photo test-time fit with the fitting engine (``backend.fitting.optimise``): the
  UV-sphere template (``uv_sphere_template``, 482 vertices) deformed by mirror-symmetric per-vertex
  offsets (``shape.SymmetricOffsets``) under the template fit's regularisers (``shape.
  TemplateRegulariser``: Laplacian and deformation; SoftRas's flatten loss), SoftRas soft IoU and
  MeshInversion's Chamfer mask loss against the item's mask, starting from the item's weak-perspective
  camera instead of the engine's azimuth hypotheses. This is ``fit_template`` with a given start camera;
  ``fit_refinement`` (the other engine entry point the brief names) is made for an artist's edit: it
  refits the camera with the mesh frozen, then holds the mesh near itself except at the outline and off
  the view axis, which would keep a sphere a sphere. With ``refine_camera`` (default) the camera moves
  with the shape (ConvMesh's optional learned per-image pose deltas); otherwise it stays the dataset's.
  The fitted vertices become the map with ``UvDisplacement.to_map``, made exactly symmetric
  (``symmetrize``; the GAN generates symmetric maps), and everything after uses the map's own vertices.
- **Texture**: ``backend.meshing.texturing.project_photo``: a texel is known when its surface point
  faces the camera, is not occluded and lands inside the (eroded) mask. Nothing is mirrored or
  inpainted (``backend.fitting.texture_from_photo`` would do both): the GAN's UV discriminator must see
  only what the photo shows, and ``texture_mask`` says which texels those are. Unknown texels are 0.
- **Scale**: weak perspective cannot tell object size from camera scale. The dataset's cameras are in
  its own world units (CMR's SfM frame, or the synthetic generator's), where the unit template would
  not fit the object; one dataset-wide ``world_scale`` (the median, over up to ``scale_samples`` evenly
  spaced items, of the radius of the sphere whose disc has the mask's area: ``sqrt(4 area / pi) /
  scale``) is taken as the template's unit, so start cameras are the dataset's with
  ``scale * world_scale``. Stored meshes and cameras are in template units; multiply vertices by
  ``world_scale`` (and divide camera scales by it) for the dataset's units.

Files (``build_pseudo_ground_truth(dataset, out_dir, settings)``): ``out_dir/<index>.safetensors`` per
item (safetensors, no pickles) with ``displacement`` (3, M, M) float32, ``texture`` (3, T, T) in [0, 1],
``texture_mask`` (1, T, T) uint8 0/1, ``camera`` (7,) float32 ``[scale, tx, ty, qw, qx, qy, qz]``
(``Camera.weak_perspective``; renders the map's vertices onto the crop), ``image`` (3, S, S) in [0, 1]
and ``mask`` (1, S, S) in [0, 1] (``storage_dtype`` for texture, image and mask), the item's name and
the fit's reprojection IoU in the file's metadata; then ``out_dir/index.json`` (format version,
settings, dataset description, count, world scale, mean IoU). Every file is written atomically and
``index.json`` last, so a cache with an ``index.json`` is complete. A build first writes
``building.json`` (settings, dataset, world scale): a build interrupted and restarted with the same
settings and dataset keeps the items already written; a build with other settings or another dataset
deletes the old items (only ``<digits>.safetensors``) and starts over. The dataset must not augment
(items must be the same every time they are read): a dataset whose ``config.augment`` is true is refused.

``PseudoGroundTruth(directory)``: the complete cache as a ``torch.utils.data.Dataset`` whose items are
dicts of those six tensors, all float32.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

from backend.checkpoints import atomic_write, atomic_write_json
from backend.fitting.optimise import FitProblem, FitSettings, optimise
from backend.fitting.shape import SymmetricOffsets, TemplateRegulariser
from backend.geometry.camera import Camera
from backend.geometry.metrics import mask_iou
from backend.geometry.ops import uniform_laplacian
from backend.geometry.templates import SymmetricTemplate, uv_sphere_template
from backend.geometry.uv_displacement import UvDisplacement
from backend.meshing.texturing import project_photo
from backend.progress import ProgressCallback, no_progress
from backend.render.renderer import render
from backend.render.settings import RasterSettings

FORMAT_VERSION = 1
"""Version of the cache's layout, in ``index.json``; another version is rebuilt."""

INDEX_FILE = "index.json"
BUILDING_FILE = "building.json"
KEYS = ("displacement", "texture", "texture_mask", "camera", "image", "mask")
"""The tensors of every item, in file and ``PseudoGroundTruth`` item."""

PROGRESS_STAGE = "pseudo-gt"
"""Stage name of ``build_pseudo_ground_truth``'s progress calls."""

_ITEM_FILE = re.compile(r"^\d+\.safetensors$")

Item = dict[str, Any]


@dataclass(frozen=True)
class PseudoGtSettings:
    """How the pseudo ground truth is made (module docstring); all of it decides whether a cache is reused.

    Attributes:
        map_size: M, side of the displacement map (ConvMesh: 32).
        texture_size: T, side of the texture and its mask (ConvMesh: 512; the caller's model size).
        fit_iterations: Adam steps of each photo's shape fit.
        fit_resolution: side of the silhouettes compared with the mask during the fit.
        learning_rate: Adam's step size of the fit.
        laplacian_weight, deformation_weight, flatten_weight: the template fit's regularisers.
        refine_camera: the camera moves with the shape (else the dataset's camera stays fixed).
        erode_pixels: the mask is eroded by this many pixels before texels look the photo up
            (``project_photo``; 2 suits 256-pixel crops).
        scale_samples: most items read to choose the world scale.
        storage_dtype: dtype of texture, image and mask in the files.
        seed: seed of the fit's Chamfer points.
    """

    map_size: int = 32
    texture_size: int = 64
    fit_iterations: int = 100
    fit_resolution: int = 128
    learning_rate: float = 0.01
    laplacian_weight: float = 20.0
    deformation_weight: float = 0.05
    flatten_weight: float = 5e-4
    refine_camera: bool = True
    erode_pixels: int = 2
    scale_samples: int = 256
    storage_dtype: Literal["float16", "float32"] = "float16"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.map_size < 2 or self.texture_size < 2:
            raise ValueError(
                f"map_size and texture_size must be >= 2, got {self.map_size}, {self.texture_size}"
            )
        if self.fit_iterations < 0 or self.scale_samples < 1 or self.erode_pixels < 0:
            raise ValueError(
                "need fit_iterations >= 0, scale_samples >= 1, erode_pixels >= 0; got "
                f"{self.fit_iterations}, {self.scale_samples}, {self.erode_pixels}"
            )
        if self.storage_dtype not in ("float16", "float32"):
            raise ValueError(f"storage_dtype must be 'float16' or 'float32', got {self.storage_dtype!r}")
        self.fit_settings()  # validates the engine's part

    def fit_settings(self) -> FitSettings:
        """The fitting engine's settings of one photo's fit: one hypothesis, from the given camera."""
        return FitSettings(
            iterations=self.fit_iterations,
            resolution=self.fit_resolution,
            hypotheses=1,
            selection_fraction=0.0,
            learning_rate=self.learning_rate,
            laplacian_weight=self.laplacian_weight,
            flatten_weight=self.flatten_weight,
            deformation_weight=self.deformation_weight,
            seed=self.seed,
        )

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object (``from_json`` reads it back)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> PseudoGtSettings:
        """Settings from ``to_json``'s object; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(PseudoGtSettings)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pseudo ground truth settings {unknown}: expected {sorted(known)}")
        return PseudoGtSettings(**data)


def build_pseudo_ground_truth(
    dataset: Dataset[Item],
    out_dir: Path,
    settings: PseudoGtSettings,
    progress: ProgressCallback | None = None,
    *,
    device: torch.device | str = "cpu",
) -> Path:
    """Write (or reuse) the pseudo ground truth of every item of ``dataset`` in ``out_dir``; returns it.

    Args:
        dataset: items with "image" (3, S, S), "mask" (1, S, S) and "camera" (7,) (``training.datasets``;
            e.g. ``CubDataset(..., augment=False)``), without random augmentation.
        out_dir: the cache folder (created).
        settings: how the pseudo ground truth is made.
        progress: ``progress(fraction, "pseudo-gt")`` after every item (may raise ``Cancelled``).
        device: where the fits run (the files do not depend on it beyond float noise).
    """
    report = progress or no_progress
    out_dir = Path(out_dir)
    description = describe_dataset(dataset)
    count = description["length"]
    if _complete(out_dir, settings, description):
        report(1.0, PROGRESS_STAGE)
        return out_dir
    if description.get("augment"):
        raise ValueError(
            "the dataset augments its items (random crops/mirroring): build it with augment=False"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    world_scale = _resume_or_reset(out_dir, settings, description, dataset)

    template = uv_sphere_template().to(device)
    mapping = UvDisplacement(template, settings.map_size).to(device)
    fit_problem = _FitParts.of(template, settings)
    ious: list[float] = []
    report(0.0, PROGRESS_STAGE)
    for index in range(count):
        path = out_dir / f"{index}.safetensors"
        if path.is_file():
            ious.append(_stored_iou(path))
        else:
            item = dataset[index]
            tensors, iou = pseudo_ground_truth_item(item, mapping, fit_problem, settings, world_scale)
            metadata = {"name": str(item.get("name", index)), "iou": f"{iou:.6f}"}
            atomic_write(path, functools.partial(_save, tensors=tensors, metadata=metadata))
            ious.append(iou)
        report((index + 1) / max(count, 1), PROGRESS_STAGE)
    index_data = {
        "format_version": FORMAT_VERSION,
        "settings": settings.to_json(),
        "dataset": description,
        "count": count,
        "world_scale": world_scale,
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
    }
    atomic_write_json(out_dir / INDEX_FILE, index_data)
    (out_dir / BUILDING_FILE).unlink(missing_ok=True)
    return out_dir


def describe_dataset(dataset: Dataset[Item]) -> dict[str, Any]:
    """What identifies a dataset in ``index.json``: its class, length and, where it has them, root,
    split, crop size and whether it augments."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"the dataset must have a length, got {type(dataset).__name__}")
    description: dict[str, Any] = {"class": type(dataset).__name__, "length": len(dataset)}
    for name in ("root", "split"):
        if hasattr(dataset, name):
            description[name] = str(getattr(dataset, name))
    config = getattr(dataset, "config", None)
    for name in ("image_size", "padding", "augment"):
        if hasattr(config, name):
            description[name] = getattr(config, name)
    return description


@dataclass(frozen=True)
class _FitParts:
    """What every photo's fit shares: the template, its vertex map and regulariser, the engine settings."""

    template: SymmetricTemplate
    vertices_of: SymmetricOffsets
    regulariser: TemplateRegulariser
    settings: FitSettings

    @staticmethod
    def of(template: SymmetricTemplate, settings: PseudoGtSettings) -> _FitParts:
        mesh = template.mesh
        device = mesh.vertices.device
        laplacian = uniform_laplacian(mesh.faces, mesh.num_vertices, device=device)
        regulariser = TemplateRegulariser(
            mesh.faces, laplacian, settings.laplacian_weight, settings.deformation_weight
        )
        return _FitParts(template, SymmetricOffsets.of(template), regulariser, settings.fit_settings())


def pseudo_ground_truth_item(
    item: Item, mapping: UvDisplacement, parts: _FitParts, settings: PseudoGtSettings, world_scale: float
) -> tuple[dict[str, Tensor], float]:
    """One item's tensors (CPU, storage dtypes; module docstring) and the reprojection IoU of its mesh."""
    template = parts.template
    device = template.mesh.vertices.device
    image, mask, camera_vector = _item_tensors(item)
    size = image.shape[-1]
    mask_np = mask[0].numpy() > 0.5
    start = camera_vector.clone()
    start[0] = start[0] * world_scale
    start = start.to(device)
    camera = Camera.weak_perspective(start[:1], start[None, 1:3], start[None, 3:7])
    problem = FitProblem(
        template.mesh.faces,
        torch.zeros(1, template.num_free, 3, device=device),
        parts.vertices_of,
        parts.regulariser,
        train_camera=settings.refine_camera,
        camera=camera,
    )
    fit = optimise(problem, mask_np, parts.settings, no_progress)
    displacement = mapping.symmetrize(mapping.to_map(fit.vertices[None].float()))  # (1, 3, M, M)
    vertices = mapping.vertices(displacement)[0]  # (V, 3) the map's own mesh
    fitted_camera = fit.camera.to("cpu", torch.float32)
    weak = fitted_camera.weak
    camera_out = torch.cat([weak.scale.reshape(1), weak.translation.reshape(2), weak.rotation.reshape(4)])

    faces = template.mesh.faces
    silhouette = render(
        vertices.cpu(), faces.cpu(), fitted_camera, RasterSettings(image_size=size, soft=False)
    )
    iou = float(mask_iou(silhouette.alpha[0, ..., 0], torch.from_numpy(mask_np).float(), soft=False))
    colors, known = project_photo(
        vertices, faces, template.mesh.uvs, template.mesh.face_uvs, fitted_camera,
        image.permute(1, 2, 0).numpy(), mask_np, (settings.texture_size, settings.texture_size),
        erode_pixels=settings.erode_pixels,
    )  # fmt: skip
    storage = torch.float16 if settings.storage_dtype == "float16" else torch.float32
    tensors = {
        "displacement": displacement[0].detach().float().cpu().contiguous(),
        "texture": torch.from_numpy(colors).permute(2, 0, 1).clamp(0, 1).to(storage).contiguous(),
        "texture_mask": torch.from_numpy(known)[None].to(torch.uint8).contiguous(),
        "camera": camera_out.float().contiguous(),
        "image": image.to(storage).contiguous(),
        "mask": mask.to(storage).contiguous(),
    }
    return tensors, iou


def _item_tensors(item: Item) -> tuple[Tensor, Tensor, Tensor]:
    """(3, S, S) image, (1, S, S) mask and (7,) camera of a dataset item, float32 on the CPU."""
    missing = [key for key in ("image", "mask", "camera") if key not in item]
    if missing:
        raise ValueError(
            f"pseudo ground truth needs items with 'image', 'mask' and 'camera' (a CUB-layout dataset with "
            f"its sfm file); item {item.get('index', '?')} lacks {missing}"
        )
    image = torch.as_tensor(item["image"], device="cpu").detach().float()
    mask = torch.as_tensor(item["mask"], device="cpu").detach().float()
    camera = torch.as_tensor(item["camera"], device="cpu").detach().float()
    size = image.shape[-1]
    if image.shape != (3, size, size) or mask.shape != (1, size, size) or camera.shape != (7,):
        raise ValueError(
            f"expected image (3, S, S), mask (1, S, S) and camera (7,), got {tuple(image.shape)}, "
            f"{tuple(mask.shape)} and {tuple(camera.shape)}"
        )
    return image, mask, camera


def world_scale_of(dataset: Dataset[Item], samples: int) -> float:
    """The dataset's world scale (module docstring, "Scale") from up to ``samples`` evenly spaced items."""
    if not isinstance(dataset, Sized) or len(dataset) == 0:
        raise ValueError("the dataset is empty: there is nothing to build pseudo ground truth for")
    count = len(dataset)
    chosen = sorted({round(k * (count - 1) / max(samples - 1, 1)) for k in range(min(samples, count))})
    radii = []
    for index in chosen:
        _, mask, camera = _item_tensors(dataset[index])
        area = 4.0 * float((mask > 0.5).float().mean())  # NDC area of the mask
        scale = float(camera[0])
        if area > 0 and scale > 0:
            radii.append(math.sqrt(area / math.pi) / scale)
    if not radii:
        raise ValueError("no sampled item has a non-empty mask and a positive camera scale")
    return float(np.median(radii))


def _complete(out_dir: Path, settings: PseudoGtSettings, description: dict[str, Any]) -> bool:
    """Whether ``out_dir`` holds a finished cache of these settings for this dataset."""
    index = _read_json(out_dir / INDEX_FILE)
    if (
        index is None
        or not _matches(index, settings, description)
        or index.get("count") != description["length"]
    ):
        return False
    return all((out_dir / f"{i}.safetensors").is_file() for i in range(description["length"]))


def _matches(data: dict[str, Any], settings: PseudoGtSettings, description: dict[str, Any]) -> bool:
    return (
        data.get("format_version") == FORMAT_VERSION
        and data.get("settings") == settings.to_json()
        and data.get("dataset") == description
    )


def _resume_or_reset(
    out_dir: Path, settings: PseudoGtSettings, description: dict[str, Any], dataset: Dataset[Item]
) -> float:
    """The world scale of this build: an interrupted build of the same settings and dataset is resumed
    (its items kept), anything else in ``out_dir`` is removed (only its item files and JSON files)."""
    building = _read_json(out_dir / BUILDING_FILE)
    if building is not None and _matches(building, settings, description):
        return float(building["world_scale"])
    (out_dir / INDEX_FILE).unlink(missing_ok=True)
    for path in out_dir.iterdir():
        if _ITEM_FILE.match(path.name):
            path.unlink()
    world_scale = world_scale_of(dataset, settings.scale_samples)
    atomic_write_json(
        out_dir / BUILDING_FILE,
        {
            "format_version": FORMAT_VERSION,
            "settings": settings.to_json(),
            "dataset": description,
            "world_scale": world_scale,
        },
    )
    return world_scale


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _save(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    save_file(tensors, str(path), metadata=metadata)


def _stored_iou(path: Path) -> float:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return float(metadata.get("iou", "nan"))


class PseudoGroundTruth(Dataset[dict[str, Tensor]]):
    """A finished pseudo-ground-truth cache (``build_pseudo_ground_truth``): items are dicts of
    "displacement" (3, M, M), "texture" (3, T, T), "texture_mask" (1, T, T), "camera" (7,), "image"
    (3, S, S) and "mask" (1, S, S), all float32.

    Attributes:
        directory: the cache folder.
        settings: the settings it was built with.
        world_scale: the dataset's world units per template unit.
        mean_iou: mean reprojection IoU of the pseudo-ground-truth meshes.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index = _read_json(self.directory / INDEX_FILE)
        if index is None:
            raise FileNotFoundError(
                f"no pseudo ground truth at {self.directory}: expected {INDEX_FILE} "
                "(written by build_pseudo_ground_truth)"
            )
        if index.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.directory / INDEX_FILE} has format version {index.get('format_version')}, "
                f"expected {FORMAT_VERSION}: rebuild it"
            )
        self.settings = PseudoGtSettings.from_json(index["settings"])
        self.dataset = dict(index["dataset"])
        self.world_scale = float(index["world_scale"])
        self.mean_iou = float(index["mean_iou"])
        self.count = int(index["count"])
        missing = [i for i in range(self.count) if not (self.directory / f"{i}.safetensors").is_file()]
        if missing:
            raise FileNotFoundError(
                f"pseudo ground truth at {self.directory} lacks {len(missing)} item files "
                f"(first: {missing[0]}.safetensors)"
            )

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.count <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} items")
        tensors = load_file(str(self.directory / f"{index % self.count}.safetensors"))
        return {key: tensors[key].float() for key in KEYS}
