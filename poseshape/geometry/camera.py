"""Pinhole and weak-perspective cameras, look-at, and the PASCAL3D+ viewpoint.

Conventions (see :mod:`poseshape.geometry.conventions`): OpenCV camera (x right, y down,
z forward), a point maps as ``X_cam = R @ X_obj + t`` and pixels as ``K @ X_cam / z``,
``K`` in pixels with pixel centres at +0.5. The object frame is +Y up with its front
toward +Z. Every function is batched over leading dimensions, differentiable, and works
on any device / floating dtype. Wrong shapes and non-finite inputs raise
:class:`poseshape.core.errors.ShapeError`.

Viewpoint (PASCAL3D+)
---------------------
PASCAL3D+ describes a camera by ``(azimuth a, elevation e, in-plane theta, distance d)``
around a CAD model that is Z-up with its front toward -Y (``native``). Its MATLAB code
(``project_3d.m``) computes::

    C  = d * [cos(e) sin(a), -cos(e) cos(a), sin(e)]        # camera centre (native)
    R  = Rx(-(pi/2 - e)) @ Rz(-a)                           # camera looks along -z
    x  = [f 0 0; 0 f 0; 0 0 -1] @ R @ (X - C); x = x[:2] / x[2]
    x  = R2(theta) @ x                                      # R2 = 2-D rotation by +theta
    u  = x[0] + px;  v = -x[1] + py                         # image y points down

Writing the camera frame in OpenCV form (``diag(1, -1, -1)`` of PASCAL's -z camera) and
the object in our frame (``ours = S @ native``, ``S = [[1,0,0],[0,0,1],[0,-1,0]]``) this is
exactly ``X_cam = R @ X_ours + t`` with::

    C_ours = d * [cos(e) sin(a), sin(e), cos(e) cos(a)]     # camera centre, our frame
    R0 rows: x_cam = [cos(a), 0, -sin(a)]
             y_cam = [sin(e) sin(a), -cos(e), sin(e) cos(a)]
             z_cam = -C_ours / d                             # looks at the origin
    R  = Rz_cam(-theta) @ R0,  Rz_cam(-theta) = [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]
    t  = (0, 0, d)

i.e. ``R0, t`` equal :func:`look_at` from ``C_ours`` to the origin with up = +Y.

Worked example (the tests check each line):

* ``a = 0, e = 0, theta = 0, d = 2``: the camera sits at ``(0, 0, 2)`` on the object's
  front side (+Z) looking toward -Z; ``R = diag(1, -1, -1)``, ``t = (0, 0, 2)``. The front
  point ``(0, 0, 0.5)`` has depth 1.5 and projects to the principal point; the back point
  ``(0, 0, -0.5)`` has depth 2.5. The object's +X appears on the image's right, +Y up.
* ``a = 90 deg``: the camera sits at ``(2, 0, 0)``, on the object's **+X** side (native
  ``C = (d, 0, 0)``); the object's front (+Z) then appears on the image's **left**.
  Azimuth turns the camera counter-clockwise seen from above (+Z -> +X -> -Z -> -X).
* ``e = 90 deg`` (a = 0): the camera sits at ``(0, 2, 0)`` looking straight down; the
  object's front (+Z) appears toward the image bottom (``y_cam = +Z``), +X on the right.
* ``theta > 0`` rotates the image content counter-clockwise as seen on screen: with
  ``theta = 90 deg`` (a = e = 0) the object's +X axis points up in the image (-v) and its
  +Y axis points left (-u).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import ShapeError

__all__ = [
    "CAMERA_KINDS",
    "Camera",
    "backproject",
    "intrinsics",
    "intrinsics_from_fov",
    "look_at",
    "pixels_to_rays",
    "pose_to_viewpoint",
    "project_points",
    "transform_points",
    "viewpoint_to_pose",
    "weak_perspective_project",
]


def _as_tensor(x, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
        if not t.is_floating_point():
            t = t.to(torch.get_default_dtype() if like is None else like.dtype)
    else:
        dtype = torch.get_default_dtype() if like is None else like.dtype
        device = None if like is None else like.device
        try:
            t = torch.as_tensor(x, dtype=dtype, device=device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ShapeError(f"{name}: expected a number or tensor, got {type(x).__name__}") from exc
    check_finite(t, name)
    return t


# --------------------------------------------------------------------------- intrinsics


def intrinsics(
    focal=None,
    cx=0.0,
    cy=0.0,
    *,
    fx=None,
    fy=None,
) -> torch.Tensor:
    """Build pinhole intrinsics ``K`` (pixels).

    Args:
        focal: focal length in pixels, used for both ``fx`` and ``fy`` (float or ``(...)``).
        cx, cy: principal point in pixels (float or ``(...)``).
        fx, fy: separate focal lengths (keyword only; override ``focal``).

    Returns:
        ``K`` of shape ``(..., 3, 3)`` (the broadcast of the inputs' shapes) with
        ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
    """
    if fx is None:
        fx = focal
    if fy is None:
        fy = focal
    if fx is None or fy is None:
        raise ShapeError("intrinsics: give `focal` or both `fx` and `fy`")
    ref = next((v for v in (fx, fy, cx, cy) if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
    fx_t, fy_t = _as_tensor(fx, "fx", ref), _as_tensor(fy, "fy", ref)
    cx_t, cy_t = _as_tensor(cx, "cx", ref), _as_tensor(cy, "cy", ref)
    fx_t, fy_t, cx_t, cy_t = torch.broadcast_tensors(fx_t, fy_t, cx_t, cy_t)
    zero, one = torch.zeros_like(fx_t), torch.ones_like(fx_t)
    rows = [
        torch.stack([fx_t, zero, cx_t], -1),
        torch.stack([zero, fy_t, cy_t], -1),
        torch.stack([zero, zero, one], -1),
    ]
    return torch.stack(rows, -2)


def intrinsics_from_fov(fov, image_size: int | Sequence[int], fov_axis: str = "x") -> torch.Tensor:
    """Intrinsics for a field of view (radians) and an image size, square pixels.

    Args:
        fov: full field of view in radians (float or ``(...)``), along ``fov_axis``.
        image_size: ``S`` (square) or ``(H, W)`` in pixels.
        fov_axis: ``"x"`` (horizontal, the default) or ``"y"`` (vertical).

    Returns:
        ``K (..., 3, 3)`` with ``f = (W or H) / 2 / tan(fov / 2)`` and the principal point
        at the image centre ``(W / 2, H / 2)`` (pixel centres at +0.5).
    """
    if isinstance(image_size, int):
        h = w = image_size
    else:
        if len(image_size) != 2:
            raise ShapeError(f"image_size: expected S or (H, W), got {image_size!r}")
        h, w = (int(s) for s in image_size)
    if h <= 0 or w <= 0:
        raise ShapeError(f"image_size: expected positive sizes, got {(h, w)}")
    fov_t = _as_tensor(fov, "fov")
    if ((fov_t <= 0) | (fov_t >= math.pi)).any():
        raise ShapeError("fov: expected radians in (0, pi)")
    if fov_axis not in ("x", "y"):
        raise ShapeError(f"fov_axis: expected 'x' or 'y', got {fov_axis!r}")
    side = w if fov_axis == "x" else h
    f = side / 2.0 / torch.tan(fov_t / 2)
    return intrinsics(f, w / 2.0, h / 2.0)


# --------------------------------------------------------------------------- projection


def transform_points(X: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Apply ``X_cam = R @ X + t`` to points ``X (..., N, 3)`` with ``R (..., 3, 3)``, ``t (..., 3)``.

    Leading dimensions broadcast. Returns ``(..., N, 3)``.
    """
    check_shape(X, "X", (None, 3))
    check_shape(R, "R", (3, 3))
    check_shape(t, "t", (3,))
    if X.dim() < 2:
        raise ShapeError(f"X: expected shape (..., N, 3), got {tuple(X.shape)}")
    for v, n in ((X, "X"), (R, "R"), (t, "t")):
        check_finite(v, n)
    return X @ R.transpose(-1, -2) + t.unsqueeze(-2)


def project_points(
    X: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    min_depth: float | None = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective projection of object-frame points to pixels.

    Args:
        X: ``(B, N, 3)`` (any leading dims) points in the object frame.
        R: ``(B, 3, 3)`` object-to-camera rotation.
        t: ``(B, 3)`` object-to-camera translation.
        K: ``(B, 3, 3)`` or ``(3, 3)`` intrinsics in pixels.
        min_depth: the depth used in the division is clamped to at least this (avoids
            inf/NaN for points on or behind the camera plane; their pixels are then
            meaningless). ``None`` disables the clamp.

    Returns:
        ``(pixels (B, N, 2), depth (B, N))``: ``pixels = (K @ X_cam)[:2] / z`` (u right,
        v down, pixel centres at +0.5) and ``depth = z`` of ``X_cam = R @ X + t``.
    """
    check_shape(K, "K", (3, 3))
    check_finite(K, "K")
    Xc = transform_points(X, R, t)
    z = Xc[..., 2]
    zd = z if min_depth is None else z.clamp(min=min_depth)
    xy = Xc[..., :2] / zd.unsqueeze(-1)
    Kb = K.unsqueeze(-3)  # (..., 1, 3, 3) broadcasting over N
    u = Kb[..., 0, 0] * xy[..., 0] + Kb[..., 0, 1] * xy[..., 1] + Kb[..., 0, 2]
    v = Kb[..., 1, 0] * xy[..., 0] + Kb[..., 1, 1] * xy[..., 1] + Kb[..., 1, 2]
    return torch.stack([u, v], -1), z


def weak_perspective_project(X: torch.Tensor, R: torch.Tensor, s: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Weak-perspective projection ``u = s * (R @ X)[:2] + t2`` (pixels).

    Args:
        X: ``(B, N, 3)`` object-frame points (any leading dims).
        R: ``(B, 3, 3)`` rotation.
        s: ``(B,)`` or ``(B, 1)`` scale in pixels per object unit (or a float).
        t2: ``(B, 2)`` image translation in pixels.

    Returns:
        ``(B, N, 2)`` pixel coordinates.
    """
    check_shape(X, "X", (None, 3))
    check_shape(R, "R", (3, 3))
    check_shape(t2, "t2", (2,))
    s = _as_tensor(s, "s", X)
    for v, n in ((X, "X"), (R, "R"), (t2, "t2")):
        check_finite(v, n)
    if s.dim() > 0 and s.shape[-1] == 1 and s.dim() == t2.dim():
        s = s[..., 0]
    Xr = X @ R[..., :2, :].transpose(-1, -2)  # (..., N, 2)
    return s[..., None, None] * Xr + t2.unsqueeze(-2)


def pixels_to_rays(
    uv: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project pixels to viewing rays.

    Args:
        uv: ``(..., 2)`` pixel coordinates (pixel centres at +0.5).
        K: ``(..., 3, 3)`` or ``(3, 3)`` intrinsics; its leading dims broadcast with those
            of ``uv`` minus one (i.e. ``uv (B, N, 2)`` with ``K (B, 3, 3)``).
        R, t: optional object-to-camera pose ``(B, 3, 3)``, ``(B, 3)``; when given the
            rays are returned in the object frame instead of the camera frame.

    Returns:
        ``(origins (..., 3), directions (..., 3))``: unit directions; origins are the
        camera centre (zeros in the camera frame, ``-R^T t`` in the object frame).
    """
    check_shape(uv, "uv", (2,))
    check_shape(K, "K", (3, 3))
    check_finite(uv, "uv")
    check_finite(K, "K")
    Kinv = torch.linalg.inv(K)
    if uv.dim() >= 2:
        Kinv = Kinv.unsqueeze(-3)
    hom = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)
    d = (Kinv * hom.unsqueeze(-2)).sum(-1)  # Kinv @ hom
    d = d / d.norm(dim=-1, keepdim=True)
    o = torch.zeros_like(d)
    if R is not None or t is not None:
        if R is None or t is None:
            raise ShapeError("pixels_to_rays: give both R and t or neither")
        check_shape(R, "R", (3, 3))
        check_shape(t, "t", (3,))
        Rt = R.transpose(-1, -2)
        if uv.dim() >= 2:
            Rt, tt = Rt.unsqueeze(-3), t.unsqueeze(-2)
        else:
            tt = t
        d = (Rt * d.unsqueeze(-2)).sum(-1)
        o = -(Rt * tt.unsqueeze(-2)).sum(-1) + torch.zeros_like(d)
    return o, d


def backproject(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame 3-D points at pixels ``uv (..., 2)`` with depth ``z`` = ``depth (...)``.

    Inverse of :func:`project_points` for the camera frame: returns ``(..., 3)`` with
    ``X_cam = depth * K^-1 @ [u, v, 1]``.
    """
    check_shape(uv, "uv", (2,))
    check_finite(uv, "uv")
    depth = _as_tensor(depth, "depth", uv)
    check_shape(K, "K", (3, 3))
    check_finite(K, "K")
    Kinv = torch.linalg.inv(K)
    if uv.dim() >= 2:
        Kinv = Kinv.unsqueeze(-3)
    hom = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)
    ray = (Kinv * hom.unsqueeze(-2)).sum(-1)
    return ray / ray[..., 2:3] * depth.unsqueeze(-1)


# --------------------------------------------------------------------------- poses


def _normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp(min=eps)


def look_at(
    eye: torch.Tensor, target: torch.Tensor | None = None, up=(0.0, 1.0, 0.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Object-to-camera pose of an OpenCV camera at ``eye`` looking at ``target``.

    Args:
        eye: ``(..., 3)`` camera centre in the object frame.
        target: ``(..., 3)`` point to look at (default: the origin).
        up: ``(3,)`` or ``(..., 3)`` world up (default +Y); the image's -y (up on screen)
            is the projection of ``up``.

    Returns:
        ``(R (..., 3, 3), t (..., 3))`` with rows of ``R`` = camera x (right), y (down),
        z (forward, toward the target), and ``t = -R @ eye``. When ``up`` is parallel to
        the viewing direction a deterministic fallback up is used: for ``up = +Y`` it is
        ``(0, 0, sign)`` chosen to match :func:`viewpoint_to_pose` at azimuth 0.
    """
    check_shape(eye, "eye", (3,))
    check_finite(eye, "eye")
    if target is None:
        target = torch.zeros_like(eye)
    check_shape(target, "target", (3,))
    check_finite(target, "target")
    up_t = _as_tensor(up, "up", eye)
    check_shape(up_t, "up", (3,))
    z = _normalize(target - eye)
    z, up_t = torch.broadcast_tensors(z, up_t)
    x = torch.linalg.cross(z, up_t)
    nrm = x.norm(dim=-1, keepdim=True)
    # fallback up for the singular case: -(z . up) * (up x h), h = e_x (or e_z if up ~ e_x)
    up_n = _normalize(up_t)
    ex = torch.zeros_like(up_n)
    ex[..., 0] = 1.0
    ez = torch.zeros_like(up_n)
    ez[..., 2] = 1.0
    h = torch.where(up_n[..., :1].abs() > 0.9, ez, ex)
    alt_up = -(z * up_n).sum(-1, keepdim=True) * torch.linalg.cross(up_n, h)
    x_alt = torch.linalg.cross(z, alt_up)
    degenerate = nrm < 1e-7 * up_t.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    x = torch.where(degenerate, x_alt, x)
    x = _normalize(x)
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z], -2)
    t = -(R * eye.unsqueeze(-2)).sum(-1)
    return R, t


def viewpoint_to_pose(azimuth, elevation, theta, distance) -> tuple[torch.Tensor, torch.Tensor]:
    """PASCAL3D+ viewpoint -> object-to-camera pose in our frames (see the module docstring).

    Args:
        azimuth, elevation, theta: radians, floats or tensors of broadcastable shape ``(...)``.
        distance: camera-centre distance from the object origin (object units), ``(...)``.

    Returns:
        ``(R (..., 3, 3), t (..., 3))`` with ``X_cam = R @ X_obj + t`` (OpenCV camera,
        object +Y up / front +Z); ``t = (0, 0, distance)``.
    """
    ref = next(
        (v for v in (azimuth, elevation, theta, distance) if isinstance(v, torch.Tensor) and v.is_floating_point()),
        None,
    )
    a = _as_tensor(azimuth, "azimuth", ref)
    e = _as_tensor(elevation, "elevation", ref)
    th = _as_tensor(theta, "theta", ref)
    d = _as_tensor(distance, "distance", ref)
    a, e, th, d = torch.broadcast_tensors(a, e, th, d)
    ca, sa, ce, se = torch.cos(a), torch.sin(a), torch.cos(e), torch.sin(e)
    ct, st = torch.cos(th), torch.sin(th)
    zero = torch.zeros_like(a)
    x0 = torch.stack([ca, zero, -sa], -1)
    y0 = torch.stack([se * sa, -ce, se * ca], -1)
    z0 = torch.stack([-ce * sa, -se, -ce * ca], -1)
    R = torch.stack([ct[..., None] * x0 + st[..., None] * y0, -st[..., None] * x0 + ct[..., None] * y0, z0], -2)
    t = torch.stack([zero, zero, d], -1)
    return R, t


def pose_to_viewpoint(
    R: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`viewpoint_to_pose`.

    Args:
        R: ``(..., 3, 3)`` object-to-camera rotation.
        t: ``(..., 3)`` translation.

    Returns:
        ``(azimuth, elevation, theta, distance)`` each ``(...)``; angles in radians,
        azimuth and theta in (-pi, pi], elevation in [-pi/2, pi/2]. The camera centre
        ``C = -R^T t`` gives azimuth, elevation and distance; theta is the in-plane angle
        between the camera x axis and the viewpoint's theta=0 x axis (exact when the
        camera looks at the origin, as PASCAL3D+ assumes; otherwise the viewing
        direction is replaced by the direction toward the origin).
        At elevation +-90 deg azimuth and theta are coupled; azimuth then comes from the
        camera axes instead of the centre.
    """
    check_shape(R, "R", (3, 3))
    check_shape(t, "t", (3,))
    check_finite(R, "R")
    check_finite(t, "t")
    C = -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)
    d = C.norm(dim=-1)
    e = torch.asin((C[..., 1] / d.clamp(min=1e-12)).clamp(-1.0, 1.0))
    horiz = torch.sqrt(C[..., 0] ** 2 + C[..., 2] ** 2)
    a_centre = torch.atan2(C[..., 0], C[..., 2])
    # near the poles: the camera's y/x axes fix azimuth + theta; take theta = 0 there.
    # R rows x = ct*x0 + st*y0 with x0 = (ca, 0, -sa) -> at the pole use the x row.
    xr = R[..., 0, :]
    a_pole = torch.atan2(-xr[..., 2], xr[..., 0])
    pole = horiz < 1e-7 * d.clamp(min=1e-12)
    a = torch.where(pole, a_pole, a_centre)
    ca, sa, ce, se = torch.cos(a), torch.sin(a), torch.cos(e), torch.sin(e)
    x0 = torch.stack([ca, torch.zeros_like(a), -sa], -1)
    y0 = torch.stack([se * sa, -ce, se * ca], -1)
    # R[0] = ct*x0 + st*y0
    ct = (R[..., 0, :] * x0).sum(-1)
    st = (R[..., 0, :] * y0).sum(-1)
    th = torch.atan2(st, ct)
    return a, e, th, d


# --------------------------------------------------------------------------- Camera
#: The two kinds of :class:`Camera`.
CAMERA_KINDS = ("pinhole", "weak_perspective")


class Camera:
    """A batch of cameras: intrinsics in pixels, an image size and an explicit kind.

    Both kinds use one ``K (B, 3, 3) = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (pixels, pixel
    centres at +0.5) and act on camera-frame points ``X_cam = R X_obj + t`` (OpenCV axes):

    * ``"pinhole"``: ``(u, v) = (fx x / z + cx, fy y / z + cy)``;
    * ``"weak_perspective"``: ``(u, v) = (fx x + cx, fy y + cy)`` -- depth is ignored, so
      ``fx`` is the scale in pixels per object unit (``s`` of ``u = s (R X)[:2] + t2``, with
      ``t2 = s t[:2] + (cx, cy)``).

    Because both are ``K`` followed (or not) by the division by ``z``, a change of pixel
    coordinates ``u' = a u + o`` (a crop, a resize, pasting a crop back into its image) is
    ``K' = A K`` with ``A = [[a, 0, ox], [0, a, oy], [0, 0, 1]]`` for either kind
    (:meth:`crop`, :meth:`uncrop`, :meth:`resize`).

    Args:
        K: ``(B, 3, 3)`` or ``(3, 3)`` intrinsics in pixels (finite, ``fx, fy > 0``).
        image_size: ``(H, W)`` pixels of the image the camera sees.
        kind: one of :data:`CAMERA_KINDS`.

    Raises:
        ShapeError: a bad shape, non-finite values, non-positive focal lengths or sizes, or an
            unknown kind.
    """

    __slots__ = ("K", "image_size", "kind")

    def __init__(self, K: torch.Tensor, image_size: Sequence[int] | int, kind: str = "pinhole"):
        if kind not in CAMERA_KINDS:
            raise ShapeError(f"Camera.kind: expected one of {CAMERA_KINDS}, got {kind!r}")
        K = torch.as_tensor(K)
        if not K.is_floating_point():
            K = K.to(torch.get_default_dtype())
        if K.dim() == 2:
            K = K[None]
        if K.dim() != 3 or tuple(K.shape[1:]) != (3, 3):
            raise ShapeError(f"Camera.K: expected shape (B, 3, 3), got {tuple(K.shape)}")
        check_finite(K, "Camera.K")
        if ((K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)).any():
            raise ShapeError("Camera.K: focal lengths (scales) fx, fy must be > 0")
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        try:
            hw = tuple(int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ShapeError(f"Camera.image_size: expected (H, W), got {image_size!r}") from None
        if len(hw) != 2 or min(hw) < 1:
            raise ShapeError(f"Camera.image_size: expected positive (H, W), got {image_size!r}")
        self.K, self.image_size, self.kind = K, hw, kind

    # ---------------------------------------------------------------- constructors
    @classmethod
    def pinhole(cls, K, image_size) -> Camera:
        """Pinhole cameras with intrinsics ``K (B, 3, 3)`` for ``(H, W)`` images."""
        return cls(K, image_size, "pinhole")

    @classmethod
    def from_fov(cls, fov: float, image_size, batch: int = 1, fov_axis: str = "x") -> Camera:
        """``batch`` pinhole cameras of full field of view ``fov`` (radians), centred."""
        K = intrinsics_from_fov(fov, image_size, fov_axis).to(torch.get_default_dtype())
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        return cls(K.expand(batch, 3, 3).clone(), hw, "pinhole")

    @classmethod
    def weak_perspective(cls, scale, principal, image_size) -> Camera:
        """Weak-perspective cameras ``u = scale * (X_cam)[:2] + principal``.

        Args:
            scale: ``(B,)`` (or a float) pixels per object unit, > 0.
            principal: ``(B, 2)`` (or ``(2,)``) pixel position of the camera axis.
            image_size: ``(H, W)``.
        """
        s = (
            torch.as_tensor(scale, dtype=torch.get_default_dtype())
            if not isinstance(scale, torch.Tensor)
            else scale.to(torch.get_default_dtype())
            if not scale.is_floating_point()
            else scale
        )
        c = torch.as_tensor(principal, dtype=s.dtype, device=s.device)
        s = s.reshape(-1)
        c = c.reshape(-1, 2)
        s, c0, c1 = torch.broadcast_tensors(s, c[:, 0], c[:, 1])
        return cls(intrinsics(s, c0, c1), image_size, "weak_perspective")

    # ---------------------------------------------------------------- basics
    @property
    def is_pinhole(self) -> bool:
        return self.kind == "pinhole"

    @property
    def scale(self) -> torch.Tensor:
        """``(B,)`` ``fx``: the weak-perspective scale (pixels per object unit), or the focal length."""
        return self.K[:, 0, 0]

    @property
    def principal(self) -> torch.Tensor:
        """``(B, 2)`` principal point ``(cx, cy)`` in pixels."""
        return self.K[:, :2, 2]

    def __len__(self) -> int:
        return int(self.K.shape[0])

    def __repr__(self) -> str:
        return f"Camera(kind={self.kind!r}, batch={len(self)}, image_size={self.image_size})"

    def __getitem__(self, i) -> Camera:
        """Camera(s) ``i`` (an int keeps a batch of one; a slice or index tensor selects)."""
        K = self.K[i : i + 1] if isinstance(i, int) else self.K[i]
        return Camera(K, self.image_size, self.kind)

    def to(self, device=None, dtype=None) -> Camera:
        return Camera(self.K.to(device=device, dtype=dtype), self.image_size, self.kind)

    def expand(self, batch: int) -> Camera:
        """This camera (a batch of one) repeated ``batch`` times."""
        if len(self) == batch:
            return self
        if len(self) != 1:
            raise ShapeError(f"Camera.expand: a batch of {len(self)} cannot become {batch}")
        return Camera(self.K.expand(batch, 3, 3).clone(), self.image_size, self.kind)

    @staticmethod
    def cat(cameras: Sequence[Camera]) -> Camera:
        """One batch from several cameras of the same kind and image size."""
        if not cameras:
            raise ShapeError("Camera.cat: no cameras")
        kinds = {c.kind for c in cameras}
        sizes = {c.image_size for c in cameras}
        if len(kinds) != 1 or len(sizes) != 1:
            raise ShapeError(f"Camera.cat: kinds {sorted(kinds)} / image sizes {sorted(sizes)} differ")
        return Camera(torch.cat([c.K for c in cameras]), cameras[0].image_size, cameras[0].kind)

    # ---------------------------------------------------------------- geometry
    def project(self, X_cam: torch.Tensor, min_depth: float = 1e-8) -> torch.Tensor:
        """Pixels ``(B, N, 2)`` of camera-frame points ``X_cam (B, N, 3)``."""
        check_shape(X_cam, "X_cam", (None, 3))
        K = self.K.to(X_cam)
        if self.is_pinhole:
            xy = X_cam[..., :2] / X_cam[..., 2:3].clamp(min=min_depth)
        else:
            xy = X_cam[..., :2]
        return xy * K[:, None, [0, 1], [0, 1]] + K[:, None, :2, 2]

    def project_object(self, X: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, N, 2)`` of object-frame points ``X (B, N, 3)`` under poses ``R, t``."""
        return self.project(transform_points(X, R, t))

    def transform_pixels(self, a, offset) -> Camera:
        """The camera after the pixel change ``u' = a u + offset`` (``K' = A K``).

        Args:
            a: ``(B,)`` or float, > 0; offset: ``(B, 2)`` or ``(2,)`` pixels.
        """
        a = torch.as_tensor(a, dtype=self.K.dtype, device=self.K.device).reshape(-1)
        o = torch.as_tensor(offset, dtype=self.K.dtype, device=self.K.device).reshape(-1, 2)
        if (a <= 0).any() or not torch.isfinite(a).all() or not torch.isfinite(o).all():
            raise ShapeError("Camera.transform_pixels: expected a finite factor > 0 and a finite offset")
        B = max(len(self), a.numel(), o.shape[0])
        A = torch.zeros(B, 3, 3, dtype=self.K.dtype, device=self.K.device)
        A[:, 0, 0] = a.expand(B) if a.numel() == 1 else a
        A[:, 1, 1] = A[:, 0, 0]
        A[:, :2, 2] = o.expand(B, 2)
        A[:, 2, 2] = 1.0
        return A @ self.K.expand(B, 3, 3)

    def crop(self, box, size: int) -> Camera:
        """The camera of the ``size x size`` crop of the square ``box = (x0, y0, side)``."""
        x0, y0, side = (float(v) for v in box)
        a = size / side
        return Camera(self.transform_pixels(a, (-a * x0, -a * y0)), (size, size), self.kind)

    def uncrop(self, box, image_size) -> Camera:
        """The camera, given in a square crop ``box = (x0, y0, side)`` (any crop resolution, taken
        from ``self.image_size``), expressed in the pixels of the ``(H, W)`` image it was cut from."""
        x0, y0, side = (float(v) for v in box)
        a = side / self.image_size[1]
        return Camera(self.transform_pixels(a, (x0, y0)), image_size, self.kind)

    def resize(self, image_size) -> Camera:
        """The camera of the same view resampled to ``(H, W)`` (uniform factor: same aspect)."""
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
        a = hw[1] / self.image_size[1]
        if abs(hw[0] / self.image_size[0] - a) > 1e-6:
            raise ShapeError(f"Camera.resize: {self.image_size} -> {hw} changes the aspect ratio")
        return Camera(self.transform_pixels(a, (0.0, 0.0)), hw, self.kind)

    # ---------------------------------------------------------------- records
    def to_dict(self, i: int = 0) -> dict:
        """JSON-ready record of camera ``i`` (what ``pose.json`` stores)."""
        K = self.K[i].detach().cpu().double()
        H, W = self.image_size
        rec = {"kind": self.kind, "K": K.tolist(), "image_size": {"height": H, "width": W}}
        if self.is_pinhole:
            rec["formula"] = "(u, v) = (fx x / z + cx, fy y / z + cy) of X_cam = R X_obj + t"
            rec["fov_x_deg"] = math.degrees(2 * math.atan(W / 2 / float(K[0, 0])))
            rec["fov_y_deg"] = math.degrees(2 * math.atan(H / 2 / float(K[1, 1])))
        else:
            rec["formula"] = "(u, v) = (fx x + cx, fy y + cy) of X_cam = R X_obj + t (depth ignored)"
            rec["scale"] = float(K[0, 0])
        return rec

    @classmethod
    def from_dict(cls, rec: dict) -> Camera:
        """Inverse of :meth:`to_dict` (a batch of one). Raises ShapeError on a bad record."""
        try:
            size = rec["image_size"]
            return cls(
                torch.tensor(rec["K"], dtype=torch.float64), (int(size["height"]), int(size["width"])), str(rec["kind"])
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ShapeError(f"camera record: missing or bad field ({type(e).__name__}: {e})") from None
