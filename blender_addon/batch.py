"""Headless batch: reconstruct every photo, import them side by side, save a .blend and/or export.

Usage (Blender, or plain ``python`` with the bpy module; the arguments after ``--`` are this script's):

    blender -b --factory-startup --python-exit-code 1 --python blender_addon/batch.py -- \\
        --input DIR_OR_FILES... --out DIR [--method M] [--options JSON] \\
        [--backend-python PATH | --url URL --token T] [--blend FILE] [--export glb|obj]
        [--sequential] [--report FILE] [--as-in-photo]

Timers never fire in background mode, so this path is synchronous: all photos are submitted first
(the backend queues them; ``--sequential`` submits each after the previous one is imported), then
each job is waited for, downloaded into ``<out>/<stem>/`` (with ``<stem>_mask.png``, the mask the
backend used, attached to the object as in the UI) and imported with the add-on's importer,
left to right along X: the same weld and placement as in the UI (the photographed side facing -Y,
standing on z = 0, ``--size`` the largest dimension); the exports are written first (the OBJ's
textures copied from the downloaded files), then the textures are packed into the saved .blend;
``--as-in-photo`` also adds each photo's camera with the photo as its background. ``--report``
writes per-photo timings (``backend_s`` from submit to succeeded, ``download_s``, ``import_s``,
``total_s`` from submit to the object in the scene) and ``mask_source`` as JSON, which
``mono2mesh bench blender`` reads. One line per photo on stdout (``ok``/``FAILED``), then a summary
line. Exit status: 0 all succeeded, 1 any photo failed (or the backend could not be reached), 2 bad
arguments. A local backend started here is stopped at the end.

Run as a script, it imports the add-on's modules from the folder it lives in (the ``blender_addon``
package of the checkout); it only needs bpy and the standard library.
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    if __package__:  # imported from the installed extension
        package = __package__
    else:  # run as a script: import the package this file belongs to
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        package = Path(__file__).resolve().parent.name
    return tuple(importlib.import_module(f"{package}.{name}") for name in ("client", "importer", "workflow"))  # type: ignore[return-value]


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="batch.py", description="Reconstruct photos into one Blender scene."
    )
    parser.add_argument(
        "--input", nargs="+", required=True, type=Path, help="photos and/or folders of photos"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--method", default="fit", help="reconstruction method (default fit)")
    parser.add_argument("--options", default="{}", help="method options as a JSON object")
    parser.add_argument("--backend-python", type=Path, help="start a local backend with this Python")
    parser.add_argument("--url", help="URL of a running backend")
    parser.add_argument("--token", default="", help="bearer token of the backend at --url")
    parser.add_argument("--blend", type=Path, help="save the scene to this .blend file")
    parser.add_argument("--export", choices=["glb", "obj"], help="also export the scene as <out>/batch.<ext>")
    parser.add_argument(
        "--size", type=float, default=2.0, help="largest dimension of each object (default 2)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each job")
    parser.add_argument(
        "--sequential", action="store_true", help="submit each photo after the previous one is imported"
    )
    parser.add_argument("--report", type=Path, help="write per-photo timings as JSON to this file")
    parser.add_argument(
        "--as-in-photo", action="store_true", help="add a camera per photo that sees the result as it did"
    )
    args = parser.parse_args(argv)
    if (args.backend_python is None) == (args.url is None):
        parser.error("give exactly one of --backend-python and --url")
    try:
        args.options = json.loads(args.options)
    except ValueError as error:
        parser.error(f"--options is not JSON: {error}")
    if not isinstance(args.options, dict):
        parser.error("--options must be a JSON object")
    return args


def find_images(inputs: list[Path]) -> list[Path]:
    """The photos named or contained (not recursively) in ``inputs``, in order, folders sorted."""
    images: list[Path] = []
    for item in inputs:
        if item.is_dir():
            images += sorted(path for path in item.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        else:
            images.append(item)
    return images


def run(args: argparse.Namespace) -> int:
    """Reconstruct, import, save/export (module docstring); returns the exit status."""
    import bpy

    client_module, importer, workflow = _modules()
    images = find_images(args.input)
    if not images:
        print("no photos found in " + " ".join(map(str, args.input)), file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    local = None
    try:
        if args.backend_python is not None:
            folder = args.out / ".backend"
            local = client_module.LocalBackend(
                args.backend_python,
                folder / "server.json",
                folder / "server.log",
                jobs_dir=folder / "jobs",
            )
            client = local.start()
        else:
            client = client_module.BackendClient(args.url, args.token)
            client.health()
    except client_module.BackendError as error:
        print(f"backend: {error}", file=sys.stderr)
        return 1
    try:
        bpy.ops.wm.read_homefile(use_empty=True)
        rows = _reconstruct_all(bpy, client, local, images, args, client_module, importer, workflow)
        failures = sum(not row["ok"] for row in rows)
        if args.report is not None:
            args.report.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        if args.export == "glb":
            bpy.ops.export_scene.gltf(filepath=str(args.out / "batch.glb"), export_format="GLB")
            print(f"exported {args.out / 'batch.glb'}")
        elif args.export == "obj":
            bpy.ops.wm.obj_export(filepath=str(args.out / "batch.obj"), path_mode="COPY")
            print(f"exported {args.out / 'batch.obj'}")
        if args.blend is not None:
            for obj in bpy.data.objects:
                node = importer.texture_node(obj.active_material) if obj.type == "MESH" else None
                if node is not None and node.image is not None and node.image.packed_file is None:
                    importer.store_texture(node.image, "PACK")
                    obj[importer.PROPERTY_TEXTURE] = "packed"
            args.blend.parent.mkdir(parents=True, exist_ok=True)
            bpy.ops.wm.save_as_mainfile(filepath=str(args.blend.resolve()))
            print(f"saved {args.blend}")
    finally:
        if local is not None:
            local.stop()
    print(f"summary: {len(images) - failures} succeeded, {failures} failed, of {len(images)}")
    return 1 if failures else 0


def _reconstruct_all(
    bpy: Any,
    client: Any,
    local: Any,
    images: list[Path],
    args: argparse.Namespace,
    client_module: ModuleType,
    importer: ModuleType,
    workflow: ModuleType,
) -> list[dict[str, Any]]:
    """Reconstruct and import every photo; one result row per photo (``ok``, timings or ``error``)."""

    def submit(image: Path) -> tuple[dict[str, Any] | None, str, float]:
        started = time.perf_counter()
        try:
            return client.submit(image, method=args.method, options=args.options), "", started
        except client_module.BackendError as error:
            return None, str(error), started

    pending = [] if args.sequential else [submit(image) for image in images]
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for index, image in enumerate(images):
        job, error, started = submit(image) if args.sequential else pending[index]
        row: dict[str, Any] = {"image": image.name, "ok": False}
        rows.append(row)
        if job is None:
            row["error"] = error
            print(f"FAILED {image.name}: {error}")
            continue
        try:
            done = client.wait(job["id"], timeout=args.timeout, is_alive=local.is_alive if local else None)
            succeeded = time.perf_counter()
            name = workflow.safe_name(image.name)
            while name in used:
                name += "_1"
            used.add(name)
            files = workflow.download_results(client, job["id"], args.out / name, name)
            report = json.loads(files["report"].read_text(encoding="utf-8"))
            downloaded = time.perf_counter()
            obj = importer.import_result(
                bpy.context.scene.collection,
                files["glb"],
                files["texture"],
                name=name,
                location=(index * args.size * 1.25, 0.0, 0.0),
                target_size=args.size,
                properties=importer.report_properties(report, done, str(image.resolve())),
                camera=report.get("camera"),
                texture_storage=None,  # packed before the .blend is saved, after the exports
            )
            try:  # the mask next to the result, as in the UI; the result stays without it
                importer.attach_mask(obj, files.get("mask"), report)
            except (OSError, RuntimeError) as failure:
                print(f"mask of {image.name} not loaded: {failure}")
            if args.as_in_photo:
                importer.add_photo_camera(obj, report, image.resolve(), bpy.context.scene.collection)
            imported = time.perf_counter()
        except (client_module.BackendError, TimeoutError, OSError, RuntimeError, ValueError) as failure:
            row["error"] = str(failure)
            print(f"FAILED {image.name}: {failure}")
            continue
        row.update(
            ok=True,
            object=obj.name,
            silhouette_iou=report.get("silhouette_iou"),
            mask_source=(report.get("photo") or {}).get("mask_source"),
            backend_compute_s=(report.get("timings") or {}).get("total"),
            backend_s=succeeded - started,
            download_s=downloaded - succeeded,
            import_s=imported - downloaded,
            total_s=imported - started,
        )
        print(
            f"ok {image.name} -> {obj.name}: silhouette IoU {row['silhouette_iou']}, "
            f"backend {row['backend_s']:.2f} s, import {row['import_s']:.3f} s, mask {row['mask_source']}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    return run(parse_arguments(argv))


if __name__ == "__main__":
    sys.exit(main())
