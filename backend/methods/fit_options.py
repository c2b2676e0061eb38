"""The fitting engine's settings as pydantic option fields, for the methods that expose them (``fit``,
``softras``): one definition of each field's bounds and description, so the methods' options agree.

Each is an ``Annotated`` type; a method's options class declares it with its own default, in its own
place (the order of the fields is the order ``mono2mesh methods --options`` and the add-on list them)::

    class MyOptions(MethodOptions):
        iterations: Iterations = 100

The methods turn their options into the engine's frozen settings (``backend.fitting``: ``FitSettings``,
``RefineSettings``, ``TextureSettings``) themselves.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

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
SilhouetteWeight = Annotated[float, Field(ge=0.0, description="weight of 1 - soft IoU")]
ChamferWeight = Annotated[float, Field(ge=0.0, description="weight of the 2-D Chamfer mask loss")]
LaplacianWeight = Annotated[float, Field(ge=0.0, description="weight of the mean squared uniform Laplacian")]
FlattenWeight = Annotated[float, Field(ge=0.0, description="weight of SoftRas's flatten loss")]
DeformationWeight = Annotated[float, Field(ge=0.0, description="weight of the mean offset norm")]
KeepShapeWeight = Annotated[
    float,
    Field(
        ge=0.0,
        description="refinement only: weight of the mean squared offset from the given mesh of the vertices "
        "the photo's outline does not constrain",
    ),
]
OutlineKeepWeight = Annotated[
    float,
    Field(
        ge=0.0,
        description="refinement only: that weight for vertices on the photo's outline (or outside the mask)",
    ),
]
DepthWeight = Annotated[
    float,
    Field(
        ge=0.0,
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
        description="refinement only: texels whose surface moved less than this share of the mesh's size "
        "keep the given texture",
    ),
]
TextureSize = Annotated[int, Field(ge=16, le=4096, description="texture height; its width is twice that")]
CropSize = Annotated[
    int, Field(ge=32, le=2048, description="side of the photo crop the texture is taken from")
]
Seed = Annotated[int, Field(description="seed of the random choices (mask points for the Chamfer loss)")]
CpuThreads = Annotated[
    int,
    Field(ge=1, le=256, description="torch CPU threads while fitting on a CPU (small tensors: 1 is fastest)"),
]
