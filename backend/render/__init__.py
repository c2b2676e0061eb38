"""The differentiable renderer: ``RasterSettings -> rasterize -> shade -> RenderOutput``.

Two rasterizer backends give the same images (``backend.render.backends.select_backend`` says which a
device gets, and why): ``torch``, plain PyTorch on every device and the reference (``rasterize``: a
candidate search, then differentiable geometry on the survivors), and ``triton`` on CUDA (``dense``:
fixed shapes, Triton kernels compiled at run time, no host synchronisation). On the CPU the
visible surface and the soft silhouette come from numba loops (``cpu_raster``, compiled at run time and
cached). Nothing is compiled at install time.
"""

from backend.render.rasterize import Fragments, rasterize
from backend.render.renderer import Lighting, RenderOutput, render, render_mesh
from backend.render.settings import RasterSettings

__all__ = ["Fragments", "Lighting", "RasterSettings", "RenderOutput", "rasterize", "render", "render_mesh"]
