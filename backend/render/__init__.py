"""The differentiable renderer: ``RasterSettings -> rasterize -> shade -> RenderOutput``.

Pure PyTorch (CPU, CUDA, MPS; nothing to compile). See ``rasterize`` for the two-step design.
"""

from backend.render.rasterize import Fragments, rasterize
from backend.render.renderer import Lighting, RenderOutput, render, render_mesh
from backend.render.settings import RasterSettings

__all__ = ["Fragments", "Lighting", "RasterSettings", "RenderOutput", "rasterize", "render", "render_mesh"]
