"""Tests for poseshape.shapes.procedural: watertight, unit-cube, deterministic, oriented."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from poseshape.core.errors import PoseshapeError
from poseshape.shapes import procedural as P
from poseshape.shapes.meshes import Mesh

REQUIRED = ("chair", "table", "sofa", "car", "aeroplane", "monitor")


def _tm(mesh: Mesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.verts.double().numpy(), mesh.faces.numpy(), process=False)


def _check_solid(tm: trimesh.Trimesh, what: str) -> None:
    """Watertight (one union) or, without a boolean engine, every component watertight."""
    if P.BOOLEAN_ENGINE is not None:
        parts = [tm]
    else:
        parts = tm.split(only_watertight=False)
    for part in parts:
        assert part.is_watertight, f"{what}: not watertight"
        assert part.is_winding_consistent, f"{what}: inconsistent winding"
        assert part.volume > 0, f"{what}: non-positive volume (inward faces)"


def _check_unit_cube(mesh: Mesh, what: str) -> None:
    v = mesh.verts.double()
    lo, hi = v.min(0).values, v.max(0).values
    assert torch.allclose((lo + hi) / 2, torch.zeros(3, dtype=v.dtype), atol=1e-6), what
    assert abs(float((hi - lo).max()) - 1.0) < 1e-6, what
    assert float(v.abs().max()) <= 0.5 + 1e-6, what


def test_required_categories_present():
    assert set(REQUIRED) <= set(P.CATEGORIES)
    for c in P.CATEGORIES:
        assert set(P.param_names(c)) == set(P.default_params(c))


def _sweep(seeds, categories=P.CATEGORIES):
    for cat in categories:
        for s in seeds:
            mesh, params = P.generate(cat, s)
            what = f"{cat} seed {s} {params}"
            _check_unit_cube(mesh, what)
            _check_solid(_tm(mesh), what)


def test_watertight_unit_cube_fast():
    _sweep(range(4))


# one test per category keeps each under a few seconds (1000 builds in all)
@pytest.mark.slow
@pytest.mark.parametrize("category", P.CATEGORIES)
def test_watertight_unit_cube_100_seeds(category):
    _sweep(range(100), [category])


def test_fallback_without_boolean_engine_gives_watertight_parts(monkeypatch):
    monkeypatch.setattr(P, "BOOLEAN_ENGINE", None)
    for cat in P.CATEGORIES:
        tm = _tm(P.generate(cat, 1)[0])
        comps = tm.split(only_watertight=False)
        assert len(comps) >= 1
        for c in comps:
            assert c.is_watertight and c.volume > 0, cat


@pytest.mark.skipif(P.BOOLEAN_ENGINE is None, reason="needs the manifold3d boolean engine")
def test_union_is_one_connected_solid():
    for cat in P.CATEGORIES:
        for s in range(3):
            tm = _tm(P.generate(cat, s)[0])
            assert len(tm.split(only_watertight=False)) == 1, (cat, s)
            # the union's volume is at most the sum of its parts' volumes (overlaps removed)
            full = P._resolve(cat, P.sample_params(cat, P._seed_rng(cat, s)))
            parts = P._REGISTRY[cat].build(full)
            lo, hi = trimesh.util.concatenate(parts).bounds
            raw_vol = sum(p.volume for p in parts) / float((hi - lo).max()) ** 3
            assert tm.volume <= raw_vol * (1 + 1e-6)


def test_deterministic_and_seed_dependent():
    for cat in P.CATEGORIES:
        a, pa = P.generate(cat, 7)
        b, pb = P.generate(cat, 7)
        assert pa == pb
        assert torch.equal(a.verts, b.verts) and torch.equal(a.faces, b.faces)
        _c, pc = P.generate(cat, 8)
        assert pc != pa


def test_sample_params_json_and_build_roundtrip():
    rng = np.random.default_rng(0)
    for cat in P.CATEGORIES:
        params = P.sample_params(cat, rng)
        assert set(params) == set(P.param_names(cat))
        assert json.loads(json.dumps(params)) == params
        m1 = P.build(cat, params)
        m2 = P.build(cat, json.loads(json.dumps(params)))
        assert torch.equal(m1.verts, m2.verts)
    # generate == sample_params(seeded rng) + build
    mesh, params = P.generate("car", 3)
    assert torch.equal(P.build("car", params).verts, mesh.verts)


def test_explicit_params_change_the_shape():
    base = P.default_params("chair")
    no_arms = P.build("chair", {**base, "arms": False})
    arms = P.build("chair", {**base, "arms": True})
    assert _tm(arms).volume > _tm(no_arms).volume
    tall = P.build("chair", {**base, "back_height": 0.9})
    # a taller back makes the chair taller than deep: height fills the unit side
    ext = tall.verts.max(0).values - tall.verts.min(0).values
    assert ext[1] == pytest.approx(1.0, abs=1e-6)
    # partial params take defaults
    assert torch.equal(P.build("table", {"legs": "four"}).verts, P.build("table").verts)


def test_bad_params_raise():
    with pytest.raises(PoseshapeError, match="unknown procedural category"):
        P.generate("spaceship", 0)
    with pytest.raises(PoseshapeError, match="wheels_count"):
        P.build("car", {"wheels_count": 6})
    with pytest.raises(PoseshapeError, match="legs"):
        P.build("chair", {"legs": "five"})
    with pytest.raises(PoseshapeError, match="body"):
        P.build("car", {"body": "tank"})
    for cat, bad in (
        ("cabinet", {"base": "wheels"}),
        ("cabinet", {"doors": 0, "drawers": 0}),
        ("speaker", {"feet": "stilts"}),
        ("rifle", {"magazine": "drum"}),
        ("telephone", {"kind": "rotary"}),
    ):
        with pytest.raises(PoseshapeError, match=cat):
            P.build(cat, bad)


def test_category_names_are_the_collections_canonical_names():
    # MeshCollection.procedural canonicalises the names it is given ("phone" -> "telephone",
    # "loudspeaker" -> "speaker"): a category under another name could not be selected
    from poseshape.data.collections import canonical_category

    for c in P.CATEGORIES:
        assert canonical_category(c) == c


def test_dtype():
    m, _ = P.generate("table", 0, dtype=torch.float64)
    assert m.verts.dtype == torch.float64 and m.faces.dtype == torch.int64


# ---------------------------------------------------------------------- orientation


def test_car_wheels_at_bottom_front_at_plus_z():
    for s in range(10):
        mesh, params = P.generate("car", s)
        v = mesh.verts.double().numpy()
        ext = v.max(0) - v.min(0)
        assert ext[2] == pytest.approx(1.0) and ext[2] > ext[0] > ext[1] * 0.8  # long along Z
        low = v[v[:, 1] < v[:, 1].min() + 0.01]
        # the lowest points are the four wheels' treads: at the sides, front and rear
        assert (np.abs(low[:, 0]) > 0.25 * ext[0]).all(), params
        assert (low[:, 2] > 0.15).any() and (low[:, 2] < -0.15).any(), params
        # the wheels' outer faces stick out beyond the body's sides (visible)
        wheel_top = v[:, 1].min() + (2 * params["wheel_radius"] + 0.02) / params["length"]
        body = v[v[:, 1] > wheel_top]  # above the wheels
        assert np.abs(v[:, 0]).max() > np.abs(body[:, 0]).max() + 0.005
        # the nose (+Z) slopes down: the front-most points are lower than the rear-most
        front = v[v[:, 2] > v[:, 2].max() - 0.01]
        rear = v[v[:, 2] < v[:, 2].min() + 0.01]
        assert front[:, 1].max() < rear[:, 1].max(), params


def test_chair_and_sofa_backs_at_minus_z():
    for cat in ("chair", "sofa", "bench"):
        for s in range(10):
            mesh, params = P.generate(cat, s)
            if cat == "bench" and not params["back"]:
                continue
            v = mesh.verts.double().numpy()
            top = v[v[:, 1] > v[:, 1].max() - 0.04]
            assert top[:, 2].mean() < -0.05, (cat, params)


def test_aeroplane_nose_plus_z_wings_along_x_tail_fin_up():
    for s in range(10):
        mesh, _params = P.generate("aeroplane", s)
        v = mesh.verts.double().numpy()
        top = v[v[:, 1] > v[:, 1].max() - 0.02]
        assert top[:, 2].mean() < -0.2  # the fin sits at the tail (-Z)
        nose = v[v[:, 2] > v[:, 2].max() - 0.01]
        assert np.abs(nose[:, 0]).max() < 0.05  # the nose is on the centre line
        assert np.allclose(v[:, 0].max(), -v[:, 0].min(), atol=1e-6)  # symmetric in X


def test_monitor_screen_faces_plus_z_table_stands_on_legs():
    for s in range(10):
        mesh, params = P.generate("monitor", s)
        v = mesh.verts.double().numpy()
        ext = v.max(0) - v.min(0)
        if not params["crt"]:
            assert ext[2] < 0.6 * ext[0]  # a flat panel
        # the screen's front is its largest face: most of the mesh lies behind z = max - 0.1
        tm = _tm(mesh)
        n, a = tm.face_normals, tm.area_faces
        assert a[n[:, 2] > 0.9].sum() > a[n[:, 2] < -0.9].sum() * 0.5
        assert a[n[:, 2] > 0.9].sum() > 0.2 * ext[0] * ext[1]
    for s in range(5):
        v = P.generate("table", s)[0].verts.double().numpy()
        top = v[v[:, 1] > v[:, 1].max() - 1e-4]
        assert len(top) >= 3  # a flat top at the highest level


def _face_area(tm: trimesh.Trimesh, axis: int, sign: int, where) -> float:
    """Area of the faces whose normal is ``sign`` along ``axis`` and whose centres satisfy ``where``."""
    n, c = tm.face_normals, tm.triangles_center
    keep = (sign * n[:, axis] > 0.99) & where(c)
    return float(tm.area_faces[keep].sum())


def _generated(category: str, seed: int):
    """``(params, verts (V, 3) float64, trimesh, extents, min corner, max corner)`` of one shape."""
    mesh, params = P.generate(category, seed)
    v = mesh.verts.double().numpy()
    return params, v, _tm(mesh), v.max(0) - v.min(0), v.min(0), v.max(0)


def test_cabinet_stands_on_its_base_doors_and_handles_at_plus_z():
    for s in range(10):
        params, v, tm, ext, lo, hi = _generated("cabinet", s)
        # a flat back (the carcass) at z = min; only the handles reach z = max
        back = _face_area(tm, 2, -1, lambda c: c[:, 2] < lo[2] + 1e-4)
        front = _face_area(tm, 2, 1, lambda c: c[:, 2] > hi[2] - 1e-4)
        assert back > 0.5 * ext[0] * ext[1], params
        assert front < 0.05 * ext[0] * ext[1], params
        # the door / drawer panels: a large +Z face just behind the handles
        panels = _face_area(tm, 2, 1, lambda c: (c[:, 2] > hi[2] - 0.08) & (c[:, 2] < hi[2] - 0.005))
        assert panels > 0.4 * ext[0] * ext[1], params
        # standing on legs at the four corners or on a plinth, below the carcass
        low = v[v[:, 1] < lo[1] + 1e-4]
        if params["base"] == "legs":
            assert (low[:, 0] > 0.3 * ext[0]).any() and (low[:, 0] < -0.3 * ext[0]).any(), params
            assert (low[:, 2] > 0).any() and (low[:, 2] < 0).any(), params
        else:
            assert np.ptp(low[:, 0]) > 0.7 * ext[0], params
        # the top slab is the highest, flat level
        assert len(v[v[:, 1] > hi[1] - 1e-4]) >= 4


def test_speaker_drivers_on_the_plus_z_baffle_feet_below():
    for s in range(10):
        params, v, tm, ext, lo, hi = _generated("speaker", s)
        # a flat rear face at z = min (a plinth may stick out 2 cm behind it); the drivers'
        # domes bulge out of the baffle to z = max
        assert _face_area(tm, 2, -1, lambda c: c[:, 2] < lo[2] + 0.03) > 0.3 * ext[0] * ext[1], params
        tip = v[v[:, 2] > hi[2] - 0.002]
        assert len(tip) >= 1 and np.abs(tip[:, 0]).max() < 0.4 * ext[0], params
        # the drivers stick out at least a few millimetres (metres / largest side)
        scale = max(params["width"] + 0.05, params["height"] + params["foot_height"], params["depth"] + 0.05)
        assert ext[2] > (params["depth"] + 0.004) / scale, params
        # feet (at the four corners) or a plinth under the enclosure
        low = v[v[:, 1] < lo[1] + 1e-4]
        assert (low[:, 0] > 0.2 * ext[0]).any() and (low[:, 0] < -0.2 * ext[0]).any(), params
        assert (low[:, 2] > 0.2 * ext[2]).any() and (low[:, 2] < -0.2 * ext[2]).any(), params


def test_rifle_long_along_z_muzzle_at_plus_z_butt_at_minus_z():
    for s in range(10):
        mesh, params = P.generate("rifle", s)
        v = mesh.verts.double().numpy()
        ext = v.max(0) - v.min(0)
        assert ext[2] == pytest.approx(1.0) and ext[1] < 0.5 and ext[0] < 0.12, params
        assert np.allclose(v[:, 0].max(), -v[:, 0].min(), atol=1e-6)  # symmetric in X
        # the muzzle: a thin barrel on the bore line; the butt: the stock's tall plate
        muzzle = v[v[:, 2] > v[:, 2].max() - 0.04]
        butt = v[v[:, 2] < v[:, 2].min() + 0.01]
        assert np.ptp(muzzle[:, 1]) < 0.06 and np.abs(muzzle[:, 0]).max() < 0.03, params
        assert np.ptp(butt[:, 1]) > 0.07, params
        # the grip / magazine hangs below the middle, not below the muzzle
        low = v[v[:, 1] < v[:, 1].min() + 0.01]
        assert (low[:, 2] < v[:, 2].max() - 0.2).all(), params


def test_telephone_screen_or_keypad_at_plus_z():
    kinds = set()
    for s in range(16):
        mesh, params = P.generate("telephone", s)
        kinds.add(params["kind"])
        v = mesh.verts.double().numpy()
        ext = v.max(0) - v.min(0)
        lo, hi = v.min(0), v.max(0)
        if params["kind"] == "desk":
            # the handset lies across the top at the rear; the keypad slopes down to the front
            top = v[v[:, 1] > hi[1] - 0.02]
            assert top[:, 2].mean() < -0.05, params
            assert np.ptp(top[:, 0]) > 0.6 * ext[0], params
            front = v[v[:, 2] > hi[2] - 0.01]
            assert front[:, 1].max() < lo[1] + 0.7 * ext[1], params
        else:
            # a mobile standing upright, thin along Z: the screen / keys span the front (+Z),
            # only the camera reaches the back (-Z)
            assert ext[1] == pytest.approx(1.0) and ext[2] < 0.25, params
            front = v[v[:, 2] > hi[2] - 1e-4]
            back = v[v[:, 2] < lo[2] + 1e-4]
            assert np.ptp(front[:, 0]) > 0.5 * ext[0] and np.ptp(front[:, 1]) > 0.15, params
            assert np.ptp(back[:, 0]) < 0.45 * ext[0] and back[:, 1].mean() > 0.2, params
    assert kinds == {"smartphone", "keypad", "desk"}


def test_procedural_shapes_container():
    ps = P.ProceduralShapes(categories=("chair", "car"), per_category=3, seed=5)
    assert len(ps) == 6
    cat, mid, mesh, _params = ps[4]
    assert (cat, mid) == ("car", "car_0001")
    ref, _ = P.generate("car", 6)
    assert torch.equal(mesh.verts, ref.verts)
    assert [k[:2] for k in (ps.key(i) for i in range(len(ps)))][:3] == [
        ("chair", "chair_0000"),
        ("chair", "chair_0001"),
        ("chair", "chair_0002"),
    ]
    with pytest.raises(IndexError):
        ps[6]
    with pytest.raises(PoseshapeError):
        P.ProceduralShapes(categories=("ufo",))
