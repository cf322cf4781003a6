"""RGB shading, procedural textures, backgrounds and image degradations for synthetic data.

Everything here is appearance only: the geometry (which pixel sees which face, where) comes
from the exact rasteriser (:mod:`poseshape.render.mesh_hard`); this module turns its
per-pixel face index and barycentrics into a shaded RGB image.

Shapes and units
    Images are ``(B, 3, H, W)`` float in [0, 1] (the project convention), masks
    ``(B, 1, H, W)``; per-pixel geometry is channels-last ``(B, H, W, 3)``. Normals and light
    directions are unit vectors *in the camera frame* (OpenCV: x right, y down, z forward);
    a light direction points from the surface *toward* the light. Texture coordinates are
    object-frame positions (the unit cube), so textures need no UV map (solid/"object-space"
    texturing: stripes, checkers and 3-D value noise).

Randomness
    Every sampler takes a :class:`numpy.random.Generator` and draws only from it, so a
    sample's appearance is a pure function of its seed. The tensor maths is deterministic
    on CPU.

Shading model
    Lambertian with ambient: ``rgb = albedo * (ambient + sum_l colour_l * max(0, n . l_l))``,
    clipped to [0, 1]. Faces are shaded two-sided (normals are flipped toward the camera),
    because CAD meshes often have inconsistent winding.
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from poseshape.core.checks import check_shape
from poseshape.core.errors import FileFormatError, ShapeError

__all__ = [
    "BACKGROUND_KINDS",
    "DOMAIN_STYLES",
    "TEXTURE_KINDS",
    "Appearance",
    "DomainStyle",
    "Lights",
    "albedo",
    "clutter_background",
    "composite",
    "degrade",
    "domain_style",
    "gaussian_blur",
    "gradient_background",
    "image_background",
    "interpolate_faces",
    "jpeg_roundtrip",
    "lambertian",
    "list_background_images",
    "noise_background",
    "occluder_layer",
    "pixel_normals",
    "random_background",
    "random_color",
    "sample_appearance",
    "sample_lights",
    "shade",
    "to_uint8",
    "value_noise_2d",
]

TEXTURE_KINDS = ("solid", "stripes", "checker", "noise")
BACKGROUND_KINDS = ("solid", "gradient", "noise", "clutter", "image")


# ----------------------------------------------------------------------------- domains


@dataclass(frozen=True)
class DomainStyle:
    """Appearance statistics of a synthetic domain.

    Attributes:
        texture_probs: probabilities of ``TEXTURE_KINDS`` (solid, stripes, checker, noise).
        background_probs: probabilities of ``BACKGROUND_KINDS`` without ``"image"`` (the
            image kind replaces the others when a background folder is given).
        n_lights: inclusive range of directional lights.
        ambient: range of the ambient intensity.
        light_intensity: range of each directional light's intensity.
        light_tint: max deviation of a light's colour from white (0 = white lights).
        blur_prob, blur_sigma: probability and range (pixels at 64^2, scaled with size).
        noise_prob, noise_sigma: additive Gaussian noise probability and std (in [0, 1]).
        jpeg_prob, jpeg_quality: JPEG round-trip probability and quality range.
        color_jitter: max multiplicative per-channel gain deviation of the final image.
    """

    texture_probs: tuple[float, float, float, float]
    background_probs: tuple[float, float, float, float]
    n_lights: tuple[int, int] = (1, 3)
    ambient: tuple[float, float] = (0.3, 0.5)
    light_intensity: tuple[float, float] = (0.4, 0.8)
    light_tint: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.4, 1.2)
    noise_prob: float = 0.0
    noise_sigma: tuple[float, float] = (0.01, 0.05)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)
    color_jitter: float = 0.0


#: ``"render"``: clean renders (solid colours, soft light, plain backgrounds).
#: ``"natural"``: natural-image-like statistics (textures, harsh coloured light, clutter,
#: blur, sensor noise, JPEG artefacts). Both are *rendered* data.
DOMAIN_STYLES: dict[str, DomainStyle] = {
    "render": DomainStyle(
        texture_probs=(0.85, 0.05, 0.05, 0.05),
        background_probs=(0.3, 0.4, 0.3, 0.0),
    ),
    "natural": DomainStyle(
        texture_probs=(0.25, 0.25, 0.2, 0.3),
        background_probs=(0.05, 0.15, 0.3, 0.5),
        n_lights=(1, 3),
        ambient=(0.1, 0.35),
        light_intensity=(0.5, 1.3),
        light_tint=0.3,
        blur_prob=0.5,
        noise_prob=0.7,
        jpeg_prob=0.7,
        color_jitter=0.15,
    ),
}


def domain_style(domain: str | DomainStyle) -> DomainStyle:
    """Return the :class:`DomainStyle` named ``domain`` (or ``domain`` itself)."""
    if isinstance(domain, DomainStyle):
        return domain
    try:
        return DOMAIN_STYLES[domain]
    except KeyError:
        raise ShapeError(f"domain: expected one of {sorted(DOMAIN_STYLES)}, got {domain!r}") from None


# ----------------------------------------------------------------------------- textures


def random_color(
    rng: np.random.Generator, sat: tuple[float, float] = (0.3, 1.0), val: tuple[float, float] = (0.35, 1.0)
) -> np.ndarray:
    """A random RGB colour ``(3,)`` in [0, 1] (uniform hue, saturation/value in ranges)."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


@dataclass
class Appearance:
    """An object's (per-model) surface appearance, textured in object space.

    Attributes:
        kind: one of ``TEXTURE_KINDS``.
        colors: ``(2, 3)`` float32 RGB in [0, 1] (the second is used by patterned kinds).
        frequency: pattern frequency in cycles per object unit.
        axis: ``(3,)`` unit vector, the stripes' normal.
        phase: pattern phase in [0, 1).
        lattice: ``(G, G, G)`` float32 random lattice of the noise texture (``None`` else).
    """

    kind: str = "solid"
    colors: np.ndarray = field(default_factory=lambda: np.full((2, 3), 0.7, np.float32))
    frequency: float = 4.0
    axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0], np.float32))
    phase: float = 0.0
    lattice: np.ndarray | None = None


def sample_appearance(rng: np.random.Generator, domain: str | DomainStyle = "render") -> Appearance:
    """Draw a random :class:`Appearance` with the domain's texture statistics."""
    style = domain_style(domain)
    p = np.asarray(style.texture_probs, np.float64)
    kind = TEXTURE_KINDS[int(rng.choice(len(TEXTURE_KINDS), p=p / p.sum()))]
    c0 = random_color(rng)
    c1 = random_color(rng)
    axis = rng.normal(size=3)
    axis = (axis / max(np.linalg.norm(axis), 1e-9)).astype(np.float32)
    freq = float(rng.uniform(2.0, 8.0))
    phase = float(rng.uniform(0.0, 1.0))
    lattice = None
    if kind == "noise":
        g = int(rng.integers(3, 7))
        lattice = rng.uniform(0.0, 1.0, size=(g, g, g)).astype(np.float32)
    return Appearance(kind, np.stack([c0, c1]).astype(np.float32), freq, axis, phase, lattice)


def albedo(points: torch.Tensor, appearance: Appearance) -> torch.Tensor:
    """Surface colour at object-frame ``points (..., 3)`` -> ``(..., 3)`` in [0, 1].

    ``solid``: ``colors[0]``; ``stripes``: alternating bands normal to ``axis``;
    ``checker``: 3-D checkerboard of cell side ``1 / frequency``; ``noise``: trilinear value
    noise from ``lattice`` spanning the unit cube, mixing the two colours.
    """
    check_shape(points, "points", (3,))
    colors = torch.as_tensor(appearance.colors, dtype=points.dtype, device=points.device)
    if appearance.kind == "solid":
        return colors[0].expand(*points.shape[:-1], 3)
    if appearance.kind == "stripes":
        axis = torch.as_tensor(appearance.axis, dtype=points.dtype, device=points.device)
        s = (points @ axis) * appearance.frequency + appearance.phase
        w = (torch.floor(s) % 2).unsqueeze(-1)
    elif appearance.kind == "checker":
        cell = torch.floor(points * appearance.frequency + appearance.phase)
        w = (cell.sum(-1) % 2).unsqueeze(-1)
    elif appearance.kind == "noise":
        if appearance.lattice is None:
            raise ShapeError("appearance.lattice: the noise texture needs a (G, G, G) lattice")
        lat = torch.as_tensor(appearance.lattice, dtype=points.dtype, device=points.device)
        flat = points.reshape(1, 1, 1, -1, 3) * 2.0  # unit cube -> [-1, 1]; (x, y, z) order
        val = F.grid_sample(lat[None, None], flat, mode="bilinear", padding_mode="border", align_corners=True)
        w = val.reshape(*points.shape[:-1], 1)
    else:
        raise ShapeError(f"appearance.kind: expected one of {TEXTURE_KINDS}, got {appearance.kind!r}")
    return colors[0] * (1 - w) + colors[1] * w


# ----------------------------------------------------------------------------- lighting


@dataclass
class Lights:
    """Directional lights and ambient, in the camera frame.

    Attributes:
        directions: ``(L, 3)`` float32 unit vectors from the surface toward each light.
        colors: ``(L, 3)`` float32 RGB intensities.
        ambient: ``(3,)`` float32 RGB ambient intensity.
    """

    directions: np.ndarray
    colors: np.ndarray
    ambient: np.ndarray


def sample_lights(rng: np.random.Generator, domain: str | DomainStyle = "render") -> Lights:
    """Draw 1-3 (per the domain) directional lights from the camera's hemisphere + ambient.

    Directions have ``z < 0`` in the camera frame (they come from the camera side) and
    point mostly from above (image up = -y).
    """
    style = domain_style(domain)
    n = int(rng.integers(style.n_lights[0], style.n_lights[1] + 1))
    dirs, cols = [], []
    for _ in range(n):
        az = rng.uniform(-math.pi / 2, math.pi / 2)
        el = rng.uniform(-0.3, 1.2)  # mostly from above
        d = np.array([math.sin(az) * math.cos(el), -math.sin(el), -math.cos(az) * math.cos(el)])
        dirs.append(d / np.linalg.norm(d))
        tint = 1.0 + rng.uniform(-style.light_tint, style.light_tint, size=3)
        cols.append(rng.uniform(*style.light_intensity) * tint / n**0.5)
    amb = rng.uniform(*style.ambient) * (1.0 + rng.uniform(-style.light_tint, style.light_tint, size=3) * 0.5)
    return Lights(np.asarray(dirs, np.float32), np.asarray(cols, np.float32), np.asarray(amb, np.float32))


def lambertian(
    normals: torch.Tensor,
    albedo_rgb: torch.Tensor,
    light_dirs: torch.Tensor,
    light_colors: torch.Tensor,
    ambient: torch.Tensor,
) -> torch.Tensor:
    """Lambertian shading ``albedo * (ambient + sum_l c_l max(0, n . l_l))``, clipped to [0, 1].

    Args:
        normals: ``(..., 3)`` unit normals.
        albedo_rgb: ``(..., 3)`` surface colour (broadcastable to ``normals``).
        light_dirs: ``(L, 3)`` or ``(..., L, 3)`` unit directions toward the lights.
        light_colors: ``(L, 3)`` or ``(..., L, 3)`` RGB intensities.
        ambient: ``(3,)`` or ``(..., 3)`` ambient RGB.

    Returns:
        ``(..., 3)`` RGB.
    """
    check_shape(normals, "normals", (3,))
    check_shape(light_dirs, "light_dirs", (None, 3))
    check_shape(light_colors, "light_colors", (None, 3))
    cos = torch.einsum("...c,...lc->...l", normals, light_dirs).clamp(min=0.0)  # (..., L)
    diffuse = torch.einsum("...l,...lc->...c", cos, light_colors)
    return (albedo_rgb * (ambient + diffuse)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- geometry


def interpolate_faces(
    values: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """Barycentric interpolation of per-vertex ``values`` at rasterised pixels.

    Args:
        values: ``(V, C)`` or ``(B, V, C)`` per-vertex attributes.
        faces: ``(F, 3)`` int64.
        face_index: ``(B, H, W)`` int64 face per pixel, ``-1`` for background.
        bary: ``(B, H, W, 3)`` barycentric weights of the face's three vertices.

    Returns:
        ``(B, H, W, C)``; background pixels are 0.
    """
    B, H, W = face_index.shape
    fi = face_index.clamp(min=0).reshape(B, -1)  # (B, P)
    vid = faces[fi]  # (B, P, 3)
    if values.dim() == 2:
        corner = values[vid]  # (B, P, 3, C)
    else:
        bidx = torch.arange(B, device=values.device)[:, None, None]
        corner = values[bidx, vid]
    out = (corner * bary.reshape(B, -1, 3, 1).to(corner.dtype)).sum(-2)
    out = out * (face_index.reshape(B, -1, 1) >= 0)
    return out.reshape(B, H, W, -1)


def pixel_normals(
    face_normals_obj: torch.Tensor, face_index: torch.Tensor, R: torch.Tensor, points_cam: torch.Tensor | None = None
) -> torch.Tensor:
    """Flat-shading camera-frame normals per pixel, flipped toward the camera (two-sided).

    Args:
        face_normals_obj: ``(F, 3)`` unit face normals in the object frame.
        face_index: ``(B, H, W)`` face per pixel (``-1`` background).
        R: ``(B, 3, 3)`` object-to-camera rotation.
        points_cam: ``(B, H, W, 3)`` camera-frame surface points (the view rays); default:
            the optical axis (0, 0, 1) is used as the view direction.

    Returns:
        ``(B, H, W, 3)`` unit normals with ``n . view <= 0``; background pixels are 0.
    """
    B = face_index.shape[0]
    n_obj = face_normals_obj[face_index.clamp(min=0)]  # (B, H, W, 3)
    n_cam = torch.einsum("bij,bhwj->bhwi", R.to(n_obj.dtype), n_obj)
    view = points_cam if points_cam is not None else n_cam.new_tensor([0.0, 0.0, 1.0]).expand_as(n_cam)
    flip = ((n_cam * view).sum(-1, keepdim=True) > 0).to(n_cam.dtype)
    n_cam = n_cam * (1 - 2 * flip)
    return n_cam * (face_index >= 0).unsqueeze(-1).reshape(B, *face_index.shape[1:], 1)


def shade(
    points_obj: torch.Tensor,
    normals_cam: torch.Tensor,
    mask: torch.Tensor,
    appearance: Appearance,
    lights: Sequence[Lights],
) -> torch.Tensor:
    """Shade rasterised pixels.

    Args:
        points_obj: ``(B, H, W, 3)`` object-frame surface points (texture coordinates).
        normals_cam: ``(B, H, W, 3)`` camera-frame unit normals (toward the camera).
        mask: ``(B, H, W)`` bool foreground.
        appearance: the object's :class:`Appearance` (shared by the batch).
        lights: ``B`` :class:`Lights`, one per image (all with the same number of lights,
            or padded internally with zero-intensity lights).

    Returns:
        ``(B, 3, H, W)`` foreground colour in [0, 1], 0 on the background.
    """
    B = points_obj.shape[0]
    if len(lights) != B:
        raise ShapeError(f"lights: expected {B} Lights (one per image), got {len(lights)}")
    L = max(len(li.directions) for li in lights)
    dirs = np.zeros((B, L, 3), np.float32)
    cols = np.zeros((B, L, 3), np.float32)
    for b, li in enumerate(lights):
        dirs[b, : len(li.directions)] = li.directions
        cols[b, : len(li.colors)] = li.colors
    amb = np.stack([li.ambient for li in lights])
    dt, dev = points_obj.dtype, points_obj.device
    a = albedo(points_obj, appearance)
    rgb = lambertian(
        normals_cam,
        a,
        torch.as_tensor(dirs, dtype=dt, device=dev)[:, None, None],
        torch.as_tensor(cols, dtype=dt, device=dev)[:, None, None],
        torch.as_tensor(amb, dtype=dt, device=dev)[:, None, None],
    )
    rgb = rgb * mask.unsqueeze(-1).to(dt)
    return rgb.permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- backgrounds


def value_noise_2d(
    rng: np.random.Generator, size: tuple[int, int], cells: int = 4, octaves: int = 3, persistence: float = 0.5
) -> np.ndarray:
    """Fractal value noise ``(H, W)`` float32 in [0, 1]: bicubic-upsampled random lattices."""
    H, W = size
    total = np.zeros((H, W), np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        c = cells * 2**o
        lat = torch.from_numpy(rng.uniform(0, 1, size=(1, 1, c + 1, c + 1)).astype(np.float32))
        up = F.interpolate(lat, size=(H, W), mode="bicubic", align_corners=True)[0, 0].numpy()
        total += amp * up
        norm += amp
        amp *= persistence
    total /= norm
    lo, hi = total.min(), total.max()
    return ((total - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _mix(w: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    return (c0[:, None, None] * (1 - w[None]) + c1[:, None, None] * w[None]).astype(np.float32)


def gradient_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Linear or radial gradient between two random colours, ``(3, H, W)`` float32."""
    H, W = size
    yy, xx = np.meshgrid((np.arange(H) + 0.5) / H - 0.5, (np.arange(W) + 0.5) / W - 0.5, indexing="ij")
    if rng.uniform() < 0.7:
        ang = rng.uniform(0, 2 * math.pi)
        w = xx * math.cos(ang) + yy * math.sin(ang)
    else:
        cx, cy = rng.uniform(-0.5, 0.5, size=2)
        w = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    w = (w - w.min()) / max(float(w.max() - w.min()), 1e-6)
    return _mix(
        w.astype(np.float32), random_color(rng, (0.0, 0.8), (0.1, 1.0)), random_color(rng, (0.0, 0.8), (0.1, 1.0))
    )


def noise_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Fractal-noise texture between two random colours, ``(3, H, W)`` float32."""
    w = value_noise_2d(rng, size, cells=int(rng.integers(2, 6)), octaves=int(rng.integers(2, 5)))
    return _mix(w, random_color(rng, (0.0, 0.8), (0.1, 1.0)), random_color(rng, (0.0, 0.8), (0.1, 1.0)))


def clutter_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A noise base covered by random rectangles, ellipses and bars, ``(3, H, W)`` float32."""
    H, W = size
    img = noise_background(rng, size)
    yy, xx = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W, indexing="ij")
    for _ in range(int(rng.integers(6, 20))):
        kind = rng.integers(0, 3)
        cx, cy = rng.uniform(0, 1, size=2)
        sx, sy = rng.uniform(0.03, 0.35, size=2)
        ang = rng.uniform(0, math.pi)
        u = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
        v = -(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)
        if kind == 0:
            m = (np.abs(u) < sx) & (np.abs(v) < sy)
        elif kind == 1:
            m = (u / sx) ** 2 + (v / sy) ** 2 < 1
        else:
            m = np.abs(v) < sy * 0.15
        col = random_color(rng, (0.0, 1.0), (0.05, 1.0))
        shade_ = 1.0 + 0.3 * (u / max(sx, 1e-3)).clip(-1, 1)  # a little shading on each blob
        img = np.where(m[None], (col[:, None, None] * shade_[None]).clip(0, 1), img)
    return img.astype(np.float32)


def _blob(
    kind: int, xx: np.ndarray, yy: np.ndarray, c: np.ndarray, s: np.ndarray, ang: float
) -> tuple[np.ndarray, np.ndarray]:
    """One clutter blob: ``(mask (H, W) bool, u (H, W))`` -- a rectangle (0), ellipse (1) or
    bar (2) centred at ``c`` with half-sizes ``s`` and angle ``ang``; ``u`` is the blob's
    own x coordinate (for its shading)."""
    u = (xx - c[0]) * math.cos(ang) + (yy - c[1]) * math.sin(ang)
    v = -(xx - c[0]) * math.sin(ang) + (yy - c[1]) * math.cos(ang)
    if kind == 0:
        return (np.abs(u) < s[0]) & (np.abs(v) < s[1]), u
    if kind == 1:
        return (u / s[0]) ** 2 + (v / s[1]) ** 2 < 1, u
    return np.abs(v) < s[1] * 0.15, u


def occluder_layer(
    rng: np.random.Generator,
    object_mask: np.ndarray,
    count: int,
    size: tuple[float, float] = (0.15, 0.45),
    max_occlusion: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Random occluders (rectangles, ellipses, thick bars) drawn over an object.

    Each occluder is centred on a random pixel of the object's bounding box, with half-sizes
    a fraction ``size`` of the box's longer side, a random angle, colour and a noise texture
    (so it is not a flat cut-out). An occluder that would hide more than ``max_occlusion`` of
    the object's pixels (together with the earlier ones) is shrunk (by 0.7, up to 4 times)
    and dropped if it still does (a shrunk or dropped occluder re-uses its drawn values).

    Args:
        rng: random generator (its own stream: the rest of the sample does not depend on it).
        object_mask: ``(H, W)`` bool silhouette of the object (not changed).
        count: number of occluders to try.
        size: half-size range, as a fraction of the object box's longer side.
        max_occlusion: largest fraction of the object's pixels the occluders may hide.

    Returns:
        ``(rgb (3, H, W) float32 in [0, 1], mask (H, W) bool)``: the occluders' colours and
        where they are. An empty object mask gives an empty layer.
    """
    if object_mask.ndim != 2:
        raise ShapeError(f"object_mask: expected shape (H, W), got {object_mask.shape}")
    H, W = object_mask.shape
    rgb = np.zeros((3, H, W), np.float32)
    occ = np.zeros((H, W), bool)
    area = int(object_mask.sum())
    ys, xs = np.nonzero(object_mask)
    yy, xx = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W, indexing="ij")
    for _ in range(int(count)):
        kind = int(rng.integers(0, 3))
        pos = rng.uniform(0, 1, size=2)
        half = rng.uniform(size[0], size[1], size=2)
        ang = float(rng.uniform(0, math.pi))
        tex = noise_background(rng, (H, W))
        if area == 0:
            continue
        x0, x1, y0, y1 = xs.min() / W, (xs.max() + 1) / W, ys.min() / H, (ys.max() + 1) / H
        side = max(x1 - x0, y1 - y0)
        c = np.array([x0 + pos[0] * (x1 - x0), y0 + pos[1] * (y1 - y0)])
        s = half * side
        if kind == 2:  # a bar (pole, branch): long and thin
            s = np.array([1.0, max(s[1], 0.2 * side)])
        for _try in range(5):
            m, u = _blob(kind, xx, yy, c, s, ang)
            if int((object_mask & (occ | m)).sum()) <= max_occlusion * area:
                break
            s = s * 0.7
        else:
            continue
        shade_ = 1.0 + 0.3 * (u / max(float(s[0]), 1e-3)).clip(-1, 1)
        rgb = np.where(m[None], (tex * shade_[None]).clip(0, 1), rgb)
        occ |= m
    return rgb.astype(np.float32), occ


def list_background_images(folder: str | Path) -> list[Path]:
    """Sorted image files (png/jpg/jpeg/bmp) under ``folder``; FileFormatError when none."""
    root = Path(folder)
    if not root.is_dir():
        raise FileFormatError(f"{root}: background folder does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not files:
        raise FileFormatError(f"{root}: no background images (png/jpg/jpeg/bmp) found")
    return files


def image_background(rng: np.random.Generator, size: tuple[int, int], files: Sequence[Path]) -> np.ndarray:
    """A random crop (>= 1/3 of the side) of a random image in ``files``, resized, ``(3, H, W)``."""
    H, W = size
    path = files[int(rng.integers(0, len(files)))]
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w0, h0 = im.size
            side = rng.uniform(1 / 3, 1.0) * min(w0, h0)
            x0 = rng.uniform(0, w0 - side)
            y0 = rng.uniform(0, h0 - side)
            crop = im.resize((W, H), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    except (OSError, ValueError) as e:
        raise FileFormatError(f"{path}: cannot read background image ({e})") from e
    arr = np.asarray(crop, np.float32) / 255.0
    if rng.uniform() < 0.5:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def random_background(
    rng: np.random.Generator,
    size: tuple[int, int],
    domain: str | DomainStyle = "render",
    images: Sequence[Path] | None = None,
) -> np.ndarray:
    """A random background ``(3, H, W)`` float32 in [0, 1] with the domain's statistics.

    When ``images`` (a list from :func:`list_background_images`) is given, half of the
    backgrounds are crops of those images.
    """
    style = domain_style(domain)
    if images and rng.uniform() < 0.5:
        return image_background(rng, size, images)
    p = np.asarray(style.background_probs, np.float64)
    kind = BACKGROUND_KINDS[int(rng.choice(4, p=p / p.sum()))]
    if kind == "solid":
        c = random_color(rng, (0.0, 0.8), (0.1, 1.0))
        return np.broadcast_to(c[:, None, None], (3, *size)).astype(np.float32)
    if kind == "gradient":
        return gradient_background(rng, size)
    if kind == "noise":
        return noise_background(rng, size)
    return clutter_background(rng, size)


def composite(foreground: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``mask * foreground + (1 - mask) * background``; ``(B, 3, H, W)``, mask ``(B, 1, H, W)``."""
    check_shape(foreground, "foreground", (3, None, None))
    check_shape(mask, "mask", (1, None, None))
    m = mask.to(foreground.dtype)
    return m * foreground + (1 - m) * background


# ----------------------------------------------------------------------------- degradations


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with std ``sigma`` pixels (reflect padding)."""
    if sigma <= 0:
        return img
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    C = img.shape[1]
    out = F.pad(img, (r, r, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, r, r), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def jpeg_roundtrip(img_u8: np.ndarray, quality: int) -> np.ndarray:
    """Encode/decode ``(H, W, 3)`` uint8 through JPEG at ``quality`` (PIL)."""
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), np.uint8).copy()


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``(..., 3, H, W)`` float in [0, 1] -> ``(..., H, W, 3)`` uint8 (rounded)."""
    arr = (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return arr.movedim(-3, -1).cpu().numpy()


def degrade(img: torch.Tensor, rng: np.random.Generator, domain: str | DomainStyle = "render") -> np.ndarray:
    """Apply the domain's camera effects to one image and quantise it.

    Args:
        img: ``(3, H, W)`` float in [0, 1].
        rng: random generator.
        domain: the domain (``"render"`` applies none of blur / noise / JPEG).

    Returns:
        ``(H, W, 3)`` uint8: colour gain jitter, Gaussian blur (sigma scaled with
        ``H / 64``), additive Gaussian noise and a JPEG round-trip, each with the domain's
        probability, in that order.
    """
    style = domain_style(domain)
    H = img.shape[-2]
    x = img.unsqueeze(0)
    if style.color_jitter > 0:
        gain = 1.0 + rng.uniform(-style.color_jitter, style.color_jitter, size=3)
        x = x * torch.as_tensor(gain, dtype=x.dtype).view(1, 3, 1, 1)
    if rng.uniform() < style.blur_prob:
        x = gaussian_blur(x, float(rng.uniform(*style.blur_sigma)) * H / 64.0)
    if rng.uniform() < style.noise_prob:
        sd = float(rng.uniform(*style.noise_sigma))
        noise = rng.normal(0.0, sd, size=tuple(x.shape)).astype(np.float32)
        x = x + torch.from_numpy(noise).to(x.dtype)
    out = to_uint8(x[0])
    if rng.uniform() < style.jpeg_prob:
        out = jpeg_roundtrip(out, int(rng.integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1)))
    return out
