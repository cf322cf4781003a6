"""What every method's predictor returns: canonical shape + pose + camera, per item.

A :class:`Prediction` keeps the shape in the form the method produced it -- a mesh (a
retrieved CAD model, a cluster medoid, a deformed sphere) and/or a voxel grid -- in the
**object frame** (+Y up, front +Z, unit cube; ``docs/conventions.md``), and the 6-DoF pose
``(R, t)`` object-to-camera with the :class:`~poseshape.geometry.camera.Camera` it refers to
(pinhole or weak perspective, explicit). Everything a user opens is derived from these:
the posed mesh is ``R X + t``, its silhouette is the camera's projection of it
(:meth:`Prediction.render_silhouette`), and ``pose.json`` stores ``R``, ``t`` and the
camera (``docs/pose_json.md``).

A predictor's own output refers to its input square (``camera.image_size == (S, S)``);
:func:`poseshape.engine.reconstruct.reconstruct` moves the camera into the pixels of the
user's image (:meth:`Camera.uncrop`) and attaches that image and mask, so
``prediction.save(folder)`` writes files that line up with the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import ShapeError
from poseshape.engine.output import write_prediction
from poseshape.geometry.camera import Camera, pose_to_viewpoint
from poseshape.render.silhouette import camera_silhouette
from poseshape.shapes.convert import voxels_to_mesh
from poseshape.shapes.meshes import Mesh

__all__ = ["SHAPE_KINDS", "Prediction"]

#: The canonical shape forms a prediction may hold.
SHAPE_KINDS = ("mesh", "voxels")


def _per_item(x, B: int, name: str, kind=None) -> list | None:
    if x is None:
        return None
    x = list(x)
    if len(x) != B:
        raise ShapeError(f"Prediction.{name}: expected {B} items, got {len(x)}")
    if kind is not None:
        for v in x:
            if v is not None and not isinstance(v, kind):
                raise ShapeError(f"Prediction.{name}: expected {kind.__name__} items, got {type(v).__name__}")
    return x


@dataclass
class Prediction:
    """A batch of ``B`` pose-aware shapes.

    Attributes:
        R: ``(B, 3, 3)`` object-to-camera rotation (``X_cam = R X_obj + t``, OpenCV camera).
        t: ``(B, 3)`` translation in object units (weak perspective: ``t[:, 2]`` is unused).
        camera: a :class:`Camera` of ``B`` (or 1, broadcast) cameras.
        meshes: ``B`` canonical :class:`Mesh` in the object frame, or ``None``.
        voxels: ``(B, 1, Q, Q, Q)`` canonical occupancy in [0, 1] over the object frame's unit
            cube (``(d, h, w) = (z, y, x)``), or ``None``. At least one of the two is given.
        posed_voxels: ``(B, 1, P, P, P)`` the method's own pose-aware grid (its posed frame,
            ``extras["frame_extent"]``), or ``None``.
        silhouette: ``(B, 1, h, w)`` the method's own rendered silhouette in [0, 1] over the
            camera image, or ``None`` (then :meth:`render_silhouette` gives the exact one).
        category: ``B`` category names (or ``None`` entries) or ``None``.
        model_id: ``B`` model ids (retrieval, medoids) or ``None``.
        confidence: ``(B,)`` in [0, 1] or ``None``.
        hypotheses: ``(B, K, 3, 3)`` the pose head's ``K`` most likely rotations, best first
            (anchor scores, or flip-aware alternatives of a regressed pose), or ``None``.
            Refinement starts from every one of them as well as around ``R``.
        image, mask: the user's input images ``B x (3, H, W)`` / masks ``B x (1, H, W)`` when
            the camera refers to them (set by ``reconstruct``), else ``None``.
        extras: method-specific outputs (per-item tensors ``(B, ...)`` or lists of ``B``).

    Raises:
        ShapeError: inconsistent shapes or batch sizes, no shape, non-finite poses.
    """

    R: torch.Tensor
    t: torch.Tensor
    camera: Camera
    meshes: list[Mesh] | None = None
    voxels: torch.Tensor | None = None
    posed_voxels: torch.Tensor | None = None
    silhouette: torch.Tensor | None = None
    category: list[str | None] | None = None
    model_id: list[str | None] | None = None
    confidence: torch.Tensor | None = None
    hypotheses: torch.Tensor | None = None
    image: list[torch.Tensor] | None = None
    mask: list[torch.Tensor | None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_shape(self.R, "Prediction.R", (None, 3, 3), batch=False)
        check_shape(self.t, "Prediction.t", (None, 3), batch=False)
        check_finite(self.R, "Prediction.R")
        check_finite(self.t, "Prediction.t")
        B = int(self.R.shape[0])
        if self.t.shape[0] != B:
            raise ShapeError(f"Prediction: R has {B} items but t has {self.t.shape[0]}")
        if not isinstance(self.camera, Camera):
            raise ShapeError(f"Prediction.camera: expected a Camera, got {type(self.camera).__name__}")
        if len(self.camera) == 1 and B != 1:
            self.camera = self.camera.expand(B)
        if len(self.camera) != B:
            raise ShapeError(f"Prediction.camera: expected {B} cameras, got {len(self.camera)}")
        if self.meshes is None and self.voxels is None:
            raise ShapeError("Prediction: give the canonical shape as meshes and/or voxels")
        self.meshes = _per_item(self.meshes, B, "meshes", Mesh)
        for name, nd in (("voxels", 5), ("posed_voxels", 5), ("silhouette", 4)):
            x = getattr(self, name)
            if x is None:
                continue
            if not isinstance(x, torch.Tensor) or x.dim() != nd or x.shape[1] != 1 or x.shape[0] != B:
                want = f"({B}, 1, D, D, D)" if nd == 5 else f"({B}, 1, h, w)"
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ShapeError(f"Prediction.{name}: expected shape {want}, got {got}")
        self.category = _per_item(self.category, B, "category")
        self.model_id = _per_item(self.model_id, B, "model_id")
        if self.confidence is not None:
            c = torch.as_tensor(self.confidence, dtype=torch.float32).reshape(-1)
            if c.numel() != B:
                raise ShapeError(f"Prediction.confidence: expected ({B},), got {tuple(c.shape)}")
            self.confidence = c
        if self.hypotheses is not None:
            h = self.hypotheses
            if not isinstance(h, torch.Tensor) or h.dim() != 4 or h.shape[0] != B or h.shape[2:] != (3, 3):
                got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
                raise ShapeError(f"Prediction.hypotheses: expected shape ({B}, K, 3, 3), got {got}")
            check_finite(h, "Prediction.hypotheses")
        self.image = _per_item(self.image, B, "image")
        self.mask = _per_item(self.mask, B, "mask")
        if self.extras is None:
            self.extras = {}

    # ---------------------------------------------------------------- items
    def __len__(self) -> int:
        return int(self.R.shape[0])

    def _check_index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a prediction of {len(self)} items")
        return i % len(self)

    @property
    def shape_kinds(self) -> tuple[str, ...]:
        """The canonical forms present: a subset of :data:`SHAPE_KINDS`."""
        return tuple(k for k, v in (("mesh", self.meshes), ("voxels", self.voxels)) if v is not None)

    @property
    def pose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R (B, 3, 3), t (B, 3))``."""
        return self.R, self.t

    @property
    def mesh(self) -> Mesh:
        """The canonical mesh of a single-item prediction (see :meth:`canonical_mesh`)."""
        if len(self) != 1:
            raise ShapeError(f"Prediction.mesh: {len(self)} items; use canonical_mesh(i)")
        return self.canonical_mesh(0)

    def item_extras(self, i: int) -> dict[str, Any]:
        """``extras`` of item ``i`` as a batch of one: per-item tensors ``(B, ...)`` -> ``(1, ...)``
        and per-item lists of length ``B`` -> ``[x_i]``; everything else as it is."""
        i, B = self._check_index(i), len(self)
        return {
            k: (
                v[i : i + 1]
                if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B
                else [v[i]]
                if isinstance(v, list) and len(v) == B
                else v
            )
            for k, v in self.extras.items()
        }

    def item(self, i: int) -> Prediction:
        """Item ``i`` as a prediction of one."""
        i = self._check_index(i)

        def sl(x):
            return None if x is None else x[i : i + 1]

        def li(x):
            return None if x is None else [x[i]]

        return Prediction(
            R=self.R[i : i + 1],
            t=self.t[i : i + 1],
            camera=self.camera[i],
            meshes=li(self.meshes),
            voxels=sl(self.voxels),
            posed_voxels=sl(self.posed_voxels),
            silhouette=sl(self.silhouette),
            category=li(self.category),
            model_id=li(self.model_id),
            confidence=sl(self.confidence),
            hypotheses=sl(self.hypotheses),
            image=li(self.image),
            mask=li(self.mask),
            extras=self.item_extras(i),
        )

    def replace(self, **changes) -> Prediction:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to(self, device: str | torch.device) -> Prediction:
        """A copy with every tensor (meshes and ``extras`` included) on ``device``."""

        def mv(x):
            if isinstance(x, torch.Tensor):
                return x.to(device)
            if isinstance(x, Mesh):
                return Mesh(x.verts.to(device), x.faces.to(device))
            if isinstance(x, list):
                return [mv(v) for v in x]
            return x

        return replace(
            self,
            R=mv(self.R),
            t=mv(self.t),
            camera=self.camera.to(device),
            meshes=mv(self.meshes),
            voxels=mv(self.voxels),
            posed_voxels=mv(self.posed_voxels),
            silhouette=mv(self.silhouette),
            confidence=mv(self.confidence),
            hypotheses=mv(self.hypotheses),
            extras={k: mv(v) for k, v in self.extras.items()},
        )

    # ---------------------------------------------------------------- shapes
    def canonical_mesh(self, i: int, threshold: float = 0.5) -> Mesh:
        """Item ``i``'s canonical mesh, object frame: the method's mesh when it made one, else
        marching cubes of its voxels at ``threshold`` (outward faces). Empty when nothing is
        occupied."""
        i = self._check_index(i)
        if self.meshes is not None and self.meshes[i] is not None:
            m = self.meshes[i]
            return Mesh(m.verts.detach().cpu().float(), m.faces.detach().cpu())
        return voxels_to_mesh(self.voxels[i].detach().float().cpu(), threshold)

    def posed_mesh(self, i: int, threshold: float = 0.5) -> Mesh:
        """Item ``i``'s mesh in the camera frame (OpenCV axes): vertices ``R X + t``."""
        i = self._check_index(i)
        m = self.canonical_mesh(i, threshold)
        R, t = self.R[i].detach().cpu().to(m.verts.dtype), self.t[i].detach().cpu().to(m.verts.dtype)
        return Mesh(m.verts @ R.T + t, m.faces)

    def render_silhouette(self, i: int, camera: Camera | None = None, threshold: float = 0.5) -> torch.Tensor:
        """Exact silhouette ``(1, H, W)`` {0, 1} of item ``i``'s canonical mesh under its pose,
        seen by ``camera`` (default: its own, at the camera's image size)."""
        i = self._check_index(i)
        cam = (camera or self.camera[i]).to("cpu", torch.float64)
        m = self.canonical_mesh(i, threshold)
        H, W = cam.image_size
        if m.num_faces == 0:
            return torch.zeros(1, H, W)
        R = self.R[i : i + 1].detach().cpu().double()
        t = self.t[i : i + 1].detach().cpu().double()
        return camera_silhouette(m.verts.double(), m.faces, R, t, cam)[0].float()

    # ---------------------------------------------------------------- records
    def viewpoint(self, i: int) -> tuple[float, float, float]:
        """PASCAL3D+ ``(azimuth, elevation, theta)`` in radians of item ``i`` (from ``R``; the
        camera looks at the object along its optical axis)."""
        R = self.R[self._check_index(i)].detach().cpu().double()
        az, el, th, _ = pose_to_viewpoint(R, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        return float(az), float(el), float(th)

    def save(self, folder, i: int = 0, **kwargs) -> dict:
        """Write item ``i`` as files (:func:`poseshape.engine.output.write_prediction`)."""
        return write_prediction(self, i, folder, **kwargs)

    def __repr__(self) -> str:
        ang = ", ".join(f"{math.degrees(float(a)):.1f}" for a in self.viewpoint(0)) if len(self) else ""
        return (
            f"Prediction(items={len(self)}, shapes={self.shape_kinds}, camera={self.camera.kind}, "
            f"category={self.category}, viewpoint[0]_deg=({ang}))"
        )
