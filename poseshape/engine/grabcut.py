"""A mask from a box: OpenCV's GrabCut (Rother et al. 2004) seeded with the box.

Everything outside the box is background; GrabCut's colour models separate the object from
the background inside it. Used by ``poseshape serve`` when the user draws a box instead of
uploading a mask, and by ``poseshape reconstruct --mask box:x0,y0,x1,y1`` / ``--mask auto``.
:func:`auto_mask` needs no box: it seeds GrabCut with the frame less a thin border, i.e. it
assumes the object is the one thing in the picture and does not touch the image border.
"""

from __future__ import annotations

import math
import re

import numpy as np
from scipy import ndimage

from poseshape.core.errors import PoseshapeError, ShapeError

__all__ = [
    "AUTO_INSET",
    "AUTO_MAX_SIDE",
    "auto_mask",
    "box_from_points",
    "grabcut_from_prior",
    "grabcut_mask",
    "parse_box_spec",
]

#: :func:`auto_mask`'s border, as a fraction of each side, taken as background.
AUTO_INSET = 0.04
#: :func:`auto_mask` runs GrabCut on the image shrunk to at most this many pixels a side.
AUTO_MAX_SIDE = 256


def _rgb_uint8(image) -> np.ndarray:
    """``(H, W, 3)`` uint8 from uint8, or from float in [0, 1] (clipped, rounded).

    Raises:
        ShapeError: not ``(H, W, 3)``, or NaN / inf values.
    """
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ShapeError(f"image: expected shape (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise ShapeError("image: contains NaN or inf")
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return a


def box_from_points(points, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` integer pixel box (exclusive ``x1``, ``y1``) from two corners in any
    order, clipped to the image ``hw = (H, W)``.

    Raises:
        ShapeError: not four finite numbers, or a box with no area inside the image.
    """
    try:
        x0, y0, x1, y1 = (float(v) for v in points)
    except (TypeError, ValueError):
        raise ShapeError(f"box: expected four numbers x0 y0 x1 y1, got {points!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ShapeError(f"box: expected finite numbers, got {points!r}")
    H, W = hw
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    xa, ya = max(0, int(math.floor(xa))), max(0, int(math.floor(ya)))
    xb, yb = min(W, int(math.ceil(xb))), min(H, int(math.ceil(yb)))
    if xb - xa < 2 or yb - ya < 2:
        raise ShapeError(
            f"box: ({x0:g}, {y0:g}) - ({x1:g}, {y1:g}) has no area inside the {W}x{H} image; draw a box around the object"
        )
    return xa, ya, xb, yb


def grabcut_mask(image: np.ndarray, box, iterations: int = 5) -> np.ndarray:
    """The object mask inside ``box`` by GrabCut.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or float in [0, 1].
        box: ``(x0, y0, x1, y1)`` in pixels (see :func:`box_from_points`).
        iterations: GrabCut iterations.

    Returns:
        ``(H, W)`` bool, True on the object.

    Raises:
        ShapeError: a wrong image shape or box; PoseshapeError: GrabCut finds no object.
    """
    import cv2

    a = _rgb_uint8(image)
    H, W = a.shape[:2]
    x0, y0, x1, y1 = box_from_points(box, (H, W))
    if iterations < 1:
        raise ShapeError(f"iterations: expected >= 1, got {iterations}")
    mask = np.zeros((H, W), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(a[..., ::-1])
    if (x1 - x0) >= W - 1 and (y1 - y0) >= H - 1:
        raise ShapeError("box: covers the whole image, so GrabCut has no background to learn; draw it tighter")
    cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if not fg.any():
        raise PoseshapeError("GrabCut found no object inside the box; draw the box around the object, or upload a mask")
    return fg


def grabcut_from_prior(image: np.ndarray, prob: np.ndarray, iterations: int = 3, sure: float = 0.9) -> np.ndarray:
    """GrabCut initialised from a per-pixel object probability instead of a box.

    Pixels with ``prob >= sure`` start as sure object, ``>= 0.5`` as probable object, ``> 1 - sure``
    as probable background and the rest as sure background; GrabCut's colour models then move
    the probable pixels to the image's own edges.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or float in [0, 1].
        prob: ``(H, W)`` object probability in [0, 1] (e.g. the segmenter's).
        iterations: GrabCut iterations.
        sure: threshold of the sure classes, in (0.5, 1).

    Returns:
        ``(H, W)`` bool; the prior's own ``prob >= 0.5`` where GrabCut cannot run (no sure or
        probable background or object: nothing to learn a colour model from).

    Raises:
        ShapeError: mismatched shapes or bad parameters.
    """
    import cv2

    a = _rgb_uint8(image)
    p = np.asarray(prob, dtype=np.float32)
    if p.shape != a.shape[:2]:
        raise ShapeError(f"prob: expected shape {a.shape[:2]}, got {p.shape}")
    if not np.isfinite(p).all():
        raise ShapeError("prob: contains NaN or inf")
    if not 0.5 < sure < 1.0 or iterations < 1:
        raise ShapeError(f"sure: expected a number in (0.5, 1) and iterations >= 1, got {sure}, {iterations}")
    init = np.full(p.shape, cv2.GC_BGD, np.uint8)
    init[p > 1 - sure] = cv2.GC_PR_BGD
    init[p >= 0.5] = cv2.GC_PR_FGD
    init[p >= sure] = cv2.GC_FGD
    fg0 = p >= 0.5  # the sure and probable object
    if not fg0.any() or fg0.all():
        return fg0
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(a[..., ::-1]), init, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few pixels of a class for its colour model
        return fg0
    fg = (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)
    return fg if fg.any() else fg0


def parse_box_spec(spec: str) -> tuple[float, float, float, float]:
    """``"box:x0,y0,x1,y1"`` (commas or spaces) -> the four numbers.

    Raises:
        ShapeError: not ``box:`` followed by four numbers.
    """
    if not isinstance(spec, str) or not spec.startswith("box:"):
        raise ShapeError(f"mask: expected 'box:x0,y0,x1,y1', got {spec!r}")
    parts = [p for p in re.split(r"[,\s]+", spec[4:].strip()) if p]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise ShapeError(f"mask {spec!r}: expected 'box:x0,y0,x1,y1' with four pixel coordinates")
    return vals


def _largest_parts(m: np.ndarray, keep: float = 0.1) -> np.ndarray:
    """The connected pieces (8-connected) of ``m`` holding at least ``keep`` of the largest one."""
    lab, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    if n <= 1:
        return m
    sizes = np.bincount(lab.ravel())[1:]
    good = np.flatnonzero(sizes >= keep * sizes.max()) + 1
    return np.isin(lab, good)


def auto_mask(
    image: np.ndarray, inset: float = AUTO_INSET, max_side: int = AUTO_MAX_SIDE, iterations: int = 5
) -> np.ndarray:
    """The object's mask with no box given: GrabCut seeded with the frame less a border of
    ``inset`` of each side, on the image shrunk to at most ``max_side`` pixels a side, keeping
    the pieces of at least a tenth of the largest one, then scaled back (nearest).

    Good for one object on a background that differs from it and that fills the image border;
    an object cut by the border loses that part. Measured against the true masks of
    validation renders by ``bench/auto_mask.py`` and of the cross-dataset test renders by
    ``bench/cross_dataset.py --masks truth auto`` (bench/RESULTS.md, "Without a mask").

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or float in [0, 1].
        inset: border fraction in (0, 0.45] taken as background.
        max_side: GrabCut's working resolution (its cost grows with the pixel count).
        iterations: GrabCut iterations.

    Returns:
        ``(H, W)`` bool, True on the object.

    Raises:
        ShapeError: a wrong image shape or parameter; PoseshapeError: no object is found.
    """
    import cv2

    a = _rgb_uint8(image)
    if not (0 < inset <= 0.45):
        raise ShapeError(f"inset: expected a fraction in (0, 0.45], got {inset}")
    if max_side < 16:
        raise ShapeError(f"max_side: expected >= 16, got {max_side}")
    H, W = a.shape[:2]
    if min(H, W) < 8:
        raise ShapeError(f"image: {W}x{H} is too small to find an object in")
    f = min(1.0, max_side / max(H, W))
    small = a if f == 1.0 else cv2.resize(a, (max(8, round(W * f)), max(8, round(H * f))), interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    dx, dy = max(1, round(inset * w)), max(1, round(inset * h))
    try:
        m = grabcut_mask(small, (dx, dy, w - dx, h - dy), iterations)
    except PoseshapeError:
        raise PoseshapeError(
            "the automatic mask (GrabCut on the whole frame) found no object; give a mask "
            "(--mask M), or a box around the object (--mask box:x0,y0,x1,y1)"
        ) from None
    m = _largest_parts(m)
    if m.shape != (H, W):
        m = cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
    return m
