"""Loaders for real (and third-party rendered) image sets, yielding poseshape sample dicts.

Every loader is a map-style sequence (``len``, ``[i]``, iteration) whose items use the keys
of :class:`poseshape.data.dataset.ShardDataset` where the source provides them:

==================  ===========================================================
``image``           ``(3, H, W)`` float32 in [0, 1]
``mask``            ``(1, H, W)`` float32 in {0, 1}
``R``, ``t``, ``K``  object-to-camera pose (OpenCV, our object frame) and pixels K
``viewpoint``       ``(4,)`` azimuth, elevation, theta (radians), distance
``voxels``          ``(1, D, H, W)`` float32 occupancy
``bbox``            ``(4,)`` float32 ``x0, y0, x1, y1`` in continuous pixel coordinates
                    (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``)
``category_name``, ``model_id``, ``source`` (str), ``rendered`` (bool), ``path``
``has``             ``frozenset`` of the optional keys present in this item
==================  ===========================================================

A field the source does not provide is **absent** (and not in ``has``), never filled with
a made-up value. Every parsed file is validated; a bad one raises
:class:`poseshape.core.errors.FileFormatError` naming it.

Camera conventions of the sources
---------------------------------
3D-R2N2 (``rendering_metadata.txt`` / ``cameras.txt``: ``azimuth elevation in-plane
distance_ratio fov``, degrees): Blender renders of ShapeNet v1 models (Y up). Blender
imports the OBJ as ``(x, -z, y)`` (Z up) and places the camera at
``d (cos(el) cos(az), -cos(el) sin(az), sin(el))`` of that frame, looking at the origin
with up = +Z; ``d`` equals ``distance_ratio`` in ShapeNet units, and the images use
Blender's default camera (35 mm lens, 32 mm sensor: field of view 49.13 deg, focal
``S * 35 / 32`` pixels) -- the ``fov`` column (25) is *not* the renders' field of view.
This is Mesh R-CNN's / PyTorch3D's reading; we checked it on the fixture: Pixel2Mesh++'s
``predict.obj`` (a *prediction*, expressed in view 1's camera frame) carried with our poses
into views 2 and 3 lands 99.9 % inside their alpha masks (50 % with the azimuth sign
flipped, 0 % with distance ``1.75 * ratio``). The pose is converted to our object frame
with ``SOURCE_TO_OBJECT["shapenet"]``; the in-plane angle (0 in all released renders) is
applied as a rotation about the optical axis like PASCAL3D+'s theta.

PASCAL3D+ (``Annotations/<cat>_<set>/<id>.mat``): ``record.objects(k).viewpoint`` gives
azimuth / elevation / theta (degrees), distance, focal, px, py and viewport; the pose is
:func:`poseshape.geometry.camera.viewpoint_to_pose` and
``K = [[focal * viewport, 0, px - 0.5], [0, focal * viewport, py - 0.5], [0, 0, 1]]``
(MATLAB's pixel centres sit at integers starting at 1, ours at +0.5 from 0). ``t`` is in
the CAD model's native units; when ``cad_root`` is given the pose is re-expressed for the
*normalised* CAD model ``CAD/<cat>/<cad_index:02d>.off`` (``t' = s (R c + t)`` with the
normalisation's centre ``c`` and scale ``s``), otherwise ``t`` is omitted and
``t_native`` is given instead. Boxes are MATLAB 1-based inclusive ``[x1 y1 x2 y2]`` ->
``[x1 - 1, y1 - 1, x2, y2]``.

Pix3D (``pix3d.json``): ``rot_mat``/``trans_mat`` map the model file's coordinates into
Pix3D's camera frame (x left, y up, z forward, as read by Mesh R-CNN); we convert it to
OpenCV with ``diag(-1, -1, 1)``. The focal length is given in mm for a 32 mm sensor width:
``f = focal_length * W / 32`` pixels, principal point at the image centre. The pose stays
relative to the model file's own frame (``frame = "native"``): Pix3D models are not
normalised here. (No Pix3D images are available to this repository, so this reading is
not verified against data.)

NMR / SoftRas (``*.png`` 64x64 RGBA): image and mask from alpha; no pose.

COCO instances (``instances_*.json``): polygons are rasterised by pixel-centre inclusion
(even-odd rule, coordinates are continuous pixel positions), RLE (uncompressed ``counts`` lists and compressed LEB128-like strings, column-major
runs starting with background) is decoded here; ``pycocotools`` is not required.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from poseshape.core.errors import FileFormatError
from poseshape.geometry.camera import pose_to_viewpoint, viewpoint_to_pose
from poseshape.geometry.conventions import source_rotation
from poseshape.shapes.meshes import load_mesh
from poseshape.shapes.voxels import read_binvox

__all__ = [
    "CocoMasks",
    "NMRImages",
    "Pascal3D",
    "Pix3D",
    "R2N2Renderings",
    "parse_r2n2_metadata",
    "polygons_to_mask",
    "r2n2_camera",
    "read_pascal3d_record",
    "read_rgb",
    "read_rgba",
    "rle_counts_from_string",
    "rle_decode",
]

#: Blender's default camera: 35 mm lens on a 32 mm sensor (3D-R2N2 renders).
R2N2_FOCAL_OVER_WIDTH = 35.0 / 32.0
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def _natural_key(p: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _has(item: dict[str, Any]) -> dict[str, Any]:
    item["has"] = frozenset(
        k
        for k in ("image", "mask", "R", "t", "K", "viewpoint", "voxels", "bbox", "depth", "model_id", "category_name")
        if k in item
    )
    return item


def read_rgba(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an RGBA PNG -> ``(image (3, H, W) float32 [0, 1], mask (1, H, W) float32)``.

    The mask is ``alpha > 0``. Raises FileFormatError (naming the file) when it cannot be
    read or has no alpha channel.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode not in ("RGBA", "LA", "PA") and not (im.mode == "P" and "transparency" in im.info):
                raise FileFormatError(f"{path}: expected an RGBA image with an alpha channel, got mode {im.mode}")
            arr = np.asarray(im.convert("RGBA"))
    except FileFormatError:
        raise
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: cannot read image ({exc})") from exc
    img = torch.from_numpy(arr[..., :3].copy()).permute(2, 0, 1).float() / 255.0
    mask = torch.from_numpy((arr[..., 3] > 0).astype(np.float32))[None]
    return img, mask


def read_rgb(path: str | Path) -> torch.Tensor:
    """Read an image as ``(3, H, W)`` float32 RGB in [0, 1] (FileFormatError naming it)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: cannot read image ({exc})") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def _read_mask(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: cannot read mask ({exc})") from exc
    return torch.from_numpy((arr > 127).astype(np.float32))[None]


# ----------------------------------------------------------------------------- 3D-R2N2


def parse_r2n2_metadata(path: str | Path) -> np.ndarray:
    """Parse ``rendering_metadata.txt`` / ``cameras.txt`` -> ``(N, 5)`` float64 rows
    ``azimuth, elevation, in_plane (deg), distance_ratio, fov (deg)``.

    Raises FileFormatError naming the file for a wrong column count, non-numbers,
    non-finite values, a non-positive distance or an empty file.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: cannot read camera metadata ({exc})") from exc
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 5:
            raise FileFormatError(
                f"{path}:{n}: expected 5 numbers (azimuth elevation in-plane distance fov), got {len(parts)}"
            )
        try:
            row = [float(x) for x in parts]
        except ValueError:
            raise FileFormatError(f"{path}:{n}: not a number in {line.strip()!r}") from None
        if not all(math.isfinite(x) for x in row) or row[3] <= 0:
            raise FileFormatError(f"{path}:{n}: non-finite value or non-positive distance in {line.strip()!r}")
        rows.append(row)
    if not rows:
        raise FileFormatError(f"{path}: no camera rows")
    return np.asarray(rows, np.float64)


def r2n2_camera(
    azimuth_deg: float,
    elevation_deg: float,
    inplane_deg: float,
    distance_ratio: float,
    image_size: int | tuple[int, int] = 137,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3D-R2N2 camera -> ``(R (3, 3), t (3,), K (3, 3))`` float64 in our conventions.

    See the module docstring. ``image_size`` is ``S`` or ``(H, W)`` of the render.
    """
    a, e, th = (math.radians(x) for x in (azimuth_deg, elevation_deg, inplane_deg))
    ca, sa, ce, se = math.cos(a), math.sin(a), math.cos(e), math.sin(e)
    # camera centre in Blender's world (Z up) and the look-at rows (x right, y down, z forward)
    C = np.array([ce * ca, -ce * sa, se]) * distance_ratio
    z = -C / np.linalg.norm(C)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= max(np.linalg.norm(x), 1e-12)
    y = np.cross(z, x)
    R_blender = np.stack([x, y, z])
    ct, st = math.cos(th), math.sin(th)
    R_blender = np.array([[ct, st, 0], [-st, ct, 0], [0, 0, 1]]) @ R_blender
    blender_from_shapenet = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # (x, -z, y)
    ours_from_shapenet = source_rotation("shapenet")
    R = R_blender @ blender_from_shapenet @ ours_from_shapenet.T
    t = np.array([0.0, 0.0, distance_ratio])
    H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
    f = W * R2N2_FOCAL_OVER_WIDTH
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    return torch.from_numpy(R), torch.from_numpy(t), torch.from_numpy(K)


class R2N2Renderings:
    """A folder of 3D-R2N2 renders: RGBA PNGs + ``rendering_metadata.txt`` or ``cameras.txt``.

    Images are paired with metadata rows through ``renderings.txt`` when present, otherwise
    by natural sort of the PNG names (``00.png``, ``01.png``, ... or ``plane1.png``, ...);
    the counts must agree. A ``*.binvox`` (``model.binvox``) in the folder is read as the
    model's voxels (ShapeNet frame -> ours by flipping x and z; the grid keeps the binvox
    file's own extent ``translate + [0, scale]^3``, given as ``voxel_extent``).

    Args:
        folder: the rendering folder (read in place).
        category, model_id: labels to attach (R2N2 folders are ``<synset>/<model>/rendering``;
            by default taken from the two parent folder names when the folder is named
            ``rendering``).
    """

    def __init__(self, folder: str | Path, category: str | None = None, model_id: str | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileFormatError(f"{self.folder}: R2N2 rendering folder does not exist")
        meta = next(
            (self.folder / n for n in ("rendering_metadata.txt", "cameras.txt") if (self.folder / n).is_file()), None
        )
        if meta is None:
            raise FileFormatError(f"{self.folder}: no rendering_metadata.txt or cameras.txt")
        self.cameras = parse_r2n2_metadata(meta)
        listing = self.folder / "renderings.txt"
        if listing.is_file():
            names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
            self.images = [self.folder / n for n in names]
        else:
            self.images = sorted((p for p in self.folder.iterdir() if p.suffix.lower() == ".png"), key=_natural_key)
        if len(self.images) != len(self.cameras):
            raise FileFormatError(
                f"{meta}: {len(self.cameras)} camera rows but {len(self.images)} images in {self.folder}"
            )
        if self.folder.name == "rendering" and category is None:
            category, model_id = self.folder.parent.parent.name, self.folder.parent.name
        self.category, self.model_id = category, model_id
        binvox = sorted(self.folder.glob("*.binvox")) + sorted(self.folder.parent.glob("*.binvox"))
        self.binvox = binvox[0] if binvox else None

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.images[i]
        img, mask = read_rgba(path)
        az, el, ip, dr, _fov = self.cameras[i]
        R, t, K = r2n2_camera(az, el, ip, dr, tuple(img.shape[-2:]))
        vp = torch.stack(pose_to_viewpoint(R, t))
        item: dict[str, Any] = {
            "image": img,
            "mask": mask,
            "R": R.float(),
            "t": t.float(),
            "K": K.float(),
            "viewpoint": vp.float(),
            "source": "r2n2",
            "rendered": True,
            "path": str(path),
        }
        if self.category is not None:
            item["category_name"] = self.category
        if self.model_id is not None:
            item["model_id"] = self.model_id
        if self.binvox is not None:
            grid, hdr = read_binvox(self.binvox)
            item["voxels"] = torch.flip(grid, dims=(0, 2)).float()[None]  # ShapeNet (x, z) -> ours (-x, -z)
            item["voxel_extent"] = (hdr.translate, hdr.scale)
        return _has(item)


class NMRImages:
    """NMR / SoftRas-style RGBA renders (``*.png``, e.g. 64x64): image + alpha mask, no pose.

    Args:
        folder: folder of PNGs (read in place).
        pattern: glob pattern (default ``"*.png"``); files without alpha raise
            FileFormatError when loaded, so pass e.g. ``"*_in.png"`` to select inputs.
    """

    def __init__(self, folder: str | Path, pattern: str = "*.png"):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileFormatError(f"{self.folder}: folder does not exist")
        self.files = sorted(self.folder.glob(pattern), key=_natural_key)
        if not self.files:
            raise FileFormatError(f"{self.folder}: no files match {pattern!r}")

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> dict[str, Any]:
        img, mask = read_rgba(self.files[i])
        return _has({"image": img, "mask": mask, "source": "nmr", "rendered": True, "path": str(self.files[i])})


# ----------------------------------------------------------------------------- PASCAL3D+


def _field(s, name, path, default=None, required=True):
    if hasattr(s, name):
        return getattr(s, name)
    if isinstance(s, np.ndarray) and s.dtype.names and name in s.dtype.names:
        return s[name]
    if required:
        raise FileFormatError(f"{path}: PASCAL3D+ record lacks field {name!r}")
    return default


def _num(x, path, name) -> float:
    arr = np.asarray(x, dtype=np.float64).ravel() if not isinstance(x, str) else np.array([])
    if arr.size != 1 or not np.isfinite(arr[0]):
        raise FileFormatError(f"{path}: field {name!r} is not a finite number ({x!r})")
    return float(arr[0])


def read_pascal3d_record(path: str | Path) -> dict[str, Any]:
    """Parse one PASCAL3D+ annotation ``.mat`` -> ``{"filename", "size", "objects": [...]}``.

    Each object: ``class`` (str), ``bbox`` (4 floats, MATLAB 1-based ``x1 y1 x2 y2``),
    ``cad_index`` (int or None), ``truncated`` / ``occluded`` / ``difficult`` (bool),
    ``viewpoint`` (dict of floats: azimuth, elevation, theta (deg), distance, focal, px, py,
    viewport; ``None`` when absent or empty).
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises ValueError/TypeError/MatReadError on bad input
        raise FileFormatError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from exc
    if "record" not in mat:
        raise FileFormatError(f"{path}: no 'record' struct (not a PASCAL3D+ annotation)")
    rec = mat["record"]
    filename = str(_field(rec, "filename", path))
    size = _field(rec, "size", path, None, required=False)
    objs = _field(rec, "objects", path)
    objs = [objs] if not isinstance(objs, np.ndarray) else list(objs.ravel())
    out = []
    for o in objs:
        bbox = np.asarray(_field(o, "bbox", path), np.float64).ravel()
        if bbox.size != 4 or not np.isfinite(bbox).all():
            raise FileFormatError(f"{path}: object bbox must have 4 finite numbers, got {bbox}")
        vp = _field(o, "viewpoint", path, None, required=False)
        vpd = None
        if vp is not None and not (isinstance(vp, np.ndarray) and vp.size == 0):
            vpd = {}
            for k in ("azimuth", "elevation", "theta", "distance", "focal", "px", "py", "viewport"):
                v = _field(vp, k, path, None, required=k in ("azimuth", "elevation"))
                if v is None or (isinstance(v, np.ndarray) and v.size == 0):
                    if k in ("azimuth", "elevation"):
                        raise FileFormatError(f"{path}: viewpoint lacks {k}")
                    continue
                vpd[k] = _num(v, path, f"viewpoint.{k}")
        cad = _field(o, "cad_index", path, None, required=False)
        cad = (
            None
            if cad is None or (isinstance(cad, np.ndarray) and cad.size == 0)
            else int(_num(cad, path, "cad_index"))
        )

        def flag(name, o=o):
            v = _field(o, name, path, 0, required=False)
            return bool(np.asarray(v).size and np.asarray(v).ravel()[0])

        out.append(
            {
                "class": str(_field(o, "class", path)),
                "bbox": bbox,
                "viewpoint": vpd,
                "cad_index": cad,
                "truncated": flag("truncated"),
                "occluded": flag("occluded"),
                "difficult": flag("difficult"),
            }
        )
    return {"filename": filename, "size": size, "objects": out}


class Pascal3D:
    """PASCAL3D+ objects with a viewpoint: one item per annotated object.

    Args:
        root: the release folder (``Annotations/``, ``Images/``, optionally ``CAD/``).
        categories: e.g. ``["car", "chair"]`` (default: every ``Annotations/<cat>_<set>``).
        subsets: ``("pascal", "imagenet")`` folder suffixes to use.
        cad_root: folder holding ``CAD/<cat>/<NN>.off`` (default ``root`` when it has
            ``CAD/``); needed for ``t`` in our normalised object frame.
        skip_truncated, skip_occluded, skip_difficult: drop such objects.
        load_images: read the image (``False``: only annotations, faster).

    Items hold ``image`` (whole image), ``bbox``, ``viewpoint``, ``R``, ``K``, ``t`` (only
    with the CAD model, else ``t_native``), ``category_name``, ``model_id``
    (``f"{cad_index:02d}"``), ``truncated``, ``occluded``; no mask (PASCAL3D+ has none).
    Objects whose viewpoint distance is 0 (coarse-only annotations) get no ``R``/``t``/``K``
    and no ``viewpoint``; their angles are given as ``viewpoint_angles`` (3,) instead.
    """

    def __init__(
        self,
        root: str | Path,
        categories: Sequence[str] | None = None,
        subsets: Sequence[str] = ("pascal", "imagenet"),
        cad_root: str | Path | None = None,
        skip_truncated: bool = False,
        skip_occluded: bool = False,
        skip_difficult: bool = False,
        load_images: bool = True,
    ):
        self.root = Path(root)
        ann = self.root / "Annotations"
        if not ann.is_dir():
            raise FileFormatError(f"{self.root}: no Annotations/ folder (not a PASCAL3D+ release)")
        self.load_images = load_images
        cad_root = Path(cad_root) if cad_root is not None else (self.root if (self.root / "CAD").is_dir() else None)
        self.cad_root = cad_root
        self._cad_cache: dict[tuple[str, int], Any] = {}
        self.items: list[tuple[Path, str, dict[str, Any], str]] = []
        dirs = sorted(d for d in ann.iterdir() if d.is_dir() and "_" in d.name)
        for d in dirs:
            cat, _, subset = d.name.rpartition("_")
            if categories is not None and cat not in categories:
                continue
            if subset not in subsets:
                continue
            for f in sorted(d.glob("*.mat")):
                rec = read_pascal3d_record(f)
                for o in rec["objects"]:
                    if o["class"] != cat or o["viewpoint"] is None:
                        continue
                    if (
                        (skip_truncated and o["truncated"])
                        or (skip_occluded and o["occluded"])
                        or (skip_difficult and o["difficult"])
                    ):
                        continue
                    self.items.append((f, rec["filename"], o, f"{cat}_{subset}"))
        if not self.items:
            raise FileFormatError(
                f"{ann}: no objects with viewpoints found (categories {categories}, subsets {list(subsets)})"
            )

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def _cad_transform(self, cat: str, idx: int):
        key = (cat, idx)
        if key not in self._cad_cache:
            path = self.cad_root / "CAD" / cat / f"{idx:02d}.off"
            self._cad_cache[key] = (
                load_mesh(path, source="pascal3d", normalize=True, return_transform=True)[1] if path.is_file() else None
            )
        return self._cad_cache[key]

    def __getitem__(self, i: int) -> dict[str, Any]:
        ann_path, filename, o, folder = self.items[i]
        cat = o["class"]
        vp = o["viewpoint"]
        x1, y1, x2, y2 = o["bbox"]
        item: dict[str, Any] = {
            "bbox": torch.tensor([x1 - 1, y1 - 1, x2, y2], dtype=torch.float32),
            "category_name": cat,
            "source": "pascal3d",
            "rendered": False,
            "truncated": o["truncated"],
            "occluded": o["occluded"],
            "path": str(ann_path),
        }
        if o["cad_index"] is not None:
            item["model_id"] = f"{o['cad_index']:02d}"
        angles = [math.radians(vp["azimuth"]), math.radians(vp["elevation"]), math.radians(vp.get("theta", 0.0))]
        d = vp.get("distance", 0.0)
        if d > 0 and "focal" in vp and "px" in vp and "py" in vp:
            R, t = viewpoint_to_pose(
                *(torch.tensor(a, dtype=torch.float64) for a in angles), torch.tensor(d, dtype=torch.float64)
            )
            f = vp["focal"] * vp.get("viewport", 3000.0)
            item["K"] = torch.tensor([[f, 0, vp["px"] - 0.5], [0, f, vp["py"] - 0.5], [0, 0, 1.0]], dtype=torch.float32)
            item["R"] = R.float()
            item["viewpoint"] = torch.tensor([*angles, d], dtype=torch.float32)
            tr = self._cad_transform(cat, o["cad_index"]) if (self.cad_root is not None and o["cad_index"]) else None
            if tr is not None:
                c = tr.center.to(torch.float64)
                item["t"] = (tr.scale * (R @ c + t)).float()
            else:
                item["t_native"] = t.float()
        else:
            item["viewpoint_angles"] = torch.tensor(angles, dtype=torch.float32)
        if self.load_images:
            img_path = self.root / "Images" / folder / filename
            item["image"] = read_rgb(img_path)
        return _has(item)


# ----------------------------------------------------------------------------- Pix3D


class Pix3D:
    """Pix3D (``pix3d.json`` + ``img/``, ``mask/``, ``model/``): one item per annotation.

    Items: ``image``, ``mask``, ``bbox`` (``x0, y0, x1, y1``, Pix3D's pixel box with the
    end exclusive), ``R``, ``t`` (model file's frame -> OpenCV camera; ``frame="native"``),
    ``K``, ``category_name``, ``model_id`` (the model path), ``truncated``, ``occluded``.

    Args:
        root: the folder holding ``pix3d.json`` (or the json file itself).
        categories: keep only these categories.
        load_images: read image and mask files.
    """

    _REQUIRED = ("img", "mask", "model", "rot_mat", "trans_mat", "focal_length", "img_size", "bbox", "category")

    def __init__(self, root: str | Path, categories: Sequence[str] | None = None, load_images: bool = True):
        root = Path(root)
        self.json_path = root if root.is_file() else root / "pix3d.json"
        self.root = self.json_path.parent
        try:
            entries = json.loads(self.json_path.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{self.json_path}: cannot read Pix3D annotations ({exc})") from exc
        if not isinstance(entries, list):
            raise FileFormatError(f"{self.json_path}: expected a JSON list of annotations")
        self.items = []
        for n, e in enumerate(entries):
            if not isinstance(e, dict):
                raise FileFormatError(f"{self.json_path}: entry {n} is not an object")
            missing = [k for k in self._REQUIRED if k not in e]
            if missing:
                raise FileFormatError(f"{self.json_path}: entry {n} lacks {missing}")
            R = np.asarray(e["rot_mat"], np.float64)
            t = np.asarray(e["trans_mat"], np.float64)
            if R.shape != (3, 3) or t.shape != (3,) or not (np.isfinite(R).all() and np.isfinite(t).all()):
                raise FileFormatError(
                    f"{self.json_path}: entry {n}: rot_mat must be 3x3 and trans_mat 3 finite numbers"
                )
            if np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
                raise FileFormatError(f"{self.json_path}: entry {n}: rot_mat is not a rotation")
            if len(e["img_size"]) != 2 or len(e["bbox"]) != 4 or not float(e["focal_length"]) > 0:
                raise FileFormatError(f"{self.json_path}: entry {n}: bad img_size / bbox / focal_length")
            if categories is None or e["category"] in categories:
                self.items.append(e)
        self.load_images = load_images

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.items[i]
        W, H = (int(x) for x in e["img_size"])
        flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))
        R = flip @ torch.tensor(e["rot_mat"], dtype=torch.float64)
        t = flip @ torch.tensor(e["trans_mat"], dtype=torch.float64)
        f = float(e["focal_length"]) * W / 32.0
        item: dict[str, Any] = {
            "R": R.float(),
            "t": t.float(),
            "K": torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]], dtype=torch.float32),
            "bbox": torch.tensor([float(x) for x in e["bbox"]], dtype=torch.float32),
            "category_name": str(e["category"]),
            "model_id": str(e["model"]),
            "frame": "native",
            "truncated": bool(e.get("truncated", False)),
            "occluded": bool(e.get("occluded", False)),
            "source": "pix3d",
            "rendered": False,
            "path": str(self.root / e["img"]),
        }
        if self.load_images:
            item["image"] = read_rgb(self.root / e["img"])
            item["mask"] = _read_mask(self.root / e["mask"])
            if tuple(item["image"].shape[-2:]) != (H, W):
                raise FileFormatError(
                    f"{self.root / e['img']}: size {tuple(item['image'].shape[-2:])} != img_size {(H, W)}"
                )
        return _has(item)


# ----------------------------------------------------------------------------- COCO masks


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` -> ``(H, W)`` bool.

    Coordinates are continuous pixel positions (pixel ``(i, j)`` covers
    ``[j, j+1) x [i, i+1)``, centre ``(j + 0.5, i + 0.5)``). A pixel is set when its centre
    lies inside a polygon by the even-odd rule, with half-open scanline spans
    ``[x_in, x_out)`` (so two polygons sharing an edge never both claim a centre on it).
    Several polygons are OR-ed.
    """
    H, W = int(height), int(width)
    out = np.zeros((H, W), bool)
    yc = np.arange(H) + 0.5
    xc = np.arange(W) + 0.5
    for poly in polygons:
        p = np.asarray(poly, np.float64).ravel()
        if p.size < 6 or p.size % 2 or not np.isfinite(p).all():
            raise ValueError(f"polygon needs an even number (>= 6) of finite coordinates, got {p.size}")
        v = p.reshape(-1, 2)
        x0, y0 = v[:, 0], v[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        # edges crossing each scanline (half-open in y), intersection abscissae
        cross = ((y0[None] <= yc[:, None]) & (yc[:, None] < y1[None])) | (
            (y1[None] <= yc[:, None]) & (yc[:, None] < y0[None])
        )  # (H, E)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = x0[None] + (yc[:, None] - y0[None]) * (x1 - x0)[None] / (y1 - y0)[None]
        xi = np.where(cross, xi, np.inf)
        xi.sort(axis=1)
        n = cross.sum(1)
        for i in np.nonzero(n)[0]:
            xs = xi[i, : n[i]]
            for a, b in zip(xs[0::2], xs[1::2]):
                out[i] |= (xc >= a) & (xc < b)
    return out


def rle_counts_from_string(s: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string (``pycocotools`` ``rleFrString``) into run counts."""
    if isinstance(s, str):
        s = s.encode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("truncated compressed RLE string")
            c = s[p] - 48
            if c < 0 or c > 63:
                raise ValueError(f"invalid character {chr(s[p])!r} in compressed RLE")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE ``{"size": [H, W], "counts": list | str}`` -> ``(H, W)`` bool.

    Runs alternate background / foreground starting with background and run down the
    columns (column-major / Fortran order).
    """
    try:
        H, W = (int(x) for x in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise ValueError("RLE must be a dict with 'size' [H, W] and 'counts'") from None
    if isinstance(counts, (str, bytes)):
        counts = rle_counts_from_string(counts)
    counts = np.asarray(counts, np.int64)
    if (counts < 0).any() or counts.sum() != H * W:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected H*W = {H * W}")
    vals = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(vals, counts)
    return flat.reshape(W, H).T.copy()


class CocoMasks:
    """COCO-style instance annotations -> silhouette samples (for silhouette-only fine-tuning).

    Args:
        annotations: the ``instances_*.json`` file.
        images_root: folder of the images (``None``: items have no ``image``).
        categories: keep only these category names.
        include_crowd: keep ``iscrowd`` annotations (off by default).
        min_area: drop masks smaller than this many pixels.

    Items: ``mask (1, H, W)``, ``bbox`` (``x0, y0, x1, y1``), ``category_name``,
    ``annotation_id``, ``image_id`` and, with ``images_root``, ``image``.
    """

    def __init__(
        self,
        annotations: str | Path,
        images_root: str | Path | None = None,
        categories: Sequence[str] | None = None,
        include_crowd: bool = False,
        min_area: float = 0.0,
    ):
        self.path = Path(annotations)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{self.path}: cannot read COCO annotations ({exc})") from exc
        try:
            self.cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            self.imgs = {int(m["id"]): m for m in data["images"]}
            anns = list(data["annotations"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(
                f"{self.path}: not COCO instances (needs images, annotations, categories: {exc})"
            ) from exc
        self.images_root = Path(images_root) if images_root is not None else None
        self.items = []
        for a in anns:
            if not isinstance(a, dict) or "segmentation" not in a or "image_id" not in a or "category_id" not in a:
                raise FileFormatError(
                    f"{self.path}: annotation {a.get('id') if isinstance(a, dict) else a!r} "
                    "lacks segmentation / image_id / category_id"
                )
            if int(a["image_id"]) not in self.imgs or int(a["category_id"]) not in self.cats:
                raise FileFormatError(f"{self.path}: annotation {a.get('id')} refers to an unknown image or category")
            if a.get("iscrowd", 0) and not include_crowd:
                continue
            if categories is not None and self.cats[int(a["category_id"])] not in categories:
                continue
            if float(a.get("area", 1e30)) < min_area:
                continue
            self.items.append(a)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> dict[str, Any]:
        a = self.items[i]
        info = self.imgs[int(a["image_id"])]
        H, W = int(info["height"]), int(info["width"])
        seg = a["segmentation"]
        try:
            if isinstance(seg, list):
                m = polygons_to_mask(seg, H, W)
            elif isinstance(seg, dict):
                m = rle_decode(seg)
                if m.shape != (H, W):
                    raise ValueError(f"RLE size {m.shape} differs from the image size {(H, W)}")
            else:
                raise TypeError(f"unknown segmentation type {type(seg).__name__}")
        except (ValueError, TypeError) as exc:
            raise FileFormatError(f"{self.path}: annotation {a.get('id')}: bad segmentation ({exc})") from exc
        item: dict[str, Any] = {
            "mask": torch.from_numpy(m.astype(np.float32))[None],
            "category_name": self.cats[int(a["category_id"])],
            "annotation_id": a.get("id"),
            "image_id": int(a["image_id"]),
            "source": "coco",
            "rendered": False,
        }
        if "bbox" in a:
            x, y, w, h = (float(v) for v in a["bbox"])
            item["bbox"] = torch.tensor([x, y, x + w, y + h], dtype=torch.float32)
        if self.images_root is not None:
            p = self.images_root / info["file_name"]
            item["image"] = read_rgb(p)
            item["path"] = str(p)
        return _has(item)
