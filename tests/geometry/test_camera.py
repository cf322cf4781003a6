"""Tests for poseshape.geometry.camera (pinhole, weak perspective, look-at, PASCAL3D+ viewpoint)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from poseshape.core.errors import ShapeError
from poseshape.geometry.camera import (
    Camera,
    backproject,
    intrinsics,
    intrinsics_from_fov,
    look_at,
    pixels_to_rays,
    pose_to_viewpoint,
    project_points,
    viewpoint_to_pose,
    weak_perspective_project,
)

S_NATIVE_TO_OURS = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])


def pascal3d_project(x3d_native, a, e, theta, d, f=1.0, viewport=1.0, principal=(0.0, 0.0)):
    """Literal numpy port of PASCAL3D+ ``project_3d.m`` (native Z-up frame, y-down image)."""
    C = np.array([d * math.cos(e) * math.sin(a), -d * math.cos(e) * math.cos(a), d * math.sin(e)])
    a, e = -a, -(math.pi / 2 - e)
    Rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, math.cos(e), -math.sin(e)], [0, math.sin(e), math.cos(e)]])
    R = Rx @ Rz
    P = np.diag([viewport * f, viewport * f, -1.0]) @ np.concatenate([R, -R @ C[:, None]], 1)
    x = P @ np.concatenate([x3d_native, np.ones((len(x3d_native), 1))], 1).T
    x = x[:2] / x[2]
    R2 = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    x = (R2 @ x).T
    x[:, 1] *= -1
    return x + np.asarray(principal)


def test_intrinsics_layout_and_broadcast():
    K = intrinsics(100.0, 32.0, 24.0)
    assert torch.equal(K, torch.tensor([[100.0, 0, 32], [0, 100, 24], [0, 0, 1]]))
    K2 = intrinsics(fx=torch.tensor([1.0, 2.0]), fy=3.0, cx=4.0, cy=5.0)
    assert K2.shape == (2, 3, 3) and K2[1, 0, 0] == 2 and K2[0, 1, 1] == 3
    with pytest.raises(ShapeError):
        intrinsics(float("nan"), 1.0, 1.0)
    with pytest.raises(ShapeError):
        intrinsics()


def test_intrinsics_from_fov_edges_project_to_image_border():
    fov = math.radians(60)
    K = intrinsics_from_fov(fov, (48, 64))
    assert torch.allclose(K[0, 2], torch.tensor(32.0)) and torch.allclose(K[1, 2], torch.tensor(24.0))
    # a point at the half-angle on the x axis lands on the right border u = W
    X = torch.tensor([[[math.tan(fov / 2), 0.0, 1.0]]])
    uv, _ = project_points(X, torch.eye(3)[None], torch.zeros(1, 3), K)
    assert torch.allclose(uv[0, 0], torch.tensor([64.0, 24.0]), atol=1e-4)
    Ky = intrinsics_from_fov(fov, (48, 64), fov_axis="y")
    assert torch.allclose(Ky[1, 1], torch.tensor(24 / math.tan(fov / 2)))
    with pytest.raises(ShapeError):
        intrinsics_from_fov(4.0, 64)


def test_project_points_matches_loop_and_shapes():
    g = torch.Generator().manual_seed(1)
    B, N = 3, 5
    X = torch.randn(B, N, 3, generator=g, dtype=torch.float64)
    R = torch.from_numpy(Rotation.random(B, random_state=2).as_matrix())
    t = torch.tensor([0.1, -0.2, 5.0], dtype=torch.float64).expand(B, 3)
    K = intrinsics(torch.tensor([50.0, 60.0, 70.0], dtype=torch.float64), 10.0, 20.0)
    uv, depth = project_points(X, R, t, K)
    assert uv.shape == (B, N, 2) and depth.shape == (B, N)
    for b in range(B):
        for n in range(N):
            xc = R[b] @ X[b, n] + t[b]
            p = K[b] @ xc
            assert torch.allclose(uv[b, n], p[:2] / p[2])
            assert torch.allclose(depth[b, n], xc[2])
    # shared K (3, 3)
    uv2, _ = project_points(X, R, t, K[0])
    assert torch.allclose(uv2[0], uv[0])


def test_project_points_errors():
    X = torch.zeros(1, 4, 3)
    with pytest.raises(ShapeError, match="R"):
        project_points(X, torch.eye(4)[None], torch.zeros(1, 3), torch.eye(3))
    with pytest.raises(ShapeError, match="X"):
        project_points(torch.zeros(1, 4, 2), torch.eye(3)[None], torch.zeros(1, 3), torch.eye(3))
    bad = X.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ShapeError, match="non-finite"):
        project_points(bad, torch.eye(3)[None], torch.zeros(1, 3), torch.eye(3))


def test_project_points_gradcheck():
    X = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    R = torch.from_numpy(Rotation.random(2, random_state=3).as_matrix()).requires_grad_(True)
    t = torch.tensor([[0.0, 0.0, 4.0], [0.1, 0.2, 5.0]], dtype=torch.float64, requires_grad=True)
    K = intrinsics(torch.tensor(30.0, dtype=torch.float64), 8.0, 8.0)
    assert torch.autograd.gradcheck(lambda X, R, t: project_points(X, R, t, K)[0], (X, R, t))


def test_weak_perspective():
    X = torch.randn(2, 4, 3)
    R = torch.from_numpy(Rotation.random(2, random_state=4).as_matrix()).float()
    s = torch.tensor([2.0, 3.0])
    t2 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    u = weak_perspective_project(X, R, s, t2)
    ref = s[:, None, None] * torch.einsum("bij,bnj->bni", R, X)[..., :2] + t2[:, None]
    assert torch.allclose(u, ref, atol=1e-6)
    assert torch.allclose(weak_perspective_project(X, R, s[:, None], t2), ref, atol=1e-6)


def test_rays_and_backprojection_invert_projection():
    g = torch.Generator().manual_seed(5)
    B, N = 2, 6
    X = torch.randn(B, N, 3, generator=g, dtype=torch.float64) * 0.3
    R = torch.from_numpy(Rotation.random(B, random_state=6).as_matrix())
    t = torch.tensor([[0.0, 0.0, 3.0], [0.2, -0.1, 4.0]], dtype=torch.float64)
    K = intrinsics(torch.tensor([80.0, 90.0], dtype=torch.float64), 32.0, 30.0)
    uv, depth = project_points(X, R, t, K)
    Xc = backproject(uv, depth, K)
    assert torch.allclose(Xc, torch.einsum("bij,bnj->bni", R, X) + t[:, None], atol=1e-9)
    o, d = pixels_to_rays(uv, K)
    assert torch.allclose(d.norm(dim=-1), torch.ones(B, N, dtype=torch.float64))
    assert torch.equal(o, torch.zeros_like(o))
    # object-frame rays pass through the original points
    o2, d2 = pixels_to_rays(uv, K, R, t)
    v = X - o2
    cross = torch.linalg.cross(v, d2)
    assert torch.allclose(cross, torch.zeros_like(cross), atol=1e-9)
    assert ((v * d2).sum(-1) > 0).all()
    assert torch.allclose(o2[:, 0], -(R.transpose(1, 2) @ t[..., None])[..., 0])


def test_look_at_conventions():
    R, t = look_at(torch.tensor([0.0, 0.0, 2.0]))
    assert torch.allclose(R, torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)
    assert torch.allclose(t, torch.tensor([0.0, 0.0, 2.0]))
    eye = torch.tensor([[1.0, 2.0, 3.0], [-2.0, 0.5, 1.0]])
    target = torch.tensor([[0.1, 0.0, 0.2], [0.0, 0.3, 0.0]])
    R, t = look_at(eye, target)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2), atol=1e-6)
    # the target is on the optical axis in front of the camera; up projects to image up
    tc = torch.einsum("bij,bj->bi", R, target) + t
    assert torch.allclose(tc[:, :2], torch.zeros(2, 2), atol=1e-6) and (tc[:, 2] > 0).all()
    up_cam = torch.einsum("bij,j->bi", R, torch.tensor([0.0, 1.0, 0.0]))
    assert (up_cam[:, 1] < 0).all() and torch.allclose(up_cam[:, 0], torch.zeros(2), atol=1e-6)
    # degenerate (looking straight down) is still a rotation
    R, _ = look_at(torch.tensor([0.0, 3.0, 0.0]))
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6) and torch.allclose(torch.det(R), torch.tensor(1.0))


def test_viewpoint_worked_example_front():
    """a=0, e=0, theta=0, d=2: camera on +Z looking at the front; front point nearer, at the centre."""
    R, t = viewpoint_to_pose(0.0, 0.0, 0.0, 2.0)
    assert torch.allclose(R, torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-7)
    assert torch.allclose(t, torch.tensor([0.0, 0.0, 2.0]))
    K = intrinsics(100.0, 32.0, 32.0)
    pts = torch.tensor([[[0.0, 0.0, 0.5], [0.0, 0.0, -0.5], [0.3, 0.0, 0.0], [0.0, 0.3, 0.0]]])
    uv, depth = project_points(pts, R[None], t[None], K)
    assert torch.allclose(uv[0, 0], torch.tensor([32.0, 32.0]))
    assert depth[0, 0] == pytest.approx(1.5) and depth[0, 1] == pytest.approx(2.5)
    assert uv[0, 2, 0] > 32  # +X on the image right
    assert uv[0, 3, 1] < 32  # +Y up in the image


def test_viewpoint_worked_example_azimuth_elevation_theta():
    K = intrinsics(100.0, 32.0, 32.0)
    front = torch.tensor([[[0.0, 0.0, 0.4]]])
    # a = 90 deg: camera on the object's +X side; the front (+Z) appears on the image left
    R, t = viewpoint_to_pose(math.pi / 2, 0.0, 0.0, 2.0)
    C = -(R.T @ t)
    assert torch.allclose(C, torch.tensor([2.0, 0.0, 0.0]), atol=1e-6)
    uv, _ = project_points(front, R[None], t[None], K)
    assert uv[0, 0, 0] < 32 - 10
    # e = 90 deg: camera above, looking down; the front is toward the image bottom
    R, t = viewpoint_to_pose(0.0, math.pi / 2, 0.0, 2.0)
    assert torch.allclose(-(R.T @ t), torch.tensor([0.0, 2.0, 0.0]), atol=1e-6)
    assert torch.allclose(R[2], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)
    uv, _ = project_points(front, R[None], t[None], K)
    assert uv[0, 0, 1] > 32 + 10 and abs(uv[0, 0, 0] - 32) < 1e-4
    # theta = +90 deg: +X points up in the image, +Y points left (counter-clockwise on screen)
    R, t = viewpoint_to_pose(0.0, 0.0, math.pi / 2, 2.0)
    uv, _ = project_points(torch.tensor([[[0.3, 0.0, 0.0], [0.0, 0.3, 0.0]]]), R[None], t[None], K)
    assert uv[0, 0, 1] < 32 - 10 and abs(uv[0, 0, 0] - 32) < 1e-4
    assert uv[0, 1, 0] < 32 - 10 and abs(uv[0, 1, 1] - 32) < 1e-4


def test_viewpoint_matches_pascal3d_matlab_code():
    """Our pose + OpenCV projection equals a literal port of PASCAL3D+'s project_3d.m."""
    rng = np.random.default_rng(0)
    X_native = rng.uniform(-0.5, 0.5, size=(7, 3))
    X_ours = X_native @ S_NATIVE_TO_OURS.T
    f, px, py = 300.0, 50.0, 40.0
    K = intrinsics(torch.tensor(f, dtype=torch.float64), px, py)
    for _ in range(10):
        a, e, th = rng.uniform(-math.pi, math.pi), rng.uniform(-1.4, 1.4), rng.uniform(-math.pi, math.pi)
        d = rng.uniform(3.0, 6.0)
        ref = pascal3d_project(X_native, a, e, th, d, f=f, principal=(px, py))
        R, t = viewpoint_to_pose(torch.tensor(a, dtype=torch.float64), e, th, d)
        uv, depth = project_points(torch.from_numpy(X_ours)[None], R[None], t[None], K)
        assert np.allclose(uv[0].numpy(), ref, atol=1e-8)
        assert (depth > 0).all()


def test_viewpoint_theta0_equals_look_at_and_is_rotation():
    a = torch.tensor([0.3, -2.0, 1.0])
    e = torch.tensor([0.2, -0.5, 1.2])
    d = torch.tensor([2.0, 3.0, 4.0])
    R, t = viewpoint_to_pose(a, e, torch.zeros(3), d)
    C = torch.stack([torch.cos(e) * torch.sin(a), torch.sin(e), torch.cos(e) * torch.cos(a)], -1) * d[:, None]
    R2, t2 = look_at(C)
    assert torch.allclose(R, R2, atol=1e-6) and torch.allclose(t, t2, atol=1e-5)
    R, _ = viewpoint_to_pose(a, e, torch.tensor([0.5, 1.0, -2.0]), d)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3), atol=1e-6)


def test_viewpoint_round_trip():
    g = torch.Generator().manual_seed(7)
    n = 200
    a = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    e = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 1.5
    th = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    d = torch.rand(n, generator=g, dtype=torch.float64) * 5 + 0.5
    a2, e2, th2, d2 = pose_to_viewpoint(*viewpoint_to_pose(a, e, th, d))

    def wrap(x):
        return torch.atan2(torch.sin(x), torch.cos(x))

    assert torch.allclose(wrap(a2 - a), torch.zeros(n, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(e2, e, atol=1e-9)
    assert torch.allclose(wrap(th2 - th), torch.zeros(n, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(d2, d, atol=1e-9)


def test_viewpoint_pole_gives_consistent_pose():
    R, t = viewpoint_to_pose(0.7, math.pi / 2, 0.0, 2.0)
    a, e, th, d = pose_to_viewpoint(R, t)
    R2, t2 = viewpoint_to_pose(a, e, th, d)
    assert torch.allclose(R, R2, atol=1e-6) and torch.allclose(t, t2, atol=1e-6)


def test_viewpoint_gradcheck():
    inp = tuple(
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in ([0.3, 1.0], [0.2, -0.4], [0.1, 2.0], [2.0, 3.0])
    )
    assert torch.autograd.gradcheck(lambda *x: viewpoint_to_pose(*x)[0], inp)
    R, t = viewpoint_to_pose(*[x.detach() for x in inp])
    assert torch.autograd.gradcheck(
        lambda R, t: torch.stack(pose_to_viewpoint(R, t)), (R.requires_grad_(), t.requires_grad_())
    )


def test_viewpoint_rejects_nan():
    with pytest.raises(ShapeError, match="azimuth"):
        viewpoint_to_pose(float("nan"), 0.0, 0.0, 1.0)
    with pytest.raises(ShapeError, match="R"):
        pose_to_viewpoint(torch.eye(2), torch.zeros(3))


# ============================================================================ Camera
def test_camera_pinhole_projection_matches_the_formula():
    K = torch.tensor([[[500.0, 0, 64.5], [0, 480.0, 60.25], [0, 0, 1]]], dtype=torch.float64)
    cam = Camera.pinhole(K, (120, 128))
    X = torch.tensor([[[0.1, -0.2, 2.0], [-0.3, 0.05, 3.5]]], dtype=torch.float64)
    uv = cam.project(X)
    want = torch.stack([500 * X[..., 0] / X[..., 2] + 64.5, 480 * X[..., 1] / X[..., 2] + 60.25], -1)
    torch.testing.assert_close(uv, want)
    # and it agrees with project_points under a pose
    R = torch.eye(3, dtype=torch.float64)[None]
    t = torch.tensor([[0.0, 0.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(cam.project_object(X, R, t), project_points(X, R, t, K)[0])


def test_camera_weak_perspective_ignores_depth_and_matches_weak_perspective_project():
    cam = Camera.weak_perspective(
        torch.tensor([90.0], dtype=torch.float64), torch.tensor([[130.0, 95.0]], dtype=torch.float64), (181, 243)
    )
    assert cam.kind == "weak_perspective" and float(cam.scale[0]) == 90.0
    X = torch.randn(1, 5, 3, dtype=torch.float64)
    R = torch.tensor(Rotation.from_rotvec([0.2, 0.7, -0.1]).as_matrix())[None]
    t = torch.tensor([[0.1, -0.05, 7.0]], dtype=torch.float64)
    uv = cam.project_object(X, R, t)
    t2 = 90.0 * t[:, :2] + torch.tensor([[130.0, 95.0]], dtype=torch.float64)
    torch.testing.assert_close(uv, weak_perspective_project(X, R, torch.tensor([90.0], dtype=torch.float64), t2))
    far = cam.project_object(X, R, t + torch.tensor([[0.0, 0.0, 100.0]], dtype=torch.float64))
    torch.testing.assert_close(uv, far)


@pytest.mark.parametrize("kind", ["pinhole", "weak_perspective"])
def test_camera_crop_and_uncrop_are_pixel_maps(kind):
    """A crop ``box = (x0, y0, side)`` resized to S: ``u_crop = (u - x0) S / side``; uncrop inverts it."""
    K = torch.tensor([[[300.0, 0, 70.0], [0, 300.0, 50.0], [0, 0, 1]]], dtype=torch.float64)
    cam = Camera(K, (100, 150), kind)
    X = torch.tensor([[[0.1, 0.2, 3.0], [-0.2, 0.1, 2.5], [0.0, -0.3, 4.0]]], dtype=torch.float64)
    box, S = (20, -10, 80), 32
    crop = cam.crop(box, S)
    assert crop.image_size == (S, S) and crop.kind == kind
    u = cam.project(X)
    want = (u - torch.tensor([20.0, -10.0], dtype=torch.float64)) * S / 80
    torch.testing.assert_close(crop.project(X), want)
    back = crop.uncrop(box, (100, 150))
    torch.testing.assert_close(back.K, cam.K)
    assert back.image_size == (100, 150)
    torch.testing.assert_close(crop.resize(64).project(X), want * 2)


def test_camera_records_round_trip_and_bad_input():
    from poseshape.core.errors import ShapeError

    cam = Camera.from_fov(math.radians(50), (48, 64), batch=3)
    assert len(cam) == 3 and cam[1].K.shape == (1, 3, 3)
    rec = cam.to_dict(2)
    assert rec["fov_x_deg"] == pytest.approx(50.0)
    back = Camera.from_dict(rec)
    torch.testing.assert_close(back.K[0], cam.K[2].double())
    assert back.image_size == (48, 64) and back.kind == "pinhole"
    for bad in (
        dict(K=torch.eye(3), image_size=(4, 4), kind="fisheye"),
        dict(K=torch.eye(2), image_size=4),
        dict(K=torch.full((3, 3), float("nan")), image_size=4),
        dict(K=-torch.eye(3), image_size=4),
        dict(K=torch.eye(3), image_size=(0, 4)),
    ):
        with pytest.raises(ShapeError, match="Camera"):
            Camera(**bad)
    with pytest.raises(ShapeError, match="camera record"):
        Camera.from_dict({"K": [[1, 0, 0]]})
    with pytest.raises(ShapeError, match="aspect"):
        cam.resize((48, 48))
