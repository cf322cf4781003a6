"""From a trained method to files a user can open: predictors, input images, outputs.

The pieces, in the order ``poseshape reconstruct`` uses them:

* :func:`load_predictor` -- a checkpoint (or a method's shipped default,
  :func:`default_checkpoint`) -> the registered method's :class:`Predictor`;
* :func:`read_image` / :func:`read_mask` -- any image file Pillow reads (grey, palette,
  RGBA composited on white, 16-bit) -> ``(3, H, W)`` float in [0, 1], masks ``(1, H, W)``;
* :func:`crop_to_square` -- the square the predictor sees (around the mask's bounding box, or
  the whole image padded), resized to ``S x S``; :func:`uncrop` pastes crop-space maps back;
* ``predictor(crops)`` -> :class:`Prediction`;
* :func:`write_prediction` -- pose-aware voxels (``.npz``), mesh (``.obj``, ``.glb``), pose
  (``.json``), the reprojected silhouette over the input (``overlay.png``) and four views of
  the shape (``views.png``).

Frames (``docs/reproject.md``): a prediction's *posed frame* is a cube of side
``E = frame_extent`` object units with the camera's axes (OpenCV: x right, y down, z forward)
covering the square crop; crop pixel ``(i, j)`` of an ``S x S`` crop sees posed
``(x, y) = ((j + .5) / S - .5, (i + .5) / S - .5) * E``. A crop ``box = (x0, y0, side)`` is a
square of ``side`` input pixels whose top-left corner is input pixel position ``(x0, y0)``;
crop pixel ``j`` covers input ``x`` in ``[x0 + j side / S, x0 + (j + 1) side / S)``. So a
posed-frame point ``(x, y)`` lands on the input image at
``(u, v) = (x0 + (x / E + .5) side, y0 + (y / E + .5) side)`` pixels: a weak-perspective camera
``u = s (R X)[:2] + t2`` with ``s = side / E`` and ``t2 = (x0, y0) + side / 2 + s t[:2]``.
"""

from __future__ import annotations

import abc
import io
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.paths import PACKAGE_ROOT
from poseshape.core.errors import CheckpointError, FileFormatError, PoseshapeError, ShapeError
from poseshape.shapes.meshes import Mesh

__all__ = [
    "FILE_NAMES",
    "Prediction",
    "Predictor",
    "crop_to_square",
    "default_checkpoint",
    "load_predictor",
    "read_image",
    "read_mask",
    "uncrop",
    "write_files_atomic",
    "write_prediction",
]

#: Output files of :func:`write_prediction`, by key.
FILE_NAMES: dict[str, str] = {
    "voxels": "posed_voxels.npz",
    "obj": "mesh.obj",
    "glb": "mesh.glb",
    "pose": "pose.json",
    "overlay": "overlay.png",
    "views": "views.png",
}

#: glTF is +Y up with the viewer on +Z; the posed frame is y down, z forward (away from the
#: camera). ``diag(1, -1, -1)`` (a proper rotation) maps one to the other, so a glTF viewer
#: shows the mesh as the input camera saw it.
_POSED_TO_GLTF = torch.tensor([1.0, -1.0, -1.0])


# =============================================================================== Prediction
@dataclass
class Prediction:
    """What a :class:`Predictor` returns for a batch of ``B`` square crops.

    Attributes:
        aligned: ``(B, 1, Q, Q, Q)`` aligned (canonical) shape, occupancy in [0, 1], object
            frame (+Y up, front +Z), spanning the unit cube; ``(d, h, w) = (z, y, x)``.
        posed: ``(B, 1, P, P, P)`` pose-aware shape, occupancy in [0, 1], in the posed frame:
            a cube of side ``frame_extent`` object units with the camera's axes (x right, y
            down, z forward), ``(d, h, w) = (z, y, x)``; its max-projection over ``d`` is the
            silhouette in the crop.
        R: ``(B, 3, 3)`` object-to-camera rotation (``X_cam = R X_obj + t``).
        t: ``(B, 3)`` translation in posed-frame object units (image-centre origin, +x
            right, +y down; ``t[:, 2] = 0`` under weak perspective).
        silhouette: ``(B, 1, h, w)`` reprojected silhouette in [0, 1] covering the whole
            input crop (rows = y down, columns = x right).
        frame_extent: ``E``, side of the posed cube in object units (= the crop's width).
        extras: method-specific outputs, e.g. ``{"style": (B, L), "pose": (B, 5)}``.

    Raises:
        ShapeError: inconsistent shapes or batch sizes, or a non-positive ``frame_extent``.
    """

    aligned: torch.Tensor
    posed: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    silhouette: torch.Tensor
    frame_extent: float
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, nd in (("aligned", 5), ("posed", 5), ("silhouette", 4)):
            x = getattr(self, name)
            if not isinstance(x, torch.Tensor) or x.dim() != nd or x.shape[1] != 1:
                want = "(B, 1, D, D, D)" if nd == 5 else "(B, 1, h, w)"
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ShapeError(f"Prediction.{name}: expected shape {want}, got {got}")
        check_shape(self.R, "Prediction.R", (None, 3, 3), batch=False)
        check_shape(self.t, "Prediction.t", (None, 3), batch=False)
        sizes = {n: getattr(self, n).shape[0] for n in ("aligned", "posed", "R", "t", "silhouette")}
        if len(set(sizes.values())) != 1:
            raise ShapeError(f"Prediction: batch sizes disagree: {sizes}")
        E = float(self.frame_extent)
        if not (math.isfinite(E) and E > 0):
            raise ShapeError(f"Prediction.frame_extent: expected a positive finite number, got {self.frame_extent!r}")
        self.frame_extent = E
        if self.extras is None:
            self.extras = {}

    def __len__(self) -> int:
        return int(self.R.shape[0])

    def _check_index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a prediction of {len(self)} items")
        return i % len(self)

    def mesh(self, i: int, threshold: float = 0.5) -> Mesh:
        """Pose-aware mesh of item ``i``: marching cubes of ``posed[i]`` at ``threshold``.

        Vertices ``(V, 3)`` are in posed-frame object units (x right, y down, z forward,
        origin at the crop centre); they project orthographically into an ``S x S`` crop at
        ``u = (x / E + .5) S``, ``v = (y / E + .5) S``. Faces are outward (counter-clockwise
        seen from outside). Empty (0 vertices) when no voxel exceeds ``threshold``.
        """
        from poseshape.shapes.convert import voxels_to_mesh

        i = self._check_index(i)
        m = voxels_to_mesh(self.posed[i].detach().float().cpu(), threshold)
        return Mesh(m.verts * self.frame_extent, m.faces)

    def aligned_mesh(self, i: int, threshold: float = 0.5) -> Mesh:
        """Marching cubes of ``aligned[i]``: ``(V, 3)`` vertices in the object frame (unit cube)."""
        from poseshape.shapes.convert import voxels_to_mesh

        return voxels_to_mesh(self.aligned[self._check_index(i)].detach().float().cpu(), threshold)

    def item_extras(self, i: int) -> dict[str, Any]:
        """``extras`` of item ``i`` as a batch of one: per-item tensors ``(B, ...)`` -> ``(1, ...)``
        and per-item lists of length ``B`` -> ``[x_i]``; everything else as it is."""
        i, B = self._check_index(i), len(self)
        return {k: (v[i:i + 1] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B
                    else [v[i]] if isinstance(v, list) and len(v) == B else v) for k, v in self.extras.items()}

    def to(self, device: str | torch.device) -> Prediction:
        """A copy with every tensor (``extras`` included) on ``device``."""
        def mv(x):
            return x.to(device) if isinstance(x, torch.Tensor) else x

        return Prediction(aligned=mv(self.aligned), posed=mv(self.posed), R=mv(self.R), t=mv(self.t),
                          silhouette=mv(self.silhouette), frame_extent=self.frame_extent,
                          extras={k: mv(v) for k, v in self.extras.items()})


class Predictor(abc.ABC):
    """Base class of a method's test-time model (registered as ``MethodSpec.predictor``).

    A method's predictor class is constructed as ``cls(config, models)`` by
    :func:`load_predictor` (``models`` in ``eval()`` mode on the target device).

    Attributes:
        image_size: ``S``, side of the square crops the networks expect (pixels).
        method: registered method name (set by :func:`load_predictor` when empty).
    """

    image_size: int = 0
    method: str = ""

    @abc.abstractmethod
    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        """Predict shape and pose.

        Args:
            images: ``(B, 3, S, S)`` float RGB crops in [0, 1].
            masks: optional ``(B, 1, S, S)`` {0, 1} object masks of the crops (methods
                that do not use them ignore them).

        Returns:
            A :class:`Prediction` of ``B`` items.
        """


# =============================================================================== checkpoints
_METHOD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def default_checkpoint(method: str) -> Path:
    """``poseshape/assets/<method>.pt`` inside the installed package (may not exist).

    Raises:
        PoseshapeError: ``method`` is not a plain name.
    """
    if not isinstance(method, str) or not _METHOD_NAME.match(method):
        raise PoseshapeError(f"method: expected a method name such as 'reproject', got {method!r}")
    return PACKAGE_ROOT / "assets" / f"{method}.pt"


def load_predictor(checkpoint: str | os.PathLike | None = None, method: str | None = None,
                   device: str | torch.device | None = None) -> Predictor:
    """Build a trained method's :class:`Predictor`.

    Args:
        checkpoint: a checkpoint file written by ``poseshape train`` (read safely with
            ``torch.load(weights_only=True)``). ``None``: the shipped default of ``method``
            (:func:`default_checkpoint`).
        method: expected method name; a checkpoint of another method is refused.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available, else CPU.

    Returns:
        ``spec.predictor(config, models)`` of the checkpoint's registered method, its
        ``method`` attribute set.

    Raises:
        CheckpointError: missing/corrupt checkpoint, another method's checkpoint, another
            conventions version, no default model for ``method``.
        PoseshapeError: neither argument given; the method registers no predictor.
    """
    from poseshape.engine.train import load_trained

    if checkpoint is None:
        if method is None:
            raise PoseshapeError("load_predictor: give a checkpoint file or a method name")
        path = default_checkpoint(method)
        if not path.is_file():
            raise CheckpointError(
                f"no default model for method {method!r}: {path} does not exist. Train one with "
                f"`poseshape train {method} --out runs/{method} --set data.train=...` and pass "
                f"`--checkpoint runs/{method}/last.pt`, or run `poseshape demo --train`"
            )
    else:
        path = Path(checkpoint)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    spec, config, models = load_trained(path, method=method, device=device)
    if spec.predictor is None:
        raise PoseshapeError(f"{path}: method {spec.name!r} registers no predictor, so it cannot reconstruct")
    predictor = spec.predictor(config, models)
    if not getattr(predictor, "method", ""):
        predictor.method = spec.name
    predictor.checkpoint_path = path
    S = getattr(predictor, "image_size", None)
    if not isinstance(S, int) or isinstance(S, bool) or S < 1:
        raise PoseshapeError(f"{path}: the {spec.name!r} predictor has no valid image_size (got {S!r})")
    return predictor


# =============================================================================== input files
def _open(path: str | os.PathLike, what: str):
    """Open and fully decode an image file with Pillow (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise PoseshapeError(f"{p}: {what} file not found")
    if not p.is_file():
        raise PoseshapeError(f"{p}: {what} path is not a file")
    try:
        img = Image.open(p)
    except UnidentifiedImageError:
        raise FileFormatError(f"{p}: cannot read the {what}: not an image format Pillow "
                              "recognises (PNG, JPEG, BMP, TIFF, WebP, ...)") from None
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
        raise ShapeError(f"{p}: the {what} is {img.width}x{img.height} pixels but the image{of} is "
                         f"{like_hw[1]}x{like_hw[0]}; a {what} must have its image's size")
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
        rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    else:
        has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            img.mode == "P" and "transparency" in img.info) or (
            img.mode in ("L", "RGB") and "transparency" in img.info)
        try:
            img = img.convert("RGBA" if has_alpha else "RGB")
        except (ValueError, OSError) as e:
            raise FileFormatError(f"{p}: image mode {img.mode!r} cannot be converted to RGB ({e})") from None
        a = np.asarray(img).astype(np.float64) / 255.0
        if has_alpha:
            rgb, al = a[..., :3], a[..., 3]
            if al.max() <= 0.0:
                raise PoseshapeError(f"{p}: the image's alpha channel is fully transparent (no "
                                     "visible object); give an image with visible pixels or a --mask")
            rgb = rgb * al[..., None] + (1.0 - al[..., None])
            if al.min() < 1.0:
                alpha = torch.from_numpy((al >= 0.5).astype(np.float32))[None]
                if not alpha.any():
                    raise PoseshapeError(f"{p}: the image's alpha mask is empty (no pixel at least "
                                         "half opaque)")
        else:
            rgb = a
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().clamp_(0, 1)
    return image, alpha


def read_mask(path: str | os.PathLike, like_hw: tuple[int, int] | None = None, *,
              image_path: str | os.PathLike | None = None) -> torch.Tensor:
    """Read an object mask file of any mode as ``(1, H, W)`` float32 {0, 1}.

    Values are brought to [0, 1] (8-bit / 255, 16-bit / 65535; integer files holding only
    0 and 1 are label maps) and thresholded at 0.5. A mask with a non-trivial alpha
    channel uses the alpha; a palette mask uses its indices (index 0 is background, and
    VOC's 255 "void" border counts as background when other labels exist).

    Args:
        path: the mask file.
        like_hw: ``(H, W)`` the mask must have (the image's size).
        image_path: the image it belongs to (only used in the size error message).

    Raises:
        PoseshapeError: missing file, or an empty mask (no foreground pixel).
        ShapeError: the size differs from ``like_hw``.
        FileFormatError: not an image, or a corrupt / truncated one.
    """
    p = Path(path)
    img = open_sized(p, "mask", like_hw, image_path)
    mode = img.mode
    grey = _high_depth_grey(img)
    if grey is not None:
        raw = np.asarray(img)
        fg = raw >= 1 if (np.issubdtype(raw.dtype, np.integer) and raw.max() <= 1) else grey >= 0.5
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
        else:
            lum = np.asarray(img.convert("L"))
            fg = lum >= 1 if lum.max() <= 1 else lum >= 128
    if not fg.any():
        raise PoseshapeError(f"{p}: the mask is empty (no foreground pixel); the object must be "
                             "marked with values >= 0.5 (e.g. white on black)")
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


def crop_to_square(image: torch.Tensor, mask: torch.Tensor | None, size: int, margin: float = 0.1,
                   full_frame: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
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
        canvas[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = img[:, iy0:iy1, ix0:ix1]
        if mcanvas is not None:
            mcanvas[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = m[:, iy0:iy1, ix0:ix1]
    crop, crop_mask = canvas, mcanvas
    if side != size:
        aa = side > size
        crop = F.interpolate(canvas[None], size=(size, size), mode="bilinear", align_corners=False,
                             antialias=aa)[0].clamp_(0, 1)
        if mcanvas is not None:
            crop_mask = F.interpolate(mcanvas[None], size=(size, size), mode="bilinear",
                                      align_corners=False, antialias=aa)[0]
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
        raise ShapeError(f"x: expected shape (C, h, w), got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
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


# =============================================================================== outputs
def _small_extras(extras: Mapping[str, Any], i: int, B: int, limit: int = 32) -> dict[str, Any]:
    """Per-item extras with at most ``limit`` numbers, as JSON-ready lists."""
    out: dict[str, Any] = {}
    for k, v in extras.items():
        if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B and v[i].numel() <= limit:
            out[str(k)] = v[i].detach().cpu().double().tolist()
        elif isinstance(v, (int, float, str, bool)):
            out[str(k)] = v
    return out


def _trimesh(mesh: Mesh, rotate=None):
    import trimesh

    v = mesh.verts.detach().cpu().double()
    if rotate is not None:
        v = v * rotate.to(v.dtype)
    return trimesh.Trimesh(v.numpy(), mesh.faces.cpu().numpy(), process=False)


def _pose_record(R: torch.Tensor, t: torch.Tensor, E: float, box, hw) -> dict[str, Any]:
    from poseshape.geometry.camera import pose_to_viewpoint
    from poseshape.geometry.rotations import so3_log

    R64, t64 = R.detach().cpu().double(), t.detach().cpu().double()
    w = so3_log(R64)
    # Weak perspective: the camera looks at the object along its z axis, so the viewpoint
    # follows from R alone (any positive distance gives the same angles).
    az, el, th, _ = pose_to_viewpoint(R64, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    x0, y0, side = box
    s = side / E
    return {
        "R": R64.tolist(),
        "t": t64.tolist(),
        "axis_angle": w.tolist(),
        "rotation_angle_deg": math.degrees(float(w.norm())),
        "viewpoint": {"azimuth": float(az), "elevation": float(el), "theta": float(th),
                      "azimuth_deg": math.degrees(float(az)), "elevation_deg": math.degrees(float(el)),
                      "theta_deg": math.degrees(float(th)), "convention": "PASCAL3D+ (radians and degrees)"},
        "frame_extent": E,
        "box": {"x0": x0, "y0": y0, "side": side},
        "image_size": {"height": int(hw[0]), "width": int(hw[1])},
        "weak_perspective": {"scale": s, "t2": [x0 + side / 2 + s * float(t64[0]), y0 + side / 2 + s * float(t64[1])],
                             "formula": "input pixel (u, v) = scale * (R X_obj)[:2] + t2"},
        "frames": {
            "camera": "OpenCV (x right, y down, z forward); X_cam = R X_obj + t, t in posed-frame "
                      "object units; posed point (x, y) -> input pixel (x0 + (x/E + 0.5) side, "
                      "y0 + (y/E + 0.5) side)",
            "mesh.obj": "posed frame: camera axes (x right, y down, z forward), object units, "
                        "origin at the crop centre",
            "mesh.glb": "glTF (+Y up, viewer on +Z): (x, -y, -z) of the posed frame",
            "posed_voxels.npz": "posed (P,P,P) over the posed cube of side frame_extent, "
                                "aligned (Q,Q,Q) over the object frame's unit cube; (d,h,w) = (z,y,x)",
        },
    }


def write_prediction(pred: Prediction, i: int, folder: str | os.PathLike, image, box, mask=None, *,
                     method: str | None = None, info: Mapping[str, Any] | None = None,
                     views_size: int = 256) -> dict[str, Path]:
    """Write item ``i`` of a prediction as files a user can open.

    Files (see :data:`FILE_NAMES`), each written to a temporary name and renamed; if writing
    fails the files already written by this call are removed:

    * ``posed_voxels.npz`` -- ``posed (P, P, P)``, ``aligned (Q, Q, Q)``, ``silhouette``,
      ``frame_extent``, ``R``, ``t``, ``box`` (float32 / float64 arrays);
    * ``mesh.obj`` -- the pose-aware mesh (:meth:`Prediction.mesh`), posed-frame units;
    * ``mesh.glb`` -- the same mesh in glTF axes ``(x, -y, -z)`` (upright in viewers);
    * ``pose.json`` -- ``R``, ``t``, ``axis_angle``, the PASCAL3D+ viewpoint (azimuth,
      elevation, theta), ``frame_extent``, ``box``, the input-pixel weak-perspective camera,
      ``method``, ``mask_iou`` (with a mask), small ``extras`` and ``info``;
    * ``overlay.png`` -- the reprojected silhouette pasted back on the input
      (:func:`uncrop`) as a translucent fill and contour, with the mask's contour if given;
    * ``views.png`` -- the aligned shape from 4 viewpoints (:func:`poseshape.viz.render_views`).

    Args:
        pred: the prediction; i: item index.
        folder: output folder (created).
        image: the input image ``(3, H, W)`` in [0, 1] (the uncropped one).
        box: ``(x0, y0, side)`` from :func:`crop_to_square`.
        mask: optional input mask ``(1, H, W)`` (or ``(H, W)``).
        method: recorded in ``pose.json`` (default ``pred.extras.get("method", "")``).
        info: extra JSON-ready fields for ``pose.json`` (e.g. the input file names).

    Returns:
        ``{"voxels", "obj", "glb", "pose", "overlay", "views"} -> Path``.
    """
    from poseshape.metrics import mask_iou
    from poseshape.viz import overlay_silhouette, png_bytes, render_views

    img = _as_image(image)
    H, W = img.shape[-2:]
    m = _as_mask(mask, (H, W)) if mask is not None else None
    x0, y0, side = _check_box(box)
    box_r = (int(x0) if float(x0).is_integer() else x0, int(y0) if float(y0).is_integer() else y0,
             int(side) if float(side).is_integer() else side)
    pc = pred.to("cpu")
    i = pc._check_index(i)
    E = pc.frame_extent
    warnings: list[str] = []

    # --- geometry
    posed = pc.posed[i, 0].detach().float()
    aligned = pc.aligned[i, 0].detach().float()
    mesh = pc.mesh(i)
    if mesh.num_faces == 0:
        warnings.append("the pose-aware shape is empty (no voxel >= 0.5): mesh files are empty")
    sil_img = uncrop(pc.silhouette[i].detach().float().clamp(0, 1), box_r, (H, W))[0]

    # --- pose record
    record: dict[str, Any] = {"method": method if method is not None else str(pc.extras.get("method", ""))}
    record.update(_pose_record(pc.R[i], pc.t[i], E, box_r, (H, W)))
    if m is not None:
        # poseshape.metrics.mask_iou binarises as > 0.5; the product layer counts a pixel from
        # 0.5 up (the overlay's contour level), so it passes booleans
        record["mask_iou"] = float(mask_iou(sil_img[None] >= 0.5, m[0][None] >= 0.5)[0])
    extras = _small_extras(pc.extras, i, len(pc))
    if extras:
        record["extras"] = extras
    if info:
        record.update({str(k): v for k, v in info.items()})
    record["files"] = dict(FILE_NAMES)
    if warnings:
        record["warnings"] = warnings

    # --- payloads (all built in memory before anything is written)
    buf = io.BytesIO()
    np.savez_compressed(buf, posed=posed.numpy().astype(np.float32), aligned=aligned.numpy().astype(np.float32),
                        silhouette=pc.silhouette[i, 0].detach().float().numpy(),
                        frame_extent=np.float64(E), R=pc.R[i].detach().double().numpy(),
                        t=pc.t[i].detach().double().numpy(), box=np.asarray(box_r, np.float64))
    obj = _trimesh(mesh).export(file_type="obj")
    glb = _trimesh(mesh, _POSED_TO_GLTF).export(file_type="glb")
    overlay = overlay_silhouette(img, sil_img, m[0] if m is not None else None)
    views = render_views(pc.aligned_mesh(i), n=4, size=views_size)
    payloads = {
        "voxels": buf.getvalue(),
        "obj": obj.encode() if isinstance(obj, str) else obj,
        "glb": glb,
        "pose": (json.dumps(record, indent=2) + "\n").encode(),
        "overlay": png_bytes(overlay),
        "views": png_bytes(views),
    }

    return write_files_atomic(folder, {FILE_NAMES[k]: v for k, v in payloads.items()}, keys=list(payloads))


def write_files_atomic(folder: str | os.PathLike, files: Mapping[str, bytes], keys=None) -> dict[str, Path]:
    """Write ``{file name: bytes}`` into ``folder`` (created), all or none.

    Each file goes through :func:`poseshape.viz.write_bytes_atomic` (temporary name + rename);
    if one fails, the files this call already wrote are removed, and so is ``folder`` when
    this call created it. Returns ``{key: path}`` with ``keys`` (default: the file names).

    Raises:
        PoseshapeError: ``folder`` exists and is not a folder.
    """
    from poseshape import viz

    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise PoseshapeError(f"{out}: output path exists and is not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    keys = list(keys) if keys is not None else list(files)
    written: dict[str, Path] = {}
    try:
        for key, (name, data) in zip(keys, files.items()):
            written[key] = viz.write_bytes_atomic(out / name, data)
    except BaseException:
        for p in written.values():
            p.unlink(missing_ok=True)
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    return written
