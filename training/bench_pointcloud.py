"""``mono2mesh-train bench-pointcloud``: ``pointcloud-poisson`` against ``softras`` and ``fit``, as JSON.

1. Data: a synthetic category in the SoftRas layout (``training.datasets.synthetic``, train and held-out
   val objects, ``views`` random views each), or ``--data`` (a folder in that layout with meshes).
2. Networks: the ``pointcloud-poisson`` and ``softras`` checkpoints given, or trained here on the train
   split for ``--iterations`` / ``--softras-iterations`` steps with their trainers' ``cpu`` presets.
3. Every method reconstructs the same held-out views (the render upsampled to ``--crop`` pixels, its
   mask) through its backend class, as a user's photo would go. Each result is compared with the
   object's ground-truth mesh:

   - ``chamfer``: Chamfer x 100 (DPC's definition, ``backend.geometry.metrics.chamfer_distance``) between
     ``samples`` points on the result's surface and on the true surface;
   - ``iou_points``: the paper's volumetric IoU: both point sets voxelised on 32^3 cells of
     [-0.5, 0.5]^3 (a cell is full when it holds a point);
   - ``iou_solid``: SoftRas's 3D IoU of the solid voxelisation on its 32^3 grid against the dataset's
     voxels (``voxelize_like_softras``);
   - ``silhouette_iou``: the report's re-projection IoU on the crop; ``seconds``: the method's wall time.

   ``pointcloud-poisson`` and ``softras`` predict in the object's canonical frame, which is the ground
   truth's. ``fit`` builds its mesh in its own camera's frame: it is brought into the ground truth's with
   both cameras (its weak-perspective camera against the true look-at camera, treated as weak-perspective
   at the object's distance; ``training.evaluation.to_ground_truth_frame``); the depth along the view
   axis, which one view cannot tell, is set so the centroids agree. The ``points`` row is the network's
   raw point cloud (the paper's own Table 1/2 metric).

Machine and date come with the figures (``backend.bench.machine.machine_info``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from backend.bench.machine import machine_info
from backend.config import Config
from backend.geometry.camera import Camera
from backend.geometry.metrics import chamfer_distance, voxel_iou
from backend.geometry.sampling import sample_surface
from backend.geometry.volumes import voxelize_points
from backend.methods.base import Method, Reconstruction, no_progress
from backend.methods.registry import create_method, parse_options
from training.commands import BenchSpec
from training.config import apply_overrides, apply_preset
from training.datasets.shapenet import ShapeNetRenderings, voxelize_like_softras
from training.datasets.synthetic import SyntheticConfig, generate
from training.evaluation import crop_input, to_ground_truth_frame
from training.pointcloud_poisson import PointCloudTrainConfig
from training.pointcloud_poisson import run as train_pointcloud
from training.softras import SoftRasTrainConfig
from training.softras import run as train_softras

MethodName = Literal["pointcloud-poisson", "softras", "fit"]
METHODS: tuple[MethodName, ...] = ("pointcloud-poisson", "softras", "fit")


class BenchPointCloudOptions(Config):
    """The options of ``mono2mesh-train bench-pointcloud``."""

    category: str = "bird"
    """Synthetic category."""
    objects: int = 240
    """Objects generated."""
    views: int = 8
    """Views per object."""
    val_fraction: float = 0.15
    """Held-out share of the objects."""
    data: Path | None = None
    """Existing SoftRas-layout folder with meshes."""
    pointcloud_checkpoint: Path | None = None
    """A pointcloud-poisson checkpoint (skips its training)."""
    softras_checkpoint: Path | None = None
    """A softras checkpoint (skips its training)."""
    iterations: int = 400
    """pointcloud-poisson training steps."""
    softras_iterations: int = 300
    """softras training steps."""
    eval_objects: int = 20
    """Held-out objects reconstructed."""
    eval_views: int = 1
    """Views per held-out object."""
    crop: int = 128
    """Side the renders are upsampled to."""
    samples: int = 4096
    """Surface points per Chamfer set."""
    methods: tuple[MethodName, ...] = METHODS
    """Comma-separated methods to run."""
    threads: int = 2
    """Torch CPU threads."""
    out: Path = Path("runs/bench-pointcloud")
    """Work folder."""
    seed: int = 0
    """Seed of the data, the trainings and the surface samples."""


def run(args: BenchPointCloudOptions) -> int:
    torch.set_num_threads(args.threads)
    methods: list[str] = list(dict.fromkeys(args.methods))
    data = args.data or args.out / "data"
    if args.data is None and not (data / f"{args.category}_val_images.npz").is_file():
        generate(
            data,
            SyntheticConfig(
                category=args.category, n=args.objects, layout="shapenet", views=args.views,
                seed=args.seed, splits=(("train", 1 - args.val_fraction), ("val", args.val_fraction)),
            ),
        )  # fmt: skip
    results: dict[str, Any] = {"benchmark": "pointcloud", "machine": machine_info(), "data": str(data)}
    checkpoints = _checkpoints(methods, data, args, results)
    eval_set = ShapeNetRenderings(data, None, "val", views_per_item=args.eval_views, seed=args.seed)
    count = min(args.eval_objects, len(eval_set))
    instances = {name: create_method(name, "cpu", checkpoints.get(name)) for name in methods}
    scores: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in [*methods, "points"]}
    generator = torch.Generator().manual_seed(args.seed)
    for index in range(count):
        item = eval_set[index]
        truth = eval_set.ground_truth_mesh(index)
        if truth is None:
            raise ValueError(f"{data} has no ground-truth meshes: the benchmark needs a synthetic set")
        truth_points = sample_surface(truth.vertices.float(), truth.faces, args.samples, generator)
        for view in range(item["image"].shape[0]):
            image, mask = crop_input(item["image"][view], item["mask"][view, 0], args.crop)
            camera_true = Camera.look_at(
                item["distance"][view], item["elevation"][view], item["azimuth"][view]
            )
            for name, method in instances.items():
                clock = time.perf_counter()
                result = _reconstruct(method, name, image, mask, args.crop)
                seconds = time.perf_counter() - clock
                vertices = result.mesh.vertices.float()
                if name == "fit":
                    vertices = to_ground_truth_frame(
                        vertices, result.camera, camera_true, truth_points.mean(0)
                    )
                ours = sample_surface(vertices, result.mesh.faces, args.samples, generator)
                _score(scores[name], ours, truth_points, item["voxels"])
                scores[name]["iou_solid"].append(
                    100 * float(voxel_iou(voxelize_like_softras(vertices, result.mesh.faces), item["voxels"]))
                )
                scores[name]["silhouette_iou"].append(float(result.report.silhouette_iou or 0.0))
                scores[name]["seconds"].append(seconds)
                if name == "pointcloud-poisson":
                    points, _ = method.predict(image, mask)  # type: ignore[attr-defined]
                    _score(scores["points"], points, truth_points, item["voxels"])
        print(json.dumps({"object": index, "of": count}), flush=True)
    results["eval_objects"] = count
    results["eval_views"] = args.eval_views
    results["methods"] = {
        name: {key: round(float(np.mean(values)), 4) for key, values in table.items()}
        for name, table in scores.items()
        if table
    }
    print(json.dumps(results, indent=2))
    return 0


def _score(table: dict[str, list[float]], points: Tensor, truth_points: Tensor, voxels: Tensor) -> None:
    """Chamfer x 100 and the paper's point-voxel IoU x 100 of (N, 3) points against the truth's."""
    table["chamfer"].append(float(chamfer_distance(points.float(), truth_points).total))
    table["iou_points"].append(100 * float(voxel_iou(voxelize_points(points), voxelize_points(truth_points))))


def _reconstruct(method: Method, name: str, image: np.ndarray, mask: np.ndarray, crop: int) -> Reconstruction:
    options: dict[str, Any] = {"crop_size": crop, "texture_size": 256 if name == "pointcloud-poisson" else 64}
    return method.reconstruct(image, mask, parse_options(name, options), no_progress)


def _checkpoints(
    methods: list[str], data: Path, args: BenchPointCloudOptions, results: dict[str, Any]
) -> dict[str, str]:
    """Checkpoint path per network method: the given one, or one trained here (its time recorded)."""
    found: dict[str, str] = {}
    common = {"data": str(data), "device": "cpu", "seed": args.seed, "progress": False, "tensorboard": False}
    common |= {"eval_every": 0, "checkpoint_every": 0, "resume": ""}
    if "pointcloud-poisson" in methods:
        if args.pointcloud_checkpoint is not None:
            found["pointcloud-poisson"] = str(args.pointcloud_checkpoint)
        else:
            config = apply_overrides(
                apply_preset(PointCloudTrainConfig(), "cpu"),
                {**common, "iterations": args.iterations, "out": str(args.out / "run-pointcloud"),
                 "image_every": args.iterations},
            )  # fmt: skip
            clock = time.perf_counter()
            found["pointcloud-poisson"] = str(train_pointcloud(config).checkpoint)
            results["pointcloud_train_s"] = round(time.perf_counter() - clock, 1)
            results["pointcloud_config"] = {
                "num_points": config.model.num_points,
                "iterations": args.iterations,
            }
    if "softras" in methods:
        if args.softras_checkpoint is not None:
            found["softras"] = str(args.softras_checkpoint)
        else:
            config_s = apply_overrides(
                apply_preset(SoftRasTrainConfig(), "cpu"),
                {**common, "iterations": args.softras_iterations, "out": str(args.out / "run-softras"),
                 "image_every": args.softras_iterations, "batch_size": 8,
                 "lr_milestones": [int(args.softras_iterations * 0.8)]},
            )  # fmt: skip
            clock = time.perf_counter()
            found["softras"] = str(train_softras(config_s).checkpoint)
            results["softras_train_s"] = round(time.perf_counter() - clock, 1)
    return found


COMMAND = BenchSpec(
    "bench-pointcloud",
    "pointcloud-poisson vs softras and fit on held-out synthetic objects: Chamfer and IoU (JSON)",
    __doc__, BenchPointCloudOptions, run,
)  # fmt: skip
"""``mono2mesh-train bench-pointcloud``: one flag per field of ``BenchPointCloudOptions``."""
