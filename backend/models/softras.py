"""The Soft Rasterizer single-view reconstruction network (SoftRas's ShapeNet example), on our icosphere.

``SoftRasModel(config)`` maps RGBA images (B, 4, S, S) (RGB multiplied by the mask, alpha = mask) to
mesh vertices (B, V, 3) of the 642-vertex icosphere template (``icosphere_template(3)``, whose faces,
UVs and symmetry the outputs share, template id ``icosphere-642``):

- encoder (``backend.models.encoders.ImageEncoder``, kind ``config.encoder``) to a 512-d feature;
- decoder FC 512 -> 1024 -> 2048 (ReLU), then two linear heads: a centroid ``c = tanh(0.1 * W_c h)``
  (3,) and per-vertex biases ``b`` (V, 3);
- SoftRas's sign-preserving parameterisation of the template ``t`` scaled to radius 0.5:
  ``u = sign(t) * sigmoid(logit(|t|) + b)`` keeps every coordinate on its side of the centre; each
  side is then rescaled to reach the box edge from the centroid (``u * (1 - c)`` where ``u > 0``,
  ``u * (1 + c)`` where ``u < 0``), shifted by ``c`` and halved, so vertices lie in [-0.5, 0.5]^3
  (zero heads give the sphere of radius 0.25, as in SoftRas).
  Our template has coordinates that are exactly 0 (32 vertices on each coordinate plane), where
  SoftRas's formula would freeze them; those take ``tanh(b)`` instead (they can move either way).
- ``config.symmetric`` (off in SoftRas's recipe) averages each vertex with the mirror image of its
  partner across x = 0, so shapes are exactly bilaterally symmetric.

Vertices are in our world frame (Y up, right-handed): the SoftRas ShapeNet cameras are
``Camera.look_at`` cameras once their images are mirrored by ``from_softras_images``.
"""

from __future__ import annotations

from typing import Self

import torch
from pydantic import model_validator
from torch import Tensor, nn

from backend.config import Config
from backend.geometry.templates import SymmetricTemplate, icosphere_template
from backend.models.encoders import ENCODER_KINDS, EncoderKind, ImageEncoder

TEMPLATE_ID = "icosphere-642"


class SoftRasModelConfig(Config):
    """What the backend needs to rebuild the network from a checkpoint's JSON (``config["model"]``)."""

    encoder: EncoderKind = "conv"
    """Image encoder: "conv" (SoftRas), "resnet" or "attention" (the seed report's variants)."""
    image_size: int = 64
    """Side of the square RGBA network input (SoftRas: 64)."""
    features: int = 512
    """Width of the image feature (SoftRas: 512)."""
    symmetric: bool = False
    """Make every output bilaterally symmetric about x = 0 (SoftRas: off)."""
    template_scale: float = 0.5
    """Radius of the template sphere the offsets start from (SoftRas: 0.5)."""

    @model_validator(mode="after")
    def _check_softras_model(self) -> Self:
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"model.encoder must be one of {ENCODER_KINDS}, got {self.encoder!r}")
        if self.image_size % 8 or self.image_size < 8:
            raise ValueError(f"model.image_size must be a positive multiple of 8, got {self.image_size}")
        if not 0 < self.template_scale < 1:
            raise ValueError(f"model.template_scale must be in (0, 1), got {self.template_scale}")
        return self


class SoftRasModel(nn.Module):
    """Image (B, 4, S, S) -> icosphere vertices (B, 642, 3) (module docstring)."""

    base_logit: Tensor  # (V, 3) logit of the scaled template's |coordinates|
    base_sign: Tensor  # (V, 3) their signs (0 on the coordinate planes)
    faces: Tensor  # (F, 3)
    mirror_index: Tensor  # (V,) the mirror partner of each vertex across x = 0

    def __init__(self, config: SoftRasModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or SoftRasModelConfig()
        template = icosphere_template(3)
        self.template: SymmetricTemplate = template
        self.encoder = ImageEncoder(self.config.encoder, 4, self.config.image_size, self.config.features)
        self.decoder = nn.Sequential(
            nn.Linear(self.config.features, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 2048),
            nn.ReLU(inplace=True),
        )
        num_vertices = template.mesh.num_vertices
        self.centroid_head = nn.Linear(2048, 3)
        self.bias_head = nn.Linear(2048, num_vertices * 3)
        base = template.mesh.vertices * self.config.template_scale  # (V, 3), |coordinate| < 1
        sign = torch.sign(base)
        magnitude = base.abs().clamp(1e-6, 1 - 1e-6)
        self.register_buffer("base_logit", torch.log(magnitude / (1 - magnitude)), persistent=False)
        self.register_buffer("base_sign", sign, persistent=False)
        self.register_buffer("faces", template.mesh.faces.clone(), persistent=False)
        self.register_buffer("mirror_index", template.mirror_index.clone(), persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.base_sign.shape[0])

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 4, S, S) in [0, 1] -> vertices (B, V, 3) in [-0.5, 0.5]^3."""
        if images.dim() != 4 or images.shape[1] != 4:
            raise ValueError(f"expected RGBA images (B, 4, S, S), got {tuple(images.shape)}")
        hidden = self.decoder(self.encoder(images))  # (B, 2048)
        return self.decode(hidden)

    def decode(self, hidden: Tensor) -> Tensor:
        """Decoder features (B, 2048) -> vertices (B, V, 3)."""
        batch = hidden.shape[0]
        centroid = torch.tanh(0.1 * self.centroid_head(hidden))[:, None, :]  # (B, 1, 3)
        bias = self.bias_head(hidden).view(batch, self.num_vertices, 3)  # (B, V, 3)
        on_side = self.base_sign != 0
        unit = torch.where(
            on_side, torch.sigmoid(self.base_logit + bias) * self.base_sign, torch.tanh(bias)
        )  # (B, V, 3) in (-1, 1)
        scaled = torch.relu(unit) * (1 - centroid) - torch.relu(-unit) * (1 + centroid)
        vertices = 0.5 * (scaled + centroid)
        if self.config.symmetric:
            mirrored = vertices[:, self.mirror_index] * vertices.new_tensor([-1.0, 1.0, 1.0])
            vertices = 0.5 * (vertices + mirrored)
        return vertices
