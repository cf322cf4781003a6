"""Tests for poseshape.render.voxel_march: the compiled ray kernel against the grid_sample
reference (values and gradients in float64), gradcheck through the projections and the ray
loss, the POSESHAPE_NO_CPP switch, fallbacks and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from poseshape.core.errors import ShapeError
from poseshape.geometry.camera import intrinsics, viewpoint_to_pose
from poseshape.losses.consistency import ray_consistency_loss
from poseshape.render import voxel_march
from poseshape.render.voxel import project_voxels
from poseshape.render.voxel_march import march, reduce_samples, sample_rays

needs_kernel = pytest.mark.skipif(not voxel_march.cpp_available(), reason="C++ voxel kernel not built")


def _rays(B=3, P=40, N=17, seed=0, dtype=torch.float64):
    """Rays from points around the unit cube through it, some missing it, some clipped by cmin."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(B, P, 3, generator=g, dtype=dtype)
    o = 1.5 * o / o.norm(dim=-1, keepdim=True)
    target = 0.6 * (torch.rand(B, P, 3, generator=g, dtype=dtype) - 0.5)
    step = 3.0 * (target - o)
    step[:, :3] = torch.tensor([0.0, 0.0, 1.0], dtype=dtype)  # axis-parallel rays (sa == 0)
    o[:, :3] = torch.tensor([[0.1, -0.2, -1.5], [0.9, 0.0, -1.5], [0.0, 0.3, -1.5]], dtype=dtype)  # 2nd misses
    coeffs = torch.linspace(0.0, 1.0, N, dtype=dtype)
    cmin = torch.where(torch.rand(B, P, generator=g) < 0.3, 0.4, -math.inf).to(dtype)
    return o, step, coeffs, cmin


def _vox(Bv=3, D=5, H=6, W=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed + 1)
    return torch.rand(Bv, 1, D, H, W, generator=g, dtype=dtype)


def _both(voxels, base, step, coeffs, cmin, reduce, monkeypatch):
    """(kernel value, kernel grads), (reference value, reference grads) for a random upstream."""
    out = []
    for env in ("0", "1"):
        monkeypatch.setenv("POSESHAPE_NO_CPP", env)
        v, b, s = (x.clone().requires_grad_(True) for x in (voxels, base, step))
        y = march(v, b, s, coeffs, cmin, reduce)
        w = torch.linspace(-1.0, 2.0, y.numel(), dtype=y.dtype).reshape(y.shape)
        (y * w).sum().backward()
        out.append((y.detach(), v.grad, b.grad, s.grad))
    return out


@needs_kernel
@pytest.mark.parametrize("reduce", ["max", "pen"])
@pytest.mark.parametrize("shared", [False, True])
def test_kernel_matches_reference_values_and_gradients(reduce, shared, monkeypatch):
    base, step, coeffs, cmin = _rays()
    vox = _vox(Bv=1 if shared else 3)
    (yk, *gk), (yr, *gr) = _both(vox, base, step, coeffs, cmin, reduce, monkeypatch)
    torch.testing.assert_close(yk, yr, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(("voxels", "base", "step"), gk, gr, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"d/d {name}")


@needs_kernel
def test_kernel_float32_matches_reference(monkeypatch):
    base, step, coeffs, cmin = _rays(dtype=torch.float32)
    vox = _vox(dtype=torch.float32)
    for reduce in ("max", "pen"):
        (yk, *gk), (yr, *gr) = _both(vox, base, step, coeffs, cmin, reduce, monkeypatch)
        torch.testing.assert_close(yk, yr, rtol=1e-5, atol=1e-6)
        for a, b in zip(gk, gr, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("reduce", ["max", "pen"])
def test_by_image_and_buffer_paths_agree(reduce, monkeypatch):
    """B >= threads uses one task per image; B = 1 per-thread buffers: same gradients."""
    torch.set_num_threads(2)
    base, step, coeffs, cmin = _rays(B=4, P=30)
    vox = _vox(Bv=4)
    monkeypatch.setenv("POSESHAPE_NO_CPP", "0")
    v = vox.clone().requires_grad_(True)
    march(v, base, step, coeffs, cmin, reduce).sum().backward()
    for b in range(4):
        vb = vox[b : b + 1].clone().requires_grad_(True)
        march(vb, base[b : b + 1], step[b : b + 1], coeffs, cmin[b : b + 1], reduce).sum().backward()
        torch.testing.assert_close(v.grad[b : b + 1], vb.grad, rtol=1e-12, atol=1e-12)


@needs_kernel
def test_binary_grid_max_ties_split_like_amax(monkeypatch):
    """On a binary grid many samples tie at 1 (or at 0): the gradient is split as torch.amax does."""
    base, step, coeffs, cmin = _rays(P=25)
    vox = (_vox() > 0.5).double()
    (yk, gvk, gbk, gsk), (yr, gvr, gbr, gsr) = _both(vox, base, step, coeffs, cmin, "max", monkeypatch)
    torch.testing.assert_close(yk, yr)
    torch.testing.assert_close(gvk, gvr, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gbk, gbr, rtol=1e-10, atol=1e-12)


@needs_kernel
def test_missing_and_fully_masked_rays(monkeypatch):
    """A ray that misses the grid gives max 0 / pen 1; cmin past the last sample hides the grid."""
    monkeypatch.setenv("POSESHAPE_NO_CPP", "0")
    dt = torch.float64
    base = torch.tensor([[[2.0, 2.0, -1.5], [0.0, 0.0, -1.5]]], dtype=dt)
    step = torch.tensor([[[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]]], dtype=dt)
    coeffs = torch.linspace(0, 1, 33, dtype=dt)
    vox = torch.ones(1, 1, 4, 4, 4, dtype=dt, requires_grad=True)
    cmin = torch.tensor([[-math.inf, 2.0]], dtype=dt)  # second ray: every sample invalid
    mx = march(vox, base, step, coeffs, cmin, "max")
    pen = march(vox, base, step, coeffs, cmin, "pen")
    assert mx.tolist() == [[0.0, 0.0]] and pen.tolist() == [[1.0, 1.0]]
    (mx.sum() + pen.sum()).backward()
    assert vox.grad.abs().sum() == 0
    open_ray = march(vox, base, step, coeffs, None, "max")
    assert open_ray[0, 1] == 1.0  # the same ray without cmin goes through the full grid


@needs_kernel
def test_cmin_masks_near_samples_only(monkeypatch):
    """Samples at or before cmin read 0: the ray sees only the grid's far half."""
    monkeypatch.setenv("POSESHAPE_NO_CPP", "0")
    dt = torch.float64
    vox = torch.zeros(1, 1, 8, 8, 8, dtype=dt)
    vox[0, 0, :4] = 1.0  # near half in z (d < 4 <=> z < 0)
    base = torch.tensor([[[0.0, 0.0, -1.0]]], dtype=dt)
    step = torch.tensor([[[0.0, 0.0, 2.0]]], dtype=dt)
    coeffs = torch.linspace(0, 1, 41, dtype=dt)
    assert march(vox, base, step, coeffs, None, "max").item() == 1.0
    assert march(vox, base, step, coeffs, torch.tensor([[0.6]], dtype=dt), "max").item() == 0.0


@needs_kernel
def test_no_sample_tensor_in_kernel_matches_reduce_samples(monkeypatch):
    """reduce_samples(sample_rays(...)) is the reference definition of march."""
    monkeypatch.setenv("POSESHAPE_NO_CPP", "0")
    base, step, coeffs, cmin = _rays()
    vox = _vox()
    for reduce in ("max", "pen"):
        ref = reduce_samples(sample_rays(vox, base, step, coeffs, cmin), reduce)
        torch.testing.assert_close(march(vox, base, step, coeffs, cmin, reduce), ref, rtol=1e-12, atol=1e-12)


def _scene(B=2, G=5, S=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    vox = (0.2 + 0.6 * torch.rand(B, 1, G, G, G, generator=g, dtype=dtype)).requires_grad_(True)
    R, t = viewpoint_to_pose(torch.tensor([0.4, 2.0]), torch.tensor([0.3, -0.2]), torch.zeros(B), torch.full((B,), 2.0))
    R = R.to(dtype).requires_grad_(True)
    t = t.to(dtype).requires_grad_(True)
    K = intrinsics(1.2 * S, S / 2, S / 2).to(dtype)
    return vox, R, t, K


@needs_kernel
@pytest.mark.parametrize("mode", ["max", "absorption"])
@pytest.mark.parametrize("camera", ["pinhole", "weak"])
def test_gradcheck_project_voxels_through_kernel(mode, camera, monkeypatch):
    monkeypatch.setenv("POSESHAPE_NO_CPP", "0")
    vox, R, t, K = _scene()
    if camera == "pinhole":
        fn = lambda v, R_, t_: project_voxels(v, R_, t_, K, image_size=6, mode=mode, n_samples=7)  # noqa: E731
    else:
        fn = lambda v, R_, t_: project_voxels(v, R_, t_, scale=5.0, image_size=6, mode=mode, n_samples=7)  # noqa: E731
    if mode == "max":  # max is piecewise: check the smooth part (voxels) only, pose held fixed
        assert torch.autograd.gradcheck(lambda v: fn(v, R.detach(), t.detach()), (vox,), eps=1e-6, atol=1e-5)
    else:
        assert torch.autograd.gradcheck(fn, (vox, R, t), eps=1e-6, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("sampling", ["paper", "sphere"])
def test_gradcheck_ray_consistency_loss_through_kernel(sampling, monkeypatch):
    monkeypatch.setenv("POSESHAPE_NO_CPP", "0")
    vox, R, t, K = _scene()
    mask = (torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(5)) > 0.5).double()
    fn = lambda v, R_, t_: ray_consistency_loss(v, R_, t_, K, mask, n_samples=9, sampling=sampling)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (vox, R, t), eps=1e-6, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("what", ["max", "absorption", "ray"])
def test_public_functions_equal_with_and_without_kernel(what, monkeypatch):
    vox, R, t, K = _scene(B=2, G=8, S=12, dtype=torch.float32)
    mask = (torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    res = []
    for env in ("0", "1"):
        monkeypatch.setenv("POSESHAPE_NO_CPP", env)
        v, R_, t_ = (x.detach().clone().requires_grad_(True) for x in (vox, R, t))
        if what == "ray":
            y = ray_consistency_loss(v, R_, t_, K, mask, reduction="none")
        else:
            y = project_voxels(v, R_, t_, K, image_size=12, mode=what)
        y.square().sum().backward()
        res.append((y.detach(), v.grad, R_.grad, t_.grad))
    for a, b in zip(*res, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)


def test_other_dtypes_and_switch_use_the_reference(monkeypatch):
    base, step, coeffs, cmin = _rays(dtype=torch.float32)
    vox16 = _vox(dtype=torch.float32).to(torch.bfloat16)
    assert not voxel_march.use_kernel(vox16)
    y = march(vox16, base.to(torch.bfloat16), step.to(torch.bfloat16), coeffs.to(torch.bfloat16), None, "max")
    assert y.dtype == torch.bfloat16 and y.shape == (3, 40)
    monkeypatch.setenv("POSESHAPE_NO_CPP", "1")
    assert not voxel_march.cpp_available() and not voxel_march.use_kernel(_vox(dtype=torch.float32))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(reduce="mean"), "reduce"),
        (dict(base=torch.zeros(3, 40, 2)), "base, step"),
        (dict(voxels=torch.zeros(2, 1, 4, 4, 4)), "voxels"),
        (dict(voxels=torch.zeros(3, 4, 4, 4)), "voxels"),
        (dict(coeffs=torch.zeros(0)), "coeffs"),
    ],
)
def test_bad_shapes_raise(kw, match):
    base, step, coeffs, _ = _rays(dtype=torch.float32)
    args = dict(voxels=_vox(dtype=torch.float32), base=base, step=step, coeffs=coeffs, reduce="pen")
    args.update(kw)
    with pytest.raises(ShapeError, match=match):
        march(**args)


def test_memory_bound_of_reference_chunks(monkeypatch):
    """The reference path splits rays so that at most max_points samples exist at once."""
    monkeypatch.setenv("POSESHAPE_NO_CPP", "1")
    base, step, coeffs, cmin = _rays(B=1, P=40, N=17)
    vox = _vox(Bv=1)
    full = march(vox, base, step, coeffs, cmin, "pen")
    small = march(vox, base, step, coeffs, cmin, "pen", max_points=17 * 3)
    torch.testing.assert_close(full, small, rtol=1e-14, atol=1e-14)
