"""The canonical synthetic face: a bilaterally symmetric height field with a symmetric albedo.

Contract (the frame and camera are Unsup3d's, ``synthetic_face_render``; here only its image plane):

- A face lives on the canonical view's image plane, in normalised ray coordinates ``(u, v)``: the ray
  through ``(u, v)`` has direction ``(u tan(fov / 2), v tan(fov / 2), 1)`` (x right, y down, z forward),
  so ``u = +-1`` are the centres of the first and last pixel columns (Unsup3d's intrinsics,
  ``f = (W - 1) / 2 / tan(fov / 2)``) and ``v`` grows downwards. ``canonical_depth(face, u, v)`` is the
  depth (the z of the surface point on that ray) of the canonical object: a background plane at
  ``face.background_depth`` with the face in front of it, ``background_depth - height``.
- The height is an ellipsoidal base ``base_height * (1 - r^2)^base_power`` inside the face ellipse
  (``r < 1``; half axes ``half_width``, ``half_height`` in u, v, centred at ``(0, centre_v)``) plus
  Gaussian features: a nose ridge (a chain of midline bumps growing towards the tip), a nose tip, brows,
  eye sockets (negative), cheeks, mouth and chin, and a few random extra bumps; the features fade out
  towards the face's outline (``(1 - r^2)`` window) and the height is clamped to ``[0, max_height]``.
- Every off-midline feature comes in a mirrored pair ``(+x, v)`` and ``(-x, v)``, so the height and the
  albedo are even functions of ``u``: ``canonical_depth(face, -u, v) == canonical_depth(face, u, v)``
  exactly (the sums are written in the same order for both signs, ``_mirrored``).
- The albedo (RGB in [0, 1]) is a random skin colour modulated by a random symmetric pattern ("plain",
  "stripes", "rings" or "spots"), with darker eyes and brows and coloured lips; outside the face the
  background plane's colour, a plain colour with a gentle horizontal and vertical gradient (the one
  asymmetric part of the scene, as real backgrounds are).
- ``sample_face(rng)`` draws every parameter from the caller's ``numpy.random.Generator``; depths
  stay inside Unsup3d's range: ``background_depth`` in [1.03, 1.07] and the nearest point (nose tip)
  no nearer than ``MIN_DEPTH`` = 0.91.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_DEPTH = 0.91
"""The nearest depth any face reaches (Unsup3d maps depth into [0.9, 1.1])."""

PATTERNS = ("plain", "stripes", "rings", "spots")


@dataclass(frozen=True)
class Bump:
    """A Gaussian feature ``amplitude * exp(-((u - x)^2 / (2 su^2) + (v - y)^2 / (2 sv^2)))``; ``mirrored``
    adds its twin at ``-x`` (then ``x > 0``), otherwise ``x`` is 0 (on the midline)."""

    x: float
    y: float
    amplitude: float
    su: float
    sv: float
    mirrored: bool = False


@dataclass(frozen=True)
class Spot:
    """A coloured elliptical spot of the albedo (colour blended by a smooth disc), mirrored like ``Bump``."""

    x: float
    y: float
    radius_u: float
    radius_v: float
    color: tuple[float, float, float]
    mirrored: bool = False


@dataclass(frozen=True)
class SyntheticFace:
    """One canonical face (module docstring); positions in (u, v), heights and depths in depth units.

    Attributes:
        background_depth: depth of the background plane.
        half_width, half_height, centre_v: the face ellipse.
        base_height, base_power: the ellipsoidal base.
        max_height: the height clamp (keeps the nearest depth >= MIN_DEPTH).
        bumps: the height features.
        nose_tip: (u, v) of the nose tip; cheeks: (u, v) of the right cheek (the left is at -u).
        skin: base albedo colour; pattern, pattern_color, pattern_frequency, pattern_phase: the pattern.
        spots: coloured spots (eyes, brows, lips and the "spots" pattern).
        background_color, background_gradient: the background plane's colour and its (u, v) slopes.
    """

    background_depth: float
    half_width: float
    half_height: float
    centre_v: float
    base_height: float
    base_power: float
    max_height: float
    bumps: tuple[Bump, ...]
    nose_tip: tuple[float, float]
    cheek: tuple[float, float]
    skin: tuple[float, float, float]
    pattern: str
    pattern_color: tuple[float, float, float]
    pattern_frequency: float
    pattern_phase: float
    spots: tuple[Spot, ...]
    background_color: tuple[float, float, float]
    background_gradient: tuple[float, float]


def _mirrored(
    values: np.ndarray, u: np.ndarray, x: float, mirrored: bool, function: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``function(u - x)``, plus ``function(u + x)`` when mirrored, summed symmetrically: the result at
    ``-u`` is bitwise the result at ``u`` (the two terms swap, and addition commutes exactly)."""
    if not mirrored:
        return values + function(u - x)
    return values + (function(u - x) + function(u + x))


class _Profile:
    """A 1-D Gaussian in u times a fixed factor in v (for ``_mirrored``)."""

    def __init__(self, su: float, factor: np.ndarray) -> None:
        self.su, self.factor = su, factor

    def __call__(self, du: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * (du / self.su) ** 2) * self.factor


def face_radius(face: SyntheticFace, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Squared elliptical radius r^2 of points (any shape) in the face ellipse (< 1 inside)."""
    return (u / face.half_width) ** 2 + ((v - face.centre_v) / face.half_height) ** 2


def face_height(face: SyntheticFace, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height (any shape, float64) of the face above its background plane; 0 outside the ellipse."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    r2 = face_radius(face, u, v)
    inside = np.clip(1.0 - r2, 0.0, None)
    height = face.base_height * inside**face.base_power
    features = np.zeros(np.broadcast(u, v).shape)
    for bump in face.bumps:
        along_v = bump.amplitude * np.exp(-0.5 * ((v - bump.y) / bump.sv) ** 2)
        features = _mirrored(features, u, bump.x, bump.mirrored, _Profile(bump.su, along_v))
    height = height + features * inside
    return np.clip(np.where(r2 < 1.0, height, 0.0), 0.0, face.max_height)


def canonical_depth(face: SyntheticFace, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Depth (any shape, float64) of the canonical object on the rays (u, v) (module docstring)."""
    return face.background_depth - face_height(face, u, v)


def face_albedo(face: SyntheticFace, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Albedo (..., 3) float64 in [0, 1] at (u, v) of any shape: the face inside its ellipse, else the
    background plane."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u, v = np.broadcast_arrays(u, v)
    skin = np.asarray(face.skin)
    if face.pattern == "stripes":
        weight = 0.5 + 0.5 * np.cos(2 * np.pi * face.pattern_frequency * v + face.pattern_phase)
    elif face.pattern == "rings":
        radius = np.sqrt(u**2 + (v - face.centre_v) ** 2)
        weight = 0.5 + 0.5 * np.cos(2 * np.pi * face.pattern_frequency * radius + face.pattern_phase)
    else:
        weight = np.zeros(u.shape)
    weight = weight[..., None] * 0.6
    color = skin * (1 - weight) + np.asarray(face.pattern_color) * weight
    for spot in face.spots:
        strength = np.zeros(u.shape)
        factor = np.exp(-0.5 * np.square(np.square((v - spot.y) / spot.radius_v)))
        strength = _mirrored(strength, u, spot.x, spot.mirrored, _Disc(spot.radius_u, factor))
        strength = np.clip(strength, 0.0, 1.0)[..., None]
        color = color * (1 - strength) + np.asarray(spot.color) * strength
    gradient_u, gradient_v = face.background_gradient
    background = np.asarray(face.background_color) * (1 + gradient_u * u + gradient_v * v)[..., None]
    inside = (face_radius(face, u, v) < 1.0)[..., None]
    return np.clip(np.where(inside, color, background), 0.0, 1.0)


class _Disc:
    """A soft disc profile in u (a 4th-power Gaussian) times a factor in v (for ``_mirrored``)."""

    def __init__(self, radius: float, factor: np.ndarray) -> None:
        self.radius, self.factor = radius, factor

    def __call__(self, du: np.ndarray) -> np.ndarray:
        # squares, not ``** 4``: numpy's vectorised pow gave mirrored positions different last bits
        return np.exp(-0.5 * np.square(np.square(du / self.radius))) * self.factor


def _color(rng: np.random.Generator, low: float, high: float) -> tuple[float, float, float]:
    r, g, b = rng.uniform(low, high, size=3)
    return float(r), float(g), float(b)


def sample_face(rng: np.random.Generator) -> SyntheticFace:
    """A random face (module docstring), every number drawn from ``rng``."""

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    half_width, half_height, centre_v = u(0.55, 0.68), u(0.70, 0.84), u(-0.06, 0.06)
    top = centre_v - 0.35 * half_height  # brow line
    tip_v = centre_v + u(0.05, 0.15) * half_height
    nose_height = u(0.02, 0.035)
    bumps = [
        # the nose ridge: midline bumps from the brow line down to the tip, growing
        *(
            Bump(0.0, top + (tip_v - top) * t, nose_height * (0.35 + 0.55 * t), 0.07 + 0.04 * t, 0.09)
            for t in np.linspace(0.0, 1.0, 5)
        ),
        Bump(0.0, tip_v, nose_height * u(0.35, 0.6), u(0.09, 0.13), u(0.06, 0.09)),  # the tip
        Bump(u(0.2, 0.3), top - u(0.02, 0.08), u(0.008, 0.016), u(0.10, 0.15), 0.05, mirrored=True),  # brows
        Bump(u(0.22, 0.3), top + u(0.06, 0.12), -u(0.01, 0.02), u(0.07, 0.1), 0.07, mirrored=True),  # eyes
        Bump(u(0.3, 0.4), tip_v + u(-0.05, 0.05), u(0.008, 0.018), 0.12, 0.12, mirrored=True),  # cheeks
        Bump(0.0, tip_v + u(0.2, 0.28), u(0.004, 0.01), u(0.10, 0.16), 0.04),  # mouth
        Bump(0.0, centre_v + half_height * u(0.7, 0.8), u(0.004, 0.01), 0.12, 0.08),  # chin
    ]
    for _ in range(int(rng.integers(0, 4))):  # random symmetric variation
        x = u(0.0, 0.4)
        x = x if x > 0.05 else 0.0  # a pair, or one bump on the midline
        bumps.append(
            Bump(x, centre_v + u(-0.5, 0.5) * half_height, u(-0.008, 0.008), u(0.06, 0.14), u(0.06, 0.14),
                 mirrored=x > 0)
        )  # fmt: skip
    background_depth = u(1.03, 1.07)
    eye = (u(0.22, 0.3), top + u(0.08, 0.12))
    dark = _color(rng, 0.02, 0.25)
    spots = [
        Spot(eye[0], eye[1], u(0.05, 0.08), u(0.03, 0.05), dark, mirrored=True),  # eyes
        Spot(eye[0] + u(-0.02, 0.02), top - u(0.03, 0.06), u(0.09, 0.13), 0.02, dark, mirrored=True),  # brows
        Spot(0.0, tip_v + u(0.22, 0.28), u(0.10, 0.16), u(0.02, 0.035), _color(rng, 0.3, 0.8)),  # lips
    ]
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    if pattern == "spots":
        for _ in range(int(rng.integers(2, 6))):
            x = u(0.0, 0.45)
            radius = u(0.03, 0.08)
            x = x if x > radius else 0.0  # a pair, or one spot on the midline
            spots.append(
                Spot(x, centre_v + u(-0.6, 0.6) * half_height, radius, radius, _color(rng, 0.1, 0.9),
                     mirrored=x > 0)
            )  # fmt: skip
    return SyntheticFace(
        background_depth=background_depth,
        half_width=half_width,
        half_height=half_height,
        centre_v=centre_v,
        base_height=u(0.045, 0.07),
        base_power=u(0.45, 0.65),
        max_height=background_depth - MIN_DEPTH,
        bumps=tuple(bumps),
        nose_tip=(0.0, tip_v),
        cheek=(0.7 * half_width, tip_v),
        skin=_color(rng, 0.35, 0.9),
        pattern=pattern,
        pattern_color=_color(rng, 0.1, 0.9),
        pattern_frequency=u(1.5, 4.0),
        pattern_phase=u(0.0, 2 * np.pi),
        spots=tuple(spots),
        background_color=_color(rng, 0.15, 0.85),
        background_gradient=(u(-0.25, 0.25), u(-0.25, 0.25)),
    )
