"""The fitting engine's settings as method options, for the methods that run the engine (``fit``,
``softras``): one definition of each field (bounds, description, default) and of the settings built from
them, so the methods' options agree.

Each field is an ``Annotated`` type (``Iterations``, ``Resolution``, ...). The options classes declare them
in the order ``mono2mesh methods --options`` and the add-on list them (pydantic's field order: a base
class's fields first, in its own order, along the reversed MRO; a field a subclass overrides keeps its
base's place):

- ``ShapeFitOptions``: the shape (and camera) fit's steps, resolution, hypotheses, step size, sharpness
  and loss weights (``iterations`` ... ``laplacian_weight``);
- ``TemplateFitOptions`` (a ``ShapeFitOptions``): the template fit's own settings, ``fit``'s alone: its
  hypotheses (8 here) and how they start and are chosen (``selection_resolution``, ``start_elevation``),
  its regularisers (``flatten_weight``, ``deformation_weight``, ``thickness_weight``,
  ``thickness_slack``), applied to the engine's settings by ``template_settings``;
- ``FittingOptions`` (a ``ShapeFitOptions``): the refinement's weights, the texture's settings,
  ``crop_size``, ``seed`` and ``cpu_threads``, and the engine's frozen settings (``backend.fitting``)
  built from the options: ``fit_settings()`` (``FitSettings``; the engine's defaults for the template
  fit's own settings, which ``FitOptions`` sets), ``refine_settings()`` (``RefineSettings``) and
  ``texture_settings(refinement)``
  (``TextureSettings``: the template's texture, unseen texels mirrored, or a refinement's, the given
  texture kept where the surface did not move).

A method's options derive from ``FittingOptions`` and add or override what differs::

    class SoftRasOptions(FittingOptions):          # iterations ... cpu_threads, refine
        iterations: int = Field(100, ...)          # overridden: keeps its place, first
        refine: bool = False                       # added: last

    class FitOptions(FittingOptions, TemplateFitOptions):  # the template's own after laplacian_weight
        ...
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import Field

from backend.fitting.optimise import FitSettings
from backend.fitting.shape import RefineSettings
from backend.fitting.texture import TextureSettings
from backend.methods.base import MethodOptions

MAX_WEIGHT = 1e4
"""Upper bound of every loss weight: the defaults are 1e-4 .. 100; far larger weights only overflow."""
MAX_SEED = 2**31 - 1
"""Upper bound of ``seed`` (0 .. 2^31 - 1, the range every random generator here accepts)."""

Iterations = Annotated[int, Field(ge=0, le=20000, description="optimisation steps for shape and camera")]
Resolution = Annotated[
    int, Field(ge=16, le=1024, description="side in pixels of the silhouettes compared with the mask")
]
Hypotheses = Annotated[
    int,
    Field(ge=1, le=12, description="camera azimuth hypotheses, evenly spaced, optimised together at first"),
]
SelectionFraction = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        description="share of the iterations all hypotheses run (at half resolution) before the best is kept",
    ),
]
LearningRate = Annotated[float, Field(gt=0.0, le=1.0, description="Adam step size")]
Sigma = Annotated[float, Field(gt=0.0, le=1.0, description="SoftRas silhouette sharpness")]
SilhouetteWeight = Annotated[float, Field(ge=0.0, le=MAX_WEIGHT, description="weight of 1 - soft IoU")]
ChamferWeight = Annotated[
    float, Field(ge=0.0, le=MAX_WEIGHT, description="weight of the 2-D Chamfer mask loss")
]
LaplacianWeight = Annotated[
    float, Field(ge=0.0, le=MAX_WEIGHT, description="weight of the mean squared uniform Laplacian")
]
FlattenWeight = Annotated[float, Field(ge=0.0, le=MAX_WEIGHT, description="weight of SoftRas's flatten loss")]
ThicknessWeight = Annotated[
    float,
    Field(
        ge=0.0,
        le=MAX_WEIGHT,
        description="weight of the thickness prior: depth beyond a round-section body of the outline is "
        "penalised (0: off)",
    ),
]
ThicknessSlack = Annotated[
    float, Field(gt=0.0, le=10.0, description="depth the thickness prior allows, as a multiple of its own")
]
StartElevation = Annotated[
    float,
    Field(
        ge=-90.0,
        le=90.0,
        description="degrees above the object the camera hypotheses start at (photos are mostly taken "
        "from a little above)",
    ),
]
SelectionResolution = Annotated[
    int,
    Field(
        ge=0,
        le=1024,
        description="side in pixels of the silhouettes while all hypotheses run (0: half of resolution)",
    ),
]
DeformationWeight = Annotated[
    float, Field(ge=0.0, le=MAX_WEIGHT, description="weight of the mean offset norm")
]
KeepShapeWeight = Annotated[
    float,
    Field(
        ge=0.0,
        le=MAX_WEIGHT,
        description="refinement only: weight of the mean squared offset from the given mesh of the vertices "
        "the photo's outline does not constrain",
    ),
]
OutlineKeepWeight = Annotated[
    float,
    Field(
        ge=0.0,
        le=MAX_WEIGHT,
        description="refinement only: that weight for vertices on the photo's outline (or outside the mask)",
    ),
]
DepthWeight = Annotated[
    float,
    Field(
        ge=0.0,
        le=MAX_WEIGHT,
        description="refinement only: weight of the mean squared offset along the view direction "
        "(a silhouette does not see depth)",
    ),
]
KeepSymmetry = Annotated[
    Literal["auto", "on", "off"],
    Field(
        description="refinement only: tie the offsets mirror-symmetric (x -> -x): auto when the given mesh "
        "is symmetric, on (mutually nearest mirror vertices), off (for a deliberately asymmetric edit)",
    ),
]
TextureKeepDistance = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        description="refinement only: texels whose surface moved less than this share of the mesh's size "
        "keep the given texture",
    ),
]
TextureSize = Annotated[int, Field(ge=16, le=4096, description="texture height; its width is twice that")]
CropSize = Annotated[
    int, Field(ge=32, le=2048, description="side of the photo crop the texture is taken from")
]
Seed = Annotated[
    int, Field(ge=0, le=MAX_SEED, description="seed of the random choices (mask points for the Chamfer loss)")
]
CpuThreads = Annotated[
    int,
    Field(ge=1, le=256, description="torch CPU threads while fitting on a CPU (small tensors: 1 is fastest)"),
]


class ShapeFitOptions(MethodOptions):
    """The shape (and camera) fit's options the engine's methods share (module docstring)."""

    iterations: Iterations = 200
    resolution: Resolution = 128
    hypotheses: Hypotheses = 4
    selection_fraction: SelectionFraction = 0.25
    learning_rate: LearningRate = 0.01
    sigma: Sigma = 1e-4
    silhouette_weight: SilhouetteWeight = 1.0
    chamfer_weight: ChamferWeight = 1.0
    laplacian_weight: LaplacianWeight = 20.0


class TemplateFitOptions(ShapeFitOptions):
    """The template fit's own settings (``fit`` only): its regularisers (a mesh that does not deform needs
    none) and how its camera hypotheses start and are chosen (a method with a predicted camera has no
    hypotheses). ``FitOptions`` sets 8 hypotheses (issue 20: the chosen azimuth decides the depth of a
    symmetric template; 8 hypotheses judged at the full resolution, from 20 degrees above, at a
    32-pixel selection phase, were +0.05 novel-view IoU at 90 degrees at the same time per photo)."""

    selection_resolution: SelectionResolution = 32
    start_elevation: StartElevation = 20.0
    flatten_weight: FlattenWeight = 5e-4
    deformation_weight: DeformationWeight = 0.05
    thickness_weight: ThicknessWeight = 0.0
    thickness_slack: ThicknessSlack = 1.0

    def template_settings(self, settings: FitSettings) -> FitSettings:
        """``settings`` with the template fit's own settings (this class's fields) set."""
        return replace(
            settings, hypotheses=self.hypotheses, selection_resolution=self.selection_resolution,
            start_elevation=self.start_elevation, flatten_weight=self.flatten_weight,
            deformation_weight=self.deformation_weight, thickness_weight=self.thickness_weight,
            thickness_slack=self.thickness_slack,
        )  # fmt: skip


class FittingOptions(ShapeFitOptions):
    """The options of a method that runs the fitting engine, and the engine's settings built from them
    (module docstring)."""

    keep_shape_weight: KeepShapeWeight = 10.0
    outline_keep_weight: OutlineKeepWeight = 0.1
    depth_weight: DepthWeight = 100.0
    keep_symmetry: KeepSymmetry = "auto"
    texture_keep_distance: TextureKeepDistance = 0.01
    texture_size: TextureSize = 512
    crop_size: CropSize = 512
    seed: Seed = 0
    cpu_threads: CpuThreads = 1

    def fit_settings(self) -> FitSettings:
        """The engine's settings of the shape (and camera) fit (the template regularisers: the engine's
        defaults)."""
        return FitSettings(
            iterations=self.iterations, resolution=self.resolution, hypotheses=self.hypotheses,
            selection_fraction=self.selection_fraction, learning_rate=self.learning_rate, sigma=self.sigma,
            silhouette_weight=self.silhouette_weight, chamfer_weight=self.chamfer_weight,
            laplacian_weight=self.laplacian_weight, seed=self.seed,
        )  # fmt: skip

    def refine_settings(self) -> RefineSettings:
        """The engine's settings of a refinement."""
        return RefineSettings(
            keep_shape_weight=self.keep_shape_weight, outline_keep_weight=self.outline_keep_weight,
            depth_weight=self.depth_weight, keep_symmetry=self.keep_symmetry,
        )  # fmt: skip

    def texture_settings(self, refinement: bool = False) -> TextureSettings:
        """The template's texture (unseen texels mirrored), or a refinement's (the given texture kept)."""
        size = (self.texture_size, 2 * self.texture_size)
        if refinement:
            return TextureSettings(size, unseen="given", keep_distance=self.texture_keep_distance)
        return TextureSettings(size)
