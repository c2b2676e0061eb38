"""Procedural textures (symmetric about x = 0) and backgrounds for the synthetic generator.

Contract:

- ``TextureStyle`` is one object's look, drawn by ``sample_style``: a palette, a base colour per part,
  smooth value noise (two octaves), stripes on some parts and a few round patches of colour.
  ``colour_at(style, points, part)`` evaluates it at object-space points through ``(|x|, y, z)``, so the
  colouring of every object is exactly mirror symmetric; the atlas baking in ``synthetic`` samples it on
  the primitives' surfaces.
- ``background(kind, size, rng, images)`` returns an (S, S, 3) float32 image: "plain" one random colour;
  "noise" two colours mixed by smooth noise; "image" a random square crop of one of ``images`` (files the
  user gives), or, without any, a procedural scene (sky gradient, ground, blurred shapes, grain).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BACKGROUNDS = ("plain", "noise", "image")
_LATTICE = 9


@dataclass(frozen=True)
class TextureStyle:
    """One object's procedural look (see the module docstring); arrays are float64."""

    palette: np.ndarray  # (C, 3) colours
    part_colour: np.ndarray  # (P,) palette index of each part's base colour
    noise: tuple[np.ndarray, np.ndarray]  # two (L, L, L) value-noise lattices
    noise_frequency: float
    noise_strength: float
    stripe_direction: np.ndarray  # (P, 3) unit vectors; parts without stripes have zero frequency
    stripe_frequency: np.ndarray  # (P,) cycles per unit length
    stripe_phase: np.ndarray  # (P,)
    stripe_colour: np.ndarray  # (P,) palette index
    patch_centre: np.ndarray  # (Q, 3), x >= 0
    patch_radius: np.ndarray  # (Q,)
    patch_colour: np.ndarray  # (Q,) palette index


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.2, 0.9), rng.uniform(0.25, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value))


def sample_style(rng: np.random.Generator, num_parts: int) -> TextureStyle:
    """A random look for an object of ``num_parts`` parts."""
    colours = int(rng.integers(2, 5))
    striped = rng.random(num_parts) < 0.35
    directions = rng.normal(size=(num_parts, 3))
    patches = int(rng.integers(0, 4))
    patch_centre = rng.uniform(-0.4, 0.4, size=(patches, 3))
    patch_centre[:, 0] = np.abs(patch_centre[:, 0])  # colours are evaluated at |x|
    return TextureStyle(
        palette=np.stack([_random_colour(rng) for _ in range(colours)]),
        part_colour=rng.integers(0, colours, size=num_parts),
        noise=(rng.random((_LATTICE,) * 3), rng.random((_LATTICE,) * 3)),
        noise_frequency=float(rng.uniform(3.0, 8.0)),
        noise_strength=float(rng.uniform(0.1, 0.35)),
        stripe_direction=directions / np.linalg.norm(directions, axis=1, keepdims=True),
        stripe_frequency=np.where(striped, rng.uniform(6.0, 16.0, size=num_parts), 0.0),
        stripe_phase=rng.uniform(0, 2 * np.pi, size=num_parts),
        stripe_colour=rng.integers(0, colours, size=num_parts),
        patch_centre=patch_centre,
        patch_radius=rng.uniform(0.05, 0.15, size=patches),
        patch_colour=rng.integers(0, colours, size=patches),
    )


def value_noise(lattice: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,) noise in [0, 1]: ``lattice`` (L, L, L) interpolated (smoothstep, wrapped) at points (N, 3)."""
    size = lattice.shape[0]
    base = np.floor(points)
    fraction = points - base
    weight = fraction * fraction * (3.0 - 2.0 * fraction)  # (N, 3)
    corner = base.astype(np.int64) % size
    result = np.zeros(points.shape[0])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                value = lattice[
                    (corner[:, 0] + dx) % size, (corner[:, 1] + dy) % size, (corner[:, 2] + dz) % size
                ]
                w = (
                    (weight[:, 0] if dx else 1 - weight[:, 0])
                    * (weight[:, 1] if dy else 1 - weight[:, 1])
                    * (weight[:, 2] if dz else 1 - weight[:, 2])
                )
                result += w * value
    return result


def colour_at(style: TextureStyle, points: np.ndarray, part: np.ndarray) -> np.ndarray:
    """(N, 3) colours in [0, 1] of object-space points (N, 3) on parts (N,) (symmetric in x)."""
    folded = points * np.array([-1.0, 1.0, 1.0])
    folded = np.where(points[:, :1] < 0, folded, points)  # (|x|, y, z)
    colour = style.palette[style.part_colour[part]]  # (N, 3)
    frequency = style.stripe_frequency[part]
    projection = (folded * style.stripe_direction[part]).sum(axis=1)
    stripes = np.clip(3.0 * np.sin(2 * np.pi * frequency * projection + style.stripe_phase[part]), 0.0, 1.0)
    stripes = np.where(frequency > 0, stripes, 0.0)[:, None]
    colour = colour * (1 - stripes) + style.palette[style.stripe_colour[part]] * stripes
    for centre, radius, index in zip(style.patch_centre, style.patch_radius, style.patch_colour, strict=True):
        distance = np.linalg.norm(folded - centre, axis=1)
        weight = np.clip((radius - distance) / (0.3 * radius), 0.0, 1.0)[:, None]
        colour = colour * (1 - weight) + style.palette[index] * weight
    scaled = (folded + 1.0) * style.noise_frequency
    noise = 0.65 * value_noise(style.noise[0], scaled) + 0.35 * value_noise(style.noise[1], 2.3 * scaled)
    shade = 1.0 + style.noise_strength * (2.0 * noise - 1.0)
    return np.clip(colour * shade[:, None], 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(S, S) smooth noise in about [0, 1]: a random (cells x cells) grid, bicubically enlarged."""
    grid = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A procedural stand-in for a photo: sky gradient, ground, blurred shapes and grain."""
    rows = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    sky_top, sky_bottom, ground = (_random_colour(rng).astype(np.float32) for _ in range(3))
    image = sky_top * (1 - rows) + sky_bottom * rows  # (S, 1, 3)
    image = np.repeat(image, size, axis=1)
    horizon = int(rng.uniform(0.45, 0.85) * size)
    image[horizon:] = ground * (0.8 + 0.4 * _smooth_noise(rng, size, 6)[horizon:, :, None])
    for _ in range(int(rng.integers(2, 6))):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        axes = (
            int(rng.integers(size // 16 + 1, size // 3 + 2)),
            int(rng.integers(size // 16 + 1, size // 3 + 2)),
        )
        colour = tuple(float(c) for c in _random_colour(rng))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=max(size / 64.0, 0.5))
    grain = np.asarray(rng.normal(0.0, 0.02, size=image.shape), dtype=np.float32)
    return np.clip(image + grain, 0.0, 1.0)


def _photo_crop(rng: np.random.Generator, size: int, images: Sequence[Path]) -> np.ndarray:
    from training.datasets._io import read_rgb

    photo = read_rgb(images[int(rng.integers(0, len(images)))])
    height, width = photo.shape[:2]
    side = int(rng.uniform(0.4, 1.0) * min(height, width))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = photo[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation).astype(np.float32)


def background(kind: str, size: int, rng: np.random.Generator, images: Sequence[Path] = ()) -> np.ndarray:
    """An (S, S, 3) float32 background of ``kind`` (module docstring)."""
    if kind == "plain":
        return np.broadcast_to(_random_colour(rng).astype(np.float32), (size, size, 3)).copy()
    if kind == "noise":
        first, second = _random_colour(rng).astype(np.float32), _random_colour(rng).astype(np.float32)
        mix = 0.6 * _smooth_noise(rng, size, 5) + 0.4 * _smooth_noise(rng, size, 17)
        return first * (1 - mix[..., None]) + second * mix[..., None]
    if kind == "image":
        return _photo_crop(rng, size, images) if images else _scene(rng, size)
    raise ValueError(f"unknown background {kind!r}: expected one of {BACKGROUNDS}")
