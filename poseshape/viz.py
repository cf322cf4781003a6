"""Pictures a user opens: silhouette overlays, shaded multi-view renders, galleries.

Every function here takes and returns plain ``uint8`` RGB arrays ``(H, W, 3)`` (images given
as ``(3, H, W)`` float tensors in [0, 1] are accepted too), so the pieces compose:

* :func:`overlay_silhouette` -- a reprojected silhouette drawn over an input image as a
  semi-transparent fill plus its contour (and, optionally, an observed mask's contour);
* :func:`render_views` -- a mesh seen from ``n`` viewpoints around its up axis, flat shaded
  with :func:`poseshape.render.fastraster.rasterize` (the C++ z-buffer; the pure-PyTorch
  :func:`poseshape.render.mesh_hard.rasterize` where it cannot build) and
  :func:`poseshape.render.shading.lambertian`;
* :func:`save_gallery` -- rows of pictures tiled into one image;
* :func:`save_png` -- an atomic PNG write (temporary file, then rename).

No matplotlib is needed: drawing is done with numpy and Pillow.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from poseshape.core.errors import ShapeError
from poseshape.core.io import atomic_write
from poseshape.geometry.camera import pose_to_viewpoint, viewpoint_to_pose
from poseshape.render.fastraster import rasterize
from poseshape.render.shading import lambertian, pixel_normals
from poseshape.shapes.meshes import face_normals

__all__ = [
    "MASK_COLOR",
    "SILHOUETTE_COLOR",
    "as_rgb_uint8",
    "mask_contour",
    "overlay_silhouette",
    "overlay_silhouettes",
    "png_bytes",
    "render_views",
    "save_gallery",
    "save_png",
    "write_bytes_atomic",
]

#: Fill / contour colour of a reprojected silhouette (azure).
SILHOUETTE_COLOR = (0, 150, 255)
#: Contour colour of an observed mask (amber).
MASK_COLOR = (255, 210, 0)


# ----------------------------------------------------------------------------- conversion
def as_rgb_uint8(image) -> np.ndarray:
    """Any RGB picture -> ``(H, W, 3)`` ``uint8``.

    Tensors are channels-first: ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` with values in
    [0, 1]. Arrays are channels-last, ``(H, W, 3)``, ``(H, W, 1)`` or ``(H, W)`` (``uint8``
    kept as is, floats in [0, 1]); a channels-first array is accepted when unambiguous.

    Raises:
        ShapeError: any other shape, or non-finite values.
    """
    if isinstance(image, torch.Tensor):  # tensors are channels-first by convention
        a = image.detach().cpu().numpy()
        if a.ndim == 3 and a.shape[0] in (1, 3):
            a = np.moveaxis(a, 0, -1)
    else:
        a = np.asarray(image)
        if a.ndim == 3 and a.shape[-1] not in (1, 3) and a.shape[0] in (1, 3):
            a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ShapeError(f"image: expected (3, H, W), (H, W, 3) or (H, W), got {tuple(np.shape(image))}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ShapeError("image: contains non-finite values (NaN or inf)")
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _as_map(x, name: str, hw: tuple[int, int] | None = None) -> np.ndarray:
    """A single-channel map (``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``) -> float ``(H, W)``."""
    a = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ShapeError(f"{name}: expected (H, W) or (1, H, W), got {tuple(np.shape(x))}")
    if hw is not None and a.shape != tuple(hw):
        raise ShapeError(f"{name}: expected size {tuple(hw)} (the image's), got {a.shape}")
    if not np.isfinite(a).all():
        raise ShapeError(f"{name}: contains non-finite values (NaN or inf)")
    return a.astype(np.float32)


# ----------------------------------------------------------------------------- overlays
def mask_contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boundary pixels of a binary mask: ``(H, W)`` bool -> ``(H, W)`` bool.

    A pixel is on the contour when it is set and one of its 4-neighbours within
    ``thickness`` steps is not (pixels outside the image count as unset), i.e. the mask
    minus its erosion by a ``(2 * thickness + 1)`` cross.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ShapeError(f"mask: expected (H, W), got {m.shape}")
    k = max(1, int(thickness))
    inner = m.copy()
    for _ in range(k):
        p = np.pad(inner, 1, constant_values=False)
        inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def _line_width(hw: tuple[int, int]) -> int:
    return max(1, round(min(hw) / 200))


def overlay_silhouette(
    image,
    silhouette,
    mask=None,
    color: Sequence[int] = SILHOUETTE_COLOR,
    alpha: float = 0.45,
    mask_color: Sequence[int] = MASK_COLOR,
) -> np.ndarray:
    """Draw a silhouette over an image.

    Args:
        image: ``(3, H, W)`` float in [0, 1] or ``(H, W, 3)`` uint8 (see :func:`as_rgb_uint8`).
        silhouette: ``(H, W)`` or ``(1, H, W)`` in [0, 1], in the image's pixels (e.g. a
            reprojected silhouette pasted back with :func:`poseshape.engine.inputs.uncrop`). The
            fill's opacity is ``alpha * silhouette``; its 0.5 level is drawn as a contour.
        mask: optional ``(H, W)`` / ``(1, H, W)`` observed mask; its 0.5 contour is drawn in
            ``mask_color``.
        color, mask_color: RGB ``uint8`` colours; alpha: fill opacity in [0, 1].

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ShapeError: the silhouette or mask does not have the image's size.
    """
    return overlay_silhouettes(image, [silhouette], [mask], [color], alpha, mask_color)


def overlay_silhouettes(
    image,
    silhouettes: Sequence,
    masks: Sequence | None = None,
    colors: Sequence[Sequence[int]] = (SILHOUETTE_COLOR,),
    alpha: float = 0.45,
    mask_color: Sequence[int] = MASK_COLOR,
) -> np.ndarray:
    """Draw several silhouettes over an image (a scene's objects): all fills first, then all
    silhouette contours, then the masks' contours, so that no object hides another's outline.

    Args:
        image: as in :func:`overlay_silhouette`.
        silhouettes: ``N`` maps ``(H, W)`` / ``(1, H, W)`` in [0, 1].
        masks: ``N`` optional observed masks (``None`` entries are skipped), or ``None``.
        colors: RGB colours, used in turn; alpha, mask_color: as in :func:`overlay_silhouette`.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    img = as_rgb_uint8(image)
    hw = img.shape[:2]
    sils = [np.clip(_as_map(s, "silhouette", hw), 0.0, 1.0) for s in silhouettes]
    cols = [np.asarray(colors[k % len(colors)], np.float32) for k in range(len(sils))]
    out = img.astype(np.float32)
    for sil, col in zip(sils, cols):
        w = (float(alpha) * sil)[..., None]
        out = out * (1.0 - w) + col.reshape(1, 1, 3) * w
    lw = _line_width(hw)
    for sil, col in zip(sils, cols):
        out[mask_contour(sil >= 0.5, lw)] = col
    for m in masks or []:
        if m is not None:
            out[mask_contour(_as_map(m, "mask", hw) >= 0.5, lw)] = np.asarray(mask_color, np.float32)
    return (np.clip(out, 0, 255) + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- views
def _view_rotations(n: int, elevation: float, azimuth0: float) -> torch.Tensor:
    az = torch.tensor([azimuth0 + 2.0 * math.pi * k / n for k in range(n)], dtype=torch.float64)
    R, _ = viewpoint_to_pose(az, torch.full_like(az, elevation), torch.zeros_like(az), torch.ones_like(az))
    return R


def _azimuth_of(R: torch.Tensor) -> float:
    """PASCAL3D+ azimuth (radians) of the camera of rotation ``R (3, 3)`` (camera at +z depth)."""
    a, _, _, _ = pose_to_viewpoint(R.double().reshape(3, 3), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return float(a)


def _panel_rotations(n: int, elevation: float, azimuth0: float, first: torch.Tensor | None) -> torch.Tensor:
    if first is None:
        return _view_rotations(n, elevation, azimuth0)
    f = torch.as_tensor(first, dtype=torch.float64).reshape(3, 3)
    R = _view_rotations(n, elevation, _azimuth_of(f))
    R[0] = f
    return R


def render_views(
    mesh,
    n: int = 4,
    size: int = 256,
    elevation: float = math.radians(20.0),
    azimuth0: float = math.radians(30.0),
    color: Sequence[float] = (0.62, 0.68, 0.80),
    background: Sequence[int] = (255, 255, 255),
    labels: bool = True,
    first: torch.Tensor | None = None,
) -> np.ndarray:
    """A mesh seen from ``n`` viewpoints around its +Y (up) axis, flat shaded.

    The views are PASCAL3D+ viewpoints (:func:`poseshape.geometry.camera.viewpoint_to_pose`)
    at azimuths ``azimuth0 + 2 pi k / n`` and the given elevation (radians), under an
    orthographic camera that fits the mesh's bounding sphere into 90% of each ``size x size``
    tile; an object-frame mesh (+Y up, front +Z) therefore appears upright, its front seen
    at azimuth 0. Lighting: a key light from the camera's upper left, a fill light and
    ambient, in camera coordinates.

    Args:
        mesh: :class:`poseshape.shapes.meshes.Mesh` (``verts (V, 3)``, ``faces (F, 3)``).
        n: number of views; size: tile side in pixels.
        color: RGB albedo in [0, 1]; background: RGB uint8.
        labels: write each view's azimuth/elevation (degrees) in its corner.
        first: ``(3, 3)`` object-to-camera rotation of the first panel (the input view of a
            prediction, labelled "input view"); the other ``n - 1`` panels then turn on from
            its azimuth by ``2 pi k / n`` at ``elevation``.

    Returns:
        ``(size, n * size, 3)`` uint8 (all background for an empty mesh).
    """
    n, size = int(n), int(size)
    if n < 1 or size < 8:
        raise ShapeError(f"render_views: need n >= 1 and size >= 8, got n={n}, size={size}")
    bg = np.asarray(background, np.uint8)
    tiles = np.broadcast_to(bg, (n, size, size, 3)).copy()
    V = mesh.verts.detach().cpu().to(torch.float32)
    Fc = mesh.faces.detach().cpu().long()
    if V.shape[0] and Fc.shape[0]:
        R = _panel_rotations(n, elevation, azimuth0, first).float()
        centre = (V.amax(0) + V.amin(0)) / 2
        radius = float((V - centre).norm(dim=-1).max().clamp(min=1e-9))
        scale = 0.45 * size / radius
        rc = R @ centre  # (n, 3)
        t = torch.stack([size / 2 - scale * rc[:, 0], size / 2 - scale * rc[:, 1], -rc[:, 2] + 2.0 * radius], -1)
        frag = rasterize(V, Fc, R, t, scale=scale, image_size=size)
        normals = pixel_normals(face_normals(V, Fc), frag.face_idx, R)  # (n, S, S, 3) toward camera
        dirs = torch.tensor([[-0.45, -0.6, -0.66], [0.6, 0.1, -0.8]])
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        cols = torch.tensor([[0.75, 0.75, 0.75], [0.3, 0.3, 0.32]])
        rgb = lambertian(
            normals, torch.tensor(color, dtype=torch.float32), dirs, cols, torch.tensor([0.22, 0.22, 0.24])
        )
        fg = (frag.face_idx >= 0).numpy()
        shaded = (rgb.numpy() * 255.0 + 0.5).astype(np.uint8)
        tiles[fg] = shaded[fg]
    if labels and size >= 64:
        az0 = math.degrees(_azimuth_of(first) if first is not None else azimuth0)
        texts = [f"az {(az0 + 360.0 * k / n) % 360:.0f}  el {math.degrees(elevation):.0f}" for k in range(n)]
        if first is not None:
            texts[0] = "input view"
        tiles = np.stack([_label(tiles[k], texts[k]) for k in range(n)])
    return np.ascontiguousarray(np.concatenate(list(tiles), axis=1))


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(tile)
    ImageDraw.Draw(im).text((4, 3), text, fill=(90, 90, 90))
    return np.asarray(im)


# ----------------------------------------------------------------------------- files
def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: :func:`poseshape.core.io.atomic_write` (kept
    under this name for its callers; new code should call ``core.io`` directly).

    A reader never sees a half-written ``path``; on failure the temporary file is removed and
    an existing ``path`` is left as it was. The parent folder must exist.

    Raises:
        FileWriteError: the file cannot be written (a ``PoseshapeError`` and an ``OSError``).
    """
    return atomic_write(path, data)


def png_bytes(array) -> bytes:
    """Encode an RGB picture (see :func:`as_rgb_uint8`) as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(as_rgb_uint8(array)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(array, path: str | os.PathLike) -> Path:
    """Save an RGB picture as a PNG file, atomically (parent folders are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(p, png_bytes(array))


def save_gallery(
    rows: Sequence[Sequence[np.ndarray]],
    path: str | os.PathLike,
    pad: int = 4,
    height: int | None = None,
    background: Sequence[int] = (255, 255, 255),
) -> Path:
    """Tile rows of pictures into one PNG.

    Each picture of a row is resized (aspect kept, bilinear) to the row height: ``height``
    pixels when given, else the tallest picture of that row. Pictures in a row are separated
    by ``pad`` pixels, rows by ``pad`` pixels, and rows narrower than the widest are padded
    with the background on the right.

    Args:
        rows: a list of rows, each a non-empty list of pictures (see :func:`as_rgb_uint8`).
        path: output ``.png``.

    Returns:
        ``path``.

    Raises:
        ShapeError: no rows, or an empty row.
    """
    from PIL import Image

    if not rows or any(len(r) == 0 for r in rows):
        raise ShapeError("save_gallery: rows must be a non-empty list of non-empty lists of images")
    bg = np.asarray(background, np.uint8)
    strips = []
    for row in rows:
        pics = [as_rgb_uint8(p) for p in row]
        h = int(height) if height else max(p.shape[0] for p in pics)
        scaled = []
        for p in pics:
            if p.shape[0] != h:
                w = max(1, round(p.shape[1] * h / p.shape[0]))
                p = np.asarray(Image.fromarray(p).resize((w, h), Image.BILINEAR))
            scaled.append(p)
        width = sum(p.shape[1] for p in scaled) + pad * (len(scaled) - 1)
        strip = np.broadcast_to(bg, (h, width, 3)).copy()
        x = 0
        for p in scaled:
            strip[:, x : x + p.shape[1]] = p
            x += p.shape[1] + pad
        strips.append(strip)
    W = max(s.shape[1] for s in strips)
    Htot = sum(s.shape[0] for s in strips) + pad * (len(strips) - 1)
    canvas = np.broadcast_to(bg, (Htot, W, 3)).copy()
    y = 0
    for s in strips:
        canvas[y : y + s.shape[0], : s.shape[1]] = s
        y += s.shape[0] + pad
    return save_png(canvas, path)
