"""Rotation conversions against scipy.spatial.transform.Rotation, edge cases, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry import rotations as rot

N = 1000
F64 = torch.float64


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=F64)


@pytest.fixture(scope="module")
def sample() -> Rotation:
    return Rotation.random(N, random_state=1234)


def _canon(q: np.ndarray) -> np.ndarray:
    return np.where(q[..., :1] < 0, -q, q)


def _edge_rotations() -> Rotation:
    """Identity, tiny angles, half-turns about x/y/z and random axes, angles just below pi."""
    rng = np.random.default_rng(7)
    axes = np.concatenate([np.eye(3), rng.normal(size=(5, 3))])
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    vecs = [np.zeros(3)]
    for ang in (1e-12, 1e-8, 1e-4, 0.05, 0.2, math.pi - 1e-3, math.pi - 1e-6, math.pi - 1e-9, math.pi):
        vecs += list(ang * axes)
    return Rotation.from_rotvec(np.array(vecs))


# ------------------------------------------------------------------------ scipy agreement
def test_exp_log_match_scipy(sample):
    rv, mat = _t(sample.as_rotvec()), _t(sample.as_matrix())
    torch.testing.assert_close(rot.so3_exp(rv), mat, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.axis_angle_to_matrix(rv), mat, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.so3_log(mat), rv, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.matrix_to_axis_angle(mat), rv, atol=1e-12, rtol=0)


def test_exp_log_edge_cases():
    edge = _edge_rotations()
    mat = _t(edge.as_matrix())
    torch.testing.assert_close(rot.so3_exp(_t(edge.as_rotvec())), mat, atol=1e-14, rtol=0)
    w = rot.so3_log(mat)
    # angles agree with scipy; the rotation is reproduced (the sign at exactly pi is free)
    torch.testing.assert_close(w.norm(dim=-1), _t(edge.magnitude()), atol=1e-7, rtol=0)
    torch.testing.assert_close(rot.so3_exp(w), mat, atol=1e-12, rtol=0)
    small = edge.magnitude() < 3.0
    torch.testing.assert_close(w[small], _t(edge.as_rotvec())[small], atol=1e-13, rtol=1e-9)
    assert (w.norm(dim=-1) <= math.pi + 1e-12).all()
    assert torch.equal(rot.so3_log(torch.eye(3, dtype=F64)), torch.zeros(3, dtype=F64))


def test_exp_of_large_twist_wraps():
    w = _t([0.0, 0.0, 2 * math.pi + 0.3])
    torch.testing.assert_close(rot.so3_exp(w), rot.so3_exp(_t([0.0, 0.0, 0.3])))


def test_quaternion_match_scipy(sample):
    q = _t(_canon(sample.as_quat(scalar_first=True)))
    mat = _t(sample.as_matrix())
    out = rot.matrix_to_quaternion(mat)
    torch.testing.assert_close(out, q, atol=1e-12, rtol=0)
    assert (out[:, 0] >= 0).all()
    torch.testing.assert_close(rot.quaternion_to_matrix(q), mat, atol=1e-12, rtol=0)
    # non-unit quaternions are normalised implicitly
    torch.testing.assert_close(rot.quaternion_to_matrix(3.7 * q), mat, atol=1e-12, rtol=0)
    rv = _t(sample.as_rotvec())
    torch.testing.assert_close(_t(_canon(rot.axis_angle_to_quaternion(rv).numpy())), q, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_axis_angle(q), rv, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_axis_angle(-q), rv, atol=1e-12, rtol=0)


def test_quaternion_edge_cases():
    edge = _edge_rotations()
    mat = _t(edge.as_matrix())
    q = rot.matrix_to_quaternion(mat)
    ref = _t(_canon(edge.as_quat(scalar_first=True)))
    # at exactly pi w = 0 and q ~ -q: compare up to sign
    sign = torch.sign((q * ref).sum(-1, keepdim=True))
    torch.testing.assert_close(q, sign * ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_matrix(q), mat, atol=1e-12, rtol=0)


def test_quaternion_multiply_invert_match_scipy(sample):
    a, b = sample[:500], sample[500:]
    qa, qb = _t(a.as_quat(scalar_first=True)), _t(b.as_quat(scalar_first=True))
    prod = rot.quaternion_multiply(qa, qb)
    ref = (a * b).as_matrix()
    torch.testing.assert_close(rot.quaternion_to_matrix(prod), _t(ref), atol=1e-12, rtol=0)
    inv = rot.quaternion_invert(qa)
    torch.testing.assert_close(rot.quaternion_to_matrix(inv), _t(a.inv().as_matrix()), atol=1e-12, rtol=0)
    ident = rot.quaternion_multiply(qa, inv)
    torch.testing.assert_close(ident, _t([1.0, 0, 0, 0]).expand_as(ident), atol=1e-12, rtol=0)


@pytest.mark.parametrize("convention", rot.EULER_CONVENTIONS)
def test_euler_match_scipy(sample, convention):
    mat = _t(sample.as_matrix())
    ang = _t(sample.as_euler(convention))  # upper case = intrinsic in scipy
    torch.testing.assert_close(rot.euler_angles_to_matrix(ang, convention), mat, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.matrix_to_euler_angles(mat, convention), ang, atol=1e-10, rtol=0)
    # intrinsic ZYX == product of elementary rotations in that order
    if convention == "ZYX":
        a, b, c = 0.3, -0.4, 1.1
        ref = (
            Rotation.from_rotvec([0, 0, a]) * Rotation.from_rotvec([0, b, 0]) * Rotation.from_rotvec([c, 0, 0])
        ).as_matrix()
        torch.testing.assert_close(rot.euler_angles_to_matrix(_t([a, b, c]), "ZYX"), _t(ref))


@pytest.mark.parametrize("convention", rot.EULER_CONVENTIONS)
def test_euler_gimbal_lock_round_trip(convention):
    proper = convention[0] == convention[2]
    locks = [0.0, math.pi] if proper else [math.pi / 2, -math.pi / 2]
    rng = np.random.default_rng(3)
    ang = []
    for mid in locks:
        for a, c in rng.uniform(-math.pi, math.pi, size=(20, 2)):
            ang.append([a, mid, c])
    ang = _t(ang)
    mat = rot.euler_angles_to_matrix(ang, convention)
    back = rot.matrix_to_euler_angles(mat, convention)
    assert torch.isfinite(back).all()
    assert torch.equal(back[:, 2], torch.zeros_like(back[:, 2]))  # third angle set to 0
    torch.testing.assert_close(rot.euler_angles_to_matrix(back, convention), mat, atol=1e-7, rtol=0)
    # scipy agrees on the rotation
    ref = Rotation.from_euler(convention, back.numpy()).as_matrix()
    torch.testing.assert_close(_t(ref), mat, atol=1e-7, rtol=0)


@pytest.mark.parametrize("convention", ["ZYX", "ZYZ"])
def test_euler_lock_gradient_finite(convention):
    mid = math.pi / 2 if convention == "ZYX" else 0.0
    mat = rot.euler_angles_to_matrix(_t([0.4, mid, 0.0]), convention).requires_grad_(True)
    rot.matrix_to_euler_angles(mat, convention).sum().backward()
    assert torch.isfinite(mat.grad).all()


def test_rotation_6d(sample):
    mat = _t(sample.as_matrix())
    d6 = rot.matrix_to_rotation_6d(mat)
    torch.testing.assert_close(d6[:, :3], mat[:, :, 0])
    torch.testing.assert_close(d6[:, 3:], mat[:, :, 1])
    torch.testing.assert_close(rot.rotation_6d_to_matrix(d6), mat, atol=1e-12, rtol=0)
    # Gram-Schmidt of arbitrary (scaled, skewed) columns gives the same rotation
    noisy = torch.cat([2.5 * mat[:, :, 0], 0.7 * mat[:, :, 1] - 1.3 * mat[:, :, 0]], -1)
    torch.testing.assert_close(rot.rotation_6d_to_matrix(noisy), mat, atol=1e-12, rtol=0)
    r = rot.rotation_6d_to_matrix(torch.randn(50, 6, dtype=F64))
    eye = torch.eye(3, dtype=F64).expand(50, 3, 3)
    torch.testing.assert_close(r.transpose(-1, -2) @ r, eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(50, dtype=F64))


def test_hat_vee():
    v = torch.randn(7, 3, dtype=F64)
    u = torch.randn(7, 3, dtype=F64)
    k = rot.hat(v)
    torch.testing.assert_close((k @ u[..., None])[..., 0], torch.linalg.cross(v, u, dim=-1))
    torch.testing.assert_close(k, -k.transpose(-1, -2))
    torch.testing.assert_close(rot.vee(k), v)


def test_bounded_axis_angle():
    v = torch.randn(200, 3, dtype=F64) * torch.logspace(-6, 2, 200, dtype=F64)[:, None]
    w = rot.bounded_axis_angle(v)
    n = v.norm(dim=-1)
    torch.testing.assert_close(w.norm(dim=-1), math.pi * torch.tanh(n), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(w / w.norm(dim=-1, keepdim=True), v / n[:, None])
    assert (w.norm(dim=-1) <= math.pi * (1 + 1e-15)).all()  # up to rounding
    assert torch.equal(rot.bounded_axis_angle(torch.zeros(3, dtype=F64)), torch.zeros(3, dtype=F64))


# --------------------------------------------------------------------- geodesic distance
def test_geodesic_methods_agree_with_scipy(sample):
    a, b = sample[:500], sample[500:]
    ra, rb = _t(a.as_matrix()), _t(b.as_matrix())
    ref = _t((a.inv() * b).magnitude())
    d_log = rot.geodesic_distance(ra, rb, method="log")
    d_q = rot.geodesic_distance(ra, rb, method="quaternion")
    torch.testing.assert_close(d_log, ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(d_q, ref, atol=1e-10, rtol=0)
    qa, qb = _t(a.as_quat(scalar_first=True)), _t(b.as_quat(scalar_first=True))
    acos_form = 2 * torch.acos((qa * qb).sum(-1).abs().clamp(max=1))
    torch.testing.assert_close(rot.quaternion_geodesic_distance(qa, -qb), acos_form, atol=1e-7, rtol=0)
    # edge: identical, half-turn apart
    edge = _t(_edge_rotations().as_matrix())
    for m in ("log", "quaternion"):
        assert rot.geodesic_distance(edge, edge, method=m).abs().max() < 1e-7
    half = rot.so3_exp(_t([0.0, math.pi, 0.0]))
    for m in ("log", "quaternion"):
        torch.testing.assert_close(
            rot.geodesic_distance(torch.eye(3, dtype=F64), half, m), torch.tensor(math.pi, dtype=F64)
        )


@pytest.mark.parametrize("method", ["log", "quaternion"])
def test_geodesic_gradient_finite_at_zero(method):
    r = rot.so3_exp(_t([0.3, -0.2, 0.9]))
    r1 = r.clone().requires_grad_(True)
    d = rot.geodesic_distance(r1, r, method=method)
    d.backward()
    assert d.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(r1.grad).all()


# ----------------------------------------------------------------------------- gradients
def _gc(fn, x):
    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-4, 0.09, 0.11, 1.0, math.pi - 1e-3])
def test_gradcheck_so3_exp(scale):
    axis = _t([0.36, -0.48, 0.8])
    _gc(rot.so3_exp, scale * axis)
    _gc(rot.axis_angle_to_quaternion, scale * axis)
    _gc(rot.bounded_axis_angle, scale * axis)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-5, 0.1, 1.0, 2.5, math.pi - 1e-3])
@pytest.mark.parametrize("axis", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.36, -0.48, 0.8]])
def test_gradcheck_so3_log(angle, axis):
    r = rot.so3_exp(angle * _t(axis))
    _gc(rot.so3_log, r)
    _gc(rot.matrix_to_quaternion, r)


@pytest.mark.parametrize("angle", [0.0, math.pi])
def test_gradients_finite_at_zero_and_pi(angle):
    for axis in ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.36, -0.48, 0.8]):
        w = (angle * _t(axis)).requires_grad_(True)
        r = rot.so3_exp(w)
        r.sum().backward()
        assert torch.isfinite(w.grad).all()
        rr = r.detach().clone().requires_grad_(True)
        (rot.so3_log(rr) * _t([0.3, -1.0, 0.7])).sum().backward()
        assert torch.isfinite(rr.grad).all()
        q = rot.matrix_to_quaternion(r.detach()).requires_grad_(True)
        rot.quaternion_to_axis_angle(q).sum().backward()
        assert torch.isfinite(q.grad).all()


def test_gradcheck_other_conversions():
    q = torch.nn.functional.normalize(torch.randn(4, 4, dtype=F64), dim=-1)
    _gc(rot.quaternion_to_matrix, q)
    _gc(rot.quaternion_to_axis_angle, q)
    _gc(lambda a: rot.quaternion_multiply(a, q.flip(0)), q)
    _gc(rot.quaternion_invert, q)
    r = rot.quaternion_to_matrix(q)
    _gc(rot.matrix_to_rotation_6d, r)
    _gc(rot.rotation_6d_to_matrix, torch.randn(4, 6, dtype=F64))
    _gc(lambda x: rot.geodesic_distance(x, r.flip(0), "log"), r)
    _gc(lambda x: rot.geodesic_distance(x, r.flip(0), "quaternion"), r)
    _gc(lambda x: rot.quaternion_geodesic_distance(x, q.flip(0)), q)
    _gc(rot.hat, torch.randn(4, 3, dtype=F64))
    _gc(rot.vee, torch.randn(4, 3, 3, dtype=F64))
    ang = torch.tensor([[0.3, -0.5, 1.2], [2.0, 0.4, -2.9]], dtype=F64)
    ang_p = torch.tensor([[0.3, 0.5, 1.2], [2.0, 2.4, -2.9]], dtype=F64)
    for conv in ("ZYX", "XYZ", "ZYZ", "XZX"):
        a = ang_p if conv[0] == conv[2] else ang
        _gc(lambda x, c=conv: rot.euler_angles_to_matrix(x, c), a)
        _gc(lambda x, c=conv: rot.matrix_to_euler_angles(x, c), rot.euler_angles_to_matrix(a, conv))


# ------------------------------------------------------------------ dtype, batch, device
def test_float32_and_batch_dims():
    w = torch.randn(2, 5, 3)
    r = rot.so3_exp(w)
    assert r.shape == (2, 5, 3, 3) and r.dtype == torch.float32
    torch.testing.assert_close(rot.so3_exp(rot.so3_log(r)), r, atol=1e-5, rtol=0)
    q = rot.matrix_to_quaternion(r)
    assert q.shape == (2, 5, 4)
    e = rot.matrix_to_euler_angles(r, "ZYX")
    torch.testing.assert_close(rot.euler_angles_to_matrix(e, "ZYX"), r, atol=1e-5, rtol=0)
    tiny = rot.so3_log(rot.so3_exp(torch.tensor([1e-5, 0.0, 0.0])))
    torch.testing.assert_close(tiny, torch.tensor([1e-5, 0.0, 0.0]), atol=1e-9, rtol=1e-2)
    d = rot.geodesic_distance(r[0], r[1])
    assert d.shape == (5,)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "fn, arg, name",
    [
        (rot.so3_exp, torch.zeros(4), "omega"),
        (rot.so3_log, torch.zeros(3, 4), "R"),
        (rot.matrix_to_quaternion, torch.zeros(3), "R"),
        (rot.quaternion_to_matrix, torch.zeros(2, 3), "q"),
        (rot.rotation_6d_to_matrix, torch.zeros(5), "d6"),
        (rot.bounded_axis_angle, torch.zeros(2), "v"),
        (lambda x: rot.euler_angles_to_matrix(x, "ZYX"), torch.zeros(2), "angles"),
        (lambda x: rot.geodesic_distance(x, torch.eye(3)), torch.zeros(3, 2), "R1"),
    ],
)
def test_bad_shapes_raise(fn, arg, name):
    with pytest.raises(ShapeError, match=name):
        fn(arg)


def test_nan_and_bad_values_raise():
    with pytest.raises(ShapeError, match="omega"):
        rot.so3_exp(torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(ShapeError, match="R"):
        rot.so3_log(torch.full((3, 3), float("nan")))
    with pytest.raises(ShapeError, match="q"):
        rot.quaternion_to_matrix(torch.zeros(4))
    with pytest.raises(ShapeError, match="omega"):
        rot.so3_exp(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(PoseshapeError, match="convention"):
        rot.euler_angles_to_matrix(torch.zeros(3), "xyz")
    with pytest.raises(PoseshapeError, match="convention"):
        rot.matrix_to_euler_angles(torch.eye(3), "XXY")
    with pytest.raises(PoseshapeError, match="method"):
        rot.geodesic_distance(torch.eye(3), torch.eye(3), method="acos")


# ------------------------------------------------------------ audit additions (issue 2)
def _angle_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a - b).abs()
    return torch.minimum(d, (2 * math.pi - d).abs())


@pytest.mark.parametrize("convention", rot.EULER_CONVENTIONS)
def test_euler_edge_rotations_match_scipy(convention):
    """Identity, tiny angles and half-turns (about x/y/z and random axes) for every order."""
    import warnings

    edge = _edge_rotations()
    mat = _t(edge.as_matrix())
    with warnings.catch_warnings():  # scipy warns at gimbal lock (half-turns about an axis)
        warnings.simplefilter("ignore")
        ref = _t(edge.as_euler(convention))
    ang = rot.matrix_to_euler_angles(mat, convention)
    assert torch.isfinite(ang).all()
    # every returned triple reproduces the rotation (~sqrt(eps) at the lock threshold)
    torch.testing.assert_close(rot.euler_angles_to_matrix(ang, convention), mat, atol=1e-7, rtol=0)
    # scipy's angles give the same rotation through our forward map (scipy also drops
    # ~sqrt(eps) at its own lock threshold) ...
    torch.testing.assert_close(rot.euler_angles_to_matrix(ref, convention), mat, atol=1e-7, rtol=0)
    # ... and the angles themselves agree (both set the third angle to 0 at gimbal lock)
    assert _angle_diff(ang, ref).max() < 1e-7
    # the identity gives all-zero angles
    assert torch.equal(rot.matrix_to_euler_angles(torch.eye(3, dtype=F64), convention), torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("convention", rot.EULER_CONVENTIONS)
def test_gradcheck_euler_every_order(convention):
    proper = convention[0] == convention[2]
    a = _t([[0.3, 0.5, 1.2], [2.0, 2.4, -2.9]] if proper else [[0.3, -0.5, 1.2], [2.0, 0.4, -2.9]])
    _gc(lambda x: rot.euler_angles_to_matrix(x, convention), a)
    _gc(lambda x: rot.matrix_to_euler_angles(x, convention), rot.euler_angles_to_matrix(a, convention))


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-9, 1e-4, 1.0, math.pi - 1e-4, math.pi - 1e-7, math.pi - 1e-9])
def test_log_exp_jacobian_is_identity_near_zero_and_pi(angle):
    """d log(exp(w)) / dw = I analytically, even where finite differences cannot resolve it
    (within 1e-7 of pi a 1e-6 step crosses the cut of the log)."""
    w = angle * _t([0.36, -0.48, 0.8])
    eye = torch.eye(3, dtype=F64)
    J = torch.autograd.functional.jacobian(lambda x: rot.so3_log(rot.so3_exp(x)), w)
    torch.testing.assert_close(J, eye, atol=1e-12, rtol=0)
    Jq = torch.autograd.functional.jacobian(lambda x: rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(x)), w)
    torch.testing.assert_close(Jq, eye, atol=1e-12, rtol=0)
    Jm = torch.autograd.functional.jacobian(lambda x: rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(x)), w)
    torch.testing.assert_close(Jm, eye, atol=1e-12, rtol=0)


@pytest.mark.parametrize("angle", [math.pi - 1e-5, math.pi, 2 * math.pi - 1e-3])
def test_gradcheck_near_pi_and_beyond(angle):
    axis = _t([0.36, -0.48, 0.8])
    _gc(rot.so3_exp, angle * axis)
    _gc(rot.axis_angle_to_quaternion, angle * axis)
    if angle < math.pi:
        _gc(rot.so3_log, rot.so3_exp(angle * axis))
        _gc(rot.matrix_to_axis_angle, rot.so3_exp(angle * axis))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_rotation_6d_degenerate_input_gives_a_rotation_and_finite_gradients(dtype):
    v = torch.tensor([0.3, -1.2, 0.5], dtype=dtype)
    cases = torch.stack(
        [
            torch.zeros(6, dtype=dtype),  # both columns zero
            torch.cat([torch.zeros(3, dtype=dtype), v]),  # a1 = 0
            torch.cat([v, torch.zeros(3, dtype=dtype)]),  # a2 = 0
            torch.cat([v, -2.0 * v]),  # a2 parallel to a1
            torch.cat([torch.tensor([1.0, 0, 0], dtype=dtype), torch.tensor([5.0, 0, 0], dtype=dtype)]),
        ]
    ).requires_grad_(True)
    R = rot.rotation_6d_to_matrix(cases)
    eye = torch.eye(3, dtype=dtype).expand(len(cases), 3, 3)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(R.detach().transpose(-1, -2) @ R.detach(), eye, atol=tol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R.detach()), torch.ones(len(cases), dtype=dtype), atol=tol, rtol=0)
    # where a1 is kept, b1 is its direction
    torch.testing.assert_close(R.detach()[2, :, 0], v / v.norm())
    (R * torch.randn_like(R)).sum().backward()
    assert torch.isfinite(cases.grad).all(), cases.grad
    # nearly parallel columns (1e-3 rad apart) are still Gram-Schmidt, not the fallback
    w = torch.cross(v, torch.tensor([0.0, 0.0, 1.0], dtype=dtype), dim=0)
    near = torch.cat([v, v + 1e-3 * v.norm() * w / w.norm()])
    b2 = rot.rotation_6d_to_matrix(near)[:, 1]
    torch.testing.assert_close(b2, w / w.norm(), atol=1e-3 if dtype == torch.float32 else 1e-9, rtol=0)


def test_gradcheck_bounded_axis_angle_and_6d_wide_range():
    v = torch.randn(6, 3, dtype=F64) * _t([1e-3, 0.05, 0.5, 1.0, 3.0, 8.0])[:, None]
    _gc(rot.bounded_axis_angle, v)
    _gc(lambda x: rot.so3_exp(rot.bounded_axis_angle(x)), v)
    r = rot.so3_exp(_t([[0.0, 0.0, 0.0], [math.pi, 0.0, 0.0], [0.0, 1e-9, 0.0]]))
    _gc(rot.matrix_to_rotation_6d, r)
    _gc(rot.rotation_6d_to_matrix, rot.matrix_to_rotation_6d(r))


def test_bounded_axis_angle_matches_scipy_rotation():
    """Paper 000's tanh-bounded twist, as a rotation, against scipy's from_rotvec."""
    v = torch.randn(100, 3, dtype=F64) * 2
    w = rot.bounded_axis_angle(v)
    n = v.norm(dim=-1, keepdim=True).numpy()
    ref = Rotation.from_rotvec(math.pi * np.tanh(n) * v.numpy() / n).as_matrix()
    torch.testing.assert_close(rot.axis_angle_to_matrix(w), _t(ref), atol=1e-12, rtol=0)
