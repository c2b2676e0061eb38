"""``mono2mesh-train bench-novel-view``: how a method's shapes look from where the photo was not taken, on
held-out synthetic objects with ground-truth meshes, against the flat cut-out of the same silhouette.

1. Items: for each category of ``--categories`` (bird, car, chair), ``--objects`` held-out objects, each
   seen from ``--views`` random side-ish views. Object ``i`` of a category is object number
   ``HELD_OUT_START + i`` (1,000,000 + i) of the synthetic generator's stream
   (``training.datasets.synthetic_object.make_object`` with ``default_rng((seed, category code, 1000000 +
   i, 0))``): no generated training set (objects 0 .. n - 1) holds it. Its views, lighting and
   backgrounds come from ``default_rng((seed, category code, 1000000 + i, 1))``: look-at cameras (SoftRas's
   15 degree half angle) at an azimuth drawn uniformly from +-[30, 150] degrees (either side, never the
   front or the back), elevation and distance from the category's ``CAMERA_RANGES``; rendered at ``--size``
   pixels over a ``--background`` ("plain", "noise" or "image": ``synthetic_texture.background``) with
   random Lambert lighting (``synthetic_render.render_views``, 2 x 2 supersampled). The input mask is the
   TRUE one: the render's alpha > 0.5. The same seed gives the same items.
2. Every method of ``--methods`` (default ``fit``) reconstructs each photo through its backend class
   (``create_method(name, "cpu", checkpoint).reconstruct``), as a user's photo would go: ``crop_size`` =
   ``--size``, ``texture_size`` 64 for the engine's methods (the texture does not change any score here),
   then the ``--method-set METHOD:KEY=VALUE`` pairs; ``--checkpoint METHOD=PATH`` for a network method.
3. Scores (``training.evaluation``: ``align_reconstruction``, ``score_aligned``): the result is brought into
   the truth's frame (each vertex on the true camera's ray through its crop position; the depth along the
   view axis, which one view cannot tell, set so the area-weighted centroids agree), then

   - ``input_iou``: its silhouette through the true camera against the input mask;
   - ``novel_iou_45`` ... ``novel_iou_180``: silhouette IoU of the aligned result and of the truth, both
     turned by 45, 90, 135 and 180 degrees (``--turns``) about the true camera's vertical axis through the
     truth's centroid (``--axis view``; ``--axis world``: about the world's, i.e. the object's, up axis
     through it), and ``novel_iou_mean`` their mean;
   - ``chamfer``: Chamfer x 100 between ``--samples`` surface points of the aligned result and of the truth;
   - ``report_iou``: the method's own report's silhouette IoU; ``seconds``: its wall time per photo.

   Silhouettes are hard renders at twice the side averaged down (a pixel is in when more than half of it is
   covered), as the input masks are.
4. The baseline, ``<method>/flat``: the same aligned result flattened to zero thickness (each vertex moved
   along its ray to the centroid's depth: ``flat_cutout``). Its input silhouette is the method's; at 90
   degrees it is a line. A shape that does not beat it at the novel views has no useful depth.

Output: one JSON progress line per item; the final JSON (printed and written to ``<out>/bench.json``)
holds, per row (each method and its ``/flat``), the means per category and ``overall`` (the mean over
every item), ``--per-item`` values when asked, the items' settings and the machine
(``backend.bench.machine.machine_info``). ``--save-previews`` writes ``<out>/previews/<category>_<object>
_<view>_<method>.png`` per item and method: a strip of the truth (top) and the result (bottom), textured and
lit, at the input view and each turn.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from PIL import Image

from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag
from backend.geometry.camera import SOFTRAS_VIEWING_ANGLE, Camera
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import MethodError, MethodOptions, Reconstruction, no_progress
from backend.methods.registry import create_method, method_names, parse_options
from backend.reconstruct_command import parse_option_pairs
from backend.render.renderer import Lighting, render
from backend.render.settings import RasterSettings
from training.commands import BenchSpec
from training.datasets.synthetic import CATEGORIES
from training.datasets.synthetic_object import make_object
from training.datasets.synthetic_render import CAMERA_RANGES, random_lighting, render_views
from training.datasets.synthetic_texture import BACKGROUNDS, background
from training.evaluation import (
    VIEW_TURNS,
    GroundTruth,
    TurnAxis,
    align_reconstruction,
    finite_mean,
    flat_cutout,
    score_aligned,
    surface_centroid,
    turned_about,
)

HELD_OUT_START = 1_000_000
"""Held-out object i of a category is the generator's object ``HELD_OUT_START + i`` (module docstring)."""

SIDE_AZIMUTH = (30.0, 150.0)
"""|azimuth| range (degrees) of the side-ish views, on either side."""

FLAT = "flat"
"""Suffix of the flat cut-out rows: ``<method>/flat``."""

PREVIEW_LIGHT = Lighting(
    ambient=0.55, diffuse=0.45, light_direction=(0.3, 0.5, 1.0), background=(1.0, 1.0, 1.0)
)
"""Lighting of the preview strips."""


class BenchNovelViewOptions(Config):
    """The options of ``mono2mesh-train bench-novel-view``."""

    categories: tuple[str, ...] = CATEGORIES
    """Comma-separated synthetic categories."""
    objects: int = 6
    """Held-out objects per category."""
    views: int = 1
    """Side-ish views per object."""
    size: int = 128
    """Side of the photos, the crops and the silhouettes compared."""
    background: str = "noise"
    """Background of the photos: plain, noise or image."""
    methods: tuple[str, ...] = ("fit",)
    """Comma-separated methods (backend registry names)."""
    checkpoints: Annotated[tuple[str, ...], Flag("--checkpoint", repeat=True, metavar="METHOD=PATH")] = ()
    """A network method's checkpoint (repeatable)."""
    method_overrides: Annotated[
        tuple[str, ...], Flag("--method-set", repeat=True, metavar="METHOD:KEY=VALUE")
    ] = ()
    """A method's options, e.g. fit:iterations=100 (repeatable)."""
    turns: tuple[float, ...] = VIEW_TURNS
    """Comma-separated turns (degrees) of the novel views."""
    axis: TurnAxis = "view"
    """The turns' axis through the object's centroid: view (the camera's vertical) or world (the object's
    up)."""
    samples: int = 4096
    """Surface points per Chamfer set."""
    per_item: Annotated[bool, Flag(switch=True)] = False
    """Keep every item's scores in the JSON."""
    save_previews: Annotated[bool, Flag(switch=True)] = False
    """Write a PNG strip per item and method (truth and result at the input view and each turn)."""
    threads: int = 1
    """Torch CPU threads of the scoring (a method's own option, e.g. fit's cpu_threads, sets its own)."""
    out: Path = Path("runs/bench-novel-view")
    """Work folder (bench.json, previews)."""
    seed: int = 0
    """Seed of the items and the surface samples."""


def check_options(args: BenchNovelViewOptions) -> tuple[dict[str, MethodOptions], dict[str, str]]:
    """Each method's options and the checkpoints given; ``ValueError`` (``MethodError``) for bad input."""
    known = method_names()
    for name in args.methods:
        if name not in known:
            raise MethodError(f"unknown method {name!r}: expected one of {', '.join(known)}")
    for category in args.categories:
        if category not in CATEGORIES:
            raise MethodError(f"unknown category {category!r}: expected one of {', '.join(CATEGORIES)}")
    if args.background not in BACKGROUNDS:
        raise MethodError(f"unknown background {args.background!r}: expected one of {', '.join(BACKGROUNDS)}")
    if args.objects < 1 or args.views < 1 or not args.categories or not args.methods:
        raise MethodError("need at least one category, method, object and view")
    if not 16 <= args.size <= 1024:
        raise MethodError(f"size must lie in 16..1024, got {args.size}")
    if args.samples < 1 or not args.turns:
        raise MethodError("need at least one surface sample and one turn")
    for pair in args.method_overrides:
        if ":" not in pair or pair.partition(":")[0] not in args.methods:
            raise MethodError(
                f"--method-set takes METHOD:KEY=VALUE, METHOD one of {args.methods}; got {pair!r}"
            )
    checkpoints: dict[str, str] = {}
    for pair in args.checkpoints:
        name, separator, path = pair.partition("=")
        if not separator or name not in args.methods or not path:
            raise MethodError(f"--checkpoint takes METHOD=PATH, METHOD one of {args.methods}; got {pair!r}")
        checkpoints[name] = path
    options = {}
    for name in args.methods:
        prefix = f"{name}:"
        pairs = [pair.removeprefix(prefix) for pair in args.method_overrides if pair.startswith(prefix)]
        values: dict[str, Any] = {"crop_size": args.size}
        if name in ("fit", "softras"):
            values["texture_size"] = 64
        options[name] = parse_options(name, values | parse_option_pairs(pairs))
    return options, checkpoints


def make_item(
    category: str, index: int, args: BenchNovelViewOptions
) -> tuple[TexturedMesh, list[tuple[Camera, np.ndarray, np.ndarray]]]:
    """Held-out object ``index`` of ``category`` and its views: (mesh, [(true look-at camera, (S, S, 3)
    float32 photo, (S, S) bool mask)]) (module docstring, step 1)."""
    code = CATEGORIES.index(category)
    number = HELD_OUT_START + index
    obj = make_object(category, np.random.default_rng((args.seed, code, number, 0)), with_voxels=False)
    rng = np.random.default_rng((args.seed, code, number, 1))
    ranges = CAMERA_RANGES[category]
    count = args.views
    side = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    azimuth = (side * rng.uniform(*SIDE_AZIMUTH, size=count)).astype(np.float32)
    elevation = rng.uniform(*ranges.elevation, size=count).astype(np.float32)
    distance = rng.uniform(*ranges.distance, size=count).astype(np.float32)
    backgrounds = np.stack([background(args.background, args.size, rng) for _ in range(count)])
    cameras = Camera.look_at(
        torch.from_numpy(distance),
        torch.from_numpy(elevation),
        torch.from_numpy(azimuth),
        SOFTRAS_VIEWING_ANGLE,
    )
    rendered = render_views(obj, cameras, args.size, backgrounds, random_lighting(rng))
    views = [(cameras[k], rendered.rgb[k], rendered.alpha[k] > 0.5) for k in range(count)]
    return obj.mesh, views


class Table:
    """Per-item scores of one row (a method or its flat cut-out), by category."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, category: str, scores: dict[str, float]) -> None:
        for name, value in scores.items():
            self.values[category][name].append(value)

    def summary(self) -> dict[str, dict[str, float]]:
        """{category: {score: mean}} and ``overall``: the mean over every item (non-finite values left
        out)."""
        table: dict[str, dict[str, float]] = {}
        overall: dict[str, list[float]] = defaultdict(list)
        for category, values in self.values.items():
            table[category] = {name: round(finite_mean(v).value, 4) for name, v in values.items()}
            for name, v in values.items():
                overall[name] += v
        table["overall"] = {name: round(finite_mean(v).value, 4) for name, v in overall.items()}
        return table


def run(args: BenchNovelViewOptions) -> int:
    try:  # every option is checked before anything runs
        options, checkpoints = check_options(args)
    except MethodError as error:
        return COMMAND.error(error)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    instances = {name: create_method(name, "cpu", checkpoints.get(name)) for name in args.methods}
    rows = [name for method in args.methods for name in (method, f"{method}/{FLAT}")]
    tables = {name: Table() for name in rows}
    items: list[dict[str, Any]] = []
    generator = torch.Generator().manual_seed(args.seed)
    total = len(args.categories) * args.objects * args.views
    done = 0
    for category in args.categories:
        for index in range(args.objects):
            mesh, views = make_item(category, index, args)
            for view, (camera, image, mask) in enumerate(views):
                truth = GroundTruth.of(mesh, camera, mask, args.turns, args.samples, generator, args.axis)
                item: dict[str, Any] = {
                    "category": category, "object": index, "view": view,
                    "azimuth": round(float(camera.orbit.azimuth[0]), 2),
                    "elevation": round(float(camera.orbit.elevation[0]), 2),
                    "distance": round(float(camera.orbit.distance[0]), 3),
                }  # fmt: skip
                for name, method in instances.items():
                    clock = time.perf_counter()
                    result = method.reconstruct(image, mask, options[name], no_progress)
                    seconds = time.perf_counter() - clock
                    for row, scores in score_result(result, truth, args, generator).items():
                        full = f"{name}{row}"
                        scores["seconds"] = seconds
                        tables[full].add(category, scores)
                        item[full] = {key: round(value, 4) for key, value in scores.items()}
                    if args.save_previews:
                        preview = args.out / "previews" / f"{category}_{index}_{view}_{name}.png"
                        save_preview(result, truth, preview)
                done += 1
                print(json.dumps({"item": done, "of": total} | item), flush=True)
                items.append(item)
    results: dict[str, Any] = {
        "benchmark": "novel-view",
        "machine": machine_info(),
        "items": {
            "categories": list(args.categories), "objects": args.objects, "views": args.views,
            "size": args.size, "background": args.background, "seed": args.seed,
            "held_out": f"objects {HELD_OUT_START} + i of the generator's stream",
            "azimuth": f"+-[{SIDE_AZIMUTH[0]:g}, {SIDE_AZIMUTH[1]:g}] degrees", "turns": list(args.turns),
            "axis": args.axis, "samples": args.samples,
        },
        "options": {
            name: method_options.model_dump(mode="json", exclude_defaults=True)
            for name, method_options in options.items()
        },
        "methods": {name: tables[name].summary() for name in rows},
    }  # fmt: skip
    if args.per_item:
        results["per_item"] = items
    text = json.dumps(results, indent=2)
    (args.out / "bench.json").write_text(text)
    print(text)
    return 0


def score_result(
    result: Reconstruction, truth: GroundTruth, args: BenchNovelViewOptions, generator: torch.Generator
) -> dict[str, dict[str, float]]:
    """{"": the result's scores, "/flat": its flat cut-out's} (module docstring, steps 3 and 4)."""
    aligned = align_reconstruction(result, truth.camera, truth.centre)
    faces = result.mesh.faces.to("cpu")
    flat = flat_cutout(aligned, truth.camera, surface_centroid(aligned, faces))
    iou = result.report.silhouette_iou
    report = {"report_iou": float(iou) if iou is not None else float("nan")}
    return {
        "": score_aligned(aligned, faces, truth, args.samples, generator) | report,
        f"/{FLAT}": score_aligned(flat, faces, truth, args.samples, generator) | report,
    }


def save_preview(result: Reconstruction, truth: GroundTruth, path: Path) -> None:
    """A PNG strip: the truth (top row) and the aligned result (bottom row), textured and lit on white, at
    the input view and at each turn, S x S pixels each."""
    size = truth.mask.shape[0]
    turns = (0.0, *truth.turns)
    rows = []
    aligned = align_reconstruction(result, truth.camera, truth.centre)
    for mesh, vertices in ((truth.mesh, truth.mesh.vertices), (result.mesh.to("cpu"), aligned)):
        turned = turned_about(vertices.float(), truth.camera, truth.centre, turns, truth.axis)  # (T, V, 3)
        with torch.no_grad():
            output = render(
                turned, mesh.faces, Camera.cat([truth.camera] * len(turns)),
                RasterSettings(image_size=size, soft=False), uvs=mesh.uvs.float(), face_uvs=mesh.face_uvs,
                texture=mesh.texture.float(), lighting=PREVIEW_LIGHT,
            )  # fmt: skip
        rows.append(torch.cat(list(output.rgb), dim=1))  # (S, T * S, 3)
    strip = (torch.cat(rows, dim=0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path)


COMMAND = BenchSpec(
    "bench-novel-view",
    "novel-view silhouette IoU and Chamfer vs the flat cut-out on held-out synthetic objects (JSON)",
    __doc__, BenchNovelViewOptions, run,
)  # fmt: skip
"""``mono2mesh-train bench-novel-view``: one flag per field of ``BenchNovelViewOptions``."""
