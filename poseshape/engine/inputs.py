"""Input images and masks, and the square crop a predictor sees.

* :func:`read_image` / :func:`read_mask` -- any image file Pillow reads (grey, palette,
  RGBA composited on white, 16-bit) -> ``(3, H, W)`` float in [0, 1], masks ``(1, H, W)``;
* :func:`as_image` / :func:`as_mask` -- the same from a path, a PIL image, a numpy array
  (``(H, W, 3)`` uint8 or float) or a tensor ``(3, H, W)``;
* :func:`crop_to_square` -- the square the predictor sees (around the mask's bounding box, or
  the whole image padded), resized to ``S x S``; :func:`uncrop` pastes crop-space maps back.

A crop ``box = (x0, y0, side)`` is a square of ``side`` input pixels whose top-left corner is
input pixel position ``(x0, y0)``; crop pixel ``j`` of an ``S x S`` crop covers input ``x`` in
``[x0 + j side / S, x0 + (j + 1) side / S)``, so a camera of the crop becomes the input
image's with :meth:`poseshape.geometry.camera.Camera.uncrop`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from poseshape.core.checks import check_finite
from poseshape.core.errors import FileFormatError, PoseshapeError, ShapeError
from poseshape.engine.diagnostics import soft_mask_warning

__all__ = ["as_image", "as_mask", "crop_to_square", "open_sized", "read_image", "read_mask", "uncrop"]


# =============================================================================== input files
def _open(path: str | os.PathLike, what: str):
    """Open and fully decode an image file with Pillow (EXIF orientation applied)."""
    p = Path(path)
    if not p.exists():
        raise PoseshapeError(f"{p}: {what} file not found")
    if not p.is_file():
        raise PoseshapeError(f"{p}: {what} path is not a file")
    try:
        img = Image.open(p)
    except UnidentifiedImageError:
        raise FileFormatError(
            f"{p}: cannot read the {what}: not an image format Pillow recognises (PNG, JPEG, BMP, TIFF, WebP, ...)"
        ) from None
    except Image.DecompressionBombError as e:
        raise FileFormatError(f"{p}: {what} is too large to decode safely ({e})") from None
    except OSError as e:
        raise FileFormatError(f"{p}: cannot read the {what} ({e})") from None
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except Exception as e:  # noqa: BLE001 - truncated data, bad CRC, broken streams, ...
        raise FileFormatError(f"{p}: corrupt or truncated {what} file ({type(e).__name__}: {e})") from None
    if img.width < 1 or img.height < 1:
        raise FileFormatError(f"{p}: {what} has no pixels ({img.width}x{img.height})")
    return img


def open_sized(path: str | os.PathLike, what: str, like_hw: tuple[int, int] | None = None, image_path=None):
    """Open an image file that must have its image's size ``like_hw = (H, W)`` (a mask, labels).

    Raises:
        ShapeError: the size differs (the message names both files); and :func:`_open`'s errors.
    """
    p = Path(path)
    img = _open(p, what)
    if like_hw is not None and (img.height, img.width) != tuple(like_hw):
        of = f" {Path(image_path)}" if image_path is not None else ""
        raise ShapeError(
            f"{p}: the {what} is {img.width}x{img.height} pixels but the image{of} is "
            f"{like_hw[1]}x{like_hw[0]}; a {what} must have its image's size"
        )
    return img


def _high_depth_grey(img) -> np.ndarray | None:
    """``(H, W)`` float in [0, 1] for 16/32-bit integer and float grey modes, else None."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.float64)
        return a / (65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0)
    if mode == "F":
        a = np.asarray(img).astype(np.float64)
        return a / 255.0 if a.max() > 1.0 else a
    return None


def read_image(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read an image file as RGB.

    Grey (8/16-bit), palette, CMYK and RGB files are converted to RGB; images with an alpha
    channel (RGBA, grey + alpha, palette with transparency) are composited on white, and
    their alpha, thresholded at 0.5, is returned as the object mask unless it is fully
    opaque. The EXIF orientation is applied.

    Returns:
        ``(image (3, H, W) float32 in [0, 1], alpha_mask (1, H, W) {0, 1} float32 or None)``.

    Raises:
        PoseshapeError: the file does not exist; its alpha channel is fully transparent.
        FileFormatError: not an image, or a corrupt / truncated one.
    """
    p = Path(path)
    img = _open(p, "image")
    alpha = None
    grey = _high_depth_grey(img)
    if grey is not None:
        _check_finite_pixels(grey, p, "image")
        rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    else:
        has_alpha = (
            img.mode in ("RGBA", "LA", "PA", "La", "RGBa")
            or (img.mode == "P" and "transparency" in img.info)
            or (img.mode in ("L", "RGB") and "transparency" in img.info)
        )
        try:
            img = img.convert("RGBA" if has_alpha else "RGB")
        except (ValueError, OSError) as e:
            raise FileFormatError(f"{p}: image mode {img.mode!r} cannot be converted to RGB ({e})") from None
        a = np.asarray(img).astype(np.float64) / 255.0
        if has_alpha:
            rgb, al = a[..., :3], a[..., 3]
            if al.max() <= 0.0:
                raise PoseshapeError(
                    f"{p}: the image's alpha channel is fully transparent (no "
                    "visible object); give an image with visible pixels or a --mask"
                )
            rgb = rgb * al[..., None] + (1.0 - al[..., None])
            if al.min() < 1.0:
                alpha = torch.from_numpy((al >= 0.5).astype(np.float32))[None]
                if not alpha.any():
                    raise PoseshapeError(f"{p}: the image's alpha mask is empty (no pixel at least half opaque)")
        else:
            rgb = a
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().clamp_(0, 1)
    return image, alpha


def _check_finite_pixels(a: np.ndarray, path: Path, what: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        raise FileFormatError(
            f"{path}: {int(bad.sum())} {what} pixel(s) are NaN or inf (a float file); replace them with finite "
            "values in [0, 1]"
        )


def read_mask(
    path: str | os.PathLike,
    like_hw: tuple[int, int] | None = None,
    *,
    image_path: str | os.PathLike | None = None,
    notes: list[str] | None = None,
) -> torch.Tensor:
    """Read an object mask file of any mode as ``(1, H, W)`` float32 {0, 1}.

    Values are brought to [0, 1] (8-bit / 255, 16-bit / 65535; integer files holding only
    0 and 1 are label maps) and thresholded at 0.5. A mask with a non-trivial alpha
    channel uses the alpha; a palette mask uses its indices (index 0 is background, and
    VOC's 255 "void" border counts as background when other labels exist).

    Args:
        path: the mask file.
        like_hw: ``(H, W)`` the mask must have (the image's size).
        image_path: the image it belongs to (only used in the size error message).
        notes: when given, doubtful findings are appended to it (a grey rather than black and
            white mask: :func:`poseshape.engine.diagnostics.soft_mask_warning`).

    Raises:
        PoseshapeError: missing file, or an empty mask (no foreground pixel).
        ShapeError: the size differs from ``like_hw``.
        FileFormatError: not an image, or a corrupt / truncated one.
    """
    p = Path(path)
    img = open_sized(p, "mask", like_hw, image_path)
    mode = img.mode
    grey = _high_depth_grey(img)
    levels = None  # the mask's values in [0, 1] before thresholding, where it has grey levels
    if grey is not None:
        _check_finite_pixels(grey, p, "mask")
        raw = np.asarray(img)
        label_map = np.issubdtype(raw.dtype, np.integer) and raw.max() <= 1
        fg = raw >= 1 if label_map else grey >= 0.5
        levels = None if label_map else grey
    elif mode == "1":
        fg = np.asarray(img, dtype=bool)
    elif mode == "P" and "transparency" not in img.info:
        idx = np.asarray(img)
        labels = (idx != 0) & (idx != 255)
        fg = labels if labels.any() else idx != 0
    else:
        try:
            rgba = np.asarray(img.convert("RGBA"))
        except (ValueError, OSError) as e:
            raise FileFormatError(f"{p}: mask mode {mode!r} cannot be converted ({e})") from None
        al = rgba[..., 3]
        if al.min() < 255:
            fg = al >= 128
            levels = al / 255.0
        else:
            lum = np.asarray(img.convert("L"))
            fg = lum >= 1 if lum.max() <= 1 else lum >= 128
            levels = lum / 255.0 if lum.max() > 1 else None
    if not fg.any():
        raise PoseshapeError(
            f"{p}: the mask is empty (no foreground pixel); the object must be "
            "marked with values >= 0.5 (e.g. white on black)"
        )
    if notes is not None and levels is not None:
        soft = soft_mask_warning(levels)
        if soft:
            notes.append(soft)
    return torch.from_numpy(np.ascontiguousarray(fg).astype(np.float32))[None]


# =============================================================================== crops
def _as_image(image, name: str = "image") -> torch.Tensor:
    x = torch.as_tensor(image)
    if x.dim() != 3 or x.shape[0] != 3:
        raise ShapeError(f"{name}: expected shape (3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    check_finite(x, name)
    return x


def _as_mask(mask, hw: tuple[int, int], name: str = "mask") -> torch.Tensor:
    m = torch.as_tensor(mask)
    if m.dim() == 2:
        m = m[None]
    if m.dim() != 3 or m.shape[0] != 1:
        raise ShapeError(f"{name}: expected shape (1, H, W) or (H, W), got {tuple(m.shape)}")
    if tuple(m.shape[1:]) != tuple(hw):
        raise ShapeError(f"{name}: expected size {tuple(hw)} (the image's), got {tuple(m.shape[1:])}")
    return (m.float() >= 0.5).float()


def crop_to_square(
    image: torch.Tensor, mask: torch.Tensor | None, size: int, margin: float = 0.1, full_frame: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
    """The square crop a predictor sees, resized to ``size x size``.

    With a mask, the square is centred on the mask's bounding box (pixel extents) and its
    side is the box's longer side enlarged by ``margin`` of it on each side (rounded up to
    whole pixels); without, or with ``full_frame=True`` (predictors that see the uncropped
    camera image, e.g. ``refine6dof``), it is the whole image padded to a square (centred) and
    the mask is cut from that same square. Parts of the
    square outside the image are padded with white (the mask with 0). Resizing is bilinear
    with antialiasing; the resized mask is thresholded at 0.5.

    Args:
        image: ``(3, H, W)`` float in [0, 1].
        mask: ``(1, H, W)`` (or ``(H, W)``) object mask, or ``None``.
        size: ``S``, output side in pixels.
        margin: fraction of the box's longer side added on each side (unused with ``full_frame``).
        full_frame: the whole image padded to a square even when a mask is given.

    Returns:
        ``(crop (3, S, S), crop_mask (1, S, S) or None, box)`` where ``box = (x0, y0, side)``
        (ints, input pixels): the square covers input ``[x0, x0 + side) x [y0, y0 + side)``,
        and may extend outside the image.

    Raises:
        ShapeError: bad shapes, ``size < 1`` or a negative margin.
        PoseshapeError: an empty mask.
    """
    img = _as_image(image)
    H, W = img.shape[-2:]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ShapeError(f"size: expected an int >= 1, got {size!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ShapeError(f"margin: expected a finite number >= 0, got {margin!r}")
    m = None
    if mask is not None:
        m = _as_mask(mask, (H, W))
        rows = torch.nonzero(m[0].any(1)).flatten()
        cols = torch.nonzero(m[0].any(0)).flatten()
        if rows.numel() == 0:
            raise PoseshapeError("mask: empty (no foreground pixel), cannot place the crop")
    if m is not None and not full_frame:
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        side = max(1, math.ceil(max(r1 - r0, c1 - c0) * (1.0 + 2.0 * margin) - 1e-9))
        x0 = math.floor((c0 + c1) / 2 - side / 2 + 0.5)
        y0 = math.floor((r0 + r1) / 2 - side / 2 + 0.5)
    else:
        side = max(H, W)
        x0, y0 = (W - side) // 2, (H - side) // 2
    canvas = torch.ones(3, side, side, dtype=img.dtype)
    mcanvas = torch.zeros(1, side, side, dtype=img.dtype) if m is not None else None
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + side, H)
    if ix1 > ix0 and iy1 > iy0:
        canvas[:, iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = img[:, iy0:iy1, ix0:ix1]
        if mcanvas is not None:
            mcanvas[:, iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = m[:, iy0:iy1, ix0:ix1]
    crop, crop_mask = canvas, mcanvas
    if side != size:
        aa = side > size
        crop = F.interpolate(canvas[None], size=(size, size), mode="bilinear", align_corners=False, antialias=aa)[
            0
        ].clamp_(0, 1)
        if mcanvas is not None:
            crop_mask = F.interpolate(
                mcanvas[None], size=(size, size), mode="bilinear", align_corners=False, antialias=aa
            )[0]
    if crop_mask is not None:
        crop_mask = (crop_mask >= 0.5).to(img.dtype)
    return crop.contiguous(), crop_mask, (int(x0), int(y0), int(side))


def _check_box(box) -> tuple[float, float, float]:
    try:
        x0, y0, side = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ShapeError(f"box: expected (x0, y0, side), got {box!r}") from None
    if not (math.isfinite(x0) and math.isfinite(y0) and math.isfinite(side) and side > 0):
        raise ShapeError(f"box: expected finite (x0, y0, side) with side > 0, got {box!r}")
    return x0, y0, side


def uncrop(x: torch.Tensor, box, hw: tuple[int, int]) -> torch.Tensor:
    """Paste a crop-space map back into the input image: ``(C, h, w) -> (C, H, W)``.

    ``x`` covers the square ``box = (x0, y0, side)`` of :func:`crop_to_square` (any
    resolution ``h x w``); every input pixel centre inside the square is sampled bilinearly
    (``grid_sample``, ``align_corners=False``), pixels outside it are 0.

    Raises:
        ShapeError: ``x`` is not ``(C, h, w)``, or a bad box / size.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ShapeError(
            f"x: expected shape (C, h, w), got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    x0, y0, side = _check_box(box)
    H, W = (int(v) for v in hw)
    if H < 1 or W < 1:
        raise ShapeError(f"hw: expected a positive (H, W), got {hw!r}")
    src = x.detach().float()
    dev = src.device
    gx = (2.0 * ((torch.arange(W, device=dev, dtype=torch.float64) + 0.5) - x0) / side - 1.0).float()
    gy = (2.0 * ((torch.arange(H, device=dev, dtype=torch.float64) + 0.5) - y0) / side - 1.0).float()
    grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), -1)[None]  # (1, H, W, 2)
    out = F.grid_sample(src[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    inside = ((gx >= -1) & (gx < 1))[None, :] & ((gy >= -1) & (gy < 1))[:, None]
    out = out * inside.to(out.dtype)  # exactly 0 outside the square (no rounding residue)
    return out.to(x.dtype if x.is_floating_point() else torch.float32)


# =============================================================================== any input
def _pil_to_tensor(img) -> tuple[torch.Tensor, torch.Tensor | None]:
    a = np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB")).astype(np.float64) / 255.0
    if a.shape[-1] == 4:
        rgb, al = a[..., :3], a[..., 3]
        rgb = rgb * al[..., None] + (1.0 - al[..., None])
        alpha = torch.from_numpy((al >= 0.5).astype(np.float32))[None] if al.min() < 1.0 else None
    else:
        rgb, alpha = a, None
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float(), alpha


def as_image(x, name: str = "image") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Any image input -> ``(image (3, H, W) float32 in [0, 1], alpha mask (1, H, W) or None)``.

    Accepts a file path (:func:`read_image`), a PIL image, a numpy array ``(H, W)``,
    ``(H, W, 3|4)`` (uint8, or float in [0, 1]) or a tensor ``(3, H, W)`` (uint8 or float).
    RGBA inputs are composited on white and their alpha is returned as the mask.

    Raises:
        ShapeError: a wrong shape or non-finite values; and :func:`read_image`'s errors.
    """
    if isinstance(x, (str, os.PathLike)):
        return read_image(x)
    if isinstance(x, Image.Image):
        return _pil_to_tensor(x)
    if isinstance(x, np.ndarray):
        a = x
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, -1)
        if a.ndim != 3 or a.shape[-1] not in (3, 4):
            raise ShapeError(f"{name}: expected a numpy array (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
        a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ShapeError(f"{name}: contains NaN or inf")
        alpha = None
        if a.shape[-1] == 4:
            al = a[..., 3]
            a = a[..., :3] * al[..., None] + (1.0 - al[..., None])
            alpha = torch.from_numpy((al >= 0.5).astype(np.float32))[None] if al.min() < 1.0 else None
        img = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().clamp_(0, 1)
        return img, alpha
    if isinstance(x, torch.Tensor):
        return _as_image(x, name).clamp(0, 1), None
    raise ShapeError(f"{name}: expected a file path, PIL image, numpy array or tensor, got {type(x).__name__}")


def as_mask(x, hw: tuple[int, int], name: str = "mask", notes: list[str] | None = None) -> torch.Tensor:
    """Any mask input (path, PIL image, numpy array or tensor ``(H, W)`` / ``(1, H, W)``) ->
    ``(1, H, W)`` float32 {0, 1} of size ``hw`` (thresholded at 0.5); ``notes`` as in
    :func:`read_mask`.

    Raises:
        ShapeError: another size or shape; PoseshapeError: an empty mask; and :func:`read_mask`'s.
    """
    if isinstance(x, (str, os.PathLike)):
        return read_mask(x, hw, notes=notes)
    if isinstance(x, Image.Image):
        x = np.asarray(x.convert("L")).astype(np.float32) / 255.0
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)))
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a file path, PIL image, numpy array or tensor, got {type(x).__name__}")
    check_finite(x.float(), name)
    m = _as_mask(x, hw, name)
    if not m.any():
        raise PoseshapeError(f"{name}: the mask is empty (no foreground pixel)")
    if notes is not None and x.is_floating_point():
        soft = soft_mask_warning(x.detach().float().cpu().reshape(x.shape[-2:]).numpy().clip(0, 1))
        if soft:
            notes.append(soft)
    return m
