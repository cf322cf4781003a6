"""Tests of poseshape.viz: contours (vs scipy), overlays, multi-view renders, galleries, PNGs."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from poseshape.core.errors import ShapeError
from poseshape.shapes.meshes import Mesh
from poseshape.viz import (
    MASK_COLOR,
    SILHOUETTE_COLOR,
    as_rgb_uint8,
    mask_contour,
    overlay_silhouette,
    render_views,
    save_gallery,
    save_png,
)


def test_as_rgb_uint8_layouts():
    t = torch.rand(3, 5, 7)
    a = as_rgb_uint8(t)
    assert a.shape == (5, 7, 3) and a.dtype == np.uint8
    assert np.array_equal(a, (t.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    hwc = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(as_rgb_uint8(hwc), hwc)
    g = as_rgb_uint8(torch.full((1, 2, 3), 0.5))
    assert g.shape == (2, 3, 3) and (g == 128).all()
    assert as_rgb_uint8(np.zeros((2, 3))).shape == (2, 3, 3)
    with pytest.raises(ShapeError, match="image"):
        as_rgb_uint8(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ShapeError, match="non-finite"):
        as_rgb_uint8(torch.full((3, 2, 2), float("nan")))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_mask_contour_matches_scipy_erosion(k):
    rng = np.random.default_rng(k)
    m = ndimage.binary_dilation(rng.random((40, 33)) > 0.93, iterations=2)
    m[0, :] = True  # touches the border: border pixels count as contour
    cross = ndimage.generate_binary_structure(2, 1)
    want = m & ~ndimage.binary_erosion(m, cross, iterations=k, border_value=0)
    assert np.array_equal(mask_contour(m, k), want)


def test_overlay_silhouette_blend_and_contours():
    H, W = 30, 41
    img = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    # no silhouette, no mask: unchanged
    assert np.array_equal(overlay_silhouette(img, np.zeros((H, W))), img)
    sil = np.zeros((H, W), np.float32)
    sil[5:20, 10:30] = 1.0
    mask = np.zeros((1, H, W), np.float32)
    mask[0, 8:25, 12:35] = 1.0
    out = overlay_silhouette(img, sil, mask, alpha=0.5)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    inner = (12, 20)  # inside the silhouette, away from both contours
    want = np.floor(img[inner] * 0.5 + np.asarray(SILHOUETTE_COLOR) * 0.5 + 0.5)
    assert np.array_equal(out[inner], want.astype(np.uint8))
    assert np.array_equal(out[5, 15], SILHOUETTE_COLOR)  # silhouette contour
    assert np.array_equal(out[24, 33], MASK_COLOR)  # mask contour (drawn last)
    assert np.array_equal(out[28, 2], img[28, 2])  # outside both
    # a channels-first float image works the same
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    assert (
        np.abs(
            overlay_silhouette(t, torch.from_numpy(sil)[None]).astype(int) - overlay_silhouette(img, sil).astype(int)
        ).max()
        <= 1
    )
    with pytest.raises(ShapeError, match=r"silhouette: expected size \(30, 41\)"):
        overlay_silhouette(img, np.zeros((30, 40)))
    with pytest.raises(ShapeError, match="mask"):
        overlay_silhouette(img, sil, np.zeros((3, 3)))


def _box_mesh(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    c = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    v = lo + c * (hi - lo)
    f = [
        [0, 1, 3],
        [0, 3, 2],
        [4, 6, 7],
        [4, 7, 5],
        [0, 4, 5],
        [0, 5, 1],
        [2, 3, 7],
        [2, 7, 6],
        [0, 2, 6],
        [0, 6, 4],
        [1, 5, 7],
        [1, 7, 3],
    ]
    return v, np.asarray(f)


def _l_shape() -> Mesh:
    """A wide base (y in [-.5, -.2]) with a tall post on its +X end: upright and asymmetric."""
    v1, f1 = _box_mesh([-0.5, -0.5, -0.2], [0.5, -0.2, 0.2])
    v2, f2 = _box_mesh([0.3, -0.2, -0.1], [0.5, 0.5, 0.1])
    return Mesh(torch.tensor(np.vstack([v1, v2]), dtype=torch.float32), torch.tensor(np.vstack([f1, f2 + 8])))


def test_render_views_upright_and_handed():
    size = 64
    out = render_views(_l_shape(), n=1, size=size, elevation=0.0, azimuth0=0.0, labels=False)
    assert out.shape == (size, size, 3)
    fg = (out != 255).any(-1)
    rows = np.nonzero(fg.any(1))[0]
    top = fg[rows[0] : rows[0] + 5]
    bottom = fg[rows[-1] - 5 : rows[-1] + 1]
    # upright: the narrow post is at the top, the wide base at the bottom
    assert top.sum(1).mean() < 0.4 * bottom.sum(1).mean()
    # azimuth 0 looks at the front (+Z): object +X is on the image's right
    assert np.nonzero(top.any(0))[0].mean() > size / 2
    # seen from the back (azimuth 180) the post is on the left
    back = render_views(_l_shape(), n=1, size=size, elevation=0.0, azimuth0=math.pi, labels=False)
    fgb = (back != 255).any(-1)
    rb = np.nonzero(fgb.any(1))[0]
    assert np.nonzero(fgb[rb[0] : rb[0] + 5].any(0))[0].mean() < size / 2
    # from above and the side, the three visible box faces get three different shades
    obl = render_views(_l_shape(), n=1, size=size, labels=False)
    fgo = (obl != 255).any(-1)
    assert len(np.unique(obl[fgo].reshape(-1, 3), axis=0)) >= 3


def test_render_views_strip_and_empty_mesh():
    out = render_views(_l_shape(), n=4, size=80)
    assert out.shape == (80, 320, 3)
    for k in range(4):  # every tile shows the object, fitted inside the tile
        tile = (out[:, 80 * k : 80 * (k + 1)] < 200).any(-1)
        tile[:12] = False  # the label
        assert tile.sum() > 200 and not tile[-1].any() and not tile[:, 0].any()
    empty = render_views(Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)), n=2, size=32)
    assert empty.shape == (32, 64, 3) and (empty == 255).all()
    with pytest.raises(ShapeError):
        render_views(_l_shape(), n=0)


def test_save_gallery_layout(tmp_path):
    a = np.full((10, 20, 3), 10, np.uint8)
    b = np.full((20, 30, 3), 200, np.uint8)
    c = np.full((15, 15, 3), 90, np.uint8)
    p = save_gallery([[a, b], [c]], tmp_path / "g.png", pad=2)
    g = np.asarray(Image.open(p).convert("RGB"))
    # row 1: height 20 (a resized to 20 x 40), width 40 + 2 + 30; row 2: c at 15 x 15
    assert g.shape == (20 + 2 + 15, 72, 3)
    assert (g[:20, :40] == 10).all() and (g[:20, 42:72] == 200).all() and (g[:20, 40:42] == 255).all()
    assert (g[22:, :15] == 90).all() and (g[22:, 15:] == 255).all()
    g2 = np.asarray(Image.open(save_gallery([[a], [b]], tmp_path / "h.png", height=8)))
    assert g2.shape[0] == 8 + 4 + 8
    with pytest.raises(ShapeError, match="non-empty"):
        save_gallery([], tmp_path / "x.png")
    with pytest.raises(ShapeError, match="non-empty"):
        save_gallery([[a], []], tmp_path / "x.png")


def test_save_png_atomic(tmp_path, monkeypatch):
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    p = save_png(img, tmp_path / "sub" / "a.png")
    assert np.array_equal(np.asarray(Image.open(p)), img)
    assert os.listdir(tmp_path / "sub") == ["a.png"]

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        save_png(img, tmp_path / "sub" / "b.png")
    assert os.listdir(tmp_path / "sub") == ["a.png"]  # no partial file, no temp left


def test_render_views_first_panel_is_the_given_rotation():
    from scipy.spatial.transform import Rotation

    size = 64
    mesh = _l_shape()
    # the input saw the object upside down and from the back (a rotation no default panel has)
    # (identity: camera y down = object +Y, camera looks along object +Z, i.e. at its back), tilted
    R = torch.tensor(Rotation.from_euler("x", 10.0, degrees=True).as_matrix(), dtype=torch.float32)
    out = render_views(mesh, n=4, size=size, first=R, labels=False)
    assert out.shape == (size, 4 * size, 3)
    fg = (out[:, :size] != 255).any(-1)
    # reference: orthographic projection of the vertices through R (x right, y down)
    p = mesh.verts @ R.T
    rows = np.nonzero(fg.any(1))[0]
    cols = np.nonzero(fg.any(0))[0]
    w, h = float(p[:, 0].max() - p[:, 0].min()), float(p[:, 1].max() - p[:, 1].min())
    assert (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1) == pytest.approx(w / h, rel=0.1)
    # upside down: the post (object +Y) is at the bottom of the panel, on the side R puts +X
    bottom = fg[rows[-1] - 4 : rows[-1] + 1]
    top = fg[rows[0] : rows[0] + 5]
    assert bottom.sum(1).mean() < 0.4 * top.sum(1).mean()
    post_x = float((torch.tensor([0.4, 0.4, 0.0]) @ R.T)[0])
    assert (np.nonzero(bottom.any(0))[0].mean() > size / 2) == (post_x > 0)
    # the labelled strip names the input view
    assert not np.array_equal(
        render_views(mesh, n=2, size=64, first=R)[:, :64], render_views(mesh, n=2, size=64)[:, :64]
    )


def test_overlay_silhouettes_keeps_every_outline():
    """Two overlapping silhouettes: the second's fill does not hide the first's contour, and the
    single-silhouette overlay is the one-item case."""
    from poseshape.viz import MASK_COLOR, overlay_silhouette, overlay_silhouettes

    img = np.full((40, 40, 3), 100, np.uint8)
    a = np.zeros((40, 40), np.float32)
    a[5:25, 5:25] = 1
    b = np.zeros((40, 40), np.float32)
    b[10:35, 10:35] = 1
    m = np.zeros((40, 40), np.float32)
    m[2:38, 2:38] = 1
    out = overlay_silhouettes(img, [a, b], [None, m], [(255, 0, 0), (0, 0, 255)])
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    assert (out[5, 5:25] == (255, 0, 0)).all() and (out[20, 24] == (255, 0, 0)).all()  # a's edge inside b
    assert (out[34, 10:35] == (0, 0, 255)).all()
    assert (out[2, 2:38] == MASK_COLOR).all()
    assert (out[0, 0] == 100).all()  # untouched background
    np.testing.assert_array_equal(overlay_silhouette(img, a, m), overlay_silhouettes(img, [a], [m]))
