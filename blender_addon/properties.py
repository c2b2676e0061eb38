"""The one scene settings group, ``Scene.mono2mesh`` (a PointerProperty), and the quality presets.

Holds the panel's inputs (image, mask, method, quality, import size, where imported textures are
kept, "As in the Photo") and the state of the scene's current job (id, status, progress, stage,
message), which the polling timer updates on the main thread. No module-level Blender data access;
``register``/``unregister`` in ``__init__`` attach and remove the pointer.
"""

import json
from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import session

# method option overrides per quality preset; only keys the method's options schema has are sent
QUALITY_OPTIONS: dict[str, dict[str, Any]] = {
    "DRAFT": {"iterations": 60, "texture_size": 256},
    "STANDARD": {},
    "HIGH": {"iterations": 400, "texture_size": 1024},
}


def _method_items(_self: Any, _context: Any) -> list[tuple[str, str, str, str, int]]:
    return session.method_enum_items()


class Mono2MeshSettings(bpy.types.PropertyGroup):
    image_source: EnumProperty(
        name="Image Source",
        items=[
            ("FILE", "File", "A photo on disk"),
            ("IMAGE", "Blender Image", "An image already open in Blender"),
        ],
        default="FILE",
    )
    image_path: StringProperty(name="Photo", description="The photo to reconstruct", subtype="FILE_PATH")
    image: PointerProperty(name="Image", type=bpy.types.Image, description="An image open in Blender")
    mask_path: StringProperty(
        name="Mask",
        description="Optional mask (white = object); empty: the backend finds it",
        subtype="FILE_PATH",
    )
    method: EnumProperty(name="Method", description="Reconstruction method", items=_method_items)
    quality: EnumProperty(
        name="Quality",
        items=[
            ("DRAFT", "Draft", "Fewer iterations, small texture"),
            ("STANDARD", "Standard", "The method's defaults"),
            ("HIGH", "High", "More iterations, large texture"),
        ],
        default="STANDARD",
    )
    extra_options: StringProperty(
        name="Options",
        description='Extra method options, a JSON object like {"iterations": 100}; they win over the preset',
    )
    target_size: FloatProperty(
        name="Size",
        description="Largest dimension of the imported object",
        default=2.0,
        min=0.001,
        unit="LENGTH",
    )
    texture_storage: EnumProperty(
        name="Textures",
        description="Where the textures of imported results are kept",
        items=[
            ("PACK", "Pack into .blend", "Pack the textures into the .blend file"),
            (
                "BESIDE_BLEND",
                "Next to the .blend",
                "Copy them to a textures folder next to the saved .blend (relative paths); "
                "packed while the .blend is unsaved",
            ),
        ],
        default="PACK",
    )
    as_in_photo: BoolProperty(
        name="As in the Photo",
        description="Also add a camera that sees the result as the photo did, with the photo as its "
        "background image (and set the render size to the photo's)",
        default=False,
    )
    bake_resolution: IntProperty(
        name="Transfer Size",
        description="Side of the texture made by Transfer Texture between different UV layouts "
        "(pure Python: about 2 s at 512, four times that at 1024, minutes at 4096)",
        default=512,
        min=16,
        max=4096,
    )
    # state of the scene's current job (written by the timer on the main thread)
    job_id: StringProperty(name="Job")
    job_kind: StringProperty(name="Job Kind")
    job_status: StringProperty(name="Status")
    job_progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    job_stage: StringProperty(name="Stage")
    message: StringProperty(name="Message")
    message_is_error: BoolProperty(name="Error")

    def method_options(self, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        """Options to send: the quality preset (keys the schema knows) updated by ``extra_options``.

        Raises ``ValueError`` when ``extra_options`` is not a JSON object.
        """
        known = set((schema or {}).get("properties", {}))
        options = {key: value for key, value in QUALITY_OPTIONS[self.quality].items() if key in known}
        if self.extra_options.strip():
            try:
                extra = json.loads(self.extra_options)
            except ValueError as error:
                raise ValueError(f"Options must be a JSON object: {error}") from error
            if not isinstance(extra, dict):
                raise ValueError('Options must be a JSON object, e.g. {"iterations": 100}')
            options.update(extra)
        return options

    @property
    def busy(self) -> bool:
        """Whether this scene waits for a starting backend or has a job queued or running."""
        if self.job_status == "starting":
            return True
        return bool(self.job_id) and self.job_status in ("submitting", "queued", "running")
