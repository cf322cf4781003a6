"""Shared pieces of the mesh rasterisers: input checks, projection, face/pixel pair tiling.

Both :mod:`poseshape.render.mesh_soft` and :mod:`poseshape.render.mesh_hard` work on
*face/pixel pairs*: for every projected face we enumerate only the pixels whose centres lie
inside the face's screen bounding box expanded by a support radius (the blur support of a
soft renderer, 0 for a hard one). The pairs of all faces of all images are laid out in one
flat, ragged list (face ``f`` owns ``n_f = h_f * w_f`` consecutive pair indices) and that
list is processed in chunks of at most ``chunk_size`` pairs, so memory is bounded by the
chunk size and no ``(faces x H x W)`` tensor ever exists. The layout costs no padding.

Conventions (see :mod:`poseshape.geometry.conventions`):

* Pinhole: ``X_cam = R @ X + t``; ``(u, v) = (K @ X_cam)[:2] / z`` in pixels.
* Weak perspective (``scale`` given): ``(u, v) = scale * (R @ X)[:2] + t[:2]`` in pixels;
  ``t[2]`` only offsets the depth ``z = (R @ X)[2] + t[2]``.
* Pixel ``(i, j)`` (row, column) has its centre at ``(u, v) = (j + 0.5, i + 0.5)``.
* Near plane: a face with any vertex at camera depth ``z <= znear`` is **dropped** (not
  clipped) under a pinhole camera. Weak perspective has no near plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import ShapeError

#: Default number of face/pixel pairs processed at once (bounds peak memory).
DEFAULT_CHUNK_SIZE = 1 << 18


def parse_image_size(image_size) -> tuple[int, int]:
    """Return ``(H, W)`` from an int or an ``(H, W)`` pair; raise :class:`ShapeError` if < 1."""
    if isinstance(image_size, int | float) and not isinstance(image_size, bool):
        hw = (int(image_size), int(image_size))
    else:
        try:
            hw = tuple(int(s) for s in image_size)
        except TypeError:
            raise ShapeError(f"image_size: expected an int or (H, W), got {image_size!r}") from None
        if len(hw) != 2:
            raise ShapeError(f"image_size: expected an int or (H, W), got {image_size!r}")
    if hw[0] < 1 or hw[1] < 1:
        raise ShapeError(f"image_size: height and width must be >= 1, got {hw}")
    return hw


@dataclass
class Camera:
    """Validated, batch-broadcast camera: ``R (B,3,3)``, ``t (B,3)``, ``K (B,3,3)`` or ``scale (B,)``."""

    R: torch.Tensor
    t: torch.Tensor
    K: torch.Tensor | None
    scale: torch.Tensor | None

    @property
    def perspective(self) -> bool:
        return self.K is not None


def split_camera(K, scale):
    """Return ``(K, scale)`` with a number or a ``(B,)`` / 0-d tensor given as ``K`` moved to ``scale``.

    The public entry points accept ``K=(3, 3) | (B, 3, 3)`` intrinsics *or* a weak-perspective
    scale in the ``K`` slot (``render_silhouette(v, f, R, t, 120.0)`` is weak perspective with
    ``scale=120``). Anything else is returned unchanged.
    """
    if K is not None and scale is None:
        if isinstance(K, int | float) and not isinstance(K, bool):
            return None, K
        if isinstance(K, torch.Tensor) and K.dim() <= 1:
            return None, K
    return K, scale


def prepare_inputs(verts, faces, R, t, K=None, scale=None):
    """Validate and broadcast renderer inputs.

    Args:
        verts: ``(B, V, 3)`` or ``(V, 3)`` float vertices in the object frame.
        faces: ``(F, 3)`` integer vertex indices (shared by the batch).
        R: ``(B, 3, 3)`` or ``(3, 3)`` object-to-camera rotation.
        t: ``(B, 3)`` or ``(3,)`` translation (camera frame; for weak perspective
            ``t[:, :2]`` are pixel offsets and ``t[:, 2]`` a depth offset).
        K: ``(3, 3)`` or ``(B, 3, 3)`` intrinsics in pixels (pinhole), or ``None``; a number or
            a ``(B,)`` tensor here is taken as the weak-perspective ``scale``.
        scale: float or ``(B,)`` weak-perspective scale in pixels per object unit, or ``None``.

    Returns:
        ``(verts (B,V,3), faces (F,3) int64, Camera)`` all on ``verts``' device, with a common
        floating dtype.

    Raises:
        ShapeError: wrong shapes, non-finite values, face indices out of range, or neither /
            both of ``K`` and ``scale``.
    """
    K, scale = split_camera(K, scale)
    if (K is None) == (scale is None):
        raise ShapeError("give exactly one of K (pinhole intrinsics) or scale (weak perspective)")
    check_shape(verts, "verts", (None, 3))
    if verts.dim() not in (2, 3):
        raise ShapeError(f"verts: expected shape (B, V, 3) or (V, 3), got {tuple(verts.shape)}")
    if not verts.is_floating_point():
        raise ShapeError(f"verts: expected a floating dtype, got {verts.dtype}")
    faces = torch.as_tensor(faces, device=verts.device)
    check_shape(faces, "faces", (None, 3), batch=False)
    if faces.is_floating_point():
        raise ShapeError(f"faces: expected an integer dtype, got {faces.dtype}")
    faces = faces.long()
    V = verts.shape[-2]
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= V):
        raise ShapeError(f"faces: indices must lie in [0, {V}), got range [{int(faces.min())}, {int(faces.max())}]")
    dtype, dev = verts.dtype, verts.device
    R = torch.as_tensor(R, dtype=dtype, device=dev)
    t = torch.as_tensor(t, dtype=dtype, device=dev)
    check_shape(R, "R", (3, 3))
    check_shape(t, "t", (3,))
    if R.dim() not in (2, 3):
        raise ShapeError(f"R: expected shape (B, 3, 3) or (3, 3), got {tuple(R.shape)}")
    if t.dim() not in (1, 2):
        raise ShapeError(f"t: expected shape (B, 3) or (3,), got {tuple(t.shape)}")
    if K is not None:
        K = torch.as_tensor(K, dtype=dtype, device=dev)
        check_shape(K, "K", (3, 3))
        if K.dim() not in (2, 3):
            raise ShapeError(f"K: expected shape (B, 3, 3) or (3, 3), got {tuple(K.shape)}")
    if scale is not None:
        scale = torch.as_tensor(scale, dtype=dtype, device=dev)
        if scale.dim() > 1:
            raise ShapeError(f"scale: expected a float or shape (B,), got {tuple(scale.shape)}")
    sizes = {
        verts.shape[0] if verts.dim() == 3 else 1,
        R.shape[0] if R.dim() == 3 else 1,
        t.shape[0] if t.dim() == 2 else 1,
    }
    if K is not None and K.dim() == 3:
        sizes.add(K.shape[0])
    if scale is not None and scale.dim() == 1:
        sizes.add(scale.shape[0])
    B = max(sizes)
    if sizes - {1, B}:
        raise ShapeError(
            f"batch sizes disagree: verts {tuple(verts.shape)}, R {tuple(R.shape)}, t {tuple(t.shape)}"
            + (f", K {tuple(K.shape)}" if K is not None else f", scale {tuple(scale.shape)}")
        )
    for x, name in ((verts, "verts"), (R, "R"), (t, "t"), (K, "K"), (scale, "scale")):
        if x is not None:
            check_finite(x, name)
    verts = verts.expand(B, V, 3) if verts.dim() == 3 else verts.unsqueeze(0).expand(B, V, 3)
    R = R.expand(B, 3, 3) if R.dim() == 3 else R.unsqueeze(0).expand(B, 3, 3)
    t = t.expand(B, 3) if t.dim() == 2 else t.unsqueeze(0).expand(B, 3)
    if K is not None:
        K = K.expand(B, 3, 3) if K.dim() == 3 else K.unsqueeze(0).expand(B, 3, 3)
    if scale is not None:
        scale = scale.expand(B) if scale.dim() == 1 else scale.reshape(1).expand(B)
    return verts, faces, Camera(R, t, K, scale)


def project_faces(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, znear: float = 1e-3):
    """Project the faces' corners to pixels (differentiable).

    Args:
        verts: ``(B, V, 3)``; faces: ``(F, 3)`` int64; cam: from :func:`prepare_inputs`.
        znear: near-plane depth (camera units); pinhole faces with a corner at ``z <= znear``
            are marked invalid (dropped).

    Returns:
        ``xy (B, F, 3, 2)`` pixel coordinates ``(u, v)``, ``z (B, F, 3)`` camera depth, and
        ``valid (B, F)`` bool. Invalid faces have finite placeholder coordinates and receive
        exactly zero gradient.
    """
    X = torch.einsum("bij,bvj->bvi", cam.R, verts) + cam.t[:, None, :]  # (B, V, 3)
    if cam.perspective:
        z = X[..., 2]
        ok = z > znear
        z_safe = torch.where(ok, z, torch.ones_like(z))
        uvw = torch.einsum("bij,bvj->bvi", cam.K, X)
        uv = uvw[..., :2] / z_safe[..., None]
        uv = torch.where(ok[..., None], uv, torch.zeros_like(uv))
        xy = uv[:, faces]  # (B, F, 3, 2)
        valid = ok[:, faces].all(-1)
    else:
        RX = X - cam.t[:, None, :]
        uv = cam.scale[:, None, None] * RX[..., :2] + cam.t[:, None, :2]
        xy = uv[:, faces]
        valid = torch.ones(xy.shape[:2], dtype=torch.bool, device=xy.device)
        z = X[..., 2]
    return xy, z[:, faces], valid


@dataclass
class PairPlan:
    """The ragged face/pixel pair layout of a batch (see the module docstring).

    Attributes:
        face: ``(M,)`` flat face index ``b * F + f`` of each face that owns pairs.
        i0, j0: ``(M,)`` top-left pixel (row, column) of its window.
        w, h: ``(M,)`` window width and height in pixels.
        count: ``(M,)`` number of pairs of each face (window height x width).
        end: ``(M,)`` cumulative pair count (exclusive end offset of each face's pairs).
        total: total number of pairs.
        F, H, W: faces per image and image size.
    """

    face: torch.Tensor
    i0: torch.Tensor
    j0: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    count: torch.Tensor
    end: torch.Tensor
    total: int
    F: int
    H: int
    W: int

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield ``(face_flat (N,), pix_flat (N,), px (N,), py (N,))`` per chunk of pairs.

        ``pix_flat = (b * H + i) * W + j`` indexes the flattened ``(B, H, W)`` image;
        ``px, py`` are the pixel-centre coordinates (integer + 0.5) as int64 columns/rows.
        """
        dev = self.face.device
        for p0 in range(0, self.total, chunk_size):
            p = torch.arange(p0, min(p0 + chunk_size, self.total), device=dev)
            k = torch.searchsorted(self.end, p, right=True)
            start = self.end[k] - self.count[k]
            local = p - start
            wk = self.w[k]
            ii = self.i0[k] + torch.div(local, wk, rounding_mode="floor")
            jj = self.j0[k] + local % wk
            f = self.face[k]
            b = torch.div(f, self.F, rounding_mode="floor")
            pix = (b * self.H + ii) * self.W + jj
            yield f, pix, jj, ii


def plan_pairs(xy: torch.Tensor, valid: torch.Tensor, H: int, W: int, radius: float) -> PairPlan:
    """Build the pair layout for projected faces.

    Args:
        xy: ``(B, F, 3, 2)`` pixel coordinates (not differentiated here).
        valid: ``(B, F)`` bool.
        H, W: image size.
        radius: support radius in pixels: a pixel is paired with a face when its centre lies
            within the face's bounding box grown by ``radius`` on each side.
    """
    F = xy.shape[1]
    with torch.no_grad():
        x = xy[..., 0].detach()
        y = xy[..., 1].detach()
        # Clamp in float first so huge coordinates never overflow the integer cast.
        j0 = torch.ceil((x.amin(-1) - radius - 0.5).clamp(-1.0, W + 1.0)).long().clamp(min=0)
        j1 = torch.floor((x.amax(-1) + radius - 0.5).clamp(-2.0, W + 1.0)).long().clamp(max=W - 1)
        i0 = torch.ceil((y.amin(-1) - radius - 0.5).clamp(-1.0, H + 1.0)).long().clamp(min=0)
        i1 = torch.floor((y.amax(-1) + radius - 0.5).clamp(-2.0, H + 1.0)).long().clamp(max=H - 1)
        w = (j1 - j0 + 1).clamp(min=0)
        h = (i1 - i0 + 1).clamp(min=0)
        n = (w * h * valid).reshape(-1)
        keep = torch.nonzero(n > 0).squeeze(1)
        n = n[keep]
        end = torch.cumsum(n, 0)
        plan = PairPlan(
            face=keep,
            i0=i0.reshape(-1)[keep],
            j0=j0.reshape(-1)[keep],
            w=w.reshape(-1)[keep],
            h=h.reshape(-1)[keep],
            count=n,
            end=end,
            total=int(end[-1]) if end.numel() else 0,
            F=F,
            H=H,
            W=W,
        )
    return plan
