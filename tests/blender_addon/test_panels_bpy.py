"""The sidebar panels' ``draw`` code and the methods list as the artist sees it.

Background mode has no window to draw in, so each panel's ``draw`` runs against a recording layout
that checks every reference the way Blender would: ``prop`` names a property of its data,
``operator`` names a registered operator, ``template_ID`` names a pointer property. What the layout
received (labels, progress bar, disabled rows) is then checked against the scene's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest


@dataclass
class Drawn:
    """What a panel drew: (kind, text or property name, enabled) in order."""

    items: list[tuple[str, str, bool]] = field(default_factory=list)

    def texts(self, kind: str) -> list[str]:
        return [text for item_kind, text, _ in self.items if item_kind == kind]


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout``; fails on a reference Blender would reject."""

    def __init__(self, bpy: ModuleType, drawn: Drawn, enabled: bool = True) -> None:
        self._bpy, self._drawn, self.enabled = bpy, drawn, enabled

    def _sub(self, **_kwargs: Any) -> RecordingLayout:
        return RecordingLayout(self._bpy, self._drawn, self.enabled)

    row = column = box = split = _sub

    def prop(self, data: Any, name: str, **_kwargs: Any) -> None:
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self._drawn.items.append(("prop", name, self.enabled))

    def operator(self, idname: str, **_kwargs: Any) -> None:
        category, name = idname.split(".")
        operator = getattr(getattr(self._bpy.ops, category), name)
        operator.get_rna_type()  # raises KeyError for an operator that is not registered
        self._drawn.items.append(("operator", idname, self.enabled))

    def label(self, text: str = "", icon: str = "NONE") -> None:
        icons = self._bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items
        assert icon in icons, f"no icon named {icon!r}"
        self._drawn.items.append(("label", text, self.enabled))

    def progress(self, factor: float, type: str, text: str) -> None:
        assert 0.0 <= factor <= 1.0
        self._drawn.items.append(("progress", text, self.enabled))

    def template_ID(self, data: Any, name: str, **_kwargs: Any) -> None:
        assert data.bl_rna.properties[name].type == "POINTER", name
        self._drawn.items.append(("template_ID", name, self.enabled))

    def icon(self, data: Any) -> int:
        """``UILayout.icon``: the preview icon of an ID; here its name's hash stands for the icon id."""
        assert isinstance(data, self._bpy.types.ID), f"icon() of a {type(data).__name__}, not an ID"
        self._drawn.items.append(("icon", data.name, self.enabled))
        return abs(hash(data.name)) % 100000 + 1

    def template_icon(self, icon_value: int, scale: float = 1.0) -> None:
        assert isinstance(icon_value, int) and icon_value > 0 and scale > 0
        self._drawn.items.append(("template_icon", str(icon_value), self.enabled))


def draw(bpy: ModuleType, panel_class: type, context: Any) -> Drawn:
    drawn = Drawn()
    # a Panel (a bpy struct) cannot be built outside a region; draw reads nothing but self.layout
    panel_class.draw(SimpleNamespace(layout=RecordingLayout(bpy, drawn)), context)
    return drawn


class FakeMethodsClient:
    """Answers ``methods()`` like a backend with one checkpoint-less and one missing-checkpoint method."""

    def methods(self) -> list[dict[str, Any]]:
        return [
            {"name": "fit", "description": "Fit a template", "available": True, "reason": None},
            {
                "name": "softras",
                "description": "Soft Rasterizer",
                "available": False,
                "reason": "no checkpoint installed; pass --checkpoint",
            },
        ]


def test_main_panel_inputs_progress_and_messages(blender: ModuleType, addon: ModuleType, scene: Any) -> None:
    bpy = blender
    panel = addon.panels.VIEW3D_PT_mono2mesh
    settings = scene.mono2mesh
    drawn = draw(bpy, panel, bpy.context)
    assert drawn.texts("prop")[:4] == ["image_source", "image_path", "mask_path", "method"]
    assert drawn.texts("operator") == ["mono2mesh.reconstruct"] and not drawn.texts("progress")
    settings.image_source = "IMAGE"
    assert "image" in draw(bpy, panel, bpy.context).texts("template_ID")
    # a running job: a progress bar with status and stage, a Cancel button, no Reconstruct button
    settings.job_id, settings.job_status = "abc", "running"
    settings.job_stage, settings.job_progress = "shape", 0.4
    drawn = draw(bpy, panel, bpy.context)
    assert drawn.texts("progress") == ["running shape"]
    assert drawn.texts("operator") == ["mono2mesh.cancel"]
    settings.job_status = "failed"
    addon.session.set_message(settings, "Job failed: the mask is empty", error=True)
    drawn = draw(bpy, panel, bpy.context)
    assert "Job failed: the mask is empty" in drawn.texts("label")
    assert drawn.texts("operator") == ["mono2mesh.reconstruct"]


def test_unavailable_methods_are_shown_disabled_with_the_reason(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Any
) -> None:
    bpy = blender
    saved = list(addon.session.methods())
    try:
        addon.session.refresh_methods(FakeMethodsClient())
        items = {item[0]: item for item in addon.session.method_enum_items()}
        assert items["fit"][1] == "fit" and items["fit"][3] == "NONE"
        assert items["softras"][1] == "softras (unavailable)" and items["softras"][3] == "ERROR"
        assert "no checkpoint installed" in items["softras"][2]
        drawn = draw(bpy, addon.panels.VIEW3D_PT_mono2mesh, bpy.context)
        disabled = [text for kind, text, enabled in drawn.items if kind == "label" and not enabled]
        assert disabled == ["softras: no checkpoint installed; pass --checkpoint"]
        settings = scene.mono2mesh
        settings.image_path = str(photo)
        settings.method = "softras"
        with pytest.raises(RuntimeError, match="unavailable: no checkpoint installed"):
            bpy.ops.mono2mesh.reconstruct()
        assert settings.message_is_error and not settings.busy and not addon.session.jobs
    finally:
        addon.session._methods[:] = saved


def test_result_and_backend_panels(blender: ModuleType, addon: ModuleType, scene: Any) -> None:
    bpy = blender
    result_panel = addon.panels.VIEW3D_PT_mono2mesh_result
    assert draw(bpy, result_panel, bpy.context).texts("label") == ["Select a reconstructed object"]
    mesh = bpy.data.meshes.new("result")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new("result", mesh)
    scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj[addon.importer.PROPERTY_SOURCE] = "/photos/bird.jpg"
    obj[addon.importer.PROPERTY_METHOD] = "fit"
    obj[addon.importer.PROPERTY_IOU] = 0.91234
    labels = draw(bpy, result_panel, bpy.context).texts("label")
    assert labels == ["Photo: /photos/bird.jpg", "Method: fit", "Silhouette IoU: 0.912"]
    backend_panel = addon.panels.VIEW3D_PT_mono2mesh_backend
    drawn = draw(bpy, backend_panel, bpy.context)
    assert drawn.texts("label") == ["No local backend running"]
    assert drawn.texts("operator") == ["mono2mesh.start_backend", "mono2mesh.stop_backend"]
