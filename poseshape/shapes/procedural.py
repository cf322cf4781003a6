"""Parametric, project-made shapes: chairs, tables, sofas, cars, aeroplanes, monitors, ...

These are poseshape's default data (``poseshape demo``, tests, quick experiments); no
third-party mesh ever ships with the package.  Each category has a handful of meaningful
parameters (e.g. a chair's leg type, arms, back height and slant), sampled from a seeded
``numpy.random.Generator`` by :func:`sample_params` and turned into a mesh by :func:`build`:

>>> mesh, params = generate("chair", seed=3)          # doctest: +SKIP
>>> params["legs"], params["arms"]                     # doctest: +SKIP
('pedestal', True)
>>> mesh2 = build("chair", {**params, "arms": False})  # doctest: +SKIP

Categories (:data:`CATEGORIES`, in this fixed order; new ones are appended)
    chair, table, sofa, car, aeroplane, monitor, bench, lamp, bottle, boat, cabinet,
    speaker (a loudspeaker box), rifle, telephone (a smartphone, a keypad mobile or a desk
    phone, by its ``kind`` parameter).  The last four are ShapeNet classes of the 13-class
    3D-R2N2 set, named as :func:`poseshape.data.collections.canonical_category` names them
    (so ``MeshCollection.procedural(["loudspeaker", "phone"])`` selects speakers and
    telephones).

Construction
    Every shape is assembled from watertight closed primitives (boxes, cylinders,
    icospheres / ellipsoids, convex hulls of a few points, surfaces of revolution), possibly
    rotated, which overlap where they touch.  When the ``manifold3d`` boolean engine is
    installed the parts are **unioned** into one watertight, manifold, consistently
    outward-oriented mesh (``trimesh.boolean.union(..., engine="manifold")``).  Without it
    the parts are concatenated: the result is then a union of watertight closed parts (each
    connected component watertight, components may interpenetrate), which voxelisation by
    inside/outside tests and silhouette rendering treat exactly like the solid union.
    :data:`BOOLEAN_ENGINE` says which path is active.

Frame
    The output is in poseshape's object frame (see :mod:`poseshape.geometry.conventions`):
    +Y up, the front faces +Z (a car's nose, a chair's seat front, a monitor's screen, an
    aeroplane's nose, a cabinet's doors, a speaker's drivers, a telephone's screen or keypad
    and a rifle's muzzle all point to +Z; a chair's or sofa's back is at -Z), the bounding
    box is centred at the origin and its largest side is 1.  Shapes rest on their lowest
    point (wheels, legs, feet, plinth) at ``y = min``.  Units before normalisation are
    roughly metres, which is what the parameters are expressed in; lengths are metres and
    angles radians.

Determinism
    ``generate(category, seed)`` seeds ``numpy.random.default_rng([seed, crc32(category)])``,
    so the same (category, seed) gives bit-identical vertices on every run and platform with
    the same library versions.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import trimesh

from poseshape.core.errors import PoseshapeError
from poseshape.shapes.meshes import Mesh

__all__ = [
    "BOOLEAN_ENGINE",
    "CATEGORIES",
    "ProceduralShapes",
    "build",
    "build_trimesh",
    "default_params",
    "generate",
    "param_names",
    "sample_params",
]


def _find_boolean_engine() -> str | None:
    try:
        import manifold3d  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return "manifold"


#: ``"manifold"`` when parts are unioned into one watertight mesh, ``None`` when the
#: parts are concatenated (each part watertight; see the module docstring).
BOOLEAN_ENGINE: str | None = _find_boolean_engine()

Params = dict[str, Any]


# --------------------------------------------------------------------------------------
# Primitive parts.  Every helper returns a watertight, outward-oriented trimesh.Trimesh.
# --------------------------------------------------------------------------------------

_SECTIONS = 20  # cylinder / revolution resolution (kept modest: 1000 builds in seconds)


def _rot(axis: str | Sequence[float], angle: float) -> np.ndarray:
    """4x4 homogeneous rotation by ``angle`` radians about ``axis`` ('x', 'y', 'z' or a vector)."""
    vec = {"x": [1, 0, 0], "y": [0, 1, 0], "z": [0, 0, 1]}.get(axis, axis)  # type: ignore[arg-type]
    return trimesh.transformations.rotation_matrix(float(angle), vec)


def _box(center: Sequence[float], extents: Sequence[float], rot: np.ndarray | None = None):
    """Axis-aligned box of ``extents`` (x, y, z), rotated by ``rot`` (4x4) about its centre."""
    tf = np.eye(4) if rot is None else rot.copy()
    tf[:3, 3] = center
    return trimesh.creation.box(extents=np.asarray(extents, float), transform=tf)


def _cyl(p0: Sequence[float], p1: Sequence[float], radius: float, sections: int = _SECTIONS):
    """Solid cylinder of ``radius`` from point ``p0`` to ``p1``."""
    return trimesh.creation.cylinder(radius=float(radius), segment=np.array([p0, p1], float), sections=sections)


def _ellipsoid(center: Sequence[float], radii: Sequence[float], subdivisions: int = 2):
    """Ellipsoid (a scaled icosphere) with semi-axes ``radii`` (x, y, z)."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    m.apply_scale(np.asarray(radii, float))
    m.apply_translation(np.asarray(center, float))
    return m


def _hull(points: np.ndarray):
    """Convex hull of ``points (N, 3)`` (a closed convex solid)."""
    return trimesh.convex.convex_hull(np.asarray(points, float))


def _extrude_x(profile_zy: Sequence[Sequence[float]], x0: float, x1: float):
    """Convex prism: the convex ``(z, y)`` side profile swept from ``x = x0`` to ``x = x1``."""
    p = np.asarray(profile_zy, float)
    a = np.column_stack([np.full(len(p), x0), p[:, 1], p[:, 0]])
    b = np.column_stack([np.full(len(p), x1), p[:, 1], p[:, 0]])
    return _hull(np.vstack([a, b]))


def _frustum(p0: Sequence[float], p1: Sequence[float], r0: float, r1: float, sections=_SECTIONS):
    """Truncated cone from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    axis = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    ang = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    ring = np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * v
    return _hull(np.vstack([p0 + r0 * ring, p1 + r1 * ring]))


def _revolve_y(profile_ry: Sequence[Sequence[float]], sections: int = 24):
    """Solid of revolution about the +Y axis of a ``(radius, y)`` profile that starts and
    ends on the axis (radius 0), so the result is closed."""
    prof = np.asarray(profile_ry, float)
    m = trimesh.creation.revolve(prof, sections=sections)  # revolves about +Z
    m.apply_transform(_rot("x", -np.pi / 2))  # +Z -> +Y
    if m.volume < 0:  # profile given top-to-bottom: flip the winding outward
        m.invert()
    return m


def _finish(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Union (or concatenate) the parts, then centre the box and scale its max side to 1."""
    if BOOLEAN_ENGINE is not None and len(parts) > 1:
        mesh = trimesh.boolean.union(parts, engine=BOOLEAN_ENGINE)
    else:
        mesh = trimesh.util.concatenate(parts)
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2.0)
    mesh.apply_scale(1.0 / float((hi - lo).max()))
    return mesh


# --------------------------------------------------------------------------------------
# Categories.  Each has a sampler (rng -> params), defaults and a builder (params -> parts).
# --------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _choice(rng: np.random.Generator, options: Sequence[Any], p: Sequence[float] | None = None):
    return options[int(rng.choice(len(options), p=p))]


# ---- chair ---------------------------------------------------------------------------

_CHAIR_DEFAULTS: Params = {
    "legs": "four",  # "four", "three" or "pedestal"
    "leg_shape": "round",  # "round" or "square" (four/three legs)
    "arms": False,
    "seat_width": 0.46,
    "seat_depth": 0.44,
    "seat_height": 0.45,  # floor to the seat's underside
    "seat_thickness": 0.05,
    "back_height": 0.45,
    "back_slant": 0.15,  # radians, the back leans toward -Z
    "back_thickness": 0.04,
    "leg_radius": 0.022,
    "arm_height": 0.22,  # above the seat
}


def _sample_chair(rng: np.random.Generator) -> Params:
    legs = _choice(rng, ["four", "three", "pedestal"], p=[0.6, 0.15, 0.25])
    return {
        "legs": legs,
        "leg_shape": _choice(rng, ["round", "square"]),
        "arms": bool(rng.random() < 0.4),
        "seat_width": _u(rng, 0.40, 0.60),
        "seat_depth": _u(rng, 0.38, 0.55),
        "seat_height": _u(rng, 0.38, 0.52),
        "seat_thickness": _u(rng, 0.03, 0.10),
        "back_height": _u(rng, 0.25, 0.65),
        "back_slant": _u(rng, 0.0, 0.35),
        "back_thickness": _u(rng, 0.025, 0.07),
        "leg_radius": _u(rng, 0.015, 0.03),
        "arm_height": _u(rng, 0.15, 0.28),
    }


def _leg(p_top, p_bot, radius, shape):
    if shape == "round":
        return _cyl(p_bot, p_top, radius, sections=12)
    c = (np.asarray(p_top) + np.asarray(p_bot)) / 2
    h = float(np.linalg.norm(np.asarray(p_top) - np.asarray(p_bot)))
    return _box(c, [2 * radius, h, 2 * radius])


def _build_chair(p: Params) -> list[trimesh.Trimesh]:
    w, d, h, t = p["seat_width"], p["seat_depth"], p["seat_height"], p["seat_thickness"]
    r = p["leg_radius"]
    parts = [_box([0, h + t / 2, 0], [w, t, d])]
    top = h + t / 2  # legs reach into the seat
    if p["legs"] == "four":
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (w / 2 - 1.5 * r), sz * (d / 2 - 1.5 * r)
                parts.append(_leg([x, top, z], [x * 1.04, 0, z * 1.04], r, p["leg_shape"]))
    elif p["legs"] == "three":
        rad = 0.5 * min(w, d) - 1.5 * r
        for k in range(3):  # one leg at the back (-Z), two at the front corners
            a = -np.pi / 2 + k * 2 * np.pi / 3
            x, z = rad * np.cos(a), rad * np.sin(a)
            parts.append(_leg([x, top, z], [x * 1.15, 0, z * 1.15], r * 1.2, p["leg_shape"]))
    elif p["legs"] == "pedestal":
        col_r = max(0.025, 1.4 * r)
        foot_h = 0.035
        parts.append(_cyl([0, foot_h / 2, 0], [0, top, 0], col_r))
        spoke = 0.55 * max(w, d)
        for k in range(5):  # a five-spoke star base with small feet
            a = np.pi / 2 + k * 2 * np.pi / 5
            c = [0.5 * spoke * np.cos(a), foot_h * 1.2, 0.5 * spoke * np.sin(a)]
            parts.append(_box(c, [spoke, 0.035, 0.045], _rot("y", -a)))
            tip = [0.95 * spoke * np.cos(a), foot_h / 2, 0.95 * spoke * np.sin(a)]
            parts.append(_cyl([tip[0], 0, tip[2]], [tip[0], foot_h * 1.4, tip[2]], 0.02, 10))
    else:
        raise PoseshapeError(f"chair: legs must be 'four', 'three' or 'pedestal', got {p['legs']!r}")
    # back: a slab hinged at the seat's rear edge, leaning toward -Z by back_slant
    bt, bh, sl = p["back_thickness"], p["back_height"], p["back_slant"]
    back = trimesh.creation.box(extents=[w, bh + t, bt])
    back.apply_translation([0, (bh + t) / 2, 0])
    back.apply_transform(_rot("x", -sl))
    back.apply_translation([0, h, -d / 2 + bt / 2])
    parts.append(back)
    if p["arms"]:
        ah = h + t + p["arm_height"]
        aw = max(0.035, 0.1 * w)
        for sx in (-1, 1):
            x = sx * (w / 2 - aw / 2)
            parts.append(_box([x, ah, -0.05 * d], [aw, 0.03, 0.9 * d]))  # arm rest
            parts.append(_box([x, (h + ah) / 2, 0.35 * d], [aw * 0.7, ah - h, aw * 0.7]))  # post
    return parts


# ---- table ---------------------------------------------------------------------------

_TABLE_DEFAULTS: Params = {
    "top": "rectangular",  # "rectangular" or "round"
    "legs": "four",  # "four" or "pedestal"
    "width": 1.2,  # along X (diameter for a round top)
    "depth": 0.8,  # along Z (ignored for a round top)
    "height": 0.75,
    "top_thickness": 0.04,
    "leg_radius": 0.03,
    "apron": True,
}


def _sample_table(rng: np.random.Generator) -> Params:
    top = _choice(rng, ["rectangular", "round"], p=[0.65, 0.35])
    legs = _choice(rng, ["four", "pedestal"], p=[0.7, 0.3])
    width = _u(rng, 0.6, 1.8) if top == "rectangular" else _u(rng, 0.6, 1.2)
    return {
        "top": top,
        "legs": legs,
        "width": width,
        "depth": width * _u(rng, 0.45, 1.0),
        "height": _u(rng, 0.45, 0.85),
        "top_thickness": _u(rng, 0.025, 0.07),
        "leg_radius": _u(rng, 0.02, 0.045),
        "apron": bool(rng.random() < 0.5),
    }


def _build_table(p: Params) -> list[trimesh.Trimesh]:
    h, tt, r = p["height"], p["top_thickness"], p["leg_radius"]
    round_top = p["top"] == "round"
    w = p["width"]
    d = w if round_top else p["depth"]
    if round_top:
        parts = [_cyl([0, h - tt, 0], [0, h, 0], w / 2, sections=32)]
    else:
        parts = [_box([0, h - tt / 2, 0], [w, tt, d])]
    if p["legs"] == "four":
        if round_top:
            corners = [(np.cos(a), np.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2]
            corners = [(0.33 * w * cx, 0.33 * w * cz) for cx, cz in corners]
        else:
            corners = [(sx * (w / 2 - 2 * r), sz * (d / 2 - 2 * r)) for sx in (-1, 1) for sz in (-1, 1)]
        for x, z in corners:
            parts.append(_cyl([x, 0, z], [x, h - tt / 2, z], r, sections=12))
        if p["apron"]:
            ah = 0.08
            if round_top:
                ring = [(0.33 * w, 0), (0, 0.33 * w)]  # a cross of stretchers under a round top
                for ex, ez in ring:
                    ln = 2 * np.hypot(ex, ez) / np.sqrt(2) * np.sqrt(2)
                    parts.append(
                        _box(
                            [0, h - tt - ah / 2 + 0.005, 0],
                            [ln if ex else 0.03, ah, ln if ez else 0.03],
                            _rot("y", np.pi / 4),
                        )
                    )
            else:
                parts.append(_box([0, h - tt - ah / 2 + 0.005, d / 2 - 2 * r], [w - 4 * r, ah, 0.02]))
                parts.append(_box([0, h - tt - ah / 2 + 0.005, -d / 2 + 2 * r], [w - 4 * r, ah, 0.02]))
                parts.append(_box([w / 2 - 2 * r, h - tt - ah / 2 + 0.005, 0], [0.02, ah, d - 4 * r]))
                parts.append(_box([-w / 2 + 2 * r, h - tt - ah / 2 + 0.005, 0], [0.02, ah, d - 4 * r]))
    elif p["legs"] == "pedestal":
        col = max(0.04, 2 * r)
        parts.append(_cyl([0, 0.02, 0], [0, h - tt / 2, 0], col))
        foot = 0.45 * min(w, d)
        if round_top or p["apron"]:  # a round base plate
            parts.append(_cyl([0, 0, 0], [0, 0.04, 0], foot, sections=28))
        else:  # a cross of two feet
            parts.append(_box([0, 0.025, 0], [2 * foot, 0.05, 0.06]))
            parts.append(_box([0, 0.025, 0], [0.06, 0.05, 2 * foot]))
    else:
        raise PoseshapeError(f"table: legs must be 'four' or 'pedestal', got {p['legs']!r}")
    return parts


# ---- sofa ----------------------------------------------------------------------------

_SOFA_DEFAULTS: Params = {
    "length": 2.0,  # along X
    "depth": 0.9,  # along Z
    "seat_height": 0.45,
    "back_height": 0.4,  # above the seat
    "arm_style": "box",  # "box", "rolled", "low" or "none"
    "arm_width": 0.18,
    "cushions": 3,
    "leg_height": 0.08,
}


def _sample_sofa(rng: np.random.Generator) -> Params:
    length = _u(rng, 1.3, 2.6)
    return {
        "length": length,
        "depth": _u(rng, 0.75, 1.0),
        "seat_height": _u(rng, 0.38, 0.5),
        "back_height": _u(rng, 0.3, 0.55),
        "arm_style": _choice(rng, ["box", "rolled", "low", "none"], p=[0.35, 0.3, 0.2, 0.15]),
        "arm_width": _u(rng, 0.1, 0.25),
        "cushions": int(rng.integers(1, 4)),
        "leg_height": _u(rng, 0.03, 0.15),
    }


def _build_sofa(p: Params) -> list[trimesh.Trimesh]:
    L, D, sh, bh = p["length"], p["depth"], p["seat_height"], p["back_height"]
    lh, aw = p["leg_height"], p["arm_width"]
    style = p["arm_style"]
    if style not in ("box", "rolled", "low", "none"):
        raise PoseshapeError(f"sofa: arm_style must be box/rolled/low/none, got {style!r}")
    base_h = sh - lh - 0.12  # frame; the cushions sit on top up to the seat height
    parts = [_box([0, lh + base_h / 2, 0], [L, base_h, D])]
    inner = L - (2 * aw if style != "none" else 0.0)
    back_t = 0.2 * D
    n = max(1, int(p["cushions"]))
    cw = inner / n
    for k in range(n):  # seat cushions with a small gap between them
        x = -inner / 2 + (k + 0.5) * cw
        parts.append(_box([x, sh - 0.065, back_t / 2 + 0.01], [cw - 0.02, 0.13, D - back_t - 0.02]))
    parts.append(_box([0, lh + (base_h + 0.12 + bh) / 2, -D / 2 + back_t / 2], [L, base_h + 0.12 + bh, back_t]))
    if style != "none":
        # arms stay clearly below the top of the back
        top = sh + min({"box": 0.22, "rolled": 0.17, "low": 0.06}[style], bh - 0.15)
        for sx in (-1, 1):
            x = sx * (L / 2 - aw / 2)
            parts.append(_box([x, lh + (top - lh) / 2, 0], [aw, top - lh, D]))
            if style == "rolled":
                rr = aw * 0.65
                xr = x + sx * 0.15 * aw
                parts.append(_cyl([xr, top - rr, -D / 2], [xr, top - rr, D / 2], rr, 16))
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(
                _cyl(
                    [sx * (L / 2 - 0.06), 0, sz * (D / 2 - 0.06)],
                    [sx * (L / 2 - 0.06), lh + 0.02, sz * (D / 2 - 0.06)],
                    0.03,
                    10,
                )
            )
    return parts


# ---- car -----------------------------------------------------------------------------

_CAR_DEFAULTS: Params = {
    "body": "sedan",  # "sedan", "suv" or "truck"
    "length": 4.5,  # along Z, front at +Z
    "width": 1.8,
    "body_height": 0.65,  # lower body, ground clearance excluded
    "clearance": 0.18,
    "cabin_height": 0.5,
    "cabin_length": 0.5,  # fraction of the car's length
    "cabin_offset": -0.05,  # cabin centre along Z as a fraction of the length
    "windshield_slope": 0.6,  # horizontal run of the windshield / cabin height
    "wheel_radius": 0.33,
    "wheel_width": 0.22,
    "wheelbase": 0.6,  # fraction of the length
}


def _sample_car(rng: np.random.Generator) -> Params:
    body = _choice(rng, ["sedan", "suv", "truck"], p=[0.45, 0.3, 0.25])
    if body == "sedan":
        return {
            "body": body,
            "length": _u(rng, 4.0, 5.0),
            "width": _u(rng, 1.7, 1.9),
            "body_height": _u(rng, 0.5, 0.65),
            "clearance": _u(rng, 0.12, 0.2),
            "cabin_height": _u(rng, 0.4, 0.55),
            "cabin_length": _u(rng, 0.42, 0.55),
            "cabin_offset": _u(rng, -0.1, 0.0),
            "windshield_slope": _u(rng, 0.9, 1.6),
            "wheel_radius": _u(rng, 0.3, 0.36),
            "wheel_width": _u(rng, 0.18, 0.25),
            "wheelbase": _u(rng, 0.58, 0.66),
        }
    if body == "suv":
        return {
            "body": body,
            "length": _u(rng, 4.2, 5.0),
            "width": _u(rng, 1.8, 2.0),
            "body_height": _u(rng, 0.65, 0.85),
            "clearance": _u(rng, 0.2, 0.3),
            "cabin_height": _u(rng, 0.55, 0.75),
            "cabin_length": _u(rng, 0.6, 0.72),
            "cabin_offset": _u(rng, -0.15, -0.1),
            "windshield_slope": _u(rng, 0.6, 1.0),
            "wheel_radius": _u(rng, 0.36, 0.42),
            "wheel_width": _u(rng, 0.22, 0.3),
            "wheelbase": _u(rng, 0.58, 0.66),
        }
    return {
        "body": body,
        "length": _u(rng, 5.0, 5.8),
        "width": _u(rng, 1.9, 2.1),
        "body_height": _u(rng, 0.7, 0.9),
        "clearance": _u(rng, 0.25, 0.35),
        "cabin_height": _u(rng, 0.6, 0.75),
        "cabin_length": _u(rng, 0.28, 0.36),
        "cabin_offset": _u(rng, 0.05, 0.12),
        "windshield_slope": _u(rng, 0.5, 0.8),
        "wheel_radius": _u(rng, 0.38, 0.45),
        "wheel_width": _u(rng, 0.25, 0.32),
        "wheelbase": _u(rng, 0.6, 0.68),
    }


def _build_car(p: Params) -> list[trimesh.Trimesh]:
    L, W, bh, cl = p["length"], p["width"], p["body_height"], p["clearance"]
    wr, ww = p["wheel_radius"], p["wheel_width"]
    kind = p["body"]
    if kind not in ("sedan", "suv", "truck"):
        raise PoseshapeError(f"car: body must be 'sedan', 'suv' or 'truck', got {kind!r}")
    y0, y1 = cl, cl + bh
    nose = 0.08 * L
    # lower body: side profile (z, y) with a sloped nose (+Z) and a slightly rounded tail
    profile = [
        (-L / 2, y0 + 0.08),
        (-L / 2 + 0.1, y0),
        (L / 2 - 0.12, y0),
        (L / 2, y0 + 0.25 * bh),
        (L / 2 - nose, y1),
        (-L / 2 + 0.05, y1),
        (-L / 2, y1 - 0.1 * bh),
    ]
    parts = []
    ch = p["cabin_height"]
    cz = p["cabin_offset"] * L
    clen = p["cabin_length"] * L
    ws = p["windshield_slope"] * ch
    cw = W * 0.9
    if kind == "truck":
        # the cab block sits in front; the bed behind it has a floor and walls (open top)
        bed_start = cz - clen / 2 - 0.05
        parts.append(
            _extrude_x(
                [(z, y) for z, y in profile if z >= bed_start - 0.2] + [(bed_start - 0.2, y0), (bed_start - 0.2, y1)],
                -W / 2,
                W / 2,
            )
        )
        bed_len = bed_start + L / 2
        floor_y = y0 + 0.45 * bh
        parts.append(_box([0, (y0 + floor_y) / 2, -L / 2 + bed_len / 2], [W, floor_y - y0, bed_len]))
        wall_t = 0.06
        for sx in (-1, 1):
            parts.append(
                _box(
                    [sx * (W / 2 - wall_t / 2), (floor_y + y1) / 2 - 0.02, -L / 2 + bed_len / 2],
                    [wall_t, y1 - floor_y + 0.04, bed_len],
                )
            )
        parts.append(
            _box(
                [0, (floor_y + y1) / 2 - 0.02, -L / 2 + wall_t / 2],
                [W, y1 - floor_y + 0.04, wall_t],
            )
        )
        cab = [
            (cz - clen / 2, y1 - 0.02),
            (cz + clen / 2, y1 - 0.02),
            (cz + clen / 2 - ws, y1 + ch),
            (cz - clen / 2 + 0.05, y1 + ch),
        ]
        parts.append(_extrude_x(cab, -cw / 2, cw / 2))
    else:
        parts.append(_extrude_x(profile, -W / 2, W / 2))
        rear = 0.7 * ch if kind == "sedan" else 0.12 * ch
        cab = [
            (cz - clen / 2, y1 - 0.02),
            (cz + clen / 2, y1 - 0.02),
            (cz + clen / 2 - ws, y1 + ch),
            (cz - clen / 2 + rear, y1 + ch),
        ]
        parts.append(_extrude_x(cab, -cw / 2, cw / 2))
    # wheels: cylinders along X whose outer faces stick out of the body so they are visible
    zb = p["wheelbase"] * L / 2
    for z in (-zb, zb):
        for sx in (-1, 1):
            xo = sx * (W / 2 + 0.03)
            parts.append(_cyl([xo - sx * ww, wr, z], [xo, wr, z], wr, sections=24))
    return parts


# ---- aeroplane -----------------------------------------------------------------------

_AEROPLANE_DEFAULTS: Params = {
    "length": 30.0,  # fuselage, along Z (nose at +Z)
    "fuselage_radius": 1.6,
    "wing_span": 28.0,  # tip to tip, along X
    "wing_chord": 4.5,  # at the root
    "wing_taper": 0.35,  # tip chord / root chord
    "wing_sweep": 0.45,  # radians, leading-edge sweep back toward -Z
    "wing_position": 0.52,  # root leading edge, fraction of the length from the tail
    "wing_height": -0.4,  # fraction of the fuselage radius (-1 low wing, +1 high wing)
    "dihedral": 0.08,  # radians
    "tail_span": 10.0,
    "fin_height": 5.5,
    "engines": 2,  # 0, 2 or 4 nacelles under the wings
}


def _sample_aeroplane(rng: np.random.Generator) -> Params:
    length = _u(rng, 18.0, 45.0)
    span = length * _u(rng, 0.6, 1.15)
    return {
        "length": length,
        "fuselage_radius": length * _u(rng, 0.04, 0.065),
        "wing_span": span,
        "wing_chord": length * _u(rng, 0.12, 0.22),
        "wing_taper": _u(rng, 0.2, 0.6),
        "wing_sweep": _u(rng, 0.0, 0.65),
        "wing_position": _u(rng, 0.45, 0.6),
        "wing_height": _u(rng, -0.7, 0.7),
        "dihedral": _u(rng, -0.03, 0.12),
        "tail_span": span * _u(rng, 0.28, 0.4),
        "fin_height": length * _u(rng, 0.13, 0.2),
        "engines": int(_choice(rng, [0, 2, 4], p=[0.25, 0.5, 0.25])),
    }


def _wing(root_le_z, root_y, half_span, root_chord, taper, sweep, dihedral, thick, side):
    """One tapered, swept wing panel (a convex slab) from x = 0 to x = side * half_span."""
    tip_chord = root_chord * taper
    tip_le_z = root_le_z - half_span * np.tan(sweep)
    tip_y = root_y + half_span * np.tan(dihedral)
    pts = []
    for x, y, le, c, th in (
        (0.0, root_y, root_le_z, root_chord, thick),
        (side * half_span, tip_y, tip_le_z, tip_chord, thick * taper),
    ):
        for z in (le, le - c):
            for dy in (-th / 2, th / 2):
                pts.append([x, y + dy, z])
    return _hull(np.array(pts))


def _build_aeroplane(p: Params) -> list[trimesh.Trimesh]:
    L, R = p["length"], p["fuselage_radius"]
    # fuselage: nose cap, a long cylinder and a tail cone rising toward the fin
    body_front, body_rear = L / 2 - 1.6 * R, -L / 2 + 3.5 * R
    parts = [
        _cyl([0, 0, body_rear], [0, 0, body_front], R, sections=24),
        _ellipsoid([0, 0, body_front], [R, R, 1.6 * R]),
        _frustum([0, 0, body_rear + 0.01], [0, 0.45 * R, -L / 2], R, 0.25 * R, sections=24),
    ]
    n_eng = int(p["engines"])
    if n_eng not in (0, 2, 4):
        raise PoseshapeError(f"aeroplane: engines must be 0, 2 or 4, got {n_eng!r}")
    wy = p["wing_height"] * R
    root_le = -L / 2 + p["wing_position"] * L
    chord, taper, sweep = p["wing_chord"], p["wing_taper"], p["wing_sweep"]
    half = p["wing_span"] / 2
    thick = 0.12 * chord
    for side in (-1, 1):
        parts.append(_wing(root_le, wy, half, chord, taper, sweep, p["dihedral"], thick, side))
    # horizontal stabiliser and vertical fin at the tail
    t_chord = 0.35 * chord + 0.08 * L
    t_le = -L / 2 + t_chord + 0.2 * R
    for side in (-1, 1):
        parts.append(
            _wing(
                t_le,
                0.35 * R,
                p["tail_span"] / 2,
                t_chord * 0.7,
                0.5,
                min(sweep + 0.1, 0.7),
                0.0,
                0.1 * t_chord,
                side,
            )
        )
    fh = p["fin_height"]
    fin_root = t_chord * 1.1
    fin_tip = fin_root * 0.45
    f_le = t_le + 0.3 * R
    f_sw = fh * np.tan(min(sweep + 0.25, 0.85))
    ft = 0.1 * fin_root
    fin = []
    for y, le, c, th in (
        (0.2 * R, f_le, fin_root, ft),
        (0.2 * R + fh, f_le - f_sw, fin_tip, ft * 0.5),
    ):
        for z in (le, le - c):
            for dx in (-th / 2, th / 2):
                fin.append([dx, y, z])
    parts.append(_hull(np.array(fin)))
    # engine nacelles hang under the wings
    if n_eng:
        spots = [0.32] if n_eng == 2 else [0.28, 0.55]
        er, el = 0.42 * R, 0.22 * L / max(1.0, 0.04 * L) * 0.04 * L * 0.75
        for f in spots:
            for side in (-1, 1):
                x = side * f * half
                le = root_le - f * half * np.tan(sweep)
                y = wy + f * half * np.tan(p["dihedral"]) - thick / 2 - 0.9 * er
                parts.append(_cyl([x, y, le + 0.35 * el], [x, y, le - 0.65 * el], er, sections=16))
                parts.append(_box([x, y + 0.6 * er, le - 0.25 * el], [0.15 * er, 1.5 * er, 0.5 * el]))
    return parts


# ---- monitor -------------------------------------------------------------------------

_MONITOR_DEFAULTS: Params = {
    "aspect": 16 / 9,  # screen width / height
    "screen_width": 0.6,
    "depth": 0.04,  # panel thickness (CRT: depth of the tube housing)
    "crt": False,
    "stand": "pedestal",  # "pedestal", "feet", "arm" or "none"
    "stand_height": 0.12,  # desk-to-screen gap (at most 0.05 with "feet")
    "tilt": 0.08,  # radians, the screen tilts back (top toward -Z)
}


def _sample_monitor(rng: np.random.Generator) -> Params:
    crt = bool(rng.random() < 0.2)
    return {
        "aspect": float(_choice(rng, [4 / 3, 16 / 10, 16 / 9, 21 / 9], p=[0.3, 0.25, 0.35, 0.1])) if not crt else 4 / 3,
        "screen_width": _u(rng, 0.4, 0.8),
        "depth": _u(rng, 0.3, 0.45) if crt else _u(rng, 0.02, 0.06),
        "crt": crt,
        "stand": _choice(rng, ["pedestal", "feet", "arm", "none"], p=[0.5, 0.2, 0.15, 0.15]),
        "stand_height": _u(rng, 0.04, 0.18),
        "tilt": _u(rng, 0.0, 0.2),
    }


def _build_monitor(p: Params) -> list[trimesh.Trimesh]:
    sw = p["screen_width"]
    sh = sw / p["aspect"]
    dep, gap = p["depth"], p["stand_height"]
    if p["stand"] == "feet":  # two short feet hold the panel just above the desk
        gap = min(gap, 0.05)
    stand = p["stand"]
    if stand not in ("pedestal", "feet", "arm", "none"):
        raise PoseshapeError(f"monitor: stand must be pedestal/feet/arm/none, got {stand!r}")
    base_t = 0.02 if stand != "none" else 0.0
    cy = base_t + gap + sh / 2  # screen centre height
    tilt = _rot("x", -p["tilt"])
    if p["crt"]:
        # a front bezel box and a tapered tube housing behind it (toward -Z)
        front = 0.06
        panel = [_box([0, 0, -front / 2], [sw, sh, front])]
        back = []
        for sx in (-1, 1):
            for sy in (-1, 1):
                back.append([sx * sw / 2, sy * sh / 2, -front])
                back.append([sx * sw * 0.3, sy * sh * 0.3 - 0.05 * sh, -dep])
        panel.append(_hull(np.array(back)))
        # a slightly inset screen (raised glass)
        panel.append(_box([0, 0, 0.005], [0.86 * sw, 0.86 * sh, 0.02]))
    else:
        panel = [
            _box([0, 0, -dep / 2], [sw, sh, dep]),
            _box([0, -0.1 * sh, -dep - 0.02], [0.4 * sw, 0.4 * sh, 0.05]),
        ]  # back housing
    parts = []
    for m in panel:
        m.apply_transform(tilt)
        m.apply_translation([0, cy, 0])
        parts.append(m)
    zc = -dep / 2 if not p["crt"] else -dep * 0.4  # the stand's column sits behind the screen
    if stand == "pedestal":
        parts.append(_box([0, base_t / 2, zc], [0.45 * sw, base_t, max(0.18, 0.5 * dep + 0.12)]))
        parts.append(_box([0, (base_t + cy) / 2, zc - 0.04], [0.08 * sw + 0.02, cy - base_t / 2, 0.03]))
    elif stand == "feet":
        for sx in (-1, 1):
            x = sx * 0.38 * sw
            parts.append(_box([x, base_t / 2, zc], [0.05, base_t, max(0.2, dep + 0.1)]))
            parts.append(_box([x, (base_t + cy - 0.3 * sh) / 2, zc - 0.01], [0.03, cy - 0.3 * sh, 0.03]))
    elif stand == "arm":  # a desk-clamp arm: a post behind the screen and a horizontal link
        parts.append(_cyl([0, 0, zc - 0.25], [0, cy, zc - 0.25], 0.02, 12))
        parts.append(_cyl([0, 0, zc - 0.25], [0, base_t, zc - 0.25], 0.08, 20))
        parts.append(_box([0, cy, zc - 0.13], [0.04, 0.04, 0.27]))
    return parts


# ---- bench, lamp, bottle, boat --------------------------------------------------------

_BENCH_DEFAULTS: Params = {
    "length": 1.5,
    "depth": 0.4,
    "seat_height": 0.45,
    "seat_thickness": 0.05,
    "legs": "panel",
    "back": True,
    "back_height": 0.35,
    "slats": 0,
}


def _sample_bench(rng: np.random.Generator) -> Params:
    return {
        "length": _u(rng, 1.0, 2.2),
        "depth": _u(rng, 0.3, 0.5),
        "seat_height": _u(rng, 0.38, 0.5),
        "seat_thickness": _u(rng, 0.03, 0.07),
        "legs": _choice(rng, ["panel", "four"]),
        "back": bool(rng.random() < 0.55),
        "back_height": _u(rng, 0.25, 0.45),
        "slats": int(_choice(rng, [0, 3, 4])),
    }


def _build_bench(p: Params) -> list[trimesh.Trimesh]:
    L, D, h, t = p["length"], p["depth"], p["seat_height"], p["seat_thickness"]
    parts = []
    if p["slats"]:
        n = int(p["slats"])
        sd = D / n
        for k in range(n):
            parts.append(_box([0, h + t / 2, -D / 2 + (k + 0.5) * sd], [L, t, sd * 0.8]))
        parts.append(_box([0, h + t / 4, 0], [0.9 * L, t / 2, D * 0.95]))  # joins the slats
    else:
        parts.append(_box([0, h + t / 2, 0], [L, t, D]))
    top = h + t / 2
    if p["legs"] == "panel":
        for sx in (-1, 1):
            parts.append(_box([sx * (L / 2 - 0.1), top / 2, 0], [0.05, top, 0.9 * D]))
    else:
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(_box([sx * (L / 2 - 0.06), top / 2, sz * (D / 2 - 0.04)], [0.05, top, 0.05]))
    if p["back"]:
        bh = p["back_height"]
        back = trimesh.creation.box(extents=[L, bh, 0.04])
        back.apply_transform(_rot("x", -0.15))
        back.apply_translation([0, h + t + 0.05 + bh / 2, -D / 2 + 0.02])
        parts.append(back)
        for sx in (-1, 1):
            parts.append(_box([sx * (L / 2 - 0.1), h + t + 0.05, -D / 2 + 0.02], [0.05, 0.16, 0.04]))
    return parts


_LAMP_DEFAULTS: Params = {
    "kind": "floor",
    "height": 1.6,
    "base_radius": 0.18,
    "shade_radius": 0.22,
    "shade_height": 0.28,
    "pole_radius": 0.015,
}


def _sample_lamp(rng: np.random.Generator) -> Params:
    kind = _choice(rng, ["floor", "table", "desk"], p=[0.35, 0.35, 0.3])
    height = {"floor": _u(rng, 1.3, 1.8), "table": _u(rng, 0.4, 0.7), "desk": _u(rng, 0.4, 0.6)}[kind]
    return {
        "kind": kind,
        "height": height,
        "base_radius": height * _u(rng, 0.1, 0.25),
        "shade_radius": height * _u(rng, 0.12, 0.3),
        "shade_height": height * _u(rng, 0.15, 0.3),
        "pole_radius": height * _u(rng, 0.008, 0.03),
    }


def _build_lamp(p: Params) -> list[trimesh.Trimesh]:
    H, br, sr, sh, pr = (
        p["height"],
        p["base_radius"],
        p["shade_radius"],
        p["shade_height"],
        p["pole_radius"],
    )
    bt = 0.06 * H
    parts = [_frustum([0, 0, 0], [0, bt, 0], br, 0.8 * br, sections=24)]
    if p["kind"] == "desk":  # an articulated arm leaning forward (+Z) with a cone head
        elbow = np.array([0.0, 0.6 * H, -0.15 * H])
        head = np.array([0.0, 0.85 * H, 0.3 * H])
        parts.append(_cyl([0, bt / 2, 0], elbow, pr, 10))
        parts.append(_cyl(elbow, head, pr, 10))
        parts.append(_ellipsoid(elbow, [2 * pr] * 3, 1))
        parts.append(
            _frustum(
                head + [0, 0.02 * H, 0],
                head + [0, -0.25 * H, 0.1 * H],
                0.05 * H,
                0.45 * sr,
                sections=20,
            )
        )
    else:  # a straight pole with a frustum shade
        top = H - sh
        parts.append(_cyl([0, bt / 2, 0], [0, top + 0.3 * sh, 0], pr, 12))
        parts.append(_frustum([0, top, 0], [0, H, 0], sr, 0.6 * sr, sections=28))
    return parts


_BOTTLE_DEFAULTS: Params = {
    "height": 0.3,
    "radius": 0.04,
    "shoulder": 0.6,
    "neck_radius": 0.013,
    "neck_length": 0.25,
    "square": False,
}


def _sample_bottle(rng: np.random.Generator) -> Params:
    return {
        "height": _u(rng, 0.15, 0.35),
        "radius": _u(rng, 0.025, 0.05),
        "shoulder": _u(rng, 0.4, 0.75),
        "neck_radius": _u(rng, 0.008, 0.018),
        "neck_length": _u(rng, 0.1, 0.3),
        "square": bool(rng.random() < 0.15),
    }


def _build_bottle(p: Params) -> list[trimesh.Trimesh]:
    H, r, nr = p["height"], p["radius"], min(p["neck_radius"], 0.8 * p["radius"])
    body_h = p["shoulder"] * H
    neck_start = H * (1 - p["neck_length"])
    neck_start = max(neck_start, body_h + 0.02 * H)
    prof = [
        (0, 0),
        (r * 0.95, 0),
        (r, 0.02 * H),
        (r, body_h),
        (nr, neck_start),
        (nr, H - 0.02 * H),
        (nr * 1.2, H - 0.02 * H),
        (nr * 1.2, H),
        (0, H),
    ]
    if p["square"]:
        parts = [
            _box([0, body_h / 2, 0], [1.8 * r, body_h, 1.8 * r]),
            _revolve_y([(0, body_h - 0.01 * H)] + prof[3:], sections=24),
        ]
    else:
        parts = [_revolve_y(prof, sections=24)]
    return parts


_BOAT_DEFAULTS: Params = {
    "length": 8.0,
    "beam": 2.6,
    "hull_depth": 1.2,
    "cabin": True,
    "cabin_length": 0.35,
    "cabin_height": 1.0,
    "mast": False,
    "mast_height": 8.0,
}


def _sample_boat(rng: np.random.Generator) -> Params:
    L = _u(rng, 5.0, 14.0)
    mast = bool(rng.random() < 0.4)
    return {
        "length": L,
        "beam": L * _u(rng, 0.25, 0.38),
        "hull_depth": L * _u(rng, 0.1, 0.16),
        "cabin": bool(rng.random() < 0.7) or not mast,
        "cabin_length": _u(rng, 0.25, 0.45),
        "cabin_height": L * _u(rng, 0.07, 0.13),
        "mast": mast,
        "mast_height": L * _u(rng, 0.8, 1.2),
    }


def _build_boat(p: Params) -> list[trimesh.Trimesh]:
    L, B, Dh = p["length"], p["beam"], p["hull_depth"]
    # hull: deck outline (pointed bow at +Z, transom at -Z) over a narrower keel line
    deck = [
        (-B / 2 * 0.85, -L / 2),
        (B / 2 * 0.85, -L / 2),
        (B / 2, -L / 6),
        (B / 2 * 0.8, L / 5),
        (0.0, L / 2),
        (-B / 2 * 0.8, L / 5),
        (-B / 2, -L / 6),
    ]
    keel = [
        (-B * 0.15, -L / 2 + 0.05 * L),
        (B * 0.15, -L / 2 + 0.05 * L),
        (B * 0.1, L / 4),
        (-B * 0.1, L / 4),
    ]
    pts = [[x, Dh, z] for x, z in deck] + [[x, 0.0, z] for x, z in keel]
    pts += [[0.0, 0.5 * Dh, L / 2 * 0.95]]  # bow stem
    parts = [_hull(np.array(pts))]
    if p["cabin"]:
        cl = p["cabin_length"] * L
        ch = p["cabin_height"]
        cz = -0.1 * L
        prof = [
            (cz - cl / 2, Dh - 0.05),
            (cz + cl / 2, Dh - 0.05),
            (cz + cl / 2 - 0.3 * ch, Dh + ch),
            (cz - cl / 2, Dh + ch),
        ]
        parts.append(_extrude_x(prof, -0.3 * B, 0.3 * B))
    if p["mast"]:
        mz = 0.1 * L
        parts.append(_cyl([0, Dh * 0.5, mz], [0, Dh + p["mast_height"], mz], 0.015 * L, 10))
        parts.append(
            _cyl(
                [0, Dh + 0.12 * p["mast_height"], mz],
                [0, Dh + 0.12 * p["mast_height"], mz - 0.4 * L],
                0.01 * L,
                10,
            )
        )
    return parts


# ---- cabinet, speaker, rifle, telephone -----------------------------------------------

_CABINET_DEFAULTS: Params = {
    "width": 0.8,  # along X
    "depth": 0.45,  # along Z
    "height": 0.9,  # the carcass, base excluded
    "base": "legs",  # "legs" or "plinth" (recessed at the front)
    "base_height": 0.12,
    "doors": 2,  # 0, 1 or 2 door leaves on the front (+Z)
    "drawers": 1,  # rows of drawers above the doors (a chest of drawers when doors == 0)
    "handle": "bar",  # "bar" or "knob"
    "top_overhang": 0.02,  # the top slab overhangs the sides and the front
}


def _sample_cabinet(rng: np.random.Generator) -> Params:
    width = _u(rng, 0.4, 1.6)
    base = _choice(rng, ["legs", "plinth"], p=[0.55, 0.45])
    doors = int(_choice(rng, [0, 1, 2], p=[0.15, 0.3, 0.55]))
    if doors == 1 and width > 0.9:  # a wide front gets a pair of doors
        doors = 2
    return {
        "width": width,
        "depth": _u(rng, 0.3, 0.6),
        "height": _u(rng, 0.45, 1.9),
        "base": base,
        "base_height": _u(rng, 0.08, 0.25) if base == "legs" else _u(rng, 0.04, 0.12),
        "doors": doors,
        "drawers": int(rng.integers(2, 5)) if doors == 0 else int(_choice(rng, [0, 1, 2], p=[0.45, 0.4, 0.15])),
        "handle": _choice(rng, ["bar", "knob"]),
        "top_overhang": _u(rng, 0.0, 0.04),
    }


def _build_cabinet(p: Params) -> list[trimesh.Trimesh]:
    W, D, H, bh = p["width"], p["depth"], p["height"], p["base_height"]
    n_doors, n_drawers = int(p["doors"]), int(p["drawers"])
    if p["base"] not in ("legs", "plinth"):
        raise PoseshapeError(f"cabinet: base must be 'legs' or 'plinth', got {p['base']!r}")
    if p["handle"] not in ("bar", "knob"):
        raise PoseshapeError(f"cabinet: handle must be 'bar' or 'knob', got {p['handle']!r}")
    if n_doors not in (0, 1, 2) or n_drawers < 0 or n_doors + n_drawers == 0:
        raise PoseshapeError(
            f"cabinet: doors must be 0, 1 or 2 and drawers >= 0, not both 0; got {n_doors}, {n_drawers}"
        )
    parts = [_box([0, bh + H / 2, 0], [W, H, D])]  # the carcass
    o, tt = p["top_overhang"], 0.025
    parts.append(_box([0, bh + H + tt / 2 - 0.005, o / 2], [W + 2 * o, tt, D + o]))
    # front panels (doors, drawer fronts): proud of the carcass front z = D/2, small gaps between
    m, g, pt = 0.02, 0.006, 0.018
    zc, zf = D / 2 + pt / 2 - 0.004, D / 2 + pt - 0.004  # panel centre and front face
    x0, y0, y1 = -W / 2 + m, bh + m, bh + H - m
    fw, fh = W - 2 * m, y1 - y0
    dh = fh / max(1, n_drawers) if n_doors == 0 else min(0.2, 0.5 * fh / max(1, n_drawers))

    def handle(x, y, horizontal, size):
        if p["handle"] == "knob":
            return _cyl([x, y, zf - 0.003], [x, y, zf + 0.025], 0.012, 12)
        return _box([x, y, zf + 0.012], [size, 0.016, 0.03] if horizontal else [0.016, size, 0.03])

    for k in range(n_drawers):
        yc = y1 - (k + 0.5) * dh
        parts.append(_box([0, yc, zc], [fw, dh - g, pt]))
        parts.append(handle(0.0, yc, True, min(0.25, 0.35 * fw)))
    if n_doors:
        top = y1 - n_drawers * dh
        door_h, lw = top - y0, fw / n_doors
        for k in range(n_doors):
            xc = x0 + (k + 0.5) * lw
            parts.append(_box([xc, (y0 + top) / 2, zc], [lw - g, door_h - g, pt]))
            # the handle near the leaf's free edge: the middle for a pair, +X for one leaf
            xh = xc + (1 if k == 0 else -1) * (lw / 2 - 0.05)
            parts.append(handle(xh, y0 + 0.5 * door_h, False, min(0.3, 0.3 * door_h)))
    if p["base"] == "legs":
        r = max(0.018, 0.03 * min(W, D))
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (W / 2 - 1.5 * r), sz * (D / 2 - 1.5 * r)
                parts.append(_frustum([x, 0, z], [x, bh + 0.01, z], 0.7 * r, r, sections=12))
    else:  # a plinth set back at the front (a toe kick)
        parts.append(_box([0, (bh + 0.01) / 2, -0.015], [W - 0.03, bh + 0.01, D - 0.05]))
    return parts


_SPEAKER_DEFAULTS: Params = {
    "width": 0.22,  # along X
    "height": 0.36,  # the enclosure, feet excluded
    "depth": 0.26,  # along Z
    "drivers": 2,  # 1: one full-range driver; 2: woofer + tweeter; 3: two woofers + tweeter
    "woofer_radius": 0.38,  # fraction of the front's smaller side
    "taper": 0.0,  # the rear face is narrower (and lower) than the front baffle by this fraction
    "feet": "pads",  # "pads", "spikes" or "plinth"
    "foot_height": 0.02,
    "port": False,  # a bass-reflex port below the drivers (when there is room on the baffle)
}


def _sample_speaker(rng: np.random.Generator) -> Params:
    tower = bool(rng.random() < 0.35)
    taper = _u(rng, 0.05, 0.3) if rng.random() < 0.4 else 0.0
    return {
        "width": _u(rng, 0.18, 0.3) if tower else _u(rng, 0.14, 0.4),
        "height": _u(rng, 0.75, 1.1) if tower else _u(rng, 0.2, 0.45),
        "depth": _u(rng, 0.2, 0.38),
        "drivers": int(_choice(rng, [2, 3])) if tower else int(_choice(rng, [1, 2], p=[0.3, 0.7])),
        "woofer_radius": _u(rng, 0.3, 0.42),
        "taper": taper,
        "feet": _choice(rng, ["spikes", "plinth"]) if tower else _choice(rng, ["pads", "spikes"], p=[0.75, 0.25]),
        "foot_height": _u(rng, 0.015, 0.04),
        "port": bool(rng.random() < 0.5),
    }


def _driver(x: float, y: float, zf: float, r: float, dome: float) -> list[trimesh.Trimesh]:
    """A driver on a baffle at ``z = zf``: a frame ring proud of it and a dome bulging to +Z."""
    t = 0.08 * r
    return [
        _cyl([x, y, zf - 0.004], [x, y, zf + t], r, 24),
        _ellipsoid([x, y, zf + t], [0.75 * r, 0.75 * r, dome * r]),
    ]


def _build_speaker(p: Params) -> list[trimesh.Trimesh]:
    W, H, D, fh, taper = p["width"], p["height"], p["depth"], p["foot_height"], p["taper"]
    n, feet = int(p["drivers"]), p["feet"]
    if n not in (1, 2, 3):
        raise PoseshapeError(f"speaker: drivers must be 1, 2 or 3, got {n!r}")
    if feet not in ("pads", "spikes", "plinth"):
        raise PoseshapeError(f"speaker: feet must be 'pads', 'spikes' or 'plinth', got {feet!r}")
    if not 0.0 <= taper < 0.9:
        raise PoseshapeError(f"speaker: taper must be in [0, 0.9), got {taper!r}")
    # enclosure: the front baffle (W x H at z = D/2) and a smaller rear face, flat bottom
    Wr, Hr, zf = W * (1 - taper), H * (1 - 0.3 * taper), D / 2
    pts = [[sx * W / 2, y, zf] for sx in (-1, 1) for y in (fh, fh + H)]
    pts += [[sx * Wr / 2, y, -zf] for sx in (-1, 1) for y in (fh, fh + Hr)]
    parts = [_hull(np.array(pts))]
    # drivers: stacked down the baffle (tweeter on top), or in a row for a wide centre speaker
    R = p["woofer_radius"] * min(W, H)
    radii = {1: [R], 2: [0.35 * R, R], 3: [0.35 * R, R, R]}[n]  # top to bottom
    vertical = H >= W
    gap = 0.2 * R
    stack = sum(2 * r for r in radii) + gap * (n - 1)
    s = min(1.0, 0.85 * (H if vertical else W) / stack)
    radii, gap, stack = [s * r for r in radii], s * gap, s * stack
    if vertical:
        margin = 0.5 * (H - stack) if H < 2 * W else min(0.12 * W + 0.03, 0.5 * (H - stack))
        y = fh + H - margin
        for r in radii:
            parts += _driver(0.0, y - r, zf, r, 0.55 if r < R * s else 0.3)
            y -= 2 * r + gap
        rp = 0.12 * min(W, H)
        if p["port"] and y - rp > fh + 0.05 * H:  # room left below the drivers
            parts.append(_cyl([0, y - rp + gap, zf - 0.004], [0, y - rp + gap, zf + 0.012], rp, 16))
    else:  # woofers either side of the tweeter
        order = {1: [0], 2: [1, 0], 3: [1, 0, 2]}[n]
        x = -stack / 2
        for i in order:
            r = radii[i]
            parts += _driver(x + r, fh + H / 2, zf, r, 0.55 if r < R * s else 0.3)
            x += 2 * r + gap
    if feet == "plinth":
        parts.append(_box([0, (fh + 0.005) / 2, -0.01], [W + 0.05, fh + 0.005, D + 0.02]))  # flush at the front
    else:
        rf = 0.07 * min(W, D)
        for zc in (D / 2 - 1.6 * rf, -D / 2 + 1.6 * rf):
            half = 0.5 * (Wr + (W - Wr) * (zc + D / 2) / D) - 1.6 * rf  # the bottom's half-width at zc
            for sx in (-1, 1):
                a, b = [sx * half, 0, zc], [sx * half, fh + 0.005, zc]
                parts.append(_cyl(a, b, rf, 12) if feet == "pads" else _frustum(a, b, 0.2 * rf, rf, 12))
    return parts


_RIFLE_DEFAULTS: Params = {
    "length": 1.0,  # butt to muzzle, along Z (muzzle at +Z)
    "stock": "straight",  # "straight" (in line with the bore, a pistol grip) or "classic" (dropped, a wrist)
    "barrel_length": 0.42,  # fraction of the length ahead of the receiver
    "barrel_radius": 0.011,
    "forend_length": 0.55,  # fraction of the barrel covered by the handguard / forend
    "stock_height": 0.14,  # height of the butt
    "magazine": "curved",  # "none", "box" or "curved"
    "magazine_length": 0.16,  # how far the magazine hangs below the receiver
    "scope": False,  # a telescopic sight (otherwise iron sights)
}


def _sample_rifle(rng: np.random.Generator) -> Params:
    stock = _choice(rng, ["straight", "classic"], p=[0.55, 0.45])
    if stock == "straight":
        magazine = _choice(rng, ["box", "curved", "none"], p=[0.5, 0.4, 0.1])
    else:
        magazine = _choice(rng, ["none", "box"], p=[0.6, 0.4])
    return {
        "length": _u(rng, 0.8, 1.3),
        "stock": stock,
        "barrel_length": _u(rng, 0.32, 0.5),
        "barrel_radius": _u(rng, 0.008, 0.014),
        "forend_length": _u(rng, 0.3, 0.75),
        "stock_height": _u(rng, 0.11, 0.17),
        "magazine": magazine,
        "magazine_length": _u(rng, 0.06, 0.22),
        "scope": bool(rng.random() < (0.6 if stock == "classic" else 0.35)),
    }


def _build_rifle(p: Params) -> list[trimesh.Trimesh]:
    L, stock, mag = p["length"], p["stock"], p["magazine"]
    if stock not in ("straight", "classic"):
        raise PoseshapeError(f"rifle: stock must be 'straight' or 'classic', got {stock!r}")
    if mag not in ("none", "box", "curved"):
        raise PoseshapeError(f"rifle: magazine must be 'none', 'box' or 'curved', got {mag!r}")
    br, sh, ml = p["barrel_radius"], p["stock_height"], p["magazine_length"]
    rh, rw = 0.07, 0.035  # receiver height and width; the bore is the Z axis (y = 0)
    zm = L / 2  # muzzle
    bl = p["barrel_length"] * L
    zr1 = zm - bl  # receiver front
    rl = 0.22 * L
    zr0 = zr1 - rl  # receiver rear
    zb = -L / 2  # butt
    parts = [
        _box([0, 0.05 * rh, (zr0 + zr1) / 2], [rw, rh, rl]),  # receiver, y in [-0.45 rh, 0.55 rh]
        _cyl([0, 0, zr1 - 0.02], [0, 0, zm - 0.04], br, 16),  # barrel
        _cyl([0, 0, zm - 0.06], [0, 0, zm], 1.45 * br, 16),  # muzzle device
        _box([0, br + 0.008, zm - 0.09], [0.006, 0.022, 0.015]),  # front sight post
    ]
    fl = p["forend_length"] * bl
    if stock == "straight":
        parts.append(_box([0, 0, zr1 + fl / 2 - 0.01], [0.9 * rw, 0.8 * rh, fl + 0.02]))  # handguard
        prof = [(zr0 + 0.02, 0.35 * rh), (zr0 + 0.02, -0.3 * rh), (zb, 0.35 * rh - sh), (zb, 0.35 * rh)]
        parts.append(_extrude_x(prof, -0.4 * rw, 0.4 * rw))
        zg, gl, rake = zr0 + 0.3 * rl, 0.11, np.tan(0.35)  # a pistol grip raked back
        grip = [
            (zg + 0.02, -0.3 * rh),
            (zg - 0.025, -0.3 * rh),
            (zg - 0.025 - gl * rake, -0.3 * rh - gl),
            (zg + 0.02 - gl * rake, -0.3 * rh - gl),
        ]
        parts.append(_extrude_x(grip, -0.4 * rw, 0.4 * rw))
        zt = zg + 0.05
    else:
        prof = [(zr1 - 0.02, 0.15 * rh), (zr1 + fl, 0.1 * rh), (zr1 + fl, -0.35 * rh), (zr1 - 0.02, -0.6 * rh)]
        parts.append(_extrude_x(prof, -0.45 * rw, 0.45 * rw))  # forend under the barrel
        zw = zr0 - 0.35 * (zr0 - zb)  # the wrist ends, the butt begins
        wrist = [(zr0 + 0.02, 0.3 * rh), (zr0 + 0.02, -0.5 * rh), (zw, -1.0 * rh), (zw, 0.0)]
        butt = [(zw + 0.01, 0.0), (zw + 0.01, -1.0 * rh), (zb, -0.2 * rh - sh), (zb, -0.2 * rh)]
        parts.append(_extrude_x(wrist, -0.4 * rw, 0.4 * rw))
        parts.append(_extrude_x(butt, -0.45 * rw, 0.45 * rw))
        zt = zr0 + 0.4 * rl
    parts.append(_box([0, -0.45 * rh - 0.012, zt], [0.3 * rw, 0.034, 0.06]))  # trigger guard
    zm0, zm1, ytop = zr0 + 0.58 * rl, zr0 + 0.88 * rl, -0.35 * rh
    ybot = -0.45 * rh - ml
    if mag == "box":
        prof = [(zm0, ytop), (zm1, ytop), (zm1 + 0.1 * ml, ybot), (zm0 + 0.1 * ml, ybot)]
        parts.append(_extrude_x(prof, -0.35 * rw, 0.35 * rw))
    elif mag == "curved":  # two raked segments, the lower one swept further forward
        ymid = 0.5 * (ytop + ybot)
        upper = [(zm0, ytop), (zm1, ytop), (zm1 + 0.1 * ml, ymid), (zm0 + 0.1 * ml, ymid)]
        lower = [
            (zm0 + 0.1 * ml, ymid + 0.005),
            (zm1 + 0.1 * ml, ymid + 0.005),
            (zm1 + 0.45 * ml, ybot),
            (zm0 + 0.45 * ml, ybot),
        ]
        parts.append(_extrude_x(upper, -0.35 * rw, 0.35 * rw))
        parts.append(_extrude_x(lower, -0.35 * rw, 0.35 * rw))
    top = 0.55 * rh
    if p["scope"]:
        sr, slen = 0.02, 0.3 * L
        ys, zs = top + 0.035 + sr, (zr0 + zr1) / 2 + 0.03
        parts.append(_cyl([0, ys, zs - slen / 2], [0, ys, zs + slen / 2], sr, 16))
        parts.append(_frustum([0, ys, zs + slen / 2 - 0.01], [0, ys, zs + slen / 2 + 0.06], sr, 1.8 * sr, 16))
        parts.append(_frustum([0, ys, zs - slen / 2 + 0.01], [0, ys, zs - slen / 2 - 0.04], sr, 1.4 * sr, 16))
        for dz in (-0.25 * slen, 0.25 * slen):  # the two mounts
            parts.append(_box([0, (top + ys) / 2, zs + dz], [0.6 * rw, ys - top + 0.01, 0.02]))
    else:  # an iron rear sight
        parts.append(_box([0, top + 0.006, zr0 + 0.15 * rl], [0.6 * rw, 0.016, 0.025]))
    return parts


_TELEPHONE_DEFAULTS: Params = {
    "kind": "smartphone",  # "smartphone", "keypad" (a candy-bar mobile) or "desk"
    "width": 0.072,  # along X
    "height": 0.146,  # along Y (a desk phone: the base's height at the rear)
    "depth": 0.008,  # along Z (a mobile's thickness; a desk phone: the base's depth)
    "corner_radius": 0.12,  # fraction of the width (mobiles)
    "screen": 0.86,  # the screen's height as a fraction of the face (mobiles)
    "slope": 0.35,  # radians, the desk phone's keypad face slopes down toward +Z
    "handset": 1.0,  # the desk phone's handset length / base width
}


def _sample_telephone(rng: np.random.Generator) -> Params:
    kind = _choice(rng, ["smartphone", "keypad", "desk"], p=[0.5, 0.25, 0.25])
    if kind == "smartphone":
        w = _u(rng, 0.06, 0.08)
        dims = (w, w * _u(rng, 1.8, 2.2), _u(rng, 0.007, 0.011))
    elif kind == "keypad":
        w = _u(rng, 0.045, 0.055)
        dims = (w, w * _u(rng, 2.0, 2.5), _u(rng, 0.012, 0.02))
    else:
        dims = (_u(rng, 0.16, 0.24), _u(rng, 0.06, 0.1), _u(rng, 0.16, 0.24))
    return {
        "kind": kind,
        "width": dims[0],
        "height": dims[1],
        "depth": dims[2],
        "corner_radius": _u(rng, 0.05, 0.2),
        "screen": _u(rng, 0.8, 0.92) if kind == "smartphone" else _u(rng, 0.28, 0.38),
        "slope": _u(rng, 0.2, 0.5),
        "handset": _u(rng, 0.9, 1.25),
    }


def _rounded_slab(x0, x1, y0, y1, z0, z1, r, n=6):
    """A box ``[x0, x1] x [y0, y1] x [z0, z1]`` with its four Z-parallel edges rounded by ``r``."""
    r = min(r, 0.49 * (x1 - x0), 0.49 * (y1 - y0))
    pts = []
    for cx, cy, a0 in ((x1 - r, y1 - r, 0.0), (x0 + r, y1 - r, 0.5), (x0 + r, y0 + r, 1.0), (x1 - r, y0 + r, 1.5)):
        for a in np.pi * (a0 + np.linspace(0.0, 0.5, n)):
            pts += [[cx + r * np.cos(a), cy + r * np.sin(a), z] for z in (z0, z1)]
    return _hull(np.array(pts))


def _build_telephone(p: Params) -> list[trimesh.Trimesh]:
    kind, W, H, D = p["kind"], p["width"], p["height"], p["depth"]
    if kind not in ("smartphone", "keypad", "desk"):
        raise PoseshapeError(f"telephone: kind must be 'smartphone', 'keypad' or 'desk', got {kind!r}")
    if kind == "desk":
        return _build_desk_phone(p)
    # a mobile standing upright, its screen (and keypad) facing +Z, camera on the back (-Z)
    rc, zf, b = p["corner_radius"] * W, D / 2, 0.06 * W
    parts = [_rounded_slab(-W / 2, W / 2, 0, H, -zf, zf, rc)]
    sh = p["screen"] * H if kind == "smartphone" else min(p["screen"], 0.42) * H  # keys need the rest
    if kind == "smartphone":
        y0 = (H - sh) / 2
        parts.append(_rounded_slab(-W / 2 + b, W / 2 - b, y0, y0 + sh, zf - 0.0005, zf + 0.0006, max(rc - b, 0.002)))
        cam = 0.35 * W  # a rounded camera block at the back's upper corner
        parts.append(
            _rounded_slab(-W / 2 + b, -W / 2 + b + cam, H - b - cam, H - b, -zf - 0.0012, -zf + 0.0005, 0.25 * cam)
        )
    else:
        top = 0.88 * H
        parts.append(_box([0, top - sh / 2, zf], [W - 2 * b, sh, 0.0012]))  # screen
        rn = min(0.13 * W, 0.06 * H)
        yn = top - sh - 0.04 * H - rn  # navigation pad between the screen and the keys
        parts.append(_cyl([0, yn, zf - 0.0005], [0, yn, zf + 0.0012], rn, 16))
        k0, k1 = 0.05 * H, yn - rn - 0.03 * H  # 4 rows x 3 columns of keys
        pitch = (k1 - k0) / 4
        for row in range(4):
            for col in (-1, 0, 1):
                c = [col * 0.3 * W, k0 + (row + 0.5) * pitch, zf + 0.0003]
                parts.append(_box(c, [0.24 * W, 0.7 * pitch, 0.0018]))
        parts.append(_cyl([0, H - 0.15 * H, -zf + 0.0005], [0, H - 0.15 * H, -zf - 0.001], 0.1 * W, 16))  # lens
    for sx, y, h in ((1, 0.65 * H, 0.08 * H), (-1, 0.7 * H, 0.14 * H)):  # side buttons: power, volume
        parts.append(_box([sx * (W / 2 + 0.0003), y, 0], [0.0016, h, 0.5 * D]))
    return parts


def _build_desk_phone(p: Params) -> list[trimesh.Trimesh]:
    """A desk telephone: a wedge base whose keypad face slopes down toward +Z and a handset
    lying along X across the cradle at the top rear."""
    W, Hb, D, s = p["width"], p["height"], p["depth"], p["slope"]
    zr = -D / 2 + 0.45 * D  # the cradle's front edge
    hf = max(0.3 * Hb, Hb - np.tan(s) * (D / 2 - zr))  # height of the front edge
    tw = 0.9 * W
    pts = [[sx * W / 2, 0, sz * D / 2] for sx in (-1, 1) for sz in (-1, 1)]
    pts += [[sx * tw / 2, Hb, z] for sx in (-1, 1) for z in (-D / 2, zr)]
    pts += [[sx * tw / 2, hf, D / 2] for sx in (-1, 1)]
    parts = [_hull(np.array(pts))]
    # keys on the slope: boxes tilted so that their local +Y is the slope's outward normal
    a = float(np.arctan2(Hb - hf, D / 2 - zr))
    n = np.array([0.0, np.cos(a), np.sin(a)])
    A, B = np.array([0.0, Hb, zr]), np.array([0.0, hf, D / 2])
    length = float(np.linalg.norm(B - A))
    for t in np.linspace(0.25, 0.85, 4):
        for col in (-1, 0, 1):
            c = A + t * (B - A) + n * 0.003 + np.array([col * 0.22 * tw, 0, 0])
            parts.append(_box(c, [0.14 * W, 0.012, 0.14 * length], _rot("x", a)))
    # the handset: earpiece and mouthpiece sunk into the cradle, joined by a handle
    hl, zh = p["handset"] * W, -D / 2 + 0.225 * D
    xe = hl / 2 - 0.03
    for sx in (-1, 1):
        parts.append(_ellipsoid([sx * xe, Hb + 0.018, zh], [0.03, 0.022, 0.032]))
    parts.append(_cyl([-xe, Hb + 0.03, zh], [xe, Hb + 0.03, zh], 0.012, 16))
    return parts


# --------------------------------------------------------------------------------------
# Registry and public API
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Category:
    sample: Callable[[np.random.Generator], Params]
    build: Callable[[Params], list[trimesh.Trimesh]]
    defaults: Params


_REGISTRY: dict[str, _Category] = {
    "chair": _Category(_sample_chair, _build_chair, _CHAIR_DEFAULTS),
    "table": _Category(_sample_table, _build_table, _TABLE_DEFAULTS),
    "sofa": _Category(_sample_sofa, _build_sofa, _SOFA_DEFAULTS),
    "car": _Category(_sample_car, _build_car, _CAR_DEFAULTS),
    "aeroplane": _Category(_sample_aeroplane, _build_aeroplane, _AEROPLANE_DEFAULTS),
    "monitor": _Category(_sample_monitor, _build_monitor, _MONITOR_DEFAULTS),
    "bench": _Category(_sample_bench, _build_bench, _BENCH_DEFAULTS),
    "lamp": _Category(_sample_lamp, _build_lamp, _LAMP_DEFAULTS),
    "bottle": _Category(_sample_bottle, _build_bottle, _BOTTLE_DEFAULTS),
    "boat": _Category(_sample_boat, _build_boat, _BOAT_DEFAULTS),
    "cabinet": _Category(_sample_cabinet, _build_cabinet, _CABINET_DEFAULTS),
    "speaker": _Category(_sample_speaker, _build_speaker, _SPEAKER_DEFAULTS),
    "rifle": _Category(_sample_rifle, _build_rifle, _RIFLE_DEFAULTS),
    "telephone": _Category(_sample_telephone, _build_telephone, _TELEPHONE_DEFAULTS),
}

#: The categories the generator knows, in a fixed order.
CATEGORIES: tuple[str, ...] = tuple(_REGISTRY)


def _category(category: str) -> _Category:
    try:
        return _REGISTRY[category]
    except (KeyError, TypeError):
        raise PoseshapeError(f"unknown procedural category {category!r}; known: {list(CATEGORIES)}") from None


def param_names(category: str) -> tuple[str, ...]:
    """The parameter names of ``category`` (keys of :func:`default_params`)."""
    return tuple(_category(category).defaults)


def default_params(category: str) -> Params:
    """A typical parameter set of ``category`` (a fresh dict the caller may edit)."""
    return dict(_category(category).defaults)


def sample_params(category: str, rng: np.random.Generator | int | None = None) -> Params:
    """Draw a random parameter set of ``category`` from ``rng``.

    Args:
        category: one of :data:`CATEGORIES`.
        rng: a ``numpy.random.Generator`` (advanced by the call), or an int seed.

    Returns:
        A JSON-serialisable dict with exactly the keys of :func:`param_names`
        (lengths in metres, angles in radians, categorical choices as strings/bools/ints).
    """
    cat = _category(category)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    return cat.sample(rng)


def _resolve(category: str, params: Params | None) -> Params:
    cat = _category(category)
    full = dict(cat.defaults)
    if params:
        unknown = sorted(set(params) - set(full))
        if unknown:
            raise PoseshapeError(f"{category}: unknown parameter(s) {unknown}; valid: {sorted(full)}")
        full.update(params)
    return full


def build_trimesh(category: str, params: Params | None = None) -> trimesh.Trimesh:
    """Like :func:`build` but returns the ``trimesh.Trimesh`` (object frame, unit cube)."""
    full = _resolve(category, params)
    return _finish(_category(category).build(full))


def build(category: str, params: Params | None = None, dtype: torch.dtype | None = None) -> Mesh:
    """Build the ``category`` shape described by ``params``.

    Args:
        category: one of :data:`CATEGORIES`.
        params: parameter dict; missing keys take :func:`default_params` values, unknown keys
            raise :class:`~poseshape.core.errors.PoseshapeError` listing the valid ones.
        dtype: vertex dtype (default: torch's default dtype).

    Returns:
        A :class:`~poseshape.shapes.meshes.Mesh` with ``verts (V, 3)`` in the object frame
        (+Y up, front +Z, bounding box centred, largest side 1) and ``faces (F, 3)`` int64,
        outward (counter-clockwise) winding.
    """
    tm = build_trimesh(category, params)
    dtype = dtype or torch.get_default_dtype()
    return Mesh(
        torch.as_tensor(np.asarray(tm.vertices), dtype=dtype),
        torch.as_tensor(np.asarray(tm.faces), dtype=torch.int64),
    )


def _seed_rng(category: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(category.encode())])


def generate(category: str, seed: int = 0, dtype: torch.dtype | None = None) -> tuple[Mesh, Params]:
    """Sample parameters for ``(category, seed)`` and build the mesh: ``(Mesh, params)``.

    Deterministic: the same ``(category, seed)`` always gives identical vertices.
    """
    params = sample_params(category, _seed_rng(category, seed))
    return build(category, params, dtype=dtype), params


class ProceduralShapes:
    """A deterministic, indexable set of procedural shapes.

    ``ProceduralShapes(categories=("chair", "car"), per_category=10, seed=0)`` holds
    ``len(categories) * per_category`` shapes; item ``i`` is ``(category, model_id, Mesh,
    params)`` with ``model_id = f"{category}_{k:04d}"`` built by ``generate(category,
    seed + k)``.  Shapes are built on access (not cached here; see
    :class:`poseshape.data.collections.MeshCollection` for caching).
    """

    def __init__(self, categories: Sequence[str] | None = None, per_category: int = 10, seed: int = 0) -> None:
        cats = tuple(CATEGORIES if categories is None else categories)
        for c in cats:
            _category(c)
        if per_category < 1:
            raise PoseshapeError(f"per_category must be >= 1, got {per_category}")
        self.categories = cats
        self.per_category = int(per_category)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.categories) * self.per_category

    def key(self, index: int) -> tuple[str, str, int]:
        """``(category, model_id, seed)`` of item ``index`` without building it."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} shapes")
        index %= len(self)
        cat = self.categories[index // self.per_category]
        k = index % self.per_category
        return cat, f"{cat}_{k:04d}", self.seed + k

    def __getitem__(self, index: int) -> tuple[str, str, Mesh, Params]:
        cat, mid, s = self.key(index)
        mesh, params = generate(cat, s)
        return cat, mid, mesh, params

    def __iter__(self) -> Iterator[tuple[str, str, Mesh, Params]]:
        for i in range(len(self)):
            yield self[i]
