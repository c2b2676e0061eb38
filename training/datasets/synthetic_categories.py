"""The synthetic categories ("bird", "car", "chair"): their parts, keypoints and random variation.

Contract:

- Each category has a fixed list of parts (``part_names``; ``CATEGORY_BUILDERS`` makes them; left/right
  pairs are named ``left_*`` / ``right_*``) and of keypoints (``CATEGORY_KEYPOINTS``: the bird's are CUB's
  15 in CUB's order, the car's PASCAL3D+'s 12), so the part maps and keypoints of all objects of a
  category line up. Per object, sizes, positions, angles, exponents, tapers and bends are drawn from
  category-specific ranges with the caller's random generator (``sample_parts``), in the frame of
  ``synthetic_shapes`` (Y up, front towards +Z, left towards +X, symmetric about x = 0).
- ``sample_parts`` normalises each object so that its bounding box is centred on the origin with its
  largest half extent in [0.40, 0.47] (inside ShapeNet's [-0.5, 0.5]^3).
- Bird: body, head, beak, tail (ellipsoids, a tapered cone, a flat box), wings and legs in pairs. Car:
  chassis and cabin (rounded, tapered boxes), four wheels (cylinders). Chair: seat and back (boxes),
  four legs (round or square).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from training.datasets.synthetic_shapes import (
    MIRROR_X,
    KeypointSpec,
    Part,
    Superquadric,
    grid_mesh,
    rot_x,
    rot_y,
    rot_z,
)

# ``u(low, high)`` draws one number; every size is in the object's raw units (normalised afterwards).
Uniform = Callable[[float, float], float]


def _pair(name: str, primitive: Superquadric) -> list[Part]:
    """A left part (x > 0) and its mirror image."""
    return [
        Part(f"left_{name}", primitive),
        Part(f"right_{name}", replace(primitive, mirrored=True), f"left_{name}"),
    ]


def _bird(u: Uniform) -> list[Part]:
    body_a, body_b, body_c = u(0.15, 0.22), u(0.16, 0.23), u(0.30, 0.40)
    pitch = u(-25.0, 5.0)  # head up (negative) or level
    round_e = u(0.75, 1.1)
    head_r = u(0.10, 0.15)
    head_t = np.array([0.0, body_b * u(0.6, 0.9), body_c * u(0.75, 0.95)])
    beak_len = u(0.06, 0.16)
    beak = Superquadric(
        (head_r * u(0.25, 0.4), head_r * u(0.2, 0.35), beak_len), (u(0.8, 1.0), 1.0),
        rot_x(u(-10.0, 25.0)), head_t + np.array([0.0, -0.02, head_r * 0.8 + beak_len * 0.8]),
        taper=(-0.9, -0.9), bend=u(-0.15, 0.1),
    )  # fmt: skip
    wing = Superquadric(
        (u(0.03, 0.05), body_b * u(0.55, 0.8), body_c * u(0.75, 1.0)), (u(0.6, 1.0), u(0.6, 1.0)),
        rot_z(u(-15.0, 5.0)) @ rot_x(u(-20.0, 0.0)) @ rot_y(u(-8.0, 0.0)),
        np.array([body_a * u(0.8, 0.95), body_b * u(0.05, 0.3), -body_c * u(0.1, 0.3)]), taper=(0.0, -0.5),
    )  # fmt: skip
    leg_len = u(0.10, 0.17)
    leg = Superquadric(
        (0.018, 0.018, leg_len), (u(0.15, 0.3), 1.0), rot_x(90.0 + u(-15.0, 15.0)),
        np.array([body_a * u(0.3, 0.5), -body_b * 0.8 - leg_len * 0.8, body_c * u(-0.1, 0.2)]),
    )  # fmt: skip
    return [
        Part(
            "body",
            Superquadric(
                (body_a, body_b, body_c),
                (round_e, round_e),
                rot_x(pitch),
                np.zeros(3),
                taper=(u(-0.3, 0.1), u(-0.3, 0.1)),
                bend=u(-0.1, 0.1),
            ),
        ),
        Part(
            "head",
            Superquadric(
                (head_r * u(0.9, 1.1), head_r, head_r * u(1.0, 1.25)),
                (u(0.8, 1.1), 1.0),
                rot_x(u(-10.0, 10.0)),
                head_t,
            ),
        ),
        Part("beak", beak),
        Part(
            "tail",
            Superquadric(
                (body_a * u(0.4, 0.7), u(0.015, 0.03), body_c * u(0.4, 0.7)),
                (u(0.3, 0.8), u(0.3, 0.8)),
                rot_x(u(-35.0, 20.0)),
                np.array([0.0, body_b * u(-0.1, 0.3), -body_c * u(1.05, 1.35)]),
                taper=(u(0.0, 0.8), 0.0),
            ),
        ),
        *_pair("wing", wing),
        *_pair("leg", leg),
    ]


def _car(u: Uniform) -> list[Part]:
    width, height, length = u(0.17, 0.22), u(0.07, 0.11), u(0.38, 0.48)
    box_e = u(0.15, 0.35)
    cabin_h = u(0.06, 0.10)
    wheel_r, wheel_w = u(0.06, 0.09), u(0.025, 0.04)
    wheel_y = -height * u(0.6, 0.9)
    wheel_x = width * u(0.82, 0.95)

    def wheel(z: float) -> Superquadric:
        return Superquadric(
            (wheel_r, wheel_r, wheel_w), (u(0.1, 0.25), 1.0), rot_y(90.0), np.array([wheel_x, wheel_y, z])
        )

    return [
        Part(
            "chassis",
            Superquadric(
                (width, height, length),
                (box_e, u(0.15, 0.35)),
                np.eye(3),
                np.zeros(3),
                taper=(0.0, u(-0.2, 0.1)),
                bend=u(-0.03, 0.02),
            ),
        ),
        Part(
            "cabin",
            Superquadric(
                (width * u(0.8, 0.95), length * u(0.4, 0.6), cabin_h),
                (u(0.2, 0.5), u(0.15, 0.3)),
                rot_x(-90.0),
                np.array([0.0, height + cabin_h * 0.9, length * u(-0.3, 0.05)]),
                taper=(u(-0.25, -0.05), u(-0.45, -0.15)),
            ),
        ),
        *_pair("front_wheel", wheel(length * u(0.5, 0.7))),
        *_pair("back_wheel", wheel(-length * u(0.5, 0.7))),
    ]


def _chair(u: Uniform) -> list[Part]:
    half = u(0.18, 0.26)
    depth = half * u(0.85, 1.15)
    seat_t = u(0.025, 0.05)
    seat_y = u(-0.05, 0.05)
    back_h = u(0.18, 0.32)
    tilt = u(-5.0, 18.0)
    leg_len = u(0.18, 0.30)
    leg_r = u(0.015, 0.03)
    leg_e2 = 1.0 if u(0.0, 1.0) < 0.5 else 0.2
    back_rotation = rot_x(-90.0 - tilt)  # local z up, leaning back by ``tilt``; local y backwards
    back_t = np.array([0.0, seat_y + seat_t, -depth * u(0.85, 1.0)]) + back_h * back_rotation[:, 2]
    inset = u(0.8, 0.95)

    def leg(z_sign: float) -> Superquadric:
        splay = u(0.0, 8.0)
        return Superquadric(
            (leg_r, leg_r, leg_len), (u(0.15, 0.3), leg_e2), rot_x(90.0 - z_sign * splay),
            np.array([half * inset, seat_y - leg_len, z_sign * depth * inset]),
        )  # fmt: skip

    return [
        Part(
            "seat",
            Superquadric(
                (half, depth, seat_t),
                (u(0.15, 0.35), u(0.15, 0.4)),
                rot_x(-90.0),
                np.array([0.0, seat_y, 0.0]),
            ),
        ),
        Part(
            "back",
            Superquadric(
                (half * u(0.85, 1.0), u(0.02, 0.04), back_h),
                (u(0.15, 0.5), u(0.15, 0.4)),
                back_rotation,
                back_t,
                taper=(u(-0.3, 0.2), 0.0),
            ),
        ),
        *_pair("front_leg", leg(1.0)),
        *_pair("back_leg", leg(-1.0)),
    ]


CATEGORY_BUILDERS: dict[str, Callable[[Uniform], list[Part]]] = {"bird": _bird, "car": _car, "chair": _chair}

_UP, _DOWN = math.pi / 2, 3 * math.pi / 2
CATEGORY_KEYPOINTS: dict[str, tuple[KeypointSpec, ...]] = {
    "bird": (  # CUB's 15, in CUB's order
        KeypointSpec("Back", "body", 0.0, _UP),
        KeypointSpec("Beak", "beak", math.pi / 2),
        KeypointSpec("Belly", "body", -0.1, _DOWN),
        KeypointSpec("Breast", "body", 0.7, _DOWN),
        KeypointSpec("Crown", "head", 0.0, _UP),
        KeypointSpec("FHead", "head", 0.8, _UP),
        KeypointSpec("LEye", "head", 0.55, 0.35),
        KeypointSpec("LLeg", "left_leg", math.pi / 2),
        KeypointSpec("LWing", "left_wing", 0.0, 0.0),
        KeypointSpec("Nape", "head", -0.8, _UP),
        KeypointSpec("REye", "head", mirror_of="LEye"),
        KeypointSpec("RLeg", "right_leg", mirror_of="LLeg"),
        KeypointSpec("RWing", "right_wing", mirror_of="LWing"),
        KeypointSpec("Tail", "tail", -math.pi / 2),
        KeypointSpec("Throat", "head", 0.45, _DOWN),
    ),
    "car": (  # PASCAL3D+'s 12 car keypoints
        KeypointSpec("left_front_wheel", "left_front_wheel", math.pi / 2),
        KeypointSpec("left_back_wheel", "left_back_wheel", math.pi / 2),
        KeypointSpec("right_front_wheel", "right_front_wheel", mirror_of="left_front_wheel"),
        KeypointSpec("right_back_wheel", "right_back_wheel", mirror_of="left_back_wheel"),
        KeypointSpec("upper_left_windshield", "cabin", 1.2, -0.6),
        KeypointSpec("upper_right_windshield", "cabin", mirror_of="upper_left_windshield"),
        KeypointSpec("upper_left_rearwindow", "cabin", 1.2, 0.6),
        KeypointSpec("upper_right_rearwindow", "cabin", mirror_of="upper_left_rearwindow"),
        KeypointSpec("left_front_light", "chassis", 1.1, 0.5),
        KeypointSpec("right_front_light", "chassis", mirror_of="left_front_light"),
        KeypointSpec("left_back_trunk", "chassis", -1.1, 0.5),
        KeypointSpec("right_back_trunk", "chassis", mirror_of="left_back_trunk"),
    ),
    "chair": (
        KeypointSpec("back_top_left", "back", 1.2, 0.5),
        KeypointSpec("back_top_right", "back", mirror_of="back_top_left"),
        KeypointSpec("seat_front_left", "seat", 1.2, -0.6),
        KeypointSpec("seat_front_right", "seat", mirror_of="seat_front_left"),
        KeypointSpec("seat_back_left", "seat", 1.2, 0.6),
        KeypointSpec("seat_back_right", "seat", mirror_of="seat_back_left"),
        KeypointSpec("foot_front_left", "left_front_leg", math.pi / 2),
        KeypointSpec("foot_front_right", "right_front_leg", mirror_of="foot_front_left"),
        KeypointSpec("foot_back_left", "left_back_leg", math.pi / 2),
        KeypointSpec("foot_back_right", "right_back_leg", mirror_of="foot_back_left"),
    ),
}
"""Keypoints per category (names, and where they sit); right ones are the mirror images of left ones."""


def _names_permutation(names: list[str], mirror_of: list[str | None]) -> tuple[int, ...]:
    position = {name: i for i, name in enumerate(names)}
    permutation = list(range(len(names)))
    for i, partner in enumerate(mirror_of):
        if partner is not None:
            permutation[i], permutation[position[partner]] = position[partner], i
    return tuple(permutation)


def part_names(category: str) -> tuple[str, ...]:
    """The category's part names, in part-map channel order (channel 0 is the background)."""
    return tuple(p.name for p in CATEGORY_BUILDERS[check_category(category)](lambda low, high: low))


def part_permutation(category: str) -> tuple[int, ...]:
    """0-based left/right permutation of the category's parts."""
    parts = CATEGORY_BUILDERS[check_category(category)](lambda low, high: low)
    return _names_permutation([p.name for p in parts], [p.mirror_of for p in parts])


def keypoint_names(category: str) -> tuple[str, ...]:
    return tuple(k.name for k in CATEGORY_KEYPOINTS[check_category(category)])


def keypoint_permutation(category: str) -> tuple[int, ...]:
    """0-based left/right permutation of the category's keypoints (CMR's ``kp_perm`` for the bird)."""
    specs = CATEGORY_KEYPOINTS[check_category(category)]
    return _names_permutation([k.name for k in specs], [k.mirror_of for k in specs])


def check_category(category: str) -> str:
    if category not in CATEGORY_BUILDERS:
        raise ValueError(
            f"unknown synthetic category {category!r}: expected one of {sorted(CATEGORY_BUILDERS)}"
        )
    return category


def sample_parts(category: str, rng: np.random.Generator) -> list[Part]:
    """A random object of ``category``: its parts, normalised into the unit cube (module docstring)."""
    parts = CATEGORY_BUILDERS[check_category(category)](lambda low, high: float(rng.uniform(low, high)))
    points = np.concatenate([p.primitive.surface(*grid_mesh()[:2]) for p in parts])
    low, high = points.min(axis=0), points.max(axis=0)
    centre = np.array([0.0, (low[1] + high[1]) / 2, (low[2] + high[2]) / 2])
    factor = float(rng.uniform(0.40, 0.47)) / float(np.max((high - low) / 2))
    return [replace(p, primitive=p.primitive.scaled(factor, centre)) for p in parts]


def keypoints_of(category: str, parts: list[Part]) -> np.ndarray:
    """(K, 3) object-space keypoints of an object, exactly mirror symmetric."""
    specs = CATEGORY_KEYPOINTS[category]
    by_name = {p.name: p for p in parts}
    points = np.zeros((len(specs), 3))
    index = {k.name: i for i, k in enumerate(specs)}
    permutation = keypoint_permutation(category)
    for i, spec in enumerate(specs):
        if spec.mirror_of is None:
            points[i] = by_name[spec.part].primitive.surface(np.array(spec.eta), np.array(spec.omega))
            if permutation[i] == i:
                points[i, 0] = 0.0  # a keypoint on the plane (at omega = +-pi/2 of a part on the plane)
    for i, spec in enumerate(specs):
        if spec.mirror_of is not None:
            points[i] = points[index[spec.mirror_of]] * MIRROR_X
    return points
