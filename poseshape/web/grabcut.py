"""A mask from a box: OpenCV's GrabCut (Rother et al. 2004) seeded with the box.

Everything outside the box is background; GrabCut's colour models separate the object from
the background inside it. Used by ``poseshape serve`` when the user draws a box instead of
uploading a mask.
"""

from __future__ import annotations

import math

import numpy as np

from poseshape.core.errors import PoseshapeError, ShapeError

__all__ = ["box_from_points", "grabcut_mask"]


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

    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ShapeError(f"image: expected shape (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise ShapeError("image: contains NaN or inf")
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
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
