"""The adaptive-flow network (seed paper sec. 3): UMR's texture-flow reconstruction plus the variance decoder.

``AdaptiveFlowModel(config)`` maps images (B, 3, S, S) in [0, 1] (ImageNet-normalised inside) to one
``AdaptiveFlowOutput``: a symmetric mesh on the 642-vertex icosphere (template id ``icosphere-642``),
H weak-perspective camera hypotheses with probabilities, a texture flow and the variance image I_var.

- Encoder F_e (CMR/UMR): torchvision ResNet-18 conv1..layer4 -> (512, S/32, S/32) -> conv 4x4 stride 2
  (256) + batch norm + LeakyReLU(0.2) -> FC -> 200 -> FC 200 (LeakyReLU after each) = ``features``.
- D_shape: ``Linear(200, 337 * 3)`` (weights N(0, 1e-4), bias 0) predicts offsets of the free vertices
  (plane and right, ``free_index``), mirrored to the left half; plane vertices keep x = 0. The template
  ``template_free`` (337, 3) is a persistent buffer (the learned template of UMR's stage 1, set with
  ``set_template``), initially the icosphere of radius ``template_radius``.
- D_cam: per hypothesis h a linear map of the features to (quaternion 4, logit 1, scale 1, translation 2).
  Quaternion biases rotate about Y by ``h * 360 / H`` degrees, so at initialisation the H hypotheses
  look at the object from H azimuths (UMR: 45 degree steps); weights N(0, 1e-3) keep the image's
  influence small at first. ``scale = s0 * (relu(raw + 1) + 1e-3)`` with ``s0 = 0.6 / template_radius``:
  the template's silhouette radius starts at ``INITIAL_SILHOUETTE_RADIUS`` = 0.6 NDC, i.e. 0.6 of the
  crop's half width (s ~ 1.2 for radius 0.5). Logits start equal (bias 0).
- D_flow (CMR ``TexturePredictorUV``): FC 200 -> (256, 4, 8) -> five [bilinear x2, conv 3x3, LeakyReLU]
  stages (256, 128, 64, 64, 32 channels) -> conv 3x3 -> 2 channels -> tanh: a (128, 256) flow in
  ``grid_sample`` coordinates (x right, y down). Other flow sizes are resized bilinearly at the end.
  The left texture half (columns j < W/2, the object's x < 0) copies the flow of column W - 1 - j,
  CMR's duplication of the right faces, so the sampled texture is its own ``mirror_texture``.
- D_var (the paper's variance decoder): FC 200 -> (256, 4, 4) -> bilinear up-conv stages to S x S ->
  conv 3x3 -> C_var channels r; ``I_var = 1 + variance_amplitude * tanh(r)``. The texture samples
  ``image * I_var`` (eq. 11): where the image is uniform, I_var's variation gives the flow a gradient
  that plain bilinear sampling does not (eq. 24-30). PyTorch's default initialisation: I_var is
  non-constant from the start.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
import torchvision
from pydantic import model_validator
from torch import Tensor, nn

from backend.config import Config
from backend.geometry.camera import Camera
from backend.geometry.templates import SymmetricTemplate, icosphere_template

TEMPLATE_ID = "icosphere-642"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INITIAL_SILHOUETTE_RADIUS = 0.6
"""Radius (NDC) of the template's projection at initialisation: 0.6 of the crop's half width."""
FLOW_BASE_SIZE = (128, 256)
"""(height, width) the flow decoder produces before any resize (CMR/UMR's texture-flow image)."""


class AdaptiveFlowModelConfig(Config):
    """What the backend needs to rebuild the network from a checkpoint's JSON (``config["model"]``)."""

    image_size: int = 256
    """Side of the square RGB input crop (UMR: 256); a multiple of 32, at least 64. Below 128 the
    encoder's last batch norm sees a 1 x 1 map, so training needs batches of at least 2."""
    features: int = 200
    """Width of the shared image feature (CMR/UMR ``nz_feat``)."""
    num_hypotheses: int = 8
    """Camera hypotheses per image (UMR ``num_hypo_cams``)."""
    flow_height: int = 128
    """Rows of the texture-flow image (CMR/UMR: 128)."""
    flow_width: int = 256
    """Columns of the texture-flow image (CMR/UMR: 256); even, so the texture splits into two halves."""
    variance: bool = True
    """Sample ``image * I_var`` (the paper's D_var) or the plain image (UMR): the ablation switch."""
    variance_channels: int = 1
    """Channels of I_var: 1 (one factor for RGB) or 3 (one per colour channel)."""
    variance_amplitude: float = 0.5
    """I_var = 1 + amplitude * tanh(raw) lies in (1 - amplitude, 1 + amplitude)."""
    shape_scale: float = 1.0
    """Multiplies the shape head's output (the vertex offsets)."""
    template_radius: float = 0.5
    """Radius of the initial icosphere template (inside the [-0.5, 0.5]^3 box)."""

    @model_validator(mode="after")
    def _check_adaptive_flow_model(self) -> Self:
        if self.image_size % 32 or self.image_size < 64:
            raise ValueError(f"model.image_size must be a multiple of 32 and >= 64, got {self.image_size}")
        if self.features < 1 or self.num_hypotheses < 1:
            raise ValueError(
                f"model.features and model.num_hypotheses must be positive, got "
                f"{self.features} and {self.num_hypotheses}"
            )
        if self.flow_height < 1 or self.flow_width < 2 or self.flow_width % 2:
            raise ValueError(
                f"model.flow_height must be positive and model.flow_width even, got "
                f"{self.flow_height} x {self.flow_width}"
            )
        if self.variance_channels not in (1, 3):
            raise ValueError(f"model.variance_channels must be 1 or 3, got {self.variance_channels}")
        if not 0 < self.variance_amplitude < 1:
            raise ValueError(f"model.variance_amplitude must be in (0, 1), got {self.variance_amplitude}")
        if not 0 < self.template_radius <= 0.5:
            raise ValueError(f"model.template_radius must be in (0, 0.5], got {self.template_radius}")
        return self


@dataclass
class AdaptiveFlowOutput:
    """Everything one forward pass predicts for B images (H hypotheses, V = 642 vertices)."""

    features: Tensor  # (B, D)
    offsets: Tensor  # (B, V, 3) symmetric offsets (D_shape)
    vertices: Tensor  # (B, V, 3) template + offsets
    scale: Tensor  # (B, H) camera scale > 0
    translation: Tensor  # (B, H, 2) NDC translation
    rotation: Tensor  # (B, H, 4) unit quaternions (w, x, y, z)
    camera_logits: Tensor  # (B, H)
    probs: Tensor  # (B, H) softmax of camera_logits
    flow: Tensor  # (B, Ht, Wt, 2) grid_sample coordinates, symmetrised
    variance: Tensor | None  # (B, C_var, S, S) I_var, None when config.variance is False


def normalise_imagenet(images: Tensor) -> Tensor:
    """Images (B, 3, H, W) in [0, 1] standardised with ImageNet's mean and std."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def sample_texture(image: Tensor, flow: Tensor, variance: Tensor | None = None) -> Tensor:
    """Eq. 11: the texture (B, Ht, Wt, 3) sampled from ``image * variance`` at ``flow``.

    Args:
        image: (B, 3, S, S) in [0, 1].
        flow: (B, Ht, Wt, 2) grid_sample coordinates (x right, y down, align_corners=False).
        variance: (B, C, S, S) I_var with C = 1 or 3, or None to sample the image itself.

    Bilinear, border padding; differentiable in all three inputs.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must have shape (B, 3, S, S), got {tuple(image.shape)}")
    if flow.dim() != 4 or flow.shape[-1] != 2 or flow.shape[0] != image.shape[0]:
        raise ValueError(f"flow must have shape ({image.shape[0]}, Ht, Wt, 2), got {tuple(flow.shape)}")
    source = image
    if variance is not None:
        if variance.dim() != 4 or variance.shape[1] not in (1, 3) or variance.shape[2:] != image.shape[2:]:
            raise ValueError(
                f"variance must have shape (B, 1 or 3, {image.shape[2]}, {image.shape[3]}), "
                f"got {tuple(variance.shape)}"
            )
        source = image * variance
    sampled = F.grid_sample(source, flow, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.permute(0, 2, 3, 1)  # (B, Ht, Wt, 3)


def symmetrize_flow(flow: Tensor) -> Tensor:
    """Flow (B, Ht, Wt, 2) whose left columns j < Wt/2 copy column Wt - 1 - j (right half kept)."""
    half = flow.shape[2] // 2
    right = flow[:, :, half:]  # (B, Ht, Wt/2, 2)
    return torch.cat([right.flip(2), right], dim=2)


class ResNetTrunk(nn.Sequential):
    """conv1..layer4 of a torchvision ResNet: (B, 3, S, S) -> (B, 512, S/32, S/32) for ResNet-18.

    The layers keep torchvision's names, so the state dict reads ``encoder.conv1.weight``, ...
    """

    LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, resnet: nn.Module) -> None:
        missing = [name for name in self.LAYERS if not isinstance(getattr(resnet, name, None), nn.Module)]
        if missing:
            raise TypeError(f"encoder_weights must be a torchvision ResNet (missing {missing})")
        super().__init__(OrderedDict((name, getattr(resnet, name)) for name in self.LAYERS))


def _up_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Convolution 3x3 (reflection padding, as CMR) + LeakyReLU(0.2); the caller upsamples first."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect"),
        nn.LeakyReLU(0.2, inplace=True),
    )


class UpConvDecoder(nn.Module):
    """Feature (B, D) -> FC -> (C0, h0, w0) -> [bilinear resize, conv 3x3, LeakyReLU] per stage -> conv 3x3.

    ``sizes`` are the (height, width) after each stage (usually doublings); the output is
    (B, out_channels, *sizes[-1]) before any activation.
    """

    def __init__(
        self,
        features: int,
        start: tuple[int, int, int],
        channels: list[int],
        sizes: list[tuple[int, int]],
        out_channels: int,
    ) -> None:
        super().__init__()
        self.start = start
        self.sizes = sizes
        self.fc = nn.Sequential(nn.Linear(features, math.prod(start)), nn.LeakyReLU(0.2, inplace=True))
        widths = [start[0], *channels]
        self.stages = nn.ModuleList(_up_stage(widths[i], widths[i + 1]) for i in range(len(channels)))
        self.out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, features: Tensor) -> Tensor:
        x = self.fc(features).view(-1, *self.start)
        for size, stage in zip(self.sizes, self.stages, strict=True):
            x = stage(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return self.out(x)


def _variance_sizes(image_size: int) -> list[tuple[int, int]]:
    """(height, width) after each D_var stage from 4 x 4: S / 2^(n-1), ..., S/2, S; n = ceil(log2(S/4))."""
    stages = math.ceil(math.log2(image_size / 4))
    return [(image_size >> (stages - k), image_size >> (stages - k)) for k in range(1, stages + 1)]


class AdaptiveFlowModel(nn.Module):
    """Image (B, 3, S, S) -> ``AdaptiveFlowOutput`` (module docstring)."""

    template_free: Tensor  # (P + K, 3) persistent: the template's free (plane and right) vertices
    faces: Tensor  # (F, 3)
    uvs: Tensor  # (T, 2)
    face_uvs: Tensor  # (F, 3)
    mirror_index: Tensor  # (V,)
    free_index: Tensor  # (P + K,)
    symmetry_source: Tensor  # (V,) row of the free vertices each vertex copies
    symmetry_sign: Tensor  # (V, 3) (-1 for x of left vertices, 0 for x of plane vertices, else 1)

    def __init__(
        self, config: AdaptiveFlowModelConfig | None = None, encoder_weights: nn.Module | None = None
    ) -> None:
        """``encoder_weights``: a torchvision ResNet-18 (e.g. ImageNet-pretrained) whose conv1..layer4
        become the encoder (shared, not copied); None builds ``resnet18(weights=None)``."""
        super().__init__()
        self.config = config = config or AdaptiveFlowModelConfig()
        template = icosphere_template(3)
        self.template: SymmetricTemplate = template
        resnet = encoder_weights if encoder_weights is not None else torchvision.models.resnet18(weights=None)
        self.encoder = ResNetTrunk(resnet)
        side = (config.image_size // 32 - 2) // 2 + 1  # after the 4x4 stride-2 convolution
        self.encoder_conv = nn.Sequential(
            nn.Conv2d(512, 256, 4, stride=2, padding=1), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, inplace=True)
        )
        self.encoder_fc = nn.Sequential(
            nn.Linear(256 * side * side, config.features),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.features, config.features),
            nn.LeakyReLU(0.2, inplace=True),
        )

        self.shape_head = nn.Linear(config.features, template.num_free * 3)
        nn.init.normal_(self.shape_head.weight, 0.0, 1e-4)
        nn.init.zeros_(self.shape_head.bias)

        hypotheses = config.num_hypotheses
        self.camera_head = nn.Linear(config.features, hypotheses * 8)  # per h: quat 4, logit, scale, t 2
        nn.init.normal_(self.camera_head.weight, 0.0, 1e-3)
        head_device = self.camera_head.bias.device
        spacing = 2 * math.pi / hypotheses
        angles = torch.arange(hypotheses, dtype=torch.float64, device=head_device) * spacing
        bias = torch.zeros(hypotheses, 8, dtype=torch.float64, device=head_device)
        bias[:, 0], bias[:, 2] = torch.cos(angles / 2), torch.sin(angles / 2)  # about Y
        with torch.no_grad():
            self.camera_head.bias.copy_(bias.flatten())
        self.scale_unit = INITIAL_SILHOUETTE_RADIUS / config.template_radius

        self.flow_decoder = UpConvDecoder(
            config.features,
            (256, FLOW_BASE_SIZE[0] // 32, FLOW_BASE_SIZE[1] // 32),
            [256, 128, 64, 64, 32],
            [(FLOW_BASE_SIZE[0] >> k, FLOW_BASE_SIZE[1] >> k) for k in range(4, -1, -1)],
            2,
        )
        self.variance_decoder: UpConvDecoder | None = None
        if config.variance:
            sizes = _variance_sizes(config.image_size)
            channels = [max(16, 256 >> k) for k in range(1, len(sizes) + 1)]
            self.variance_decoder = UpConvDecoder(
                config.features, (256, 4, 4), channels, sizes, config.variance_channels
            )

        free = template.mesh.vertices[template.free_index] * config.template_radius
        self.register_buffer("template_free", free.clone())
        mesh = template.mesh
        for name, value in (
            ("faces", mesh.faces),
            ("uvs", mesh.uvs),
            ("face_uvs", mesh.face_uvs),
            ("mirror_index", template.mirror_index),
            ("free_index", template.free_index),
        ):
            self.register_buffer(name, value.clone(), persistent=False)
        on = template.free_index.device  # the symmetry buffers live with the template's, moved by .to()
        source = torch.empty(mesh.num_vertices, dtype=torch.long, device=on)
        source[template.free_index] = torch.arange(template.num_free, device=on)
        source[template.left_index] = source[template.right_index]
        sign = torch.ones(mesh.num_vertices, 3, device=on)
        sign[template.left_index, 0] = -1.0
        sign[template.plane_index, 0] = 0.0
        self.register_buffer("symmetry_source", source, persistent=False)
        self.register_buffer("symmetry_sign", sign, persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.symmetry_source.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def symmetrize(self, vertices_free: Tensor) -> Tensor:
        """Free rows (..., P + K, 3) -> full (..., V, 3): left = mirrored right, plane x = 0 (exactly)."""
        return vertices_free[..., self.symmetry_source, :] * self.symmetry_sign

    @property
    def template_vertices(self) -> Tensor:
        """The symmetric template (V, 3) built from ``template_free``."""
        return self.symmetrize(self.template_free)

    @torch.no_grad()
    def set_template(self, vertices: Tensor) -> None:
        """Replace the template with ``vertices`` (V, 3) (made symmetric: each pair averaged with its
        mirror image) or free vertices (P + K, 3) in ``free_index`` order (plane x set to 0)."""
        num_free = int(self.template_free.shape[0])
        vertices = vertices.detach().to(self.template_free)
        if vertices.shape == (self.num_vertices, 3):
            mirrored = vertices[self.mirror_index] * vertices.new_tensor([-1.0, 1.0, 1.0])
            free = ((vertices + mirrored) / 2)[self.free_index]
        elif vertices.shape == (num_free, 3):
            free = vertices
        else:
            raise ValueError(
                f"template must have shape ({self.num_vertices}, 3) or ({num_free}, 3), "
                f"got {tuple(vertices.shape)}"
            )
        if not torch.isfinite(free).all():
            raise ValueError("template contains NaN or infinite values")
        self.template_free.copy_(self.symmetrize(free)[self.free_index])

    def encode(self, image: Tensor) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] -> features (B, D)."""
        size = self.config.image_size
        if image.dim() != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"expected images (B, 3, {size}, {size}), got {tuple(image.shape)}")
        grid = self.encoder_conv(self.encoder(normalise_imagenet(image)))  # (B, 256, s, s)
        return self.encoder_fc(grid.flatten(1))

    def forward(self, image: Tensor) -> AdaptiveFlowOutput:
        """Images (B, 3, S, S) in [0, 1] -> shape, cameras, flow and I_var (``AdaptiveFlowOutput``)."""
        features = self.encode(image)  # (B, D)
        batch, config = features.shape[0], self.config

        offsets_free = self.shape_head(features).view(batch, -1, 3) * config.shape_scale  # (B, P + K, 3)
        offsets = self.symmetrize(offsets_free)  # (B, V, 3)
        vertices = self.template_vertices + offsets

        raw = self.camera_head(features).view(batch, config.num_hypotheses, 8)  # (B, H, 8)
        rotation = F.normalize(raw[..., :4], dim=-1)
        logits = raw[..., 4]
        scale = self.scale_unit * (torch.relu(raw[..., 5] + 1.0) + 1e-3)
        translation = raw[..., 6:8]

        flow = torch.tanh(self.flow_decoder(features))  # (B, 2, 128, 256)
        if (config.flow_height, config.flow_width) != FLOW_BASE_SIZE:
            size = (config.flow_height, config.flow_width)
            flow = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
        flow = symmetrize_flow(flow.permute(0, 2, 3, 1))  # (B, Ht, Wt, 2)

        variance = None
        if self.variance_decoder is not None:
            variance = 1.0 + config.variance_amplitude * torch.tanh(self.variance_decoder(features))
        return AdaptiveFlowOutput(
            features=features,
            offsets=offsets,
            vertices=vertices,
            scale=scale,
            translation=translation,
            rotation=rotation,
            camera_logits=logits,
            probs=torch.softmax(logits, dim=-1),
            flow=flow,
            variance=variance,
        )

    def camera(self, output: AdaptiveFlowOutput, hypothesis: Tensor) -> Camera:
        """The B cameras of hypothesis ``hypothesis[b]`` (B,) long for each item b."""
        batch = output.scale.shape[0]
        if hypothesis.shape != (batch,) or hypothesis.dtype != torch.long:
            raise ValueError(
                f"hypothesis must be a ({batch},) long tensor, got {hypothesis.dtype} "
                f"{tuple(hypothesis.shape)}"
            )
        items = torch.arange(batch, device=hypothesis.device)
        return Camera.weak_perspective(
            output.scale[items, hypothesis],
            output.translation[items, hypothesis],
            output.rotation[items, hypothesis],
        )

    def all_cameras(self, output: AdaptiveFlowOutput) -> Camera:
        """B * H cameras, item-major (b0 h0, b0 h1, ..., b1 h0, ...)."""
        return Camera.weak_perspective(
            output.scale.reshape(-1), output.translation.reshape(-1, 2), output.rotation.reshape(-1, 4)
        )

    def texture(self, image: Tensor, output: AdaptiveFlowOutput) -> Tensor:
        """Eq. 11: the texture (B, Ht, Wt, 3) sampled from ``image * I_var`` (or ``image``) at the flow."""
        return sample_texture(image, output.flow, output.variance)
