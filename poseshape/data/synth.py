"""The synthetic data engine: render meshes into sharded image / mask / pose / voxel sets.

``render_dataset(meshes, out, config)`` (CLI: ``poseshape data render``) renders ``views``
samples of every model of a mesh collection and writes them as numbered ``.npz`` shards
plus an ``index.json``. Everything is a pure function of ``config.seed``: sample ``i`` is
model ``i // views``, view ``v = i % views``, and draws all its randomness from
``numpy.random.default_rng([seed, 0, key, v])`` where ``key`` = :func:`model_key` of the
model's category and id (the model's colour/texture from ``default_rng([seed, 1, key])``),
so the output is identical whatever the number of workers or the order in which shards are
rendered, and a model renders the same whichever subset (split, categories) is rendered.
Two different models never share their draws: a held-out set rendered with the training
set's seed does not repeat its poses, lights and backgrounds (sampling version 1 keyed the
draws by the sample's position in the rendered set, so sample ``i`` of a test split had
the pose, lights and background of training sample ``i``; see :data:`SAMPLING_VERSION`).

Directory layout
----------------
::

    OUT/index.json            # written first (complete=false), rewritten at the end
    OUT/shard_00000.npz       # samples [0, P)
    OUT/shard_00001.npz       # samples [P, 2P)   (P = samples_per_shard, default 64)
    OUT/.shard_00002.npz.tmp  # only while being written; never read; removed on resume

Each shard is written to a hidden ``.tmp`` file, flushed, fsynced and then renamed with
``os.replace`` (atomic), so a shard file that exists is complete. A rerun with the same
configuration verifies the existing shards (readable, right keys, sample indices and
configuration hash) and renders only the missing or broken ones; a rerun with another
configuration into the same folder is refused (use ``overwrite=True``).

Shard format (``FORMAT_VERSION`` 1; ``N`` samples, image size ``S``, voxel side ``D``)
------------------------------------------------------------------------------------
=====================  ==============  =================================================
key                    dtype           shape / meaning
=====================  ==============  =================================================
``images``             uint8           ``(N, S, S, 3)`` RGB
``masks``              bool            ``(N, S, S)`` object silhouette (exact hard raster)
``depth`` (optional)   float32         ``(N, S, S)`` camera z of the visible surface, 0 off
``R``                  float32         ``(N, 3, 3)`` object-to-camera rotation (OpenCV)
``t``                  float32         ``(N, 3)`` translation: ``X_cam = R @ X_obj + t``
``K``                  float32         ``(N, 3, 3)`` intrinsics in pixels (centres at +0.5)
``viewpoint``          float32         ``(N, 4)`` azimuth, elevation, theta (radians),
                                       distance -- PASCAL3D+ convention
                                       (:func:`poseshape.geometry.camera.viewpoint_to_pose`)
``category``           str (``<U``)    ``(N,)`` category name
``category_index``     int64           ``(N,)`` index into ``index.json["categories"]``
``model_id``           str (``<U``)    ``(N,)`` model id within its category
``model_index``        int64           ``(N,)`` index into ``index.json["models"]``
``split``              str (``<U``)    ``(N,)`` ``train`` / ``val`` / ``test`` / ``all``
``sample_index``       int64           ``(N,)`` global sample indices (consecutive)
``voxels`` (if D > 0)  uint8           ``(N, D, D, ceil(D/8))`` ``np.packbits`` of the
                                       aligned occupancy ``(N, D, D, D)`` bool, axis -1,
                                       index ``(d, h, w) = (z, y, x)`` over the unit cube
``occlusion`` (opt)     bool            ``(N, S, S)`` object pixels hidden by occluders (only
                                       with ``realism.occluder_prob > 0``; ``masks`` stay
                                       amodal: the whole object)
``posed_voxels`` (opt)  uint8          same packing of the pose-aware grid ``(N, P, P, P)``
                                       (:func:`poseshape.render.voxel.pose_voxels` with
                                       ``t = 0`` and extent ``P / D``, threshold 0.5)
``conventions_version``  int64         scalar, :data:`CONVENTIONS_VERSION`
``format_version``     int64           scalar, :data:`FORMAT_VERSION`
``config_hash``        str             scalar, hash of the generator config and model list
``domain``             str             scalar, ``"render"`` or ``"natural"`` (both rendered)
=====================  ==============  =================================================

``index.json`` holds ``format``, ``format_version``, ``conventions_version``,
``config`` (the full :class:`SynthConfig`), ``config_hash``, ``num_samples``,
``samples_per_shard``, ``shards`` (file name, first index, count), ``categories``,
``models`` (category, model id, split, first sample, views), ``splits`` (sample count per
split), ``skipped`` (mesh files that failed to parse: path and error), ``rendered: true``,
``domain`` and ``complete``.

Framing
-------
``"crop"`` (default; paper 000 assumes a known box): the camera sits at the sampled
viewpoint and ``K`` is chosen so the object's projected bounding box, enlarged by
``crop_margin`` on each side (and jittered by ``crop_jitter``), fills the square image --
exactly a crop + resize of a larger image, expressed in ``K`` (stored). ``"fixed"``: ``K``
from ``fov_deg`` and the object at the viewpoint distance, optionally shifted by
``translation_jitter`` (object units) in the image plane. ``"6dof"`` (paper 003): the
camera stands at height ``camera_height`` above the object's lowest point, at a random
ground position at horizontal distance ``[min, max]_camera_distance`` from the object, and
looks at a random ground target within ``target_area`` of the object, so the object
appears translated in the frame; ``K`` from ``fov_6dof_deg`` and ``viewpoint`` is
:func:`pose_to_viewpoint` of that pose.

Realism
-------
``config.realism`` (:class:`RealismConfig`, or a preset name of :data:`REALISM_PRESETS`;
off by default, and then the output and the configuration hash are exactly those of a
configuration without it) adds what real photos have and clean renders lack: a random
focal length (the camera distance follows it, so wide lenses give strong perspective),
a random object size in the photo, off-centre framing, truncation by the image border
(a shifted principal point in ``K``) and occluders in front of the object (the masks stay
amodal; ``occlusion`` marks what is hidden). Its draws come from a third per-sample
stream ``default_rng([seed, 2, i])``, so turning it on does not change the other draws.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poseshape.core.errors import FileFormatError, PoseshapeError, ShapeError
from poseshape.core.io import atomic_save, atomic_write
from poseshape.data import collections as colls
from poseshape.geometry.camera import (
    intrinsics_from_fov,
    look_at,
    pose_to_viewpoint,
    viewpoint_to_pose,
)
from poseshape.geometry.conventions import CONVENTIONS_VERSION
from poseshape.render import fastraster as _fastraster
from poseshape.render import shading as sh
from poseshape.render.fastraster import rasterize
from poseshape.render.shading import domain_style, list_background_images
from poseshape.render.voxel import pose_voxels
from poseshape.shapes.meshes import Mesh
from poseshape.shapes.meshes import face_normals as _face_normals
from poseshape.shapes.voxels import voxelize

__all__ = [
    "FORMAT_VERSION",
    "FRAMINGS",
    "SAMPLING_VERSION",
    "POSE_DISTRIBUTIONS",
    "SHARD_KEYS",
    "ModelRecord",
    "REALISM_PRESETS",
    "PoseConfig",
    "RealismConfig",
    "RenderSummary",
    "SynthConfig",
    "fit_intrinsics",
    "projected_box",
    "load_models",
    "read_shard",
    "render_dataset",
    "render_views",
    "sample_camera",
    "model_key",
    "sample_rng",
    "sample_viewpoint",
    "sample_viewpoints",
    "shard_name",
    "unpack_voxels",
    "verify_shard",
    "write_npz_atomic",
]

log = logging.getLogger(__name__)

#: Version of the shard / index layout described in the module docstring.
FORMAT_VERSION = 1
POSE_DISTRIBUTIONS = ("uniform", "pascal", "ring24")
FRAMINGS = ("crop", "fixed", "6dof")
#: Keys every shard holds (``voxels`` unless ``voxel_res=0``; ``depth`` and
#: ``posed_voxels`` are optional extras).
SHARD_KEYS = (
    "images",
    "masks",
    "R",
    "t",
    "K",
    "viewpoint",
    "category",
    "category_index",
    "model_id",
    "model_index",
    "split",
    "sample_index",
    "conventions_version",
    "format_version",
    "config_hash",
    "domain",
)
_PER_SAMPLE = (
    "images",
    "masks",
    "R",
    "t",
    "K",
    "viewpoint",
    "category",
    "category_index",
    "model_id",
    "model_index",
    "split",
    "sample_index",
    "voxels",
    "depth",
    "posed_voxels",
    "occlusion",
)


# ----------------------------------------------------------------------------- configuration


@dataclass
class PoseConfig:
    """How camera poses are sampled (angles in degrees here, radians everywhere else).

    Attributes:
        distribution: ``"uniform"`` (azimuth uniform, elevation uniform in
            ``elevation_deg``), ``"pascal"`` (azimuth uniform, elevation ~ N(12, 10) deg
            clipped to ``[-15, 75]``, mostly 0-30 deg like PASCAL3D+) or ``"ring24"`` (view
            ``v`` at azimuth ``v * 360 / ring_views``, elevation ``ring_elevation_deg``,
            no in-plane rotation, distance ``ring_distance``: the NMR/SoftRas setting of
            paper 002).
        elevation_deg: elevation range of ``"uniform"``.
        theta_jitter_deg: std of the in-plane rotation (clipped at 3 std); not for ring24.
        distance: camera distance range (object units; the object fits the unit cube).
        fov_deg: field of view of the ``"fixed"`` framing (and of ``"crop"``'s base camera).
        translation_jitter: image-plane shift range of the object (``"fixed"`` framing).
        crop_margin: margin added on each side of the projected box (fraction of its side).
        crop_jitter: relative jitter of the crop box's centre and side.
        ring_views, ring_elevation_deg, ring_distance: the ring24 setting (NMR: 24 views,
            30 deg, distance 2.732, 30 deg field of view).
        camera_height, min_camera_distance, max_camera_distance, target_area,
        fov_6dof_deg: the ``"6dof"`` framing (paper 003's set-up scaled to a unit object:
            camera height 1.5 and target grid 3 for objects of size 6 -> 0.25 and 0.5;
            field of view of Blender's default 35 mm lens, 49.1 deg).
    """

    distribution: str = "uniform"
    elevation_deg: tuple[float, float] = (-10.0, 50.0)
    theta_jitter_deg: float = 4.0
    distance: tuple[float, float] = (2.0, 3.0)
    fov_deg: float = 30.0
    translation_jitter: float = 0.0
    crop_margin: float = 0.08
    crop_jitter: float = 0.05
    ring_views: int = 24
    ring_elevation_deg: float = 30.0
    ring_distance: float = 2.732
    camera_height: float = 0.25
    min_camera_distance: float = 0.9
    max_camera_distance: float = 1.8
    target_area: float = 0.5
    fov_6dof_deg: float = 49.1

    def __post_init__(self) -> None:
        if self.distribution not in POSE_DISTRIBUTIONS:
            raise ShapeError(f"distribution: expected one of {POSE_DISTRIBUTIONS}, got {self.distribution!r}")
        self.elevation_deg = tuple(float(x) for x in self.elevation_deg)
        self.distance = tuple(float(x) for x in self.distance)
        if len(self.elevation_deg) != 2 or len(self.distance) != 2:
            raise ShapeError(
                f"elevation_deg / distance: expected (lo, hi) pairs, got {self.elevation_deg} / {self.distance}"
            )
        lo, hi = self.elevation_deg
        if not (math.isfinite(lo) and math.isfinite(hi) and -90.0 <= lo <= hi <= 90.0):
            raise ShapeError(
                f"elevation_deg (--elevation LO HI): expected degrees with -90 <= LO <= HI <= 90, got ({lo:g}, {hi:g})"
                + ("; the range is reversed: swap the two values" if lo > hi else "")
            )
        if not (0 < self.distance[0] <= self.distance[1]):
            raise ShapeError(f"distance: expected 0 < lo <= hi, got {self.distance}")
        if not (0 < self.fov_deg < 180 and 0 < self.fov_6dof_deg < 180):
            raise ShapeError("fov_deg / fov_6dof_deg: expected degrees in (0, 180)")
        if not (0 < self.min_camera_distance <= self.max_camera_distance):
            raise ShapeError("min_camera_distance / max_camera_distance: expected 0 < min <= max")


@dataclass
class RealismConfig:
    """Photo-like camera and scene effects on top of a framing (all off by default).

    Each sample draws these from its own generator ``sample_rng(seed, key, view, stream=2)``, so a
    configuration without them renders exactly as before, and one with them stays a pure
    function of the seed.

    Attributes:
        fov_deg: ``(lo, hi)`` field of view of the *photo* the sample comes from, uniform in
            degrees, or ``None`` (the framing's own camera). With it, the camera distance is
            set so that the object's box (enlarged by ``crop_margin``) spans a fraction
            ``object_fraction`` of that photo's side: a wide lens means a close camera and
            strong perspective. ``"crop"`` framing then crops that box (the object stays on
            the optical axis of the crop, as PASCAL3D+'s viewpoints assume); ``"fixed"`` keeps
            the whole photo (``K`` from the field of view) and places the object off the
            optical axis within the free room scaled by ``offcentre``; ``"6dof"`` only takes
            ``K`` from the field of view.
        object_fraction: ``(lo, hi)`` of that fraction (uniform).
        offcentre: ``"fixed"`` framing: how far (0..1 of the free room) the object's box
            centre may be from the image centre; ``"crop"``: amplitude of the crop-centre
            shift as a fraction of the box side (the principal point moves with it).
        truncation_prob: probability that the image border cuts the object.
        truncation: ``(lo, hi)``: fraction of the object box's width (and/or height) that
            lies outside the image, toward a random side or corner (the principal point in
            ``K`` is shifted: a crop of the photo that cuts the object).
        occluder_prob: probability of occluders in front of the object.
        occluders: ``(lo, hi)`` number of occluders (inclusive).
        occluder_size: half-size range of an occluder, fraction of the object box's side.
        max_occlusion: largest fraction of the object's pixels the occluders may hide.
    """

    fov_deg: tuple[float, float] | None = None
    object_fraction: tuple[float, float] = (0.3, 0.9)
    offcentre: float = 0.0
    truncation_prob: float = 0.0
    truncation: tuple[float, float] = (0.05, 0.35)
    occluder_prob: float = 0.0
    occluders: tuple[int, int] = (1, 2)
    occluder_size: tuple[float, float] = (0.15, 0.4)
    max_occlusion: float = 0.4

    def __post_init__(self) -> None:
        def pair(name: str, lo: float, hi: float, kind=float) -> None:
            v = getattr(self, name)
            try:
                a, b = (kind(x) for x in v)
            except (TypeError, ValueError):
                raise ShapeError(f"realism.{name}: expected a pair (lo, hi), got {v!r}") from None
            if not (lo <= a <= b <= hi):
                raise ShapeError(f"realism.{name}: expected {lo} <= lo <= hi <= {hi}, got {v!r}")
            setattr(self, name, (a, b))

        if self.fov_deg is not None:
            pair("fov_deg", 1.0, 170.0)
        pair("object_fraction", 0.01, 1.0)
        pair("truncation", 0.0, 0.9)
        pair("occluders", 0, 16, int)
        pair("occluder_size", 0.0, 2.0)
        for name in ("offcentre", "truncation_prob", "occluder_prob", "max_occlusion"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ShapeError(f"realism.{name}: expected a value in [0, 1], got {v!r}")
            setattr(self, name, v)

    @property
    def active(self) -> bool:
        """Whether any effect is on."""
        return self != RealismConfig()


#: Named realism settings (``SynthConfig(realism="realistic")``, ``--realism realistic``):
#: focal lengths of 30-90 deg field of view, objects over 30-90 % of the photo, off-centre
#: crops, 20 % truncated, 30 % occluded (at most 40 % of the object hidden).
REALISM_PRESETS: dict[str, RealismConfig] = {
    "none": RealismConfig(),
    "realistic": RealismConfig(
        fov_deg=(30.0, 90.0),
        object_fraction=(0.3, 0.9),
        offcentre=0.5,
        truncation_prob=0.2,
        truncation=(0.05, 0.35),
        occluder_prob=0.3,
        occluders=(1, 2),
        occluder_size=(0.15, 0.4),
        max_occlusion=0.4,
    ),
}


def realism_config(value: RealismConfig | dict | str | None) -> RealismConfig:
    """A :class:`RealismConfig` from itself, a dict of its fields, a preset name or ``None``."""
    if value is None:
        return RealismConfig()
    if isinstance(value, RealismConfig):
        return value
    if isinstance(value, str):
        if value not in REALISM_PRESETS:
            raise ShapeError(f"realism: expected one of {sorted(REALISM_PRESETS)}, got {value!r}")
        return REALISM_PRESETS[value]
    if isinstance(value, dict):
        names = {f.name for f in fields(RealismConfig)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ShapeError(f"realism: unknown field(s) {unknown}; known: {sorted(names)}")
        return RealismConfig(**value)
    raise ShapeError(f"realism: expected a RealismConfig, dict or preset name, got {type(value).__name__}")


@dataclass
class SynthConfig:
    """Everything that determines a rendered data set (stored in ``index.json``).

    Attributes:
        image_size: square image side ``S`` in pixels.
        views: samples per model.
        voxel_res: side ``D`` of the aligned voxel grid (0 disables voxels).
        posed_voxel_res: side of the pose-aware grid (``None``: not stored).
        framing: ``"crop"``, ``"fixed"`` or ``"6dof"`` (module docstring).
        domain: ``"render"`` (clean) or ``"natural"`` (natural-image-like appearance).
        depth: also store depth maps.
        samples_per_shard: samples per ``.npz`` shard.
        seed: master seed.
        pose: :class:`PoseConfig`.
        backgrounds: optional folder of background images (half the backgrounds).
        compress: zip-deflate the shards (smaller, slightly slower to write and read).
        realism: :class:`RealismConfig` (or a preset name of :data:`REALISM_PRESETS`):
            fields of view, off-centre crops, truncation, occluders.
    """

    image_size: int = 64
    views: int = 24
    voxel_res: int = 32
    posed_voxel_res: int | None = None
    framing: str = "crop"
    domain: str = "render"
    depth: bool = False
    samples_per_shard: int = 64
    seed: int = 0
    pose: PoseConfig = field(default_factory=PoseConfig)
    backgrounds: str | None = None
    compress: bool = True
    realism: RealismConfig = field(default_factory=RealismConfig)

    def __post_init__(self) -> None:
        if isinstance(self.pose, dict):
            self.pose = PoseConfig(**self.pose)
        self.realism = realism_config(self.realism)
        if self.framing not in FRAMINGS:
            raise ShapeError(f"framing: expected one of {FRAMINGS}, got {self.framing!r}")
        domain_style(self.domain)
        for name in ("image_size", "views", "samples_per_shard"):
            if int(getattr(self, name)) < 1:
                raise ShapeError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.voxel_res < 0 or (self.posed_voxel_res is not None and self.posed_voxel_res < 1):
            raise ShapeError("voxel_res / posed_voxel_res: expected positive sizes")
        if self.posed_voxel_res is not None and self.voxel_res == 0:
            raise ShapeError("posed_voxel_res needs voxel_res > 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pose"]["elevation_deg"] = list(d["pose"]["elevation_deg"])
        d["pose"]["distance"] = list(d["pose"]["distance"])
        if self.realism.active:  # omitted when off: older data sets keep their hash
            d["realism"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["realism"].items()}
        else:
            del d["realism"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ModelRecord:
    """One mesh to render, already normalised to the object frame (unit cube).

    Attributes:
        category, model_id, split: identifiers (``split`` is ``"all"`` when unsplit).
        verts: ``(V, 3)`` float32 numpy vertices; faces: ``(F, 3)`` int64.
        path: source file (``""`` for procedural shapes).
    """

    category: str
    model_id: str
    split: str
    verts: np.ndarray
    faces: np.ndarray
    path: str = ""


@dataclass
class RenderSummary:
    """What :func:`render_dataset` did."""

    out: Path
    num_samples: int
    num_shards: int
    rendered_shards: int
    reused_shards: int
    repaired_shards: int
    skipped_meshes: list[dict[str, str]]
    seconds: float

    def __str__(self) -> str:
        s = (
            f"{self.num_samples} samples in {self.num_shards} shards at {self.out} "
            f"({self.rendered_shards} rendered, {self.reused_shards} reused, "
            f"{self.repaired_shards} re-rendered after failing verification) in {self.seconds:.1f} s"
        )
        if self.skipped_meshes:
            s += f"; skipped {len(self.skipped_meshes)} mesh file(s) that failed to parse"
        return s


# ----------------------------------------------------------------------------- poses


#: Version of the per-sample random streams, part of the configuration hash (a folder rendered
#: with another version is re-rendered, not resumed). 2: keyed by the model's identity and
#: the view (:func:`sample_rng`); 1 (before 2026-12-05) keyed by the position in the set.
SAMPLING_VERSION = 2


def model_key(category: str, model_id: str) -> int:
    """Stable 32-bit key of a model: BLAKE2b of ``"category/model_id"`` (seeds its draws)."""
    digest = hashlib.blake2b(f"{category}/{model_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def sample_rng(seed: int, key: int, view: int | None = None, stream: int = 0) -> np.random.Generator:
    """The generator of view ``view`` of the model with :func:`model_key` ``key``
    (``stream=0``: pose, lights, background, degradations; ``stream=2``: realism effects), or
    of the model itself (``view=None``, ``stream=1``: colour and texture)."""
    parts = [int(seed) & 0xFFFFFFFF, int(stream), int(key)]
    if view is not None:
        parts.append(int(view))
    return np.random.default_rng(parts)


def sample_viewpoint(config: PoseConfig, rng: np.random.Generator, view: int = 0) -> np.ndarray:
    """One viewpoint ``(4,)`` float64: azimuth, elevation, theta (radians), distance.

    Always draws the same number of values from ``rng`` (also for ``ring24``, where the
    view index alone sets the angles), so later draws do not depend on the distribution.
    """
    u = rng.uniform(size=4)
    z = float(np.clip(rng.normal(), -3.0, 3.0))
    if config.distribution == "ring24":
        az = 2 * math.pi * (view % config.ring_views) / config.ring_views
        return np.array([az, math.radians(config.ring_elevation_deg), 0.0, config.ring_distance])
    az = 2 * math.pi * u[0]
    if config.distribution == "uniform":
        lo, hi = config.elevation_deg
        el = math.radians(lo + (hi - lo) * u[1])
    else:  # pascal: mostly 0-30 deg
        g = math.sqrt(2.0) * _erfinv(2 * u[1] - 1)  # standard normal from the uniform
        el = math.radians(float(np.clip(12.0 + 10.0 * g, -15.0, 75.0)))
    th = math.radians(config.theta_jitter_deg) * z
    d = config.distance[0] + (config.distance[1] - config.distance[0]) * u[2]
    return np.array([az, el, th, d])


def _erfinv(y: float) -> float:
    from scipy.special import erfinv

    return float(erfinv(np.clip(y, -1 + 1e-12, 1 - 1e-12)))


def sample_viewpoints(config: PoseConfig, seed: int, n: int, views: int | None = None, key: int = 0) -> np.ndarray:
    """Viewpoints ``(n, 4)`` of views ``0..n-1`` of the model with :func:`model_key` ``key``
    (view ``i % views`` sets a ring24 angle), as the engine draws them."""
    views = views or n
    return np.stack([sample_viewpoint(config, sample_rng(seed, key, i), i % views) for i in range(n)])


def projected_box(verts: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Bounding box ``(B, 4)`` = ``(x0, y0, x1, y1)`` of the projected vertices in normalised
    (``z = 1``) image coordinates, for ``verts (V, 3)`` and poses ``R (B, 3, 3)``, ``t (B, 3)``."""
    Xc = verts.unsqueeze(0) @ R.transpose(-1, -2) + t.unsqueeze(-2)  # (B, V, 3)
    z = Xc[..., 2].clamp(min=1e-6)
    xn = Xc[..., 0] / z
    yn = Xc[..., 1] / z
    return torch.stack([xn.min(-1).values, yn.min(-1).values, xn.max(-1).values, yn.max(-1).values], -1)


def fit_intrinsics(
    verts: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    image_size: int,
    margin: float = 0.08,
    jitter: np.ndarray | None = None,
) -> torch.Tensor:
    """Intrinsics that make the object's projected bounding box fill a square image.

    Equivalent to rendering with any pinhole camera at the same pose, cropping the box
    (enlarged by ``margin`` of its side on each side, made square) and resizing it to
    ``image_size``.

    Args:
        verts: ``(V, 3)`` object-frame vertices.
        R: ``(B, 3, 3)``, t: ``(B, 3)`` poses (the object must lie in front of the camera).
        image_size: output side ``S`` in pixels.
        margin: relative margin per side.
        jitter: ``(B, 3)`` values in [-1, 1]: box-centre shift (x, y) and scale, each as a
            fraction of the box side (already multiplied by the jitter amplitude).

    Returns:
        ``K (B, 3, 3)`` with ``fx = fy = S / s`` and the box centre at the image centre,
        where ``s`` is the square box side in normalised (``z = 1``) image coordinates.
    """
    x0, y0, x1, y1 = projected_box(verts, R, t).unbind(-1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = torch.maximum(x1 - x0, y1 - y0).clamp(min=1e-6) * (1 + 2 * margin)
    if jitter is not None:
        j = torch.as_tensor(jitter, dtype=verts.dtype)
        cx = cx + j[:, 0] * side
        cy = cy + j[:, 1] * side
        side = side * (1 + j[:, 2])
    f = image_size / side
    K = torch.zeros(R.shape[0], 3, 3, dtype=verts.dtype)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = image_size / 2 - f * cx
    K[:, 1, 2] = image_size / 2 - f * cy
    K[:, 2, 2] = 1
    return K


def sample_camera(
    verts: torch.Tensor,
    config: SynthConfig,
    rngs: Sequence[np.random.Generator],
    views: Sequence[int],
    realism_draws: np.ndarray | None = None,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Camera of each sample: viewpoint ``(B, 4)``, ``R (B, 3, 3)``, ``t (B, 3)``, ``K (B, 3, 3)``.

    ``verts (V, 3)`` (object frame, float64 recommended) is needed by the crop and 6-DoF
    framings. Each sample draws from its own generator in ``rngs``. ``realism_draws``
    ``(B, 8)`` uniform [0, 1) values (from the samples' realism streams) are used when
    ``config.realism`` is active (see :class:`RealismConfig`).
    """
    pc = config.pose
    S = config.image_size
    rc = config.realism
    vp = np.stack([sample_viewpoint(pc, r, v) for r, v in zip(rngs, views)])  # (B, 4)
    extra = np.stack([r.uniform(-1.0, 1.0, size=5) for r in rngs])  # framing jitter, always drawn
    B = len(vp)
    if rc.active and (realism_draws is None or realism_draws.shape != (B, 8)):
        raise ShapeError(f"realism_draws: expected shape ({B}, 8) when realism is on")
    fov = None
    if rc.fov_deg is not None:
        lo, hi = rc.fov_deg
        fov = np.radians(lo + (hi - lo) * realism_draws[:, 0])  # (B,)
    vpt = torch.as_tensor(vp, dtype=torch.float64)
    if config.framing == "6dof":
        ground = float(verts[:, 1].min())
        ang = 2 * math.pi * (extra[:, 0] + 1) / 2
        # uniform over the annulus area
        r2 = pc.min_camera_distance**2 + (pc.max_camera_distance**2 - pc.min_camera_distance**2) * (extra[:, 1] + 1) / 2
        rad = np.sqrt(r2)
        eye = np.stack([rad * np.sin(ang), np.full(B, ground + pc.camera_height), rad * np.cos(ang)], -1)
        target = np.stack([extra[:, 2] * pc.target_area / 2, np.full(B, ground), extra[:, 3] * pc.target_area / 2], -1)
        R, t = look_at(torch.as_tensor(eye), torch.as_tensor(target))
        if fov is None:
            K = intrinsics_from_fov(math.radians(pc.fov_6dof_deg), S).to(torch.float64).expand(B, 3, 3).clone()
        else:
            K = torch.stack([intrinsics_from_fov(float(f), S).to(torch.float64) for f in fov])
        a, e, th, d = pose_to_viewpoint(R, t)
        vp = torch.stack([a, e, th, d], -1).numpy()
        return vp, R, t, _truncate(verts, R, t, K, S, rc, realism_draws)
    R, t = viewpoint_to_pose(vpt[:, 0], vpt[:, 1], vpt[:, 2], vpt[:, 3])
    m = pc.crop_margin
    if fov is not None:  # the camera distance that gives the object its share of the photo
        lo, hi = rc.object_fraction
        target = (lo + (hi - lo) * realism_draws[:, 1]) * 2 * np.tan(fov / 2) / (1 + 2 * m)  # (B,)
        d = vpt[:, 3].clone()
        target_t = torch.as_tensor(target)
        for _ in range(4):  # box side ~ 1 / d: a few fixed-point steps
            box = projected_box(verts, R, t)
            side = torch.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]).clamp(min=1e-9)
            d = (d * side / target_t).clamp(_MIN_DISTANCE, _MAX_DISTANCE)
            t = torch.zeros_like(t)
            t[:, 2] = d
        vp = vp.copy()
        vp[:, 3] = d.numpy()
    if config.framing == "fixed":
        t = t.clone()
        t[:, :2] += torch.as_tensor(extra[:, :2] * pc.translation_jitter)
        if fov is None:
            K = intrinsics_from_fov(math.radians(pc.fov_deg), S).to(torch.float64).expand(B, 3, 3).clone()
        else:
            K = torch.stack([intrinsics_from_fov(float(f), S).to(torch.float64) for f in fov])
            if rc.offcentre > 0:  # move the object off the optical axis, inside the photo
                box = projected_box(verts, R, t)  # (B, 4) normalised
                centre = (box[:, :2] + box[:, 2:]) / 2
                half = (box[:, 2:] - box[:, :2]) * (1 + 2 * m) / 2  # (B, 2), with the margin
                room = (torch.as_tensor(np.tan(fov / 2))[:, None] - half).clamp(min=0.0)
                goal = rc.offcentre * (2 * torch.as_tensor(realism_draws[:, 2:4]) - 1) * room
                t[:, :2] += (goal - centre) * t[:, 2:3]
    else:
        jit = extra[:, :3] * pc.crop_jitter
        if rc.offcentre > 0:  # an off-centre crop that still holds the whole object
            jit = jit.copy()
            jit[:, :2] += rc.offcentre * (2 * realism_draws[:, 2:4] - 1) * m / (1 + 2 * m)
        K = fit_intrinsics(verts.to(torch.float64), R, t, S, m, jit)
    return vp, R, t, _truncate(verts, R, t, K, S, rc, realism_draws)


_MIN_DISTANCE = 1.2  # the camera stays outside the unit cube's bounding sphere (r = 0.87)
_MAX_DISTANCE = 100.0
#: truncation directions: (x, y) signs, sides then corners
_TRUNCATION_DIRS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))


def _truncate(
    verts: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    S: int,
    rc: RealismConfig,
    draws: np.ndarray | None,
) -> torch.Tensor:
    """Shift the principal point of the samples chosen for truncation so that a fraction of
    the object's pixel box lies past a side or corner of the image (a crop that cuts it)."""
    if draws is None or rc.truncation_prob <= 0:
        return K
    K = K.clone()
    box = projected_box(verts, R, t)  # (B, 4) normalised
    f = K[:, 0, 0]
    px0, px1 = box[:, 0] * f + K[:, 0, 2], box[:, 2] * f + K[:, 0, 2]
    py0, py1 = box[:, 1] * K[:, 1, 1] + K[:, 1, 2], box[:, 3] * K[:, 1, 1] + K[:, 1, 2]
    lo, hi = rc.truncation
    for b in range(K.shape[0]):
        if draws[b, 4] >= rc.truncation_prob:
            continue
        frac = lo + (hi - lo) * draws[b, 5]
        sx, sy = _TRUNCATION_DIRS[min(int(draws[b, 6] * 8), 7)]
        w, h = float(px1[b] - px0[b]), float(py1[b] - py0[b])
        if sx > 0:
            K[b, 0, 2] += S + frac * w - px1[b]
        elif sx < 0:
            K[b, 0, 2] += -frac * w - px0[b]
        if sy > 0:
            K[b, 1, 2] += S + frac * h - py1[b]
        elif sy < 0:
            K[b, 1, 2] += -frac * h - py0[b]
    return K


# ----------------------------------------------------------------------------- rendering


def _raster(
    verts: torch.Tensor, faces: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard-rasterise ``B`` views of one mesh -> face index, depth, barycentrics, mask.

    Uses :mod:`poseshape.render.fastraster`, a compiled loop whose result is bit-identical to
    :func:`poseshape.render.mesh_hard.rasterize` (and falls back to it)."""
    B = R.shape[0]
    out = rasterize(verts.unsqueeze(0).expand(B, -1, -1), faces, R, t, K, (size, size))
    return _raster_fields(out)


def _raster_fields(out) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    def get(*names):
        for n in names:
            if isinstance(out, dict) and n in out:
                return out[n]
            if hasattr(out, n):
                return getattr(out, n)
        return None

    fi = get("face_index", "pix_to_face", "face_idx", "faces")
    depth = get("depth", "zbuf")
    bary = get("bary", "barycentrics", "bary_coords")
    mask = get("mask", "silhouette")
    if fi is None and isinstance(out, (tuple, list)):
        fi, depth, bary, mask = out[:4]
    if mask is None:
        mask = fi >= 0
    return fi.reshape(fi.shape[0], *fi.shape[-2:]), depth, bary, mask.reshape(fi.shape[0], *fi.shape[-2:]).bool()


def unpack_voxels(packed: np.ndarray, res: int) -> np.ndarray:
    """Inverse of the shard packing: ``(..., D, D, ceil(D/8))`` uint8 -> ``(..., D, D, D)`` bool."""
    return np.unpackbits(packed, axis=-1, count=res).astype(bool)


def _voxelize(mesh_verts: np.ndarray, faces: np.ndarray, res: int) -> np.ndarray:
    v = voxelize(Mesh(torch.as_tensor(mesh_verts, dtype=torch.float32), torch.as_tensor(faces)), res)
    v = getattr(v, "data", v)
    v = torch.as_tensor(v)
    return (v.reshape(res, res, res) > 0.5).cpu().numpy()


def render_views(
    model: ModelRecord,
    model_index: int,
    sample_indices: Sequence[int],
    config: SynthConfig,
    category_index: int,
    voxels: np.ndarray | None = None,
    backgrounds: Sequence[Path] | None = None,
    face_normals: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Render samples ``sample_indices`` (all of model ``model_index``) in one batched raster.

    Args:
        model: the mesh (normalised, object frame) and its identifiers.
        model_index: its position in the planned model list (stored; the draws are keyed by
            :func:`model_key` of its category and id).
        sample_indices: global sample indices (view ``i % config.views``).
        config: the generator configuration.
        category_index: index of ``model.category`` in the data set's category list.
        voxels: ``(D, D, D)`` bool aligned grid (computed when ``None`` and ``voxel_res``).
        backgrounds: background image files (``None``: procedural backgrounds only).
        face_normals: ``(F, 3)`` cached unit face normals.

    Returns:
        Per-sample arrays keyed as in the shard format (``B`` = ``len(sample_indices)``).
    """
    S = config.image_size
    key = model_key(model.category, model.model_id)
    views = [i % config.views for i in sample_indices]
    rngs = [sample_rng(config.seed, key, v) for v in views]
    verts64 = torch.as_tensor(model.verts, dtype=torch.float64)
    rc = config.realism
    real_rngs = [sample_rng(config.seed, key, v, stream=2) for v in views] if rc.active else None
    draws = np.stack([r.uniform(size=8) for r in real_rngs]) if real_rngs else None
    vp, R, t, K = sample_camera(verts64, config, rngs, views, draws)
    R32, t32, K32 = R.float(), t.float(), K.float()
    verts = torch.as_tensor(model.verts, dtype=torch.float32)
    faces = torch.as_tensor(model.faces, dtype=torch.int64)
    with torch.no_grad():
        fi, depth, bary, mask = _raster(verts, faces, R32, t32, K32, S)
        B = len(sample_indices)
        if face_normals is None:
            face_normals = _face_normals(verts, faces)
        points = sh.interpolate_faces(verts, faces, fi, bary.float())  # (B, S, S, 3)
        pcam = points @ R32.transpose(-1, -2).unsqueeze(1) + t32[:, None, None, :]
        normals = sh.pixel_normals(face_normals, fi, R32, pcam)
        appearance = sh.sample_appearance(sample_rng(config.seed, key, None, stream=1), config.domain)
        lights = [sh.sample_lights(r, config.domain) for r in rngs]
        fg = sh.shade(points, normals, mask, appearance, lights)
        bg = torch.from_numpy(np.stack([sh.random_background(r, (S, S), config.domain, backgrounds) for r in rngs]))
        img = sh.composite(fg, mask.unsqueeze(1), bg)
        occlusion = None
        if rc.occluder_prob > 0:  # occluders in front of the object; the masks stay amodal
            occlusion = np.zeros((B, S, S), bool)
            mask_np = mask.cpu().numpy()
            for b in range(B):
                if draws[b, 7] >= rc.occluder_prob:
                    continue
                n = int(real_rngs[b].integers(rc.occluders[0], rc.occluders[1] + 1))
                rgb, occ = sh.occluder_layer(real_rngs[b], mask_np[b], n, rc.occluder_size, rc.max_occlusion)
                img[b] = torch.where(torch.from_numpy(occ)[None], torch.from_numpy(rgb), img[b])
                occlusion[b] = occ & mask_np[b]
        images = np.stack([sh.degrade(img[b], rngs[b], config.domain) for b in range(B)])
    out: dict[str, np.ndarray] = {
        "images": images,
        "masks": mask.cpu().numpy().astype(bool),
        "R": R32.numpy(),
        "t": t32.numpy(),
        "K": K32.numpy(),
        "viewpoint": np.asarray(vp, np.float32),
        "category": np.array([model.category] * B),
        "category_index": np.full(B, category_index, np.int64),
        "model_id": np.array([model.model_id] * B),
        "model_index": np.full(B, model_index, np.int64),
        "split": np.array([model.split] * B),
        "sample_index": np.asarray(sample_indices, np.int64),
    }
    if occlusion is not None:
        out["occlusion"] = occlusion
    if config.depth:
        out["depth"] = torch.where(mask, depth.reshape(mask.shape).float(), torch.zeros(())).numpy()
    if config.voxel_res:
        if voxels is None:
            voxels = _voxelize(model.verts, model.faces, config.voxel_res)
        out["voxels"] = np.repeat(np.packbits(voxels, axis=-1)[None], B, 0)
        if config.posed_voxel_res:
            vt = torch.from_numpy(voxels.astype(np.float32))[None, None].expand(B, 1, *voxels.shape)
            posed = pose_voxels(vt, R32, None, out_size=config.posed_voxel_res)[:, 0] > 0.5
            out["posed_voxels"] = np.packbits(posed.numpy(), axis=-1)
    return out


# ----------------------------------------------------------------------------- shard IO


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard_00012.npz``)."""
    return f"shard_{index:05d}.npz"


def write_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` at ``path`` atomically (:func:`poseshape.core.io.atomic_save`:
    hidden ``.tmp`` file, fsync, ``os.replace``)."""
    save = np.savez_compressed if compress else np.savez
    atomic_save(path, lambda fh: save(fh, **arrays))


def _write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


def read_shard(
    path: str | Path, expect_conventions: int | None = CONVENTIONS_VERSION, keys: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Load a shard fully into memory, validating it.

    Raises:
        FileFormatError: naming the file when it is missing, a temporary file, unreadable /
            corrupt (bad zip, CRC error, truncated), lacks a required key, has inconsistent
            per-sample lengths, or was written under another ``CONVENTIONS_VERSION`` /
            ``FORMAT_VERSION``.
    """
    path = Path(path)
    if path.name.endswith(".tmp") or path.name.startswith("."):
        raise FileFormatError(f"{path}: is a temporary (possibly half-written) shard; refusing to read it")
    if not path.is_file():
        raise FileFormatError(f"{path}: shard file is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            want = set(keys) | {"conventions_version", "format_version"} if keys is not None else names
            data = {k: z[k] for k in want if k in names}
    except FileFormatError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError
        raise FileFormatError(f"{path}: corrupt or unreadable shard ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in SHARD_KEYS if k not in names]
    if missing:
        raise FileFormatError(f"{path}: not a poseshape shard, missing keys {missing}")
    if int(data["format_version"]) != FORMAT_VERSION:
        raise FileFormatError(
            f"{path}: shard format version {int(data['format_version'])}, this code reads {FORMAT_VERSION}"
        )
    if expect_conventions is not None and int(data["conventions_version"]) != expect_conventions:
        raise FileFormatError(
            f"{path}: written under conventions version {int(data['conventions_version'])}, but this code "
            f"uses version {expect_conventions}; re-render the data set"
        )
    n = {k: len(v) for k, v in data.items() if k in _PER_SAMPLE}
    if len(set(n.values())) > 1:
        raise FileFormatError(f"{path}: per-sample arrays have different lengths {n}")
    return data


def verify_shard(path: Path, first: int, count: int, config_hash: str) -> str | None:
    """Return ``None`` if ``path`` is a complete shard of samples ``[first, first+count)`` of
    the configuration ``config_hash``; otherwise a reason."""
    try:
        d = read_shard(path)
    except FileFormatError as exc:
        return str(exc)
    if str(d["config_hash"]) != config_hash:
        return f"{path}: written with another configuration"
    if not np.array_equal(d["sample_index"], np.arange(first, first + count)):
        return f"{path}: holds the wrong samples"
    return None


# ----------------------------------------------------------------------------- collections


def load_models(
    meshes,
    categories: Sequence[str] | None = None,
    split: str | None = None,
    seed: int = 0,
    models_per_category: int | None = None,
    split_seed: int = 0,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> tuple[list[ModelRecord], list[dict[str, str]]]:
    """Load the (normalised) meshes of a collection, labelled with their split.

    Args:
        meshes: ``"procedural"``, a folder (any layout :class:`MeshCollection` detects:
            PASCAL3D+ ``CAD``, ObjectNet3D, ShapeNet, a folder of OBJ/OFF/PLY), or a
            :class:`poseshape.data.collections.MeshCollection`.
        categories: keep only these categories.
        split: keep only this split (``train``/``val``/``test``); ``None`` keeps all models,
            each labelled with its split.
        seed: seed of the procedural shapes.
        models_per_category: number of procedural models per category (default 10).
        split_seed, split_fractions: the model-level split
            (:meth:`MeshCollection.split_indices`); independent of ``seed`` so that sets
            rendered with different seeds share the same split.

    Returns:
        ``(models, skipped)``: the records (in collection order) and one ``{"path",
        "error"}`` per mesh file that failed to parse (skipped, not fatal).

    Raises:
        PoseshapeError: when nothing is left to render (empty folder, no such category,
            every file unreadable...), with the reason.
    """
    if isinstance(meshes, colls.MeshCollection):
        coll = meshes.filter(categories) if categories else meshes
    elif str(meshes) == "procedural":
        coll = colls.MeshCollection.procedural(categories=categories, per_category=models_per_category or 10, seed=seed)
    else:
        root = Path(meshes)
        if not root.is_dir():
            raise PoseshapeError(f"meshes: {meshes} is neither a folder nor 'procedural'")
        try:
            coll = colls.MeshCollection(root, categories=categories, cache_size=0)
        except FileNotFoundError as exc:
            raise PoseshapeError(str(exc)) from None
    parts = coll.split_indices(split_fractions, seed=split_seed)
    split_of = {i: name for name, ix in parts.items() for i in ix}
    if split is not None and split not in parts:
        raise PoseshapeError(f"split: expected one of {sorted(parts)} or None, got {split!r}")
    records, skipped = [], []
    for i, ref in enumerate(coll.models):
        if split is not None and split_of[i] != split:
            continue
        try:
            mesh = coll.mesh(i)
        except FileFormatError as exc:
            skipped.append({"path": str(ref.path), "error": str(exc)})
            continue
        records.append(
            ModelRecord(
                ref.category,
                str(ref.model_id),
                split_of[i],
                mesh.verts.detach().to(torch.float32).numpy(),
                mesh.faces.numpy().astype(np.int64),
                str(ref.path or ""),
            )
        )
    if not records:
        where = f"{meshes}" + (f" (categories {list(categories)})" if categories else "")
        where += f" (split {split})" if split else ""
        extra = f"; {len(skipped)} file(s) failed to parse: " + ", ".join(s["path"] for s in skipped) if skipped else ""
        raise PoseshapeError(f"no meshes to render in {where}{extra}")
    return records, skipped


# ----------------------------------------------------------------------------- driver


_STATE: dict[str, Any] = {}


def _init_worker(
    models: list[ModelRecord],
    config: SynthConfig,
    categories: list[str],
    out: str,
    config_hash: str,
    num_samples: int,
    threads: int | None,
) -> None:
    if threads is not None:
        torch.set_num_threads(threads)

    _STATE.clear()
    _STATE.update(
        models=models,
        config=config,
        cat_index={c: i for i, c in enumerate(categories)},
        out=Path(out),
        config_hash=config_hash,
        num_samples=num_samples,
        cache=OrderedDict(),
        backgrounds=list_background_images(config.backgrounds) if config.backgrounds else None,
    )


def _model_cache(m: int) -> tuple[np.ndarray | None, torch.Tensor]:
    cache: OrderedDict = _STATE["cache"]
    if m in cache:
        cache.move_to_end(m)
        return cache[m]
    rec: ModelRecord = _STATE["models"][m]
    cfg: SynthConfig = _STATE["config"]
    vox = _voxelize(rec.verts, rec.faces, cfg.voxel_res) if cfg.voxel_res else None
    fn = _face_normals(torch.as_tensor(rec.verts), torch.as_tensor(rec.faces))
    cache[m] = (vox, fn)
    while len(cache) > 8:
        cache.popitem(last=False)
    return cache[m]


def _render_shard(shard: int) -> tuple[int, int]:
    """Render and atomically write shard ``shard`` (worker side). Returns (shard, samples)."""
    cfg: SynthConfig = _STATE["config"]
    P = cfg.samples_per_shard
    lo, hi = shard * P, min((shard + 1) * P, _STATE["num_samples"])
    parts = []
    i = lo
    while i < hi:
        m = i // cfg.views
        j = min(hi, (m + 1) * cfg.views)
        rec = _STATE["models"][m]
        vox, fn = _model_cache(m)
        parts.append(
            render_views(
                rec,
                m,
                list(range(i, j)),
                cfg,
                _STATE["cat_index"][rec.category],
                voxels=vox,
                backgrounds=_STATE["backgrounds"],
                face_normals=fn,
            )
        )
        i = j
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    arrays.update(
        conventions_version=np.int64(CONVENTIONS_VERSION),
        format_version=np.int64(FORMAT_VERSION),
        config_hash=np.array(_STATE["config_hash"]),
        domain=np.array(cfg.domain),
    )
    write_npz_atomic(_STATE["out"] / shard_name(shard), arrays, compress=cfg.compress)
    return shard, hi - lo


def _config_hash(config: SynthConfig, models: list[ModelRecord]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    versions = {"conventions": CONVENTIONS_VERSION, "format": FORMAT_VERSION, "sampling": SAMPLING_VERSION}
    h.update(json.dumps(versions).encode())
    for r in models:
        h.update(f"{r.category}/{r.model_id}/{r.split}/{len(r.verts)}/{len(r.faces)}\n".encode())
        h.update(hashlib.sha256(np.ascontiguousarray(r.verts, np.float32).tobytes()).digest())
    return h.hexdigest()[:16]


def render_dataset(
    meshes,
    out: str | Path,
    config: SynthConfig | None = None,
    *,
    workers: int = 1,
    categories: Sequence[str] | None = None,
    split: str | None = None,
    models_per_category: int | None = None,
    split_seed: int = 0,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    progress: bool = True,
    overwrite: bool = False,
    start_method: str | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> RenderSummary:
    """Render a mesh collection to shards in ``out`` (see the module docstring for the format).

    Args:
        meshes: ``"procedural"``, a mesh folder, or a ``MeshCollection`` (:func:`load_models`).
        out: output folder (created).
        config: :class:`SynthConfig` (default settings when ``None``).
        workers: worker processes (``<= 1``: render in this process). Each worker (and the
            in-process renderer) uses one torch thread: the rasteriser's many small ops gain
            little from intra-op threads and oversubscribe a loaded machine. The output does
            not depend on this number.
        categories, split, models_per_category, split_seed, split_fractions: collection
            options (:func:`load_models`).
        progress: show a tqdm progress bar.
        overwrite: delete shards of a different configuration instead of refusing.
        start_method: multiprocessing start method (default: the platform's; ``"spawn"``
            and ``"fork"`` both work).
        on_shard: called with each finished shard index (in the main process).

    Returns:
        A :class:`RenderSummary`; ``index.json`` is complete when this returns.
    """
    t0 = time.perf_counter()
    config = config or SynthConfig()
    out = Path(out)
    models, skipped = load_models(
        meshes, categories, split, config.seed, models_per_category, split_seed, split_fractions
    )
    for s in skipped:
        log.warning("skipped mesh %s: %s", s["path"], s["error"])
    cats = sorted({m.category for m in models})
    N = len(models) * config.views
    P = config.samples_per_shard
    n_shards = (N + P - 1) // P
    chash = _config_hash(config, models)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".*.tmp"):
        tmp.unlink()
    index_path = out / "index.json"
    if index_path.exists():
        try:
            old = json.loads(index_path.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{index_path}: corrupt index ({exc})") from exc
        if old.get("config_hash") != chash:
            if not overwrite:
                raise PoseshapeError(
                    f"{out} already holds a data set of another configuration (hash {old.get('config_hash')} != "
                    f"{chash}); choose another --out or pass overwrite"
                )
            for f in out.glob("shard_*.npz"):
                f.unlink()
    elif overwrite:
        for f in out.glob("shard_*.npz"):
            f.unlink()
    shards = [{"file": shard_name(s), "first": s * P, "count": min(P, N - s * P)} for s in range(n_shards)]
    model_list, splits = [], {}
    for mi, r in enumerate(models):
        model_list.append(
            {
                "category": r.category,
                "model_id": r.model_id,
                "split": r.split,
                "first": mi * config.views,
                "views": config.views,
                "path": r.path,
            }
        )
        splits[r.split] = splits.get(r.split, 0) + config.views
    index = {
        "format": "poseshape-shards",
        "format_version": FORMAT_VERSION,
        "conventions_version": CONVENTIONS_VERSION,
        "rendered": True,
        "domain": config.domain,
        "config": config.to_dict(),
        "config_hash": chash,
        "num_samples": N,
        "samples_per_shard": P,
        "image_size": config.image_size,
        "voxel_res": config.voxel_res,
        "posed_voxel_res": config.posed_voxel_res,
        "categories": cats,
        "splits": splits,
        "shards": shards,
        "models": model_list,
        "skipped": skipped,
        "complete": False,
    }
    _write_json_atomic(index_path, index)

    todo, reused, repaired = [], 0, 0
    for s, sh_ in enumerate(shards):
        p = out / sh_["file"]
        if p.exists():
            why = verify_shard(p, sh_["first"], sh_["count"], chash)
            if why is None:
                reused += 1
                continue
            log.warning("re-rendering shard: %s", why)
            repaired += 1
        todo.append(s)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=N, initial=N - sum(shards[s]["count"] for s in todo), unit="sample", desc=f"render {out.name}")
    init_args = (models, config, cats, str(out), chash, N)
    if todo:
        _fastraster.available()  # build / load the C++ rasteriser once, before any worker starts
    try:
        if workers <= 1 or len(todo) <= 1:
            saved, threads = _STATE.copy(), torch.get_num_threads()
            _init_worker(*init_args, 1)
            try:
                for s in todo:
                    _, n = _render_shard(s)
                    if bar is not None:
                        bar.update(n)
                    if on_shard:
                        on_shard(s)
            finally:
                _STATE.clear()
                _STATE.update(saved)
                torch.set_num_threads(threads)
        else:
            ctx = mp.get_context(start_method) if start_method else None
            with ProcessPoolExecutor(
                max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_init_worker, initargs=(*init_args, 1)
            ) as ex:
                futs = [ex.submit(_render_shard, s) for s in todo]
                for f in as_completed(futs):
                    s, n = f.result()
                    if bar is not None:
                        bar.update(n)
                    if on_shard:
                        on_shard(s)
    finally:
        if bar is not None:
            bar.close()
    for sh_ in shards:
        sh_["bytes"] = (out / sh_["file"]).stat().st_size
    index["complete"] = True
    _write_json_atomic(index_path, index)
    return RenderSummary(out, N, n_shards, len(todo), reused, repaired, skipped, time.perf_counter() - t0)
