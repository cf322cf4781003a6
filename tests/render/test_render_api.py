"""The public entry points of ``poseshape.render`` (issue 3): names, signatures, camera slots."""

from __future__ import annotations

import inspect

import pytest
import torch

from poseshape import render
from poseshape.core.errors import ShapeError
from poseshape.geometry.rotations import axis_angle_to_matrix
from poseshape.losses import consistency

D64 = torch.float64

ENTRY_POINTS = ["render_silhouette", "rasterize", "pose_voxels", "project_voxels", "ray_terms"]


def test_public_entry_points_import_from_package():
    from poseshape.render import (  # noqa: F401 - the import itself is the test
        BOUNDING_RADIUS,
        Fragments,
        HardRasterizer,
        SoftSilhouetteRenderer,
        VoxelPoser,
        VoxelProjector,
        max_projection,
        pose_voxels,
        project_voxels,
        rasterize,
        rasterize_dense,
        render_silhouette,
        render_silhouette_dense,
        sigma_ndc_to_px2,
    )

    assert set(ENTRY_POINTS) <= set(render.__all__)
    for name in render.__all__:
        assert hasattr(render, name), name
    for cls in (HardRasterizer, SoftSilhouetteRenderer, VoxelPoser, VoxelProjector, consistency.SelfConsistencyLoss):
        assert issubclass(cls, torch.nn.Module)
    assert render.__doc__ and "render_silhouette" in render.__doc__


@pytest.mark.parametrize("name", ENTRY_POINTS + ["max_projection"])
def test_public_functions_document_shapes(name):
    doc = inspect.getdoc(getattr(render, name))
    assert doc and "(B, " in doc and "Returns" in doc, name


@pytest.mark.parametrize("name", ["ray_consistency_loss", "self_consistency_loss", "projection_iou_loss"])
def test_consistency_losses_document_shapes(name):
    doc = inspect.getdoc(getattr(consistency, name))
    assert doc and "(B, " in doc and "Returns" in doc, name


def test_issue_signatures():
    """The argument order the issue names (outside checks call them positionally)."""
    params = {n: list(inspect.signature(getattr(render, n)).parameters) for n in ENTRY_POINTS}
    assert params["render_silhouette"][:5] == ["verts", "faces", "R", "t", "K"]
    assert {"image_size", "sigma", "mode"} <= set(params["render_silhouette"])
    assert params["rasterize"][:6] == ["verts", "faces", "R", "t", "K", "image_size"]
    assert params["pose_voxels"][:4] == ["voxels", "R", "t", "out_size"]
    assert params["project_voxels"][:4] == ["voxels", "R", "t", "K"]
    assert {"image_size", "mode"} <= set(params["project_voxels"])
    assert params["ray_terms"][:5] == ["voxels", "R", "t", "mask", "K"]
    assert list(inspect.signature(consistency.ray_consistency_loss).parameters)[:5] == ["voxels", "R", "t", "K", "mask"]
    assert inspect.signature(consistency.ray_consistency_loss).parameters["n_samples"].default == 64


def _scene():
    import trimesh

    m = trimesh.creation.icosphere(2, radius=0.5)
    verts = torch.tensor(m.vertices, dtype=D64) * torch.tensor([1.0, 0.7, 0.8], dtype=D64)
    faces = torch.tensor(m.faces)
    R = axis_angle_to_matrix(torch.tensor([[0.3, -0.4, 0.2], [0.1, 0.9, 0.0]], dtype=D64))
    t = torch.tensor([[12.0, 11.0, 2.0], [13.0, 12.0, 3.0]], dtype=D64)
    return verts, faces, R, t


def test_weak_perspective_scale_in_the_K_slot():
    """``K`` may be a number or a ``(B,)`` tensor: the weak-perspective scale (issue's signature)."""
    verts, faces, R, t = _scene()
    s = torch.tensor([18.0, 15.0], dtype=D64)
    for K in (18.0, s):
        want_s = 18.0 if isinstance(K, float) else s
        a = render.render_silhouette(verts, faces, R, t, K, image_size=24, sigma=1e-3)
        b = render.render_silhouette(verts, faces, R, t, scale=want_s, image_size=24, sigma=1e-3)
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        assert a.sum() > 50
        fa = render.rasterize(verts, faces, R, t, K, 24)
        fb = render.rasterize(verts, faces, R, t, None, 24, scale=want_s)
        assert torch.equal(fa.face_idx, fb.face_idx) and fa.mask.sum() > 50
    vox = torch.rand(2, 1, 5, 5, 5, dtype=D64)
    a = render.project_voxels(vox, R, t[:, :2], 18.0, image_size=24, n_samples=8)
    b = render.project_voxels(vox, R, t[:, :2], scale=18.0, image_size=24, n_samples=8)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    mask = (b > 0.5).to(D64)
    la = consistency.ray_consistency_loss(vox, R, t[:, :2], s, mask, n_samples=8)
    lb = consistency.ray_consistency_loss(vox, R, t[:, :2], mask=mask, scale=s, n_samples=8)
    torch.testing.assert_close(la, lb, atol=0, rtol=0)
    with pytest.raises(ShapeError, match="exactly one"):
        render.render_silhouette(verts, faces, R, t, 18.0, scale=18.0, image_size=24)
    with pytest.raises(ShapeError, match="exactly one"):
        render.project_voxels(vox, R, t[:, :2], 18.0, scale=18.0, image_size=24)


@pytest.mark.parametrize("camera", ["pinhole", "weak"])
def test_dense_hard_reference_equals_tiled(camera):
    verts, faces, R, t = _scene()
    kw = (
        {"K": torch.tensor([[40.0, 0, 12.5], [0, 42.0, 11.5], [0, 0, 1]], dtype=D64)}
        if camera == "pinhole"
        else {"K": None, "scale": 17.0}
    )
    if camera == "pinhole":
        t = torch.tensor([[0.1, 0.0, 2.0], [0.0, -0.1, 2.6]], dtype=D64)
    a = render.rasterize(verts, faces, R, t, image_size=(24, 26), chunk_size=777, **kw)
    b = render.rasterize_dense(verts, faces, R, t, image_size=(24, 26), **kw)
    assert a.mask.sum() > 100
    assert torch.equal(a.face_idx, b.face_idx) and torch.equal(a.mask, b.mask)
    hit = a.face_idx >= 0
    torch.testing.assert_close(a.depth[hit], b.depth[hit], atol=1e-12, rtol=0)
    assert torch.isinf(b.depth[~hit]).all()
    torch.testing.assert_close(a.bary, b.bary, atol=1e-12, rtol=0)
    empty = render.rasterize_dense(verts, faces[:0], R, t, image_size=5, **kw)
    assert (empty.face_idx == -1).all() and empty.mask.sum() == 0
