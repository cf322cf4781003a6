"""Rotation representations and conversions on SO(3), batched, differentiable, in radians.

Every function takes tensors with any number of leading (batch) dimensions, works on any
device and floating dtype, and is differentiable with finite gradients everywhere on its
domain, including the identity (angle 0) and half-turns (angle pi). Names follow ``x_to_y``.

Conventions
-----------
* Matrices act on column vectors, ``v' = R @ v`` (active rotations, as in
  ``geometry/conventions.py``).
* Quaternions are real-first ``(w, x, y, z)``. ``q`` and ``-q`` are the same rotation; the
  functions that return quaternions choose the canonical sign ``w >= 0``.
* Axis-angle / exponential twist (paper 000, §3 "Pose Parametrization"): ``w = theta * n``
  with unit axis ``n`` and angle ``theta``; ``R = exp([w]_x)`` (Rodrigues). The logarithm
  returns ``|w| = theta`` in ``[0, pi]``; at exactly ``theta = pi`` the sign of ``w`` follows
  from the quaternion's canonical sign and is otherwise arbitrary (both are valid logs).
* Euler angles are **intrinsic**: ``convention="ZYX"`` with angles ``(a, b, c)`` means
  ``R = R_z(a) @ R_y(b) @ R_x(c)``, i.e. rotate about z, then about the *new* y, then the
  new x. This equals scipy's upper-case ``Rotation.from_euler("ZYX", [a, b, c])``.
* 6D (Zhou et al. 2019, "On the Continuity of Rotation Representations"): the first two
  **columns** of ``R``, concatenated ``(R[:, 0], R[:, 1])``; back via Gram-Schmidt.

Invalid input (wrong trailing shape, NaN/inf) raises :class:`poseshape.core.errors.ShapeError`
naming the argument.
"""

from __future__ import annotations

import math

import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import PoseshapeError, ShapeError

__all__ = [
    "EULER_CONVENTIONS",
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "bounded_axis_angle",
    "euler_angles_to_matrix",
    "geodesic_distance",
    "hat",
    "matrix_to_axis_angle",
    "matrix_to_euler_angles",
    "matrix_to_quaternion",
    "matrix_to_rotation_6d",
    "quaternion_canonical",
    "quaternion_geodesic_distance",
    "quaternion_invert",
    "quaternion_multiply",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "rotation_6d_to_matrix",
    "so3_exp",
    "so3_log",
    "vee",
]

#: Below this squared argument, the ratio functions use their Taylor series; the series are
#: truncated far beyond double precision there (first dropped term < 1e-17 relative).
_SERIES_X2 = 1e-2


def _validate(x: torch.Tensor, name: str, shape: tuple[int, ...]) -> None:
    check_shape(x, name, shape)
    if not torch.is_floating_point(x):
        raise ShapeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    check_finite(x, name)


def _series(x2: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    """Evaluate ``sum_k coeffs[k] * x2**k`` (Horner)."""
    out = torch.full_like(x2, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out = out * x2 + c
    return out


def _sinc_sq(x2: torch.Tensor) -> torch.Tensor:
    """``sin(x) / x`` as a function of ``x2 = x**2 >= 0``, smooth (and gradient-exact) at 0."""
    small = x2 < _SERIES_X2
    x = torch.sqrt(torch.where(small, torch.ones_like(x2), x2))
    big = torch.sin(x) / x
    ser = _series(x2, (1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880, -1 / 39916800))
    return torch.where(small, ser, big)


def _atanc_sq(y2: torch.Tensor) -> torch.Tensor:
    """``atan(y) / y`` as a function of ``y2 = y**2`` for small ``y2`` (series only)."""
    return _series(y2, tuple(((-1) ** k) / (2 * k + 1) for k in range(10)))


def _tanhc_sq(x2: torch.Tensor) -> torch.Tensor:
    """``tanh(x) / x`` as a function of ``x2 = x**2 >= 0``, smooth at 0."""
    small = x2 < _SERIES_X2
    x = torch.sqrt(torch.where(small, torch.ones_like(x2), x2))
    big = torch.tanh(x) / x
    ser = _series(
        x2,
        (1.0, -1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075, -929569 / 638512875),
    )
    return torch.where(small, ser, big)


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last dim whose gradient at ``v = 0`` is 0 (not NaN)."""
    n2 = (v * v).sum(-1)
    pos = n2 > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, n2, torch.ones_like(n2))), torch.zeros_like(n2))


# --------------------------------------------------------------------------- skew helpers
def hat(v: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix ``[v]_x`` with ``[v]_x @ u = v x u``.

    ``v`` (..., 3) -> (..., 3, 3).
    """
    _validate(v, "v", (3,))
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack(
        [torch.stack([o, -z, y], -1), torch.stack([z, o, -x], -1), torch.stack([-y, x, o], -1)],
        -2,
    )


def vee(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat`: the vector of the skew part of ``m``.

    ``m`` (..., 3, 3) -> (..., 3), ``0.5 * (m21 - m12, m02 - m20, m10 - m01)``; exact inverse
    of :func:`hat` on skew-symmetric input, the projection onto so(3) otherwise.
    """
    _validate(m, "m", (3, 3))
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
    )


# ----------------------------------------------------------------------- exp / log maps
def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Exponential map (Rodrigues): axis-angle / twist ``omega`` (..., 3) -> ``R`` (..., 3, 3).

    ``R = I + sinc(t) K + 0.5 sinc(t/2)^2 K^2`` with ``K = [omega]_x`` and ``t = |omega|``
    (radians); both coefficients switch to Taylor series for small ``t``, so values and
    gradients are exact and finite at ``omega = 0``. Any ``|omega|`` is accepted.
    """
    _validate(omega, "omega", (3,))
    t2 = (omega * omega).sum(-1)
    a = _sinc_sq(t2)[..., None, None]
    b = (0.5 * _sinc_sq(t2 / 4) ** 2)[..., None, None]
    k = hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


def so3_log(R: torch.Tensor) -> torch.Tensor:
    """Logarithm map: rotation matrix ``R`` (..., 3, 3) -> axis-angle ``omega`` (..., 3).

    Robust at every angle: goes through the quaternion (Shepperd's method, which never
    divides by a small number) and ``angle = 2 atan2(|v|, w)``, with a Taylor branch at
    angle 0. ``|omega|`` lies in ``[0, pi]``. Gradients are finite at 0 and at pi.
    """
    _validate(R, "R", (3, 3))
    return _quaternion_to_axis_angle(_matrix_to_quaternion(R))


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Exponential twist (paper 000 eq. 5) ``w`` (..., 3) -> ``R = exp([w]_x)`` (..., 3, 3).

    Same as :func:`so3_exp`.
    """
    _validate(axis_angle, "axis_angle", (3,))
    return so3_exp(axis_angle)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """``R`` (..., 3, 3) -> twist ``w`` (..., 3) with ``|w|`` in ``[0, pi]``; see :func:`so3_log`."""
    return so3_log(R)


def bounded_axis_angle(v: torch.Tensor, max_angle: float = math.pi) -> torch.Tensor:
    """Map an unconstrained 3-vector to a twist inside the ball of radius ``max_angle``.

    Paper 000 (§3, "Pose Parametrization") constrains the twist ``w = theta n`` to the ball
    of radius pi "with the tanh function to limit the norm of w" without giving the formula.
    We bound the *norm* radially, keeping the direction::

        w = max_angle * tanh(|v|) * v / |v|

    (not a per-component tanh, which would give a cube instead of the ball). It is smooth,
    ``w ~ max_angle * v`` near 0 (Taylor branch, finite gradient at ``v = 0``), and maps
    R^3 onto the *open* ball: angle pi is only approached as ``|v| -> inf``.

    ``v`` (..., 3) -> ``w`` (..., 3), radians.
    """
    _validate(v, "v", (3,))
    return max_angle * _tanhc_sq((v * v).sum(-1))[..., None] * v


# ---------------------------------------------------------------------------- quaternions
def quaternion_canonical(q: torch.Tensor) -> torch.Tensor:
    """Return ``q`` or ``-q`` (..., 4), whichever has ``w >= 0`` (same rotation)."""
    _validate(q, "q", (4,))
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternion ``(w, x, y, z)`` (..., 4) -> rotation matrix (..., 3, 3).

    ``q`` need not be unit length (it is implicitly normalised); it must be non-zero.
    """
    _validate(q, "q", (4,))
    n2 = (q * q).sum(-1)
    if bool((n2 == 0).any()):
        raise ShapeError("q: contains zero quaternion(s), which represent no rotation")
    w, x, y, z = q.unbind(-1)
    s = 2.0 / n2
    r = torch.stack(
        [
            1 - s * (y * y + z * z),
            s * (x * y - w * z),
            s * (x * z + w * y),
            s * (x * y + w * z),
            1 - s * (x * x + z * z),
            s * (y * z - w * x),
            s * (x * z - w * y),
            s * (y * z + w * x),
            1 - s * (x * x + y * y),
        ],
        -1,
    )
    return r.reshape(q.shape[:-1] + (3, 3))


def _matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # d_k = 4 q_k^2 for k = w, x, y, z; they sum to 4 so the largest is >= 1.
    d = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    # Row k holds 4 q_k * q (Shepperd 1978).
    rows = torch.stack(
        [
            torch.stack([d[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, d[..., 1], m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, d[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, d[..., 3]], -1),
        ],
        -2,
    )
    # Clamp keeps the rows we do not pick finite (and their gradients); the picked one has d >= 1.
    cand = rows / (2 * torch.sqrt(d.clamp_min(0.1)))[..., None]
    pick = torch.nn.functional.one_hot(d.argmax(-1), 4).to(R.dtype)
    q = (cand * pick[..., None]).sum(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> unit quaternion ``(w, x, y, z)`` (..., 4) with ``w >= 0``.

    Shepperd's method: of the four algebraically equivalent formulas, the one dividing by the
    largest of ``|w|, |x|, |y|, |z|`` is used, so it is accurate (and differentiable) at
    every angle including pi. A slightly non-orthogonal ``R`` yields the normalised result.
    """
    _validate(R, "R", (3, 3))
    return _matrix_to_quaternion(R)


def quaternion_multiply(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``q1 * q2`` (..., 4), broadcast; the rotation ``R(q1) @ R(q2)``.

    The result is not sign-canonicalised.
    """
    _validate(q1, "q1", (4,))
    _validate(q2, "q2", (4,))
    return _qmul(q1, q2)


def _qmul(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        -1,
    )


def quaternion_invert(q: torch.Tensor) -> torch.Tensor:
    """Conjugate ``(w, -x, -y, -z)`` (..., 4): the inverse of a *unit* quaternion."""
    _validate(q, "q", (4,))
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def _quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    n2 = (v * v).sum(-1)
    small = n2 < _SERIES_X2 * w * w  # |v| / w < 0.1, angle < ~11.4 deg
    n = torch.sqrt(torch.where(small, torch.ones_like(n2), n2))
    big = 2 * torch.atan2(n, w) / n
    w_s = torch.where(small, w, torch.ones_like(w))
    ser = 2 / w_s * _atanc_sq(torch.where(small, n2 / (w_s * w_s), torch.zeros_like(n2)))
    return torch.where(small, ser, big)[..., None] * v


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Quaternion (..., 4) (any non-zero norm) -> axis-angle (..., 3), angle in ``[0, pi]``."""
    _validate(q, "q", (4,))
    return _quaternion_to_axis_angle(q)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> unit quaternion (..., 4) ``(cos(t/2), sin(t/2) n)``.

    Not sign-canonicalised (``w < 0`` for angles beyond pi), so it is smooth everywhere.
    """
    _validate(axis_angle, "axis_angle", (3,))
    t2 = (axis_angle * axis_angle).sum(-1)
    pos = t2 > 0
    t = torch.sqrt(torch.where(pos, t2, torch.ones_like(t2)))
    w = torch.where(pos, torch.cos(t / 2), torch.ones_like(t2))
    v = 0.5 * _sinc_sq(t2 / 4)[..., None] * axis_angle
    return torch.cat([w[..., None], v], -1)


# --------------------------------------------------------------------------- Euler angles
_AXES = {"X": 0, "Y": 1, "Z": 2}

#: The 12 supported (intrinsic) axis orders: 6 Tait-Bryan and 6 proper Euler.
EULER_CONVENTIONS: tuple[str, ...] = (
    "XYZ",
    "XZY",
    "YXZ",
    "YZX",
    "ZXY",
    "ZYX",
    "XYX",
    "XZX",
    "YXY",
    "YZY",
    "ZXZ",
    "ZYZ",
)


def _parse_convention(convention: str) -> tuple[int, int, int, bool]:
    if not isinstance(convention, str) or convention not in EULER_CONVENTIONS:
        hint = ""
        if isinstance(convention, str) and convention.upper() in EULER_CONVENTIONS:
            hint = (
                " (lower case = extrinsic is not supported: extrinsic 'abc' with angles "
                "(p, q, r) equals intrinsic 'CBA' with angles (r, q, p))"
            )
        raise PoseshapeError(f"convention: expected one of {EULER_CONVENTIONS} (intrinsic), got {convention!r}{hint}")
    i, j, k = (_AXES[c] for c in convention)
    proper = i == k
    if proper:
        k = 3 - i - j
    return i, j, k, proper


def _axis_rotation(axis: int, angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    o, one = torch.zeros_like(angle), torch.ones_like(angle)
    if axis == 0:
        rows = [one, o, o, o, c, -s, o, s, c]
    elif axis == 1:
        rows = [c, o, s, o, one, o, -s, o, c]
    else:
        rows = [c, -s, o, s, c, o, o, o, one]
    return torch.stack(rows, -1).reshape(angle.shape + (3, 3))


def euler_angles_to_matrix(angles: torch.Tensor, convention: str) -> torch.Tensor:
    """Intrinsic Euler angles (..., 3) in radians -> rotation matrix (..., 3, 3).

    ``convention`` is one of :data:`EULER_CONVENTIONS`, e.g. ``"ZYX"`` (paper 003):
    ``R = R_Z(angles[..., 0]) @ R_Y(angles[..., 1]) @ R_X(angles[..., 2])``. Matches scipy's
    upper-case (intrinsic) ``Rotation.from_euler(convention, angles)``.
    """
    _parse_convention(convention)
    _validate(angles, "angles", (3,))
    mats = [_axis_rotation(_AXES[c], a) for c, a in zip(convention, angles.unbind(-1))]
    return mats[0] @ mats[1] @ mats[2]


def _safe_atan2(y: torch.Tensor, x: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """``atan2(y, x)`` that returns 0 with zero gradient where ``bad`` (avoids atan2(0, 0))."""
    one = torch.ones_like(x)
    out = torch.atan2(torch.where(bad, torch.zeros_like(y), y), torch.where(bad, one, x))
    return torch.where(bad, torch.zeros_like(out), out)


def matrix_to_euler_angles(R: torch.Tensor, convention: str) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> intrinsic Euler angles (..., 3) in radians.

    Inverse of :func:`euler_angles_to_matrix` for the same ``convention``. Ranges: first and
    third angle in ``(-pi, pi]``; the middle one in ``[-pi/2, pi/2]`` (Tait-Bryan, e.g.
    ``"ZYX"``) or ``[0, pi]`` (proper Euler, e.g. ``"ZYZ"``).

    Gimbal lock (middle angle at +-pi/2 for Tait-Bryan, 0 or pi for proper Euler, detected
    when ``cos`` resp. ``sin`` of it is below ``sqrt(eps)`` of the dtype): only the sum or
    difference of the first and third angle is determined; we deterministically set the
    **third angle to 0** and put everything into the first (scipy does the same but warns).
    The returned angles always reproduce ``R`` (up to ~``sqrt(eps)`` at the lock threshold).
    """
    i, j, k, proper = _parse_convention(convention)
    _validate(R, "R", (3, 3))
    # s = +1 when (i, j, k) is a cyclic (even) permutation of (0, 1, 2).
    s = 1.0 if (j - i) % 3 == 1 else -1.0
    tol = math.sqrt(torch.finfo(R.dtype).eps)

    def m(a: int, b: int) -> torch.Tensor:
        return R[..., a, b]

    if proper:
        sb2 = m(i, j) ** 2 + m(i, k) ** 2
        lock = sb2 < tol * tol
        sb = torch.where(lock, torch.zeros_like(sb2), torch.sqrt(torch.where(lock, torch.ones_like(sb2), sb2)))
        b = torch.atan2(sb, m(i, i))
        a = _safe_atan2(m(j, i), -s * m(k, i), lock)
        c = _safe_atan2(m(i, j), s * m(i, k), lock)
    else:
        cb2 = m(i, i) ** 2 + m(i, j) ** 2
        lock = cb2 < tol * tol
        cb = torch.where(lock, torch.zeros_like(cb2), torch.sqrt(torch.where(lock, torch.ones_like(cb2), cb2)))
        b = torch.atan2(s * m(i, k), cb)
        a = _safe_atan2(-s * m(j, k), m(k, k), lock)
        c = _safe_atan2(-s * m(i, j), m(i, i), lock)
    # Gimbal lock, third angle = 0: R[:, j] = R_i(a) e_j = e_j cos a + s e_k sin a.
    a_lock = torch.atan2(s * m(k, j), m(j, j))
    a = torch.where(lock, a_lock, a)
    c = torch.where(lock, torch.zeros_like(c), c)
    return torch.stack([a, b, c], -1)


# ---------------------------------------------------------------------------------- 6D
def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """6D representation (..., 6) -> rotation matrix (..., 3, 3) (Zhou et al. 2019).

    ``d6 = (a1, a2)``, two 3-vectors taken as the first two **columns**: ``b1 = a1 / |a1|``,
    ``b2 = normalise(a2 - <b1, a2> b1)``, ``b3 = b1 x b2``, ``R = [b1 b2 b3]`` (columns).

    Degenerate input still gives a rotation and finite gradients (a network may output it):
    ``|a1|`` below the dtype's machine epsilon takes ``b1 = e_x``; an ``a2`` (nearly) parallel
    to ``b1`` (``|a2 - <b1, a2> b1| <= 16 eps (1 + |a2|)``) takes ``b2`` from the axis least
    aligned with ``b1``. The gradient through a replaced vector is zero.
    """
    _validate(d6, "d6", (6,))
    eps = torch.finfo(d6.dtype).eps if d6.is_floating_point() else 1e-12
    a1, a2 = d6[..., :3], d6[..., 3:]
    n1 = torch.linalg.vector_norm(a1.detach(), dim=-1, keepdim=True)
    deg1 = n1 <= eps
    ex = torch.zeros_like(a1)
    ex[..., 0] = 1.0
    safe1 = torch.where(deg1, ex, a1)  # no 0/0 in the backward pass
    b1 = torch.where(deg1, ex, safe1 / torch.linalg.vector_norm(safe1, dim=-1, keepdim=True))
    u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    u2 = u2 - (b1 * u2).sum(-1, keepdim=True) * b1  # second pass: orthogonal to rounding even when short
    n2 = torch.linalg.vector_norm(u2.detach(), dim=-1, keepdim=True)
    deg2 = n2 <= 16 * eps * (1.0 + torch.linalg.vector_norm(a2.detach(), dim=-1, keepdim=True))
    # fallback: the coordinate axis least aligned with b1, made orthogonal to it (|.| >= sqrt(2/3))
    axis = torch.nn.functional.one_hot(b1.detach().abs().argmin(-1), 3).to(b1.dtype)
    v2 = axis - (b1 * axis).sum(-1, keepdim=True) * b1
    u2 = torch.where(deg2, v2, u2)
    b2 = u2 / torch.linalg.vector_norm(u2, dim=-1, keepdim=True)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def matrix_to_rotation_6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> 6D (..., 6): first column then second column."""
    _validate(R, "R", (3, 3))
    return torch.cat([R[..., :, 0], R[..., :, 1]], -1)


# ----------------------------------------------------------------------- geodesic distance
def quaternion_geodesic_distance(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Rotation angle between unit quaternions (..., 4) (broadcast) in radians, ``[0, pi]``.

    Equal to paper 004 eq. 3, ``2 acos(|<q1, q2>|)``, but computed as
    ``2 atan2(|vec(q1^-1 q2)|, |<q1, q2>|)`` so that it is accurate and has a finite
    gradient (0) at distance 0, where acos has an infinite slope. Sign-invariant.
    """
    _validate(q1, "q1", (4,))
    _validate(q2, "q2", (4,))
    rel = _qmul(q1 * q1.new_tensor([1.0, -1.0, -1.0, -1.0]), q2)
    return 2 * torch.atan2(_safe_norm(rel[..., 1:]), rel[..., 0].abs())


def geodesic_distance(R1: torch.Tensor, R2: torch.Tensor, method: str = "log") -> torch.Tensor:
    """Geodesic (rotation-angle) distance between rotation matrices (..., 3, 3), radians.

    ``method="log"``: ``||log(R1^T R2)||_F / sqrt(2) = |so3_log(R1^T R2)|`` (paper 004 eq. 4).
    ``method="quaternion"``: ``2 acos(|<q1, q2>|)`` (paper 004 eq. 3, atan2 form) on the
    quaternions of ``R1`` and ``R2``. Both agree to rounding; both have finite gradients at
    distance 0 (where the distance has a kink; the gradient returned there is 0).
    """
    _validate(R1, "R1", (3, 3))
    _validate(R2, "R2", (3, 3))
    if method == "log":
        return _safe_norm(so3_log(R1.transpose(-1, -2) @ R2))
    if method == "quaternion":
        return quaternion_geodesic_distance(_matrix_to_quaternion(R1), _matrix_to_quaternion(R2))
    raise PoseshapeError(f"method: expected 'log' or 'quaternion', got {method!r}")
