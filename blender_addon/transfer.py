"""Texture transfer between two meshes: the image itself for the same UV layout, else colours from
the closest surface point, in slices that never block the UI and never report success on a failure.

``transfer_texture`` (blocking: scripts and background mode, where timers never fire) and ``start`` +
``poll`` (the UI: a ``bpy.app.timers`` function) do the same work:

- **Copy** when the meshes have the same UV layout (``same_uv_layout``): two results of one template,
  such as two ``fit`` results (``icosphere-642``), refined or not, or two ``mesh-inversion`` results
  (``uvsphere-482``, the UV sphere with a seam). The target's Image Texture node gets the source's
  image; the target keeps its own mesh and its own material (copied first when other objects share it).
  Results of different templates (a ``mesh-inversion`` result and a ``fit`` one) take the
  closest-point transfer below, either way.
- Otherwise **closest-point transfer** (``TransferJob``). Alignment: each mesh is normalised in its
  own mesh frame (centred on its bounding box, divided by its largest side), so neither where the
  objects stand nor their object transforms matter (modifiers are not applied). For each texel of a
  ``resolution``^2 image whose centre lies in one of the target's UV triangles: its 3D point on the
  target (barycentric), the closest point on the source surface (``BVHTree.find_nearest``), the
  source's UV there (barycentric in that source triangle) and the source image's colour (bilinear).
  A texel whose closest source point is farther than ``DISTANCE_LIMIT`` (0.35 of the normalised
  size: a UV sphere's surface lies within 0.3 of a fitted bird's, the corners of the box 0.37 to 0.6
  away) stays uncoloured. Colours then spread ``margin(resolution)`` texels (4 at 512)
  past the UV islands' borders, so seams do not bleed; texels still empty get the mean colour.
- **Refusal**: when more than ``UNCOLOURED_LIMIT`` (5 %) of the covered texels are uncoloured, the
  job ends ``"refused"`` with a message saying so and the target untouched; ``force=True`` ("Apply
  Anyway") applies it all the same. ``TransferJob.uncoloured`` is the measured fraction.

The result image (``<target>_transfer``, saved as PNG into ``output_dir``, then kept with the .blend as
the scene's texture storage says) is created and assigned only when the work is done, so a cancel
(``cancel``) or a refusal leaves the target's material and image as they were. No render engine is
involved: the scene's render settings are never touched.

The work is a generator run in ``TransferJob.step`` slices of at most ``SLICE_SECONDS`` (0.1 s) by
``poll`` (one job per scene in ``jobs``; the panel shows its progress and a Cancel) or by a loop in
``TransferJob.run``; the image is saved and assigned in a slice of its own, and the timer path then
records an undo step. Texels are pure Python around ``mathutils`` calls, about 7 us per covered texel
on one CPU core: a bird onto a UV sphere (every texel covered) takes about 2 s at 512^2 and 6-10 s at
1024^2, so 512 is the default size.
"""

import array
import re
import time
from collections.abc import Iterator
from pathlib import Path

import bpy
from mathutils import Vector
from mathutils.bvhtree import BVHTree
from mathutils.geometry import barycentric_transform

from . import importer, workflow

DEFAULT_RESOLUTION = 512
"""Side of the transferred texture unless the scene says otherwise."""
DISTANCE_LIMIT = 0.35
"""Farthest a texel's target point may be from the source surface, in normalised units (largest side 1)."""
UNCOLOURED_LIMIT = 0.05
"""Largest fraction of covered texels left uncoloured that is applied without ``force``."""
SLICE_SECONDS = 0.1
"""Longest a slice of work (one timer call) runs before it yields."""
LAYOUT_TOLERANCE = 1e-4
"""UV difference below which two layouts count as the same (``same_uv_layout``)."""
POLL_INTERVAL = 0.01
"""Seconds between the timer's slices (the UI handles events in between)."""


def _layout_signature(mesh: bpy.types.Mesh) -> list[list[float]] | None:
    """Sorted UV-triangle centroids (u, v) and doubled signed areas of the mesh's active UV map.

    Sorting each list on its own makes it independent of face order, vertex numbering and seam
    splitting, and a last-bit change of a UV moves each sorted entry by no more than that change.
    None when the mesh has no UV map.
    """
    uv_layer = mesh.uv_layers.active
    if uv_layer is None:
        return None
    mesh.calc_loop_triangles()
    count = len(mesh.loop_triangles)
    loops = array.array("i", bytes(12 * count))
    mesh.loop_triangles.foreach_get("loops", loops)
    uvs = array.array("f", bytes(8 * len(mesh.loops)))
    uv_layer.data.foreach_get("uv", uvs)
    us, vs, areas = [], [], []
    for start in range(0, 3 * count, 3):
        a, b, c = 2 * loops[start], 2 * loops[start + 1], 2 * loops[start + 2]
        us.append((uvs[a] + uvs[b] + uvs[c]) / 3)
        vs.append((uvs[a + 1] + uvs[b + 1] + uvs[c + 1]) / 3)
        areas.append(
            (uvs[b] - uvs[a]) * (uvs[c + 1] - uvs[a + 1]) - (uvs[c] - uvs[a]) * (uvs[b + 1] - uvs[a + 1])
        )
    return [sorted(us), sorted(vs), sorted(areas)]


def same_uv_layout(source: bpy.types.Object, target: bpy.types.Object) -> bool:
    """Whether the two meshes have the same UV layout, so the source's image fits the target as is.

    The same number of UV triangles whose sorted centroids and areas agree within
    ``LAYOUT_TOLERANCE``: true for two results of one template (same ``mono2mesh_template`` id, e.g.
    "icosphere-642", refined or not, or "uvsphere-482": the import's weld joins the UV sphere's seam
    vertices, its UV layer keeps the seam) and also for results recorded with an older id; false for
    two templates ("uvsphere-482" and "icosphere-642").
    """
    if len(source.data.polygons) != len(target.data.polygons) or len(source.data.loops) != len(
        target.data.loops
    ):
        return False
    first, second = _layout_signature(source.data), _layout_signature(target.data)
    if first is None or second is None or len(first[0]) != len(second[0]):
        return False
    return all(
        abs(x - y) <= LAYOUT_TOLERANCE
        for values, others in zip(first, second, strict=True)
        for x, y in zip(values, others, strict=True)
    )


same_topology = same_uv_layout  # the former name


def source_image(source: bpy.types.Object) -> bpy.types.Image:
    """The image of the source's textured material (ValueError if it has none)."""
    node = importer.texture_node(source.active_material)
    if node is None or node.image is None:
        raise ValueError(f"{source.name} has no image texture to transfer")
    return node.image


def shared_with_others(material: bpy.types.Material | None, target: bpy.types.Object) -> bool:
    """Whether another object shows ``material`` (an orphan mesh kept for undo, e.g. the mesh before a
    refinement, does not count)."""
    if material is None:
        return False
    return any(
        obj != target
        and obj.data != target.data
        and any(slot.material == material for slot in obj.material_slots)
        for obj in bpy.data.objects
    )


def copy_texture(source: bpy.types.Object, target: bpy.types.Object) -> None:
    """Point the target's Image Texture node at the source's image (target keeps its material)."""
    image = source_image(source)
    material = target.active_material
    if shared_with_others(material, target):  # do not retexture other objects sharing it
        material = material.copy()
        target.active_material = material
    importer.ensure_textured_material(target, image, f"{target.name}_material")


def margin(resolution: int) -> int:
    """Texels the colours spread past the UV islands' borders: 4 at 512, 8 at 1024 (at least 2)."""
    return max(2, resolution // 128)


def _normalised_positions(mesh: bpy.types.Mesh, name: str) -> list[Vector]:
    """The mesh's vertices centred on its bounding box and divided by its largest side."""
    count = len(mesh.vertices)
    if count == 0:
        raise ValueError(f"{name} has no vertices")
    co = array.array("f", bytes(12 * count))
    mesh.vertices.foreach_get("co", co)
    axes = [co[0::3], co[1::3], co[2::3]]
    low = [min(values) for values in axes]
    high = [max(values) for values in axes]
    size = max(h - lo for h, lo in zip(high, low, strict=True))
    if size <= 0:
        raise ValueError(f"{name} has no extent: all its vertices are in one place")
    cx, cy, cz = ((h + lo) / 2 for h, lo in zip(high, low, strict=True))
    xs, ys, zs = axes
    return [Vector(((xs[i] - cx) / size, (ys[i] - cy) / size, (zs[i] - cz) / size)) for i in range(count)]


def _triangles(mesh: bpy.types.Mesh, name: str) -> tuple[array.array, array.array, array.array]:
    """The mesh's loop triangles: vertex indices (3 per triangle), loop indices, the active UV map."""
    uv_layer = mesh.uv_layers.active
    if uv_layer is None:
        raise ValueError(f"{name} has no UV map: unwrap it first (UV > Smart UV Project)")
    mesh.calc_loop_triangles()
    count = len(mesh.loop_triangles)
    if count == 0:
        raise ValueError(f"{name} has no faces")
    vertices = array.array("i", bytes(12 * count))
    mesh.loop_triangles.foreach_get("vertices", vertices)
    loops = array.array("i", bytes(12 * count))
    mesh.loop_triangles.foreach_get("loops", loops)
    uvs = array.array("f", bytes(8 * len(mesh.loops)))
    uv_layer.data.foreach_get("uv", uvs)
    return vertices, loops, uvs


def check_pair(source: bpy.types.Object, target: bpy.types.Object) -> None:
    """``ValueError`` unless ``source`` and ``target`` are two different mesh objects."""
    if source == target:
        raise ValueError("Select two different objects: the source, then the target as active")
    if source.type != "MESH" or target.type != "MESH":
        raise ValueError("Texture transfer needs two mesh objects")


class TransferJob:
    """One closest-point transfer from ``source`` onto ``target`` (module docstring).

    Construction reads both meshes and the source image (main thread; ``ValueError`` for what is
    missing); ``step`` does the rest in slices. ``state``: "running", then "done" (applied),
    "refused" (too much uncoloured, target untouched: ``apply`` or "Apply Anyway" uses it),
    "canceled" or "failed" (``message`` says why). ``progress`` runs from 0 to 1; ``uncoloured`` is
    the fraction of covered texels the source did not reach (None until measured).
    """

    def __init__(
        self,
        source: bpy.types.Object,
        target: bpy.types.Object,
        output_dir: Path,
        resolution: int = DEFAULT_RESOLUTION,
        force: bool = False,
        scene_name: str = "",
    ) -> None:
        check_pair(source, target)
        if resolution < 4:
            raise ValueError(f"The texture size must be at least 4, got {resolution}")
        self.source_name, self.target_name = source.name, target.name
        self.output_dir = Path(output_dir)
        self.resolution = int(resolution)
        self.force = force
        self.scene_name = scene_name
        self.state = "running"
        self.stage = "preparing"
        self.progress = 0.0
        self.message = ""
        self.uncoloured: float | None = None
        self.slice_seconds: list[float] = []  # how long each step took (tests and the report)
        self.image: bpy.types.Image | None = None  # the applied image
        self._rgba: array.array | None = None
        image = source_image(source)
        width, height = image.size
        channels = image.channels
        if width * height == 0 or len(image.pixels) != width * height * channels or channels < 3:
            raise ValueError(f"The image {image.name} of {source.name} has no pixels (is its file missing?)")
        self._pixels = array.array("f", bytes(4 * width * height * channels))
        image.pixels.foreach_get(self._pixels)
        self._source_size = (width, height, channels)
        self._prepare_source(source)
        self._prepare_target(target)
        self._work = self._compute()

    def _prepare_source(self, source: bpy.types.Object) -> None:
        positions = _normalised_positions(source.data, source.name)
        vertices, loops, uvs = _triangles(source.data, source.name)
        triangles = [tuple(vertices[k : k + 3]) for k in range(0, len(vertices), 3)]
        self._bvh = BVHTree.FromPolygons(positions, triangles, all_triangles=True)
        self._source: list[tuple[Vector, ...]] = []  # per triangle: 3 corners, 3 UVs (z = 0)
        self._source_flat: list[Vector | None] = []  # the UV of a degenerate triangle, else None
        for k, (a, b, c) in enumerate(triangles):
            corners = (positions[a], positions[b], positions[c])
            uv = [Vector((uvs[2 * loop], uvs[2 * loop + 1], 0.0)) for loop in loops[3 * k : 3 * k + 3]]
            self._source.append((*corners, *uv))
            degenerate = (corners[1] - corners[0]).cross(corners[2] - corners[0]).length < 1e-12
            self._source_flat.append((uv[0] + uv[1] + uv[2]) / 3 if degenerate else None)

    def _prepare_target(self, target: bpy.types.Object) -> None:
        positions = _normalised_positions(target.data, target.name)
        vertices, loops, uvs = _triangles(target.data, target.name)
        size = self.resolution
        self._target: list[tuple[Vector, ...]] = []  # per UV triangle: 3 texel-space corners, 3 points
        self._target_area: list[float] = []
        for k in range(0, len(vertices), 3):
            corners = [
                Vector((uvs[2 * loop] * size, uvs[2 * loop + 1] * size, 0.0)) for loop in loops[k : k + 3]
            ]
            area = abs((corners[1] - corners[0]).cross(corners[2] - corners[0]).z) / 2
            if area < 1e-9:
                continue  # no texel centre lies in it
            self._target.append(
                (*corners, positions[vertices[k]], positions[vertices[k + 1]], positions[vertices[k + 2]])
            )
            self._target_area.append(area)

    # the work, one generator: each ``yield`` is a point where a slice may end
    def _compute(self) -> Iterator[None]:
        size = self.resolution
        count = size * size
        state = bytearray(count)  # 0 outside the UV map, 1 coloured, 2 covered but uncoloured, 3 margin
        red = array.array("f", bytes(4 * count))
        green = array.array("f", bytes(4 * count))
        blue = array.array("f", bytes(4 * count))
        pixels = self._pixels
        width, height, channels = self._source_size
        row_stride = width * channels
        find_nearest = self._bvh.find_nearest
        source, flat = self._source, self._source_flat
        limit = DISTANCE_LIMIT
        total_area = sum(self._target_area) or 1.0
        done_area = 0.0
        coloured = uncoloured = 0
        sums = [0.0, 0.0, 0.0]
        self.stage = "transferring"
        for (ta, tb, tc, pa, pb, pc), area in zip(self._target, self._target_area, strict=True):
            edges = ((ta.x, ta.y, tb.x, tb.y), (tb.x, tb.y, tc.x, tc.y), (tc.x, tc.y, ta.x, ta.y))
            low_row = max(0, int(-(-(min(ta.y, tb.y, tc.y) - 0.5) // 1)))
            high_row = min(size - 1, int((max(ta.y, tb.y, tc.y) - 0.5) // 1))
            for row in range(low_row, high_row + 1):
                y = row + 0.5
                crossings = [
                    x0 + (y - y0) * (x1 - x0) / (y1 - y0)
                    for x0, y0, x1, y1 in edges
                    if (y0 <= y < y1) or (y1 <= y < y0)
                ]
                if len(crossings) < 2:
                    continue
                first = max(0, int(-(-(min(crossings) - 0.5) // 1)))
                last = min(size - 1, int(-(-(max(crossings) - 0.5) // 1)) - 1)
                base = row * size
                for column in range(first, last + 1):
                    index = base + column
                    if state[index]:
                        continue  # overlapping UV islands: the first one wins
                    point = barycentric_transform(Vector((column + 0.5, y, 0.0)), ta, tb, tc, pa, pb, pc)
                    location, _normal, face, _distance = find_nearest(point, limit)
                    if face is None:
                        state[index] = 2
                        uncoloured += 1
                        continue
                    uv = flat[face]
                    if uv is None:
                        uv = barycentric_transform(location, *source[face])
                    x = min(max(uv.x * width - 0.5, 0.0), width - 1.0)
                    y_source = min(max(uv.y * height - 0.5, 0.0), height - 1.0)
                    x0, y0 = int(x), int(y_source)
                    fx, fy = x - x0, y_source - y0
                    i00 = y0 * row_stride + x0 * channels
                    i10 = i00 + channels if x0 + 1 < width else i00
                    i01 = i00 + row_stride if y0 + 1 < height else i00
                    i11 = i01 + (i10 - i00)
                    w00, w10, w01, w11 = (1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy
                    r = pixels[i00] * w00 + pixels[i10] * w10 + pixels[i01] * w01 + pixels[i11] * w11
                    g = (
                        pixels[i00 + 1] * w00
                        + pixels[i10 + 1] * w10
                        + pixels[i01 + 1] * w01
                        + pixels[i11 + 1] * w11
                    )
                    b = (
                        pixels[i00 + 2] * w00
                        + pixels[i10 + 2] * w10
                        + pixels[i01 + 2] * w01
                        + pixels[i11 + 2] * w11
                    )
                    red[index], green[index], blue[index] = r, g, b
                    state[index] = 1
                    coloured += 1
                    sums[0] += r
                    sums[1] += g
                    sums[2] += b
                yield
            done_area += area
            self.progress = 0.9 * done_area / total_area
        covered = coloured + uncoloured
        if covered == 0:
            raise ValueError(f"The UV map of {self.target_name} covers no texel of a {size}^2 image")
        self.uncoloured = uncoloured / covered
        mean = [value / coloured for value in sums] if coloured else [0.5, 0.5, 0.5]
        self.stage = "margin"
        yield from self._spread(state, red, green, blue)
        self.stage = "filling"
        for number, match in enumerate(re.finditer(b"[\\x00\\x02]", state)):
            index = match.start()
            red[index], green[index], blue[index] = mean
            if number % 4096 == 4095:
                yield
        yield
        rgba = array.array("f", bytes(16 * count))
        rgba[0::4], rgba[1::4], rgba[2::4] = red, green, blue
        rgba[3::4] = array.array("f", [1.0]) * count
        self._rgba = rgba
        self.progress = 0.95

    def _spread(
        self, state: bytearray, red: array.array, green: array.array, blue: array.array
    ) -> Iterator[None]:
        """Give empty texels next to coloured ones their coloured neighbours' mean, ``margin`` times."""
        size = self.resolution

        def neighbours(index: int) -> Iterator[int]:
            row, column = divmod(index, size)
            for dy in (-1, 0, 1):
                y = row + dy
                if 0 <= y < size:
                    for dx in (-1, 0, 1):
                        x = column + dx
                        if (dx or dy) and 0 <= x < size:
                            yield y * size + x

        frontier = []
        for number, match in enumerate(re.finditer(b"[\\x00\\x02]", state)):
            index = match.start()
            if any(state[other] in (1, 3) for other in neighbours(index)):
                frontier.append(index)
            if number % 2048 == 2047:
                yield
        for _ in range(margin(size)):
            updates = []
            for number, index in enumerate(frontier):
                r = g = b = 0.0
                found = 0
                for other in neighbours(index):
                    if state[other] in (1, 3):
                        r += red[other]
                        g += green[other]
                        b += blue[other]
                        found += 1
                if found:
                    updates.append((index, r / found, g / found, b / found))
                if number % 2048 == 2047:
                    yield
            for index, r, g, b in updates:
                red[index], green[index], blue[index] = r, g, b
                state[index] = 3
            frontier = sorted(
                {other for index, *_ in updates for other in neighbours(index) if state[other] in (0, 2)}
            )
            yield

    def step(self, seconds: float = SLICE_SECONDS) -> bool:
        """Work for about ``seconds``; at the end conclude (apply or refuse). True once not running."""
        if self.state != "running":
            return True
        started = time.perf_counter()
        try:
            if self._rgba is not None:
                self._conclude()  # in a slice of its own: it saves the image
            else:
                while time.perf_counter() - started < seconds:
                    next(self._work)
        except StopIteration:
            pass  # the result is ready (``_rgba``): the next slice concludes
        except (ValueError, RuntimeError, OSError, ReferenceError) as error:
            self.state, self.message = "failed", str(error)
        self.slice_seconds.append(time.perf_counter() - started)
        return self.state != "running"

    def run(self) -> "TransferJob":
        """Run every slice now (scripts, background mode); returns the job, concluded."""
        while not self.step():
            pass
        return self

    def cancel(self) -> None:
        if self.state == "running":
            self._work.close()
            self.state, self.stage, self.message = "canceled", "", "Transfer canceled: target untouched"
            self._rgba = None

    def _conclude(self) -> None:
        fraction = self.uncoloured or 0.0
        if fraction > UNCOLOURED_LIMIT and not self.force:
            self.state, self.stage = "refused", ""
            self.message = (
                f"{fraction:.0%} of {self.target_name}'s texels are out of reach of {self.source_name} "
                f"(farther than {DISTANCE_LIMIT:g} of the size once both are normalised): not applied. "
                "Apply Anyway to use it (those texels get the mean colour)"
            )
            return
        self.apply()

    def apply(self) -> bpy.types.Image:
        """Create the image, save it and give it to the target's material (the only write to Blender)."""
        if self._rgba is None:
            raise RuntimeError("The transfer has no result to apply")
        target = bpy.data.objects.get(self.target_name)
        if target is None or target.type != "MESH":
            self.state, self.message = "failed", f"The target {self.target_name} is gone"
            raise ValueError(self.message)
        self.stage = "saving"
        size = self.resolution
        image = bpy.data.images.new(f"{target.name}_transfer", size, size, alpha=False)
        image.pixels.foreach_set(self._rgba)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{importer.PREFIX}{importer.file_stem(target.name)}_transfer"
        image.filepath_raw = str(self.output_dir / f"{stem}.png")
        image.file_format = "PNG"
        image.save()
        scene = bpy.data.scenes.get(self.scene_name) if self.scene_name else None
        if scene is not None:
            importer.store_texture(image, scene.mono2mesh.texture_storage)
        material = target.active_material
        if material is None or shared_with_others(material, target):  # leave other objects as they are
            material = (
                material.copy() if material is not None else bpy.data.materials.new(f"{target.name}_material")
            )
            if target.data.materials:
                target.active_material = material
            else:
                target.data.materials.append(material)
        importer.ensure_textured_material(target, image, material.name)
        self.image, self._rgba = image, None
        self.state, self.stage, self.progress = "done", "", 1.0
        self.message = (
            f"Texture of {self.source_name} transferred onto {self.target_name} "
            f"({self.uncoloured or 0.0:.1%} of its texels out of reach)"
        )
        return image


def transfer_texture(
    source: bpy.types.Object,
    target: bpy.types.Object,
    output_dir: Path,
    resolution: int = DEFAULT_RESOLUTION,
    force: bool = False,
    scene_name: str = "",
) -> str:
    """Move the source's texture onto the target now (module docstring); returns "copy" or "transfer".

    Raises ``ValueError`` for a refusal (the message says how much was out of reach; the target is
    untouched) and for what is missing.
    """
    check_pair(source, target)
    if same_uv_layout(source, target):
        copy_texture(source, target)
        return "copy"
    job = TransferJob(source, target, output_dir, resolution, force, scene_name).run()
    if job.state != "done":
        raise ValueError(job.message)
    return "transfer"


# the UI path: one job per scene, driven by a timer
jobs: dict[str, TransferJob] = {}
"""Scene name -> its latest transfer (running, refused and waiting for Apply Anyway, or finished)."""


def start(job: TransferJob) -> TransferJob:
    """Hand ``job`` to the timer (``poll``); replaces the scene's previous, finished job."""
    if running(job.scene_name):
        raise ValueError("A texture transfer is already running in this scene")
    previous = jobs.get(job.scene_name)
    if previous is not None:
        previous.cancel()  # one left "running" by a file load, which removed the timer
    jobs[job.scene_name] = job
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=0.0)
    return job


def running(scene_name: str) -> bool:
    """Whether the scene has a transfer in progress (loading a file removes the timer: then not)."""
    job = jobs.get(scene_name)
    return job is not None and job.state == "running" and bpy.app.timers.is_registered(poll)


def cancel(scene_name: str) -> bool:
    """Stop the scene's running transfer (nothing is written to the target); False if none ran."""
    job = jobs.get(scene_name)
    if job is None or job.state != "running":
        return False
    job.cancel()
    _redraw()
    return True


def poll() -> float | None:
    """One slice of every running transfer (main thread); the next interval, or None when done."""
    active = [job for job in jobs.values() if job.state == "running"]
    for job in active:
        if job.step(SLICE_SECONDS / len(active)) and job.state == "done":
            workflow.push_undo("Transfer Texture")
    _redraw()
    return POLL_INTERVAL if any(job.state == "running" for job in jobs.values()) else None


def _redraw() -> None:
    window_manager = bpy.context.window_manager
    for window in window_manager.windows if window_manager is not None else []:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
