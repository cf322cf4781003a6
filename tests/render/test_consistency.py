"""Consistency across representations and camera models (issue 3), plus bad-input edge cases
that cut across the renderers (0 x 0 images, zero-area faces, empty shapes, NaN gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from poseshape.core.errors import ShapeError
from poseshape.geometry.rotations import axis_angle_to_matrix
from poseshape.losses.consistency import ray_consistency_loss, self_consistency_loss
from poseshape.render import (
    max_projection,
    pose_voxels,
    project_voxels,
    rasterize,
    render_silhouette,
)

D64 = torch.float64


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a > 0.5, b > 0.5
    return (a & b).flatten(1).sum(1) / (a | b).flatten(1).sum(1)


def _ellipsoid():
    import trimesh

    m = trimesh.creation.icosphere(3, radius=0.5)
    verts = torch.tensor(m.vertices, dtype=D64) * torch.tensor([1.0, 0.6, 0.8], dtype=D64)
    return verts, torch.tensor(m.faces)


# ----------------------------------------------------------------------------------------
# voxelize(mesh, 64) projected vs the hard raster of the mesh
# ----------------------------------------------------------------------------------------
_VIEWS_R = [[0.35, 0.8, 0.1], [-0.3, 2.5, 0.0], [1.2, 0.0, 0.3]]
_VIEWS_T = [[0.0, 0.05, 2.6], [0.05, 0.0, 2.4], [0.0, 0.0, 2.5]]


def _voxel_vs_hard(mesh, vox, H=64):
    """IoUs ``(3,)`` of voxel max projections vs hard rasters at ``H^2``: pinhole and weak."""
    R = axis_angle_to_matrix(torch.tensor(_VIEWS_R))
    # pinhole: ray-sampled max projection of the aligned grid
    K = torch.tensor([[2.0 * H, 0, H / 2], [0, 2.0 * H, H / 2], [0, 0, 1.0]])
    t = torch.tensor(_VIEWS_T)
    hard = rasterize(mesh.verts, mesh.faces, R, t, K, H).mask
    proj = project_voxels(vox, R, t, K, image_size=H, mode="max", n_samples=128)
    # weak perspective: paper 000's posed grid + max along depth at the image resolution
    posed = pose_voxels(vox, R, out_size=H, extent=1.5)  # cube of side 1.5 -> H pixels
    tw = torch.tensor([[H / 2, H / 2, 0.0]]).expand(3, 3)
    weak = rasterize(mesh.verts, mesh.faces, R, tw, None, H, scale=H / 1.5).mask
    assert hard.mean() > 0.02 and weak.mean() > 0.02
    recall = ((proj > 0.5) & (hard > 0.5)).flatten(1).sum(1) / (hard > 0.5).flatten(1).sum(1)
    return _iou(proj, hard), _iou(max_projection(posed), weak), recall


@pytest.mark.parametrize("cat", ["car", "sofa", "bus", "bottle", "tvmonitor"])
def test_voxelised_mesh_max_projection_matches_hard_raster(shared_data, cat):
    """Max projection of ``voxelize(mesh, 64)`` vs the mesh's hard raster at 64^2: IoU >= 0.9.

    ``voxelize``'s default adds every voxel the surface passes through (a conservative shell,
    on average half a voxel outside the surface); the interior-only grid
    (``surface=False``, ray-parity votes at voxel centres) samples occupancy at centres just
    as the raster samples pixel centres, so it is the like-for-like comparison and must reach
    0.9 in every view. The default grid must cover the mesh's silhouette (recall >= 0.97) and,
    for these solid categories, stay within IoU 0.85. Thin categories lose more: with the
    shell, aeroplane/bicycle/chair/diningtable reach only 0.5-0.8 in some views (the shell
    doubles a wing's thickness); interior-only, non-watertight sheets lose votes.
    """
    from poseshape.shapes.meshes import load_mesh
    from poseshape.shapes.voxels import voxelize

    mesh = load_mesh(shared_data / f"pascal3d_cad/CAD/{cat}/01.off", source="pascal3d", normalize=True)
    inner = voxelize(mesh, 64, surface=False).float()[None, None]
    iou_p, iou_w, _ = _voxel_vs_hard(mesh, inner)
    assert (iou_p >= 0.9).all() and (iou_w >= 0.9).all(), (iou_p, iou_w)
    shell = voxelize(mesh, 64).float()[None, None]
    iou_p, iou_w, recall = _voxel_vs_hard(mesh, shell)
    assert (recall >= 0.97).all(), recall
    assert (iou_p >= 0.85).all() and (iou_w >= 0.85).all(), (iou_p, iou_w)


# ----------------------------------------------------------------------------------------
# pose vs transformed shape, weak perspective vs far pinhole (hard raster and voxels; the
# soft rasteriser has its own in test_mesh_soft.py)
# ----------------------------------------------------------------------------------------
def test_hard_raster_pose_equals_transformed_mesh():
    verts, faces = _ellipsoid()
    R = axis_angle_to_matrix(torch.tensor([[0.4, -0.7, 0.2], [2.0, 0.1, -0.5]], dtype=D64))
    t = torch.tensor([[0.1, -0.05, 2.4], [-0.1, 0.0, 3.0]], dtype=D64)
    K = torch.tensor([[60.0, 0, 16.0], [0, 60.0, 16.0], [0, 0, 1]], dtype=D64)
    a = rasterize(verts, faces, R, t, K, 32)
    moved = torch.einsum("bij,vj->bvi", R, verts) + t[:, None]
    eye, zero = torch.eye(3, dtype=D64).expand(2, 3, 3), torch.zeros(2, 3, dtype=D64)
    b = rasterize(moved, faces, eye, zero, K, 32)
    assert a.mask.sum() > 300
    assert (a.face_idx == b.face_idx).float().mean() > 0.995  # only exact-tie pixels may differ
    hit = (a.face_idx >= 0) & (b.face_idx >= 0)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.depth[hit], b.depth[hit], atol=1e-9, rtol=0)


def test_hard_raster_weak_perspective_is_far_pinhole_limit():
    verts, faces = _ellipsoid()
    R = axis_angle_to_matrix(torch.tensor([[0.3, 0.5, 0.0]], dtype=D64))
    s, S = 30.0, 40
    diffs = []
    for dist in (50.0, 5000.0):
        f = s * dist
        K = torch.tensor([[f, 0, 20.0], [0, f, 18.0], [0, 0, 1]], dtype=D64)
        pin = rasterize(verts, faces, R, torch.tensor([[0, 0, dist]], dtype=D64), K, S).mask
        weak = rasterize(verts, faces, R, torch.tensor([[20.0, 18.0, dist]], dtype=D64), None, S, scale=s).mask
        diffs.append(int((pin != weak).sum()))
    assert weak.sum() > 400
    assert diffs[1] <= 2 and diffs[1] < diffs[0]


def test_voxel_pose_equals_transformed_grid():
    """Rendering a grid under ``R @ Ry(90)`` equals rendering the grid rotated by 90 deg under ``R``."""
    g = torch.Generator().manual_seed(8)
    vox = torch.rand(1, 1, 6, 6, 6, generator=g, dtype=D64)
    Ry = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=D64)
    moved = pose_voxels(vox, Ry)  # exact: a 90-degree turn permutes voxel centres
    R = axis_angle_to_matrix(torch.tensor([[0.3, -0.2, 0.5]], dtype=D64))
    t = torch.tensor([[0.05, 0.0, 2.2]], dtype=D64)
    K = torch.tensor([[14.0, 0, 8.0], [0, 14.0, 8.0], [0, 0, 1]], dtype=D64)
    for mode in ("max", "absorption"):
        a = project_voxels(vox, R @ Ry, t, K, image_size=16, mode=mode, n_samples=24)
        b = project_voxels(moved, R, t, K, image_size=16, mode=mode, n_samples=24)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
        assert a.max() > 0.5


# ----------------------------------------------------------------------------------------
# bad input that cuts across renderers
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, (0, 0), (0, 5), (5, 0)])
def test_zero_size_image_is_a_clear_error(size):
    verts, faces = _ellipsoid()
    R, t = torch.eye(3, dtype=D64)[None], torch.tensor([[0.0, 0.0, 2.0]], dtype=D64)
    K = torch.tensor([[20.0, 0, 4], [0, 20.0, 4], [0, 0, 1]], dtype=D64)
    vox = torch.rand(1, 1, 4, 4, 4, dtype=D64)
    for call in (
        lambda: render_silhouette(verts, faces, R, t, K, image_size=size),
        lambda: render_silhouette(verts, faces, R, t, K, image_size=size, mode="edge"),
        lambda: rasterize(verts, faces, R, t, K, size),
        lambda: project_voxels(vox, R, t, K, image_size=size),
    ):
        with pytest.raises(ShapeError, match="image_size"):
            call()
    hw = (size, size) if isinstance(size, int) else size
    with pytest.raises(ShapeError, match="mask"):
        ray_consistency_loss(vox, R, t, K, torch.ones(1, 1, *hw, dtype=D64))


def test_hard_raster_zero_area_and_empty_meshes():
    K = torch.tensor([[9.0, 0, 3.0], [0, 9.0, 3.0], [0, 0, 1]], dtype=D64)
    R, t = torch.eye(3, dtype=D64)[None], torch.tensor([[0.0, 0.0, 2.0]], dtype=D64)
    verts = torch.tensor([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.0, 0.5, 0], [0.5, 0.5, 0]], dtype=D64)
    # repeated vertex, collinear corners, a point: none covers any pixel
    deg = torch.tensor([[0, 0, 1], [0, 1, 1], [2, 2, 2], [0, 3, 0]])
    col = torch.tensor([[-0.5, -0.5, 0], [0.0, 0.0, 0], [0.5, 0.5, 0]], dtype=D64)
    for v, f in ((verts, deg), (col, torch.tensor([[0, 1, 2]]))):
        out = rasterize(v, f, R, t, K, 6)
        assert (out.face_idx == -1).all() and out.mask.sum() == 0 and torch.isfinite(out.bary).all()
    # mixing degenerate and real faces leaves the real ones intact
    out = rasterize(verts, torch.cat([deg, torch.tensor([[0, 1, 2]])]), R, t, K, 6)
    assert set(out.face_idx.unique().tolist()) == {-1, 4}
    # no vertices at all
    empty = rasterize(torch.zeros(0, 3, dtype=D64), torch.zeros(0, 3, dtype=torch.long), R, t, K, 6)
    assert empty.mask.sum() == 0 and empty.face_idx.shape == (1, 6, 6)
    with pytest.raises(ShapeError, match="verts"):
        rasterize(verts.clone().fill_(float("nan")), deg, R, t, K, 6)


@pytest.mark.parametrize("mode", ["softras", "edge"])
def test_soft_no_vertices_and_mesh_crossing_near_plane(mode):
    K = torch.tensor([[9.0, 0, 3.0], [0, 9.0, 3.0], [0, 0, 1]], dtype=D64)
    R, t = torch.eye(3, dtype=D64)[None], torch.tensor([[0.0, 0.0, 2.0]], dtype=D64)
    v0 = torch.zeros(0, 3, dtype=D64, requires_grad=True)
    out = render_silhouette(v0, torch.zeros(0, 3, dtype=torch.long), R, t, K, image_size=6, mode=mode)
    assert out.shape == (1, 1, 6, 6) and out.sum() == 0
    # a mesh around the camera centre: faces crossing z = znear are dropped, the rest render,
    # and no gradient is NaN
    verts, faces = _ellipsoid()
    v = verts.clone().requires_grad_(True)
    tt = torch.tensor([[0.0, 0.0, 0.1]], dtype=D64, requires_grad=True)
    aa = torch.tensor([0.1, 0.2, 0.0], dtype=D64, requires_grad=True)
    out = render_silhouette(v, faces, axis_angle_to_matrix(aa)[None], tt, K, image_size=6, mode=mode)
    assert torch.isfinite(out).all() and out.max() > 0
    grads = torch.autograd.grad(out.sum(), (v, tt, aa))
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("mode", ["max", "absorption"])
def test_voxel_empty_full_and_binary_grids_give_finite_gradients(mode):
    K = torch.tensor([[6.0, 0, 3.0], [0, 6.0, 3.0], [0, 0, 1]], dtype=D64)
    aa = torch.tensor([0.2, -0.1, 0.3], dtype=D64, requires_grad=True)
    t = torch.tensor([[0.0, 0.0, 2.0]], dtype=D64, requires_grad=True)
    mask = torch.zeros(1, 1, 6, 6, dtype=D64)
    mask[..., 2:4, 2:4] = 1
    binary = torch.zeros(1, 1, 4, 4, 4, dtype=D64)
    binary[..., 1:3, 1:3, 1:3] = 1
    for grid in (torch.zeros(1, 1, 4, 4, 4, dtype=D64), torch.ones(1, 1, 4, 4, 4, dtype=D64), binary):
        vox = grid.clone().requires_grad_(True)
        R = axis_angle_to_matrix(aa)[None]
        img = project_voxels(vox, R, t, K, image_size=6, mode=mode, n_samples=16)
        if grid.sum() == 0:
            assert img.sum() == 0
        grads = torch.autograd.grad(img.sum(), (vox, aa, t))
        assert all(torch.isfinite(g).all() for g in grads), grid.sum()
        for loss_mask in (mask, torch.zeros_like(mask)):
            loss = self_consistency_loss(vox, axis_angle_to_matrix(aa)[None], t, K, loss_mask, n_samples=16)
            assert torch.isfinite(loss)
            grads = torch.autograd.grad(loss, (vox, aa, t))
            assert all(torch.isfinite(g).all() for g in grads)
    with pytest.raises(ShapeError, match="voxels"):
        project_voxels(torch.zeros(1, 1, 0, 0, 0, dtype=D64), R.detach(), t.detach(), K)
    with pytest.raises(ShapeError, match="voxels"):
        project_voxels(torch.zeros(0, 1, 4, 4, 4, dtype=D64), R.detach(), t.detach(), K)


def test_far_behind_and_huge_coordinates_do_not_overflow():
    """Poses that put the object behind the camera or millions of pixels off-screen: empty output."""
    verts, faces = _ellipsoid()
    K = torch.tensor([[20.0, 0, 4], [0, 20.0, 4], [0, 0, 1]], dtype=D64)
    R = torch.eye(3, dtype=D64)[None]
    for tz in ((0.0, 0.0, -5.0), (1e7, 0.0, 2.0), (0.0, -1e9, 2.0)):
        tt = torch.tensor([tz], dtype=D64, requires_grad=True)
        v = verts.clone().requires_grad_(True)
        out = render_silhouette(v, faces, R, tt, K, image_size=8)
        assert out.sum() == 0
        gv, gt = torch.autograd.grad(out.sum(), (v, tt))
        assert torch.isfinite(gv).all() and torch.isfinite(gt).all()
        assert rasterize(verts, faces, R, tt.detach(), K, 8).mask.sum() == 0
    assert math.isfinite(
        float(
            project_voxels(
                torch.rand(1, 1, 4, 4, 4, dtype=D64), R, torch.tensor([[0.0, 0.0, -5.0]], dtype=D64), K, image_size=8
            ).sum()
        )
    )
