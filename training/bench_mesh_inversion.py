"""``mono2mesh-train bench-mesh-inversion``: ``mesh-inversion`` against ``adaptive-flow``, ``softras`` and
``fit`` on held-out synthetic birds, with MeshInversion's FIDs and its ablation (Table 3), as JSON.

1. Data: a synthetic bird set in CMR's CUB layout (``training.datasets.synthetic``, layout "cub", train and
   test splits, one view per bird with its weak-perspective camera ``[scale, tx, ty, qw, qx, qy, qz]`` and
   its ground-truth mesh, ``training.evaluation.ground_truth_mesh``), or ``--data`` (a CUB-layout folder
   with ground-truth meshes and a test split).
2. Checkpoints: ``--checkpoint`` (the mesh-inversion GAN), ``--adaptive-flow-checkpoint`` and
   ``--softras-checkpoint`` given, or trained here on the CPU for every method ``--methods`` lists
   (``--train-set METHOD:KEY=VALUE`` overrides a training configuration): the GAN with its trainer's
   ``cpu`` preset for ``--gan-iterations`` steps on the train split; adaptive-flow's stage 1 then stage 2
   (``cpu`` preset, ``--stage1-iterations`` and ``--stage2-iterations``) on the same train split; softras
   (``cpu`` preset, ``--softras-iterations``) on a separate synthetic bird set in the SoftRas layout (its
   network learns from several views of each object). A method not listed is neither trained nor run;
   ``fit`` needs no checkpoint. Training times are recorded (``training``).
3. Every method reconstructs the same ``--eval-objects`` test items (image and mask at ``--crop`` pixels)
   through its backend class (``create_method(name, "cpu", checkpoint).reconstruct``), as a user's photo
   would go (``--set`` sets mesh-inversion's options, ``--method-set METHOD:KEY=VALUE`` another method's).
   Per result:

   - ``input_iou``: the report's silhouette IoU (the paper's mask IoU of the re-rendered input view);
   - the prediction is brought into the ground truth's object frame with its own camera and the true one
     (``training.evaluation.align_reconstruction``, the shared evaluator's alignment: for these
     weak-perspective true cameras ``to_ground_truth_frame``; the depth along the view axis, which one view
     cannot tell, is set so the area-weighted surface centroids agree). ``novel_iou`` and ``novel_ssim``: the
     aligned prediction and the ground-truth mesh, textured, unlit on white, hard rasterisation, seen by
     the TRUE camera turned by 90, 180 and 270 degrees about the up axis: silhouette IoU and SSIM
     (``training.evaluation.novel_view_scores``);
   - ``chamfer``: Chamfer x 100 between ``--samples`` surface points of the aligned prediction and of the
     truth;
   - ``input_rgb_l1``: mean |render - photo| over the input mask at the input view (the method's own
     camera, colours in [0, 1]): how faithful the texture is where the photo shows it, a stand-in for FID
     when Inception-v3 weights are missing;
   - ``seconds``: the reconstruction's wall time; for mesh-inversion also its report's phase timings
     (``timings``: pose, z_search, stage_1 ... stage_4, texture).

4. FID_1, FID_10 and FID_12 per method, MeshInversion's protocol: FID_1 between the re-rendered input
   views (masked, black background) and the masked inputs; FID_12 renders each aligned reconstruction by
   the true camera turned by the 12 azimuths 0, 30, ..., 330 degrees about its up axis on white, FID_10
   the same without 90 and 270; their real set is the masked test images on white. Inception-v3 with
   ImageNet weights (``training.losses.fid.FidMetric``) when they are on this machine and ``--pretrained``
   is not "none"; otherwise each is ``"unavailable: no Inception-v3 ImageNet weights"``, never a number.
5. The ablation of the paper's Table 3 at CPU scale, mesh-inversion only (when it has a checkpoint), as
   variants of its options on the same items (``--ablation``): ``full`` (texture_loss chamfer, mask_loss
   chamfer: the method's row), ``texture_l1``, ``texture_perceptual`` and ``mask_iou``; the same metrics
   per variant. ``--set`` applies to every variant; a variant sets its own loss options over it.

Progress lines are JSON objects; the final JSON is printed and written to ``<out>/bench.json``. Machine and
date come with the figures (``backend.bench.machine.machine_info``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch import Tensor

from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag
from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.geometry.sampling import sample_surface
from backend.methods.base import MethodError, MethodOptions, Reconstruction, no_progress
from backend.methods.registry import create_method, parse_options
from backend.reconstruct_command import parse_option_pairs
from backend.render.renderer import RenderOutput, render_mesh
from backend.render.settings import RasterSettings
from training.adaptive_flow import run as train_adaptive_flow
from training.adaptive_flow import stage_config
from training.commands import BenchSpec
from training.config import PretrainedPolicy, apply_overrides, apply_preset
from training.datasets.cub import CubDataset
from training.datasets.synthetic import SyntheticConfig, generate
from training.evaluation import (
    WHITE,
    align_reconstruction,
    camera_from_vector,
    crop_input,
    ground_truth_mesh,
    mean_metrics,
    novel_view_scores,
    surface_centroid,
    surface_chamfer,
)
from training.losses.fid import FidAccumulator, FidMetric
from training.mesh_inversion import MeshInversionTrainConfig
from training.mesh_inversion import run as train_gan
from training.softras import SoftRasTrainConfig
from training.softras import run as train_softras

MethodName = Literal["mesh-inversion", "adaptive-flow", "softras", "fit"]
METHODS: tuple[MethodName, ...] = ("mesh-inversion", "adaptive-flow", "softras", "fit")

Variant = Literal["full", "texture_l1", "texture_perceptual", "mask_iou"]
VARIANTS: dict[str, dict[str, str]] = {
    "full": {"texture_loss": "chamfer", "mask_loss": "chamfer"},
    "texture_l1": {"texture_loss": "l1"},
    "texture_perceptual": {"texture_loss": "perceptual"},
    "mask_iou": {"mask_loss": "iou"},
}
"""The ablation (the paper's Table 3): variant -> mesh-inversion options it sets."""

FID_AZIMUTHS = tuple(30.0 * step for step in range(12))
"""FID_12's azimuths (degrees); FID_10 leaves out ``FID_10_LEFT_OUT``."""
FID_10_LEFT_OUT = (90.0, 270.0)
FIDS = ("fid_1", "fid_10", "fid_12")
NO_INCEPTION = "unavailable: no Inception-v3 ImageNet weights"
TOO_FEW = "unavailable: fewer than 2 test items"

NOTES = {
    "input_iou": "the report's silhouette IoU of the re-rendered input view (the paper's mask IoU)",
    "novel_iou": "hard silhouette IoU, aligned prediction vs ground truth, true camera turned 90/180/270 deg",
    "novel_ssim": "SSIM of the same views, textured, unlit on white",
    "chamfer": "Chamfer x 100 between surface samples of the aligned prediction and of the ground truth",
    "input_rgb_l1": "mean |render - photo| over the input mask at the input view (the method's camera): "
    "texture faithfulness, a stand-in for FID when Inception-v3 weights are missing",
    "fid": "FID_1: input views (masked, black) vs masked inputs; FID_12: 12 azimuths 0..330 on white vs "
    "masked inputs on white; FID_10: without 90 and 270",
}


class BenchMeshInversionOptions(Config):
    """The options of ``mono2mesh-train bench-mesh-inversion``."""

    objects: int = 240
    """Synthetic birds generated in the CUB layout."""
    test_fraction: float = 0.2
    """Held-out share of the birds (the test split)."""
    size: int = 128
    """Side of the generated images."""
    background: str = "noise"
    """Background of the generated images: plain, noise or image."""
    data: Path | None = None
    """Existing CUB-layout folder with ground-truth meshes (train and test splits)."""
    checkpoint: Path | None = None
    """A mesh-inversion GAN checkpoint (skips its training)."""
    adaptive_flow_checkpoint: Path | None = None
    """An adaptive-flow checkpoint (skips its training)."""
    softras_checkpoint: Path | None = None
    """A softras checkpoint (skips its training)."""
    gan_iterations: int = 1500
    """mesh-inversion GAN training steps (cpu preset)."""
    stage1_iterations: int = 200
    """adaptive-flow stage-1 steps."""
    stage2_iterations: int = 300
    """adaptive-flow stage-2 steps."""
    softras_objects: int = 240
    """Objects of softras's synthetic set (SoftRas layout)."""
    softras_views: int = 8
    """Views per object of softras's set."""
    softras_iterations: int = 300
    """softras training steps."""
    eval_objects: int = 12
    """Held-out birds reconstructed."""
    crop: int = 128
    """Side of the input crops and of the renders compared."""
    samples: int = 4096
    """Surface points per Chamfer set."""
    methods: tuple[MethodName, ...] = METHODS
    """Comma-separated methods to run."""
    ablation: tuple[Variant, ...] = ("full", "texture_l1", "texture_perceptual", "mask_iou")
    """Comma-separated mesh-inversion variants (the paper's Table 3)."""
    overrides: Annotated[tuple[str, ...], Flag("--set", repeat=True, metavar="KEY=VALUE")] = ()
    """mesh-inversion options for every variant, e.g. random_z=16 (repeatable)."""
    method_overrides: Annotated[
        tuple[str, ...], Flag("--method-set", repeat=True, metavar="METHOD:KEY=VALUE")
    ] = ()
    """Another method's options, e.g. fit:iterations=100 (repeatable)."""
    train_overrides: Annotated[
        tuple[str, ...], Flag("--train-set", repeat=True, metavar="METHOD:KEY=VALUE")
    ] = ()
    """A training configuration's overrides, e.g. mesh-inversion:batch_size=4 (repeatable; adaptive-flow:
    both stages)."""
    pretrained: PretrainedPolicy = "auto"
    """Pretrained weights (Inception-v3 for the FIDs, the trainers' networks); none uses none."""
    pretrained_path: str = ""
    """File or folder of the pretrained weights; empty looks them up on this machine."""
    threads: int = 2
    """Torch CPU threads."""
    out: Path = Path("runs/bench-mesh-inversion")
    """Work folder (data, training runs, bench.json)."""
    seed: int = 0
    """Seed of the data, the trainings and the surface samples."""


def method_options(name: str, args: BenchMeshInversionOptions, variant: str | None = None) -> MethodOptions:
    """The options ``name`` runs with: the crop, a smaller texture for the engine's methods, then its
    ``--method-set`` pairs and, for mesh-inversion, ``--set`` and the ablation ``variant``'s losses;
    ``MethodError`` when they are not valid."""
    options: dict[str, Any] = {"crop_size": args.crop}
    if name in ("fit", "softras"):
        options["texture_size"] = 64
    options |= parse_option_pairs(_pairs_of(name, args.method_overrides))
    if name == "mesh-inversion":
        options |= parse_option_pairs(list(args.overrides))
        options |= VARIANTS[variant] if variant is not None else {}
    return parse_options(name, options)


def _check_pairs(args: BenchMeshInversionOptions) -> None:
    """``MethodError`` for a ``--method-set`` or ``--train-set`` pair that names no method."""
    for flag, pairs in (("--method-set", args.method_overrides), ("--train-set", args.train_overrides)):
        for pair in pairs:
            if ":" not in pair or pair.partition(":")[0] not in METHODS:
                raise MethodError(f"{flag} takes METHOD:KEY=VALUE, METHOD one of {METHODS}; got {pair!r}")


def _pairs_of(name: str, pairs: tuple[str, ...]) -> list[str]:
    """The ``KEY=VALUE`` parts of the ``METHOD:KEY=VALUE`` pairs that name method ``name``."""
    prefix = f"{name}:"
    return [pair.removeprefix(prefix) for pair in pairs if pair.startswith(prefix)]


@dataclass
class Scored:
    """One reconstruction scored: per-sample metric values, the prediction aligned with the ground truth
    and its render at the input view."""

    values: dict[str, list[float]]
    aligned: TexturedMesh
    input_view: RenderOutput


def score_reconstruction(
    result: Reconstruction,
    image: np.ndarray,
    mask: np.ndarray,
    truth: TexturedMesh,
    camera_true: Camera,
    truth_points: Tensor,
    samples: int,
    generator: torch.Generator,
) -> Scored:
    """The metrics of one reconstruction of the (S, S, 3) ``image`` and (S, S) ``mask`` against the ground
    truth seen by ``camera_true`` (module docstring, step 3), rendered at S pixels."""
    settings = RasterSettings(image_size=image.shape[0], soft=False)
    mesh = result.mesh.to("cpu")
    centre_true = surface_centroid(truth.vertices, truth.faces)
    aligned = mesh.with_vertices(align_reconstruction(result, camera_true, centre_true))

    def ours(camera: Camera) -> RenderOutput:
        return render_mesh(aligned, camera, settings, WHITE)

    values = novel_view_scores(ours, camera_true, truth, camera_true, settings)
    values["chamfer"] = [surface_chamfer(aligned.vertices, aligned.faces, truth_points, samples, generator)]
    iou = result.report.silhouette_iou
    values["input_iou"] = [float(iou) if iou is not None else float("nan")]
    input_view = render_mesh(mesh, result.camera, settings)  # unlit, black background
    inside = torch.from_numpy(mask)
    difference = (input_view.rgb[0] - torch.from_numpy(image)).abs().mean(-1)  # (S, S)
    values["input_rgb_l1"] = [float(difference[inside].mean())]
    return Scored(values, aligned, input_view)


class FidSets:
    """FID_1, FID_10 and FID_12 of one row (module docstring, step 4): one accumulator each."""

    def __init__(self, accumulator: Callable[[], FidAccumulator]) -> None:
        self.sets = {name: accumulator() for name in FIDS}
        self.active = all(fid.active for fid in self.sets.values())

    def add(self, image: np.ndarray, mask: np.ndarray, scored: Scored, camera_true: Camera) -> None:
        """One item: the (S, S, 3) input and its (S, S) mask, the reconstruction's renders."""
        photo = torch.from_numpy(image).permute(2, 0, 1)[None]  # (1, 3, S, S)
        alpha = torch.from_numpy(mask).float()[None, None]
        on_black, on_white = photo * alpha, photo * alpha + (1 - alpha)
        settings = RasterSettings(image_size=image.shape[0], soft=False)
        cameras = Camera.cat([camera_true] * len(FID_AZIMUTHS)).turned(
            torch.tensor(FID_AZIMUTHS, device=photo.device)
        )
        views = render_mesh(scored.aligned, cameras, settings, WHITE).rgb.permute(0, 3, 1, 2)  # (12, 3, S, S)
        kept = [k for k, azimuth in enumerate(FID_AZIMUTHS) if azimuth not in FID_10_LEFT_OUT]
        self.sets["fid_1"].update(real=on_black, fake=scored.input_view.rgb.permute(0, 3, 1, 2))
        self.sets["fid_12"].update(real=on_white, fake=views)
        self.sets["fid_10"].update(real=on_white, fake=views[kept])

    def results(self) -> dict[str, float | str]:
        """Each FID (rounded), or why it is not a number."""
        if not self.active:
            return dict.fromkeys(FIDS, NO_INCEPTION)
        values = {name: fid.compute() for name, fid in self.sets.items()}
        return {name: TOO_FEW if value is None else round(value, 3) for name, value in values.items()}


@dataclass
class Row:
    """One row of the report (a method, or an ablation variant) and what it has gathered."""

    fid: FidSets
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    timings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, scored: Scored, seconds: float, timings: dict[str, float] | None) -> None:
        for name, numbers in scored.values.items():
            self.values[name] += numbers
        self.values["seconds"].append(seconds)
        for phase, value in (timings or {}).items():
            self.timings[phase].append(value)

    def summary(self) -> dict[str, Any]:
        table: dict[str, Any] = {k: round(v, 4) for k, v in mean_metrics(self.values).items()}
        if self.timings:
            table["timings"] = {phase: round(float(np.mean(v)), 3) for phase, v in self.timings.items()}
        return table | self.fid.results()


def run(args: BenchMeshInversionOptions) -> int:
    methods: list[str] = list(dict.fromkeys(args.methods))
    variants: list[str] = list(dict.fromkeys(args.ablation))
    try:  # every option is checked before anything is generated or trained
        _check_pairs(args)
        options = {name: method_options(name, args) for name in methods}
        variant_options = {name: method_options("mesh-inversion", args, name) for name in variants}
    except MethodError as error:
        return COMMAND.error(error)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or args.out / "data"
    if args.data is None and not (data / "data" / "test_cub_cleaned.mat").is_file():
        generate(
            data,
            SyntheticConfig(
                category="bird", n=args.objects, layout="cub", size=args.size, background=args.background,
                seed=args.seed, splits=(("train", 1 - args.test_fraction), ("test", args.test_fraction)),
            ),
        )  # fmt: skip
    results: dict[str, Any] = {"benchmark": "mesh-inversion", "machine": machine_info(), "data": str(data)}
    checkpoints = _checkpoints(methods, data, args, results)
    eval_set = CubDataset(data, "test", image_size=args.crop, augment=False, seed=args.seed)
    count = min(args.eval_objects, len(eval_set))
    fid_metric = FidMetric(args.pretrained, args.pretrained_path or None)
    with_fid = fid_metric.available

    def new_row() -> Row:
        return Row(FidSets(lambda: fid_metric.accumulator("cpu")))

    rows = {name: new_row() for name in methods}
    ablation = {name: new_row() for name in variants} if "mesh-inversion" in checkpoints else {}
    planned = [(name, options[name], rows[name]) for name in methods]
    planned += [("mesh-inversion", variant_options[name], row) for name, row in ablation.items()]
    runs: dict[tuple[str, str], tuple[MethodOptions, list[Row]]] = {}
    for name, method_opts, row in planned:  # equal options share one run (the method row and "full")
        runs.setdefault((name, method_opts.model_dump_json()), (method_opts, []))[1].append(row)
    instances = {name: create_method(name, "cpu", checkpoints.get(name)) for name, _ in runs}
    generator = torch.Generator().manual_seed(args.seed)
    for index in range(count):
        item = eval_set[index]
        truth = ground_truth_mesh(eval_set, index)
        if truth is None or "camera" not in item:
            raise ValueError(
                f"{data} has no ground-truth meshes or cameras: the benchmark needs a synthetic set"
            )
        camera_true = camera_from_vector(item["camera"][None])
        image, mask = crop_input(item["image"], item["mask"][0], args.crop)
        truth = truth.to("cpu")
        truth = truth.with_vertices(truth.vertices.float())
        truth_points = sample_surface(truth.vertices, truth.faces, args.samples, generator)
        for (name, _), (method_opts, sharing) in runs.items():
            clock = time.perf_counter()
            result = instances[name].reconstruct(image, mask, method_opts, no_progress)
            seconds = time.perf_counter() - clock
            scored = score_reconstruction(
                result, image, mask, truth, camera_true, truth_points, args.samples, generator
            )
            timings = result.report.timings if name == "mesh-inversion" else None
            for row in sharing:
                row.add(scored, seconds, timings)
            if with_fid:
                for row in sharing:
                    row.fid.add(image, mask, scored, camera_true)
        print(json.dumps({"object": index, "of": count}), flush=True)
    results["eval_objects"] = count
    results["crop"] = args.crop
    results["options"] = {  # what each method ran with, besides its defaults
        name: method_opts.model_dump(mode="json", exclude_defaults=True)
        for name, method_opts in options.items()
    }
    results["fid"] = "inception-v3" if with_fid else NO_INCEPTION
    results["notes"] = NOTES
    results["methods"] = {name: row.summary() for name, row in rows.items()}
    if ablation:
        results["ablation"] = {
            name: {"options": VARIANTS[name]} | row.summary() for name, row in ablation.items()
        }
    elif variants:
        results["ablation"] = "not run: no mesh-inversion checkpoint (give --checkpoint or list the method)"
    text = json.dumps(results, indent=2)
    (args.out / "bench.json").write_text(text)
    print(text)
    return 0


def _checkpoints(
    methods: list[str], data: Path, args: BenchMeshInversionOptions, results: dict[str, Any]
) -> dict[str, str]:
    """Checkpoint path per network method: the given one, or one trained here for a listed method (its
    time recorded under ``training``)."""
    given = {
        "mesh-inversion": args.checkpoint,
        "adaptive-flow": args.adaptive_flow_checkpoint,
        "softras": args.softras_checkpoint,
    }
    found = {name: str(path) for name, path in given.items() if path is not None}
    training: dict[str, Any] = {name: {"checkpoint": path, "given": True} for name, path in found.items()}
    results["training"] = training
    common = {"device": "cpu", "seed": args.seed, "progress": False, "tensorboard": False, "resume": ""}
    common |= {"eval_every": 0, "checkpoint_every": 0, "pretrained": args.pretrained}
    common |= {"pretrained_path": args.pretrained_path}
    trainers: dict[str, Callable[[], tuple[str, dict[str, Any]]]] = {
        "mesh-inversion": lambda: _train_gan(data, args, common),
        "adaptive-flow": lambda: _train_adaptive_flow(data, args, common),
        "softras": lambda: _train_softras(args, common),
    }
    for name, train in trainers.items():
        if name in methods and name not in found:
            clock = time.perf_counter()
            found[name], record = train()
            training[name] = {"checkpoint": found[name], "seconds": round(time.perf_counter() - clock, 1)}
            training[name] |= record
            print(json.dumps({"trained": name, **training[name]}), flush=True)
    return found


def _train_gan(
    data: Path, args: BenchMeshInversionOptions, common: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    config = apply_overrides(
        apply_preset(MeshInversionTrainConfig(), "cpu"),
        {**common, "data": str(data), "iterations": args.gan_iterations, "out": str(args.out / "run-gan"),
         "image_every": args.gan_iterations},
    )  # fmt: skip
    config = apply_overrides(config, _pairs_of("mesh-inversion", args.train_overrides))
    result = train_gan(config)
    assert result.checkpoint is not None, "a training run writes its final checkpoint"
    model = config.model
    return str(result.checkpoint), {
        "iterations": config.iterations,
        "model": {"texture_size": model.texture_size, "mesh_size": model.mesh_size, "width": model.width},
    }


def _train_adaptive_flow(
    data: Path, args: BenchMeshInversionOptions, common: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    stages: list[str] = []
    checkpoint = ""
    for stage, iterations in ((1, args.stage1_iterations), (2, args.stage2_iterations)):
        extra = [f"iterations={iterations}", f"image_every={iterations}", f"eval_items={args.eval_objects}"]
        if stage == 2:
            extra.append(f"stage1_checkpoint={checkpoint}")
        out = args.out / f"run-adaptive-flow-stage{stage}"
        config = stage_config(data, stage, out, seed=args.seed, overrides=extra)
        config = apply_overrides(config, common)
        result = train_adaptive_flow(
            apply_overrides(config, _pairs_of("adaptive-flow", args.train_overrides))
        )
        assert result.checkpoint is not None, "a training run writes its final checkpoint"
        checkpoint = str(result.checkpoint)
        stages.append(checkpoint)
    return checkpoint, {"iterations": [args.stage1_iterations, args.stage2_iterations], "stages": stages}


def _train_softras(args: BenchMeshInversionOptions, common: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = args.out / "data-softras"
    if not (data / "bird_val_images.npz").is_file():
        generate(
            data,
            SyntheticConfig(
                category="bird", n=args.softras_objects, layout="shapenet", views=args.softras_views,
                seed=args.seed, splits=(("train", 0.85), ("val", 0.15)),
            ),
        )  # fmt: skip
    iterations = args.softras_iterations
    config = apply_overrides(
        apply_preset(SoftRasTrainConfig(), "cpu"),
        {**common, "data": str(data), "iterations": iterations, "out": str(args.out / "run-softras"),
         "image_every": iterations, "batch_size": 8, "lr_milestones": [max(int(iterations * 0.8), 1)]},
    )  # fmt: skip
    result = train_softras(apply_overrides(config, _pairs_of("softras", args.train_overrides)))
    assert result.checkpoint is not None, "a training run writes its final checkpoint"
    return str(result.checkpoint), {"iterations": iterations, "data": str(data)}


COMMAND = BenchSpec(
    "bench-mesh-inversion",
    "mesh-inversion vs adaptive-flow, softras and fit on held-out synthetic birds: IoU, SSIM, Chamfer, "
    "FID, ablation (JSON)",
    __doc__, BenchMeshInversionOptions, run,
)  # fmt: skip
"""``mono2mesh-train bench-mesh-inversion``: one flag per field of ``BenchMeshInversionOptions``."""
