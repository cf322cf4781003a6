"""Tests of RGB shading, textures, backgrounds and degradations (poseshape/render/shading.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poseshape.core.errors import FileFormatError, ShapeError
from poseshape.render import shading as sh


def test_lambertian_matches_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(2, 5, 3, generator=g, dtype=torch.float64), dim=-1)
    alb = torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    L = torch.nn.functional.normalize(torch.randn(3, 3, generator=g, dtype=torch.float64), dim=-1)
    C = torch.rand(3, 3, generator=g, dtype=torch.float64) * 0.5
    amb = torch.tensor([0.2, 0.3, 0.1], dtype=torch.float64)
    out = sh.lambertian(n, alb, L, C, amb)
    for b in range(2):
        for p in range(5):
            acc = amb.clone()
            for li in range(3):
                acc = acc + C[li] * max(0.0, float(n[b, p] @ L[li]))
            torch.testing.assert_close(out[b, p], (alb[b, p] * acc).clamp(0, 1))
    with pytest.raises(ShapeError):
        sh.lambertian(n[..., :2], alb, L, C, amb)


def test_albedo_patterns_match_their_definitions():
    rng = np.random.default_rng(0)
    pts = torch.from_numpy(rng.uniform(-0.5, 0.5, size=(200, 3)))
    cols = np.array([[1.0, 0, 0], [0, 0, 1.0]], np.float32)
    chk = sh.Appearance("checker", cols, frequency=3.0, phase=0.25)
    out = sh.albedo(pts, chk)
    for p, o in zip(pts.numpy(), out.numpy()):
        parity = int(np.floor(p * 3.0 + 0.25).sum()) % 2
        np.testing.assert_allclose(o, cols[parity], atol=1e-6)
    ax = np.array([0.0, 1.0, 0.0], np.float32)
    st = sh.Appearance("stripes", cols, frequency=4.0, axis=ax, phase=0.0)
    out = sh.albedo(pts, st)
    for p, o in zip(pts.numpy(), out.numpy()):
        np.testing.assert_allclose(o, cols[int(np.floor(p[1] * 4.0)) % 2], atol=1e-6)
    solid = sh.albedo(pts, sh.Appearance("solid", cols))
    np.testing.assert_allclose(solid.numpy(), np.broadcast_to(cols[0], (200, 3)), atol=0)


def test_noise_texture_interpolates_its_lattice():
    lat = np.random.default_rng(1).uniform(size=(3, 3, 3)).astype(np.float32)
    cols = np.array([[0.0, 0, 0], [1.0, 1, 1]], np.float32)
    app = sh.Appearance("noise", cols, lattice=lat)
    # lattice node (i, j, k) sits at object point (x, y, z) = ((k, j, i) / 2 - 0.5)
    idx = np.stack(np.meshgrid(range(3), range(3), range(3), indexing="ij"), -1).reshape(-1, 3)
    pts = torch.from_numpy(idx[:, ::-1] / 2.0 - 0.5).float()
    out = sh.albedo(pts, app)[:, 0]
    np.testing.assert_allclose(out.numpy(), lat[idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-5)
    mid = sh.albedo(torch.tensor([[-0.25, -0.5, -0.5]]), app)[0, 0]  # halfway between (0,0,0) and (0,0,1)
    assert abs(float(mid) - (lat[0, 0, 0] + lat[0, 0, 1]) / 2) < 1e-5
    with pytest.raises(ShapeError):
        sh.albedo(pts, sh.Appearance("marble", cols))


def test_interpolate_faces_and_pixel_normals():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    faces = torch.tensor([[0, 1, 2], [0, 3, 1]])
    fi = torch.tensor([[[0, 1], [-1, 0]]])
    bary = torch.tensor([[[[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]], [[1.0, 0, 0], [1.0, 0, 0]]]])
    out = sh.interpolate_faces(verts, faces, fi, bary)
    torch.testing.assert_close(out[0, 0, 0], 0.3 * verts[1] + 0.5 * verts[2])
    torch.testing.assert_close(out[0, 0, 1], 0.6 * verts[3] + 0.3 * verts[1])
    assert out[0, 1, 0].abs().sum() == 0  # background
    fn = torch.tensor([[0.0, 0, 1], [0, -1, 0]])
    R = torch.eye(3)[None]
    n = sh.pixel_normals(fn, fi, R)
    # the camera looks along +z: a +z normal faces away and is flipped toward the camera
    torch.testing.assert_close(n[0, 0, 0], torch.tensor([0.0, 0, -1]))
    torch.testing.assert_close(n[0, 0, 1], torch.tensor([0.0, -1, 0]))  # perpendicular: kept
    assert n[0, 1, 0].abs().sum() == 0


def test_shade_a_fronto_parallel_face():
    pts = torch.zeros(1, 2, 2, 3)
    normals = torch.tensor([0.0, 0, -1]).expand(1, 2, 2, 3)
    mask = torch.tensor([[[True, False], [True, True]]])
    lights = sh.Lights(
        np.array([[0.0, 0, -1]], np.float32),
        np.array([[0.5, 0.5, 0.5]], np.float32),
        np.array([0.2, 0.2, 0.2], np.float32),
    )
    app = sh.Appearance("solid", np.array([[0.8, 0.4, 0.2], [0, 0, 0]], np.float32))
    out = sh.shade(pts, normals, mask, app, [lights])
    assert out.shape == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.8, 0.4, 0.2]) * 0.7)
    assert out[0, :, 0, 1].abs().sum() == 0
    with pytest.raises(ShapeError):
        sh.shade(pts, normals, mask, app, [lights, lights])


def test_samplers_are_deterministic_and_in_range(tmp_path):
    for domain in ("render", "natural"):
        a = sh.random_background(np.random.default_rng(3), (20, 24), domain)
        b = sh.random_background(np.random.default_rng(3), (20, 24), domain)
        np.testing.assert_array_equal(a, b)
        assert a.shape == (3, 20, 24) and a.min() >= 0 and a.max() <= 1
        li = sh.sample_lights(np.random.default_rng(1), domain)
        assert 1 <= len(li.directions) <= 3
        np.testing.assert_allclose(np.linalg.norm(li.directions, axis=1), 1, atol=1e-6)
        assert (li.directions[:, 2] < 0).all()  # from the camera's side
    for f in (sh.gradient_background, sh.noise_background, sh.clutter_background):
        x = f(np.random.default_rng(0), (16, 16))
        assert x.shape == (3, 16, 16) and x.min() >= 0 and x.max() <= 1 and x.std() > 0
    with pytest.raises(FileFormatError, match="no background images"):
        sh.list_background_images(tmp_path)
    from PIL import Image

    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "red.png")
    files = sh.list_background_images(tmp_path)
    bg = sh.image_background(np.random.default_rng(0), (8, 8), files)
    np.testing.assert_allclose(bg[0], 1.0)
    np.testing.assert_allclose(bg[1:], 0.0)
    with pytest.raises(ShapeError):
        sh.domain_style("cartoon")


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(1, 2, 12, 15, dtype=torch.float64)
    ours = sh.gaussian_blur(x, 1.0)
    ref = np.stack([gaussian_filter(x[0, c].numpy(), 1.0, mode="mirror", truncate=3.0) for c in range(2)])
    np.testing.assert_allclose(ours[0].numpy(), ref, atol=1e-12)
    assert sh.gaussian_blur(x, 0.0) is x


def test_degrade_render_is_plain_quantisation_and_natural_is_deterministic():
    img = torch.rand(3, 16, 16)
    out = sh.degrade(img, np.random.default_rng(0), "render")
    np.testing.assert_array_equal(out, sh.to_uint8(img))
    n1 = sh.degrade(img, np.random.default_rng(5), "natural")
    n2 = sh.degrade(img, np.random.default_rng(5), "natural")
    np.testing.assert_array_equal(n1, n2)
    assert n1.dtype == np.uint8 and n1.shape == (16, 16, 3)
    q = sh.jpeg_roundtrip(sh.to_uint8(img), 50)
    assert q.shape == (16, 16, 3) and not np.array_equal(q, sh.to_uint8(img))


def test_composite():
    fg = torch.ones(1, 3, 2, 2)
    bg = torch.zeros(1, 3, 2, 2)
    m = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = sh.composite(fg, m, bg)
    torch.testing.assert_close(out[0, 0], m[0, 0])


def test_occluder_layer_bounds_determinism_and_errors():
    mask = np.zeros((48, 48), bool)
    mask[10:40, 14:34] = True
    for seed in range(6):
        rgb, occ = sh.occluder_layer(np.random.default_rng(seed), mask, 3, size=(0.2, 0.5), max_occlusion=0.25)
        assert rgb.shape == (3, 48, 48) and rgb.dtype == np.float32 and occ.shape == (48, 48)
        assert (occ & mask).sum() <= 0.25 * mask.sum()
        assert rgb.min() >= 0 and rgb.max() <= 1 and not rgb[:, ~occ].any()
        rgb2, occ2 = sh.occluder_layer(np.random.default_rng(seed), mask, 3, size=(0.2, 0.5), max_occlusion=0.25)
        np.testing.assert_array_equal(rgb, rgb2)
        np.testing.assert_array_equal(occ, occ2)
    hits = [sh.occluder_layer(np.random.default_rng(s), mask, 2)[1].any() for s in range(6)]
    assert sum(hits) >= 4
    rgb, occ = sh.occluder_layer(np.random.default_rng(0), np.zeros((8, 8), bool), 2)
    assert not occ.any() and not rgb.any()
    with pytest.raises(ShapeError, match="object_mask"):
        sh.occluder_layer(np.random.default_rng(0), np.zeros((2, 8, 8), bool), 1)
