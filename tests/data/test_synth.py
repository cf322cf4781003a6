"""Tests of the synthetic data engine (poseshape/data/synth.py)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from poseshape.core.errors import FileFormatError, PoseshapeError, ShapeError
from poseshape.data import synth
from poseshape.data.synth import PoseConfig, SynthConfig, read_shard, render_dataset, unpack_voxels
from poseshape.geometry.camera import viewpoint_to_pose
from poseshape.render.mesh_hard import rasterize

CATS = ["chair", "car"]


def _cfg(**kw) -> SynthConfig:
    base = {"image_size": 64, "views": 3, "samples_per_shard": 4, "seed": 5, "voxel_res": 32}
    base.update(kw)
    return SynthConfig(**base)


def _render(out, cfg=None, **kw):
    kw.setdefault("categories", CATS)
    kw.setdefault("models_per_category", 1)
    return render_dataset("procedural", out, cfg or _cfg(), progress=False, **kw)


def _shards(root: Path) -> dict[str, dict[str, np.ndarray]]:
    return {p.name: read_shard(p) for p in sorted(root.glob("shard_*.npz"))}


def _assert_same(a: Path, b: Path) -> None:
    sa, sb = _shards(a), _shards(b)
    assert sa.keys() == sb.keys() and sa
    for name in sa:
        assert sa[name].keys() == sb[name].keys()
        for k in sa[name]:
            np.testing.assert_array_equal(sa[name][k], sb[name][k], err_msg=f"{name}:{k}")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = _render(out)
    return out, summary


# ----------------------------------------------------------------------------- poses


def test_viewpoint_distributions_are_deterministic_and_in_range():
    pc = PoseConfig(distribution="uniform", elevation_deg=(-5.0, 40.0), distance=(2.0, 2.5))
    a = synth.sample_viewpoints(pc, seed=3, n=400)
    b = synth.sample_viewpoints(pc, seed=3, n=400)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synth.sample_viewpoints(pc, seed=4, n=400))
    assert (a[:, 0] >= 0).all() and (a[:, 0] < 2 * math.pi).all()
    assert np.degrees(a[:, 1]).min() >= -5 and np.degrees(a[:, 1]).max() <= 40
    assert (a[:, 3] >= 2.0).all() and (a[:, 3] <= 2.5).all()
    assert abs(np.degrees(a[:, 2])).max() <= 3 * pc.theta_jitter_deg + 1e-9
    # azimuth roughly uniform: every 90-degree quadrant holds 15-35 % of the views
    q = np.histogram(a[:, 0], bins=4, range=(0, 2 * math.pi))[0] / len(a)
    assert (q > 0.15).all() and (q < 0.35).all()


def test_pascal_like_elevations_mostly_0_to_30_degrees():
    el = np.degrees(synth.sample_viewpoints(PoseConfig(distribution="pascal"), seed=0, n=1000)[:, 1])
    inside = ((el >= 0) & (el <= 30)).mean()
    assert inside > 0.75, inside
    assert el.min() >= -15 and el.max() <= 75


def test_ring24_is_the_nmr_setting():
    vp = synth.sample_viewpoints(PoseConfig(distribution="ring24"), seed=9, n=48, views=24)
    np.testing.assert_allclose(np.degrees(vp[:24, 0]), np.arange(24) * 15.0, atol=1e-9)
    np.testing.assert_allclose(vp[24:], vp[:24])
    np.testing.assert_allclose(np.degrees(vp[:, 1]), 30.0)
    np.testing.assert_allclose(vp[:, 2], 0.0)
    np.testing.assert_allclose(vp[:, 3], 2.732)


def test_fit_intrinsics_makes_the_box_fill_the_frame():
    g = torch.Generator().manual_seed(0)
    verts = torch.rand(50, 3, generator=g, dtype=torch.float64) - 0.5
    R, t = viewpoint_to_pose(
        torch.tensor([0.3, 2.0]), torch.tensor([0.2, -0.1]), torch.tensor([0.0, 0.4]), torch.tensor([2.0, 3.0])
    )
    R, t = R.double(), t.double()
    S, m = 64, 0.1
    K = synth.fit_intrinsics(verts, R, t, S, margin=m)
    X = verts @ R.transpose(-1, -2) + t[:, None]
    uv = X @ K.transpose(-1, -2)
    u, v = uv[..., 0] / uv[..., 2], uv[..., 1] / uv[..., 2]
    for b in range(2):
        w, h = u[b].max() - u[b].min(), v[b].max() - v[b].min()
        # the longer side spans S / (1 + 2m) pixels, centred
        assert math.isclose(max(w, h), S / (1 + 2 * m), rel_tol=1e-9)
        assert math.isclose((u[b].max() + u[b].min()) / 2, S / 2, abs_tol=1e-9)
        assert math.isclose((v[b].max() + v[b].min()) / 2, S / 2, abs_tol=1e-9)


# ----------------------------------------------------------------------------- rendering


def test_shard_layout_and_index(rendered):
    out, summary = rendered
    idx = json.loads((out / "index.json").read_text())
    assert idx["complete"] and idx["num_samples"] == 6 and summary.num_samples == 6
    assert [s["count"] for s in idx["shards"]] == [4, 2]
    assert idx["categories"] == sorted(CATS)
    from poseshape.geometry.conventions import CONVENTIONS_VERSION

    assert idx["conventions_version"] == CONVENTIONS_VERSION and idx["rendered"] is True
    assert sum(idx["splits"].values()) == 6
    d = read_shard(out / "shard_00000.npz")
    assert d["images"].dtype == np.uint8 and d["images"].shape == (4, 64, 64, 3)
    assert d["masks"].dtype == bool and d["masks"].shape == (4, 64, 64)
    assert d["R"].shape == (4, 3, 3) and d["t"].shape == (4, 3) and d["K"].shape == (4, 3, 3)
    assert d["viewpoint"].shape == (4, 4) and d["voxels"].shape == (4, 32, 32, 4)
    np.testing.assert_array_equal(d["sample_index"], np.arange(4))
    assert all(d["masks"][i].mean() > 0.05 for i in range(4))  # the object is in frame
    # R is a rotation, and the pose equals the stored viewpoint's (crop framing)
    R = torch.from_numpy(d["R"]).double()
    torch.testing.assert_close(
        R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3), atol=1e-6, rtol=0
    )
    vp = torch.from_numpy(d["viewpoint"]).double()
    R2, t2 = viewpoint_to_pose(vp[:, 0], vp[:, 1], vp[:, 2], vp[:, 3])
    torch.testing.assert_close(R2, R, atol=1e-6, rtol=0)
    torch.testing.assert_close(t2, torch.from_numpy(d["t"]).double(), atol=1e-6, rtol=0)


def _models(out):
    from poseshape.data.collections import MeshCollection

    coll = MeshCollection.procedural(categories=CATS, per_category=1, seed=5)
    idx = json.loads((out / "index.json").read_text())
    return {(m["category"], m["model_id"]): coll.mesh(coll.index(m["category"], m["model_id"])) for m in idx["models"]}


def test_mask_equals_hard_raster_of_the_mesh(rendered):
    out, _ = rendered
    meshes = _models(out)
    for d in _shards(out).values():
        for i in range(len(d["masks"])):
            mesh = meshes[(str(d["category"][i]), str(d["model_id"][i]))]
            fr = rasterize(
                mesh.verts.float(),
                mesh.faces,
                torch.from_numpy(d["R"][i : i + 1]),
                torch.from_numpy(d["t"][i : i + 1]),
                torch.from_numpy(d["K"][i]),
                64,
            )
            np.testing.assert_array_equal(fr.mask[0, 0].numpy() > 0.5, d["masks"][i])


def test_voxels_projected_with_the_stored_pose_match_the_mask(rendered):
    from poseshape.render.voxel import project_voxels

    out, _ = rendered
    ious, cats, missed = [], [], []
    for d in _shards(out).values():
        vox = torch.from_numpy(unpack_voxels(d["voxels"], 32).astype(np.float32))[:, None]
        sil = (
            project_voxels(
                vox,
                torch.from_numpy(d["R"]),
                torch.from_numpy(d["t"]),
                torch.from_numpy(d["K"]),
                image_size=64,
                mode="max",
                n_samples=128,
            )[:, 0]
            > 0.5
        )
        m = torch.from_numpy(d["masks"])
        ious += ((sil & m).sum((1, 2)).float() / (sil | m).sum((1, 2)).float()).tolist()
        missed += ((m & ~sil).sum((1, 2)).float() / m.sum((1, 2)).float()).tolist()
        cats += [str(c) for c in d["category"]]
    # the voxel silhouette covers the mask (it is only dilated by the 32^3 surface voxels) ...
    assert max(missed) < 0.01, missed
    # ... and matches it: IoU >= 0.8 for solid shapes (a 1 px dilation of the outline of a car
    # seen from the front, ~20 px tall, costs up to ~0.18); thin chair legs fill whole voxels
    # (half a voxel = 1 px at this framing), which costs a chair up to ~0.1 more.
    assert min(i for i, c in zip(ious, cats) if c == "car") >= 0.8, ious
    assert min(ious) >= 0.74 and np.mean(ious) >= 0.82, ious


def test_same_seed_same_shards_and_worker_count_does_not_matter(tmp_path, rendered):
    out, _ = rendered
    _render(tmp_path / "a", workers=1)
    _assert_same(out, tmp_path / "a")
    _render(tmp_path / "b", workers=2)
    _assert_same(out, tmp_path / "b")
    _render(tmp_path / "c", _cfg(seed=6))
    assert not np.array_equal(
        read_shard(tmp_path / "c" / "shard_00000.npz")["images"], read_shard(out / "shard_00000.npz")["images"]
    )


def test_resume_after_crash_equals_uninterrupted_run(tmp_path, rendered, monkeypatch):
    out, _ = rendered
    crash = tmp_path / "crash"
    real_write = synth.write_npz_atomic
    calls = {"n": 0}

    def flaky(path, arrays, compress=True):
        calls["n"] += 1
        if calls["n"] == 2:  # die while writing the second shard: leave a half-written tmp
            Path(path).with_name(f".{Path(path).name}.tmp").write_bytes(b"PK\x03\x04 half")
            raise RuntimeError("simulated crash")
        real_write(path, arrays, compress)

    monkeypatch.setattr(synth, "write_npz_atomic", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _render(crash)
    monkeypatch.setattr(synth, "write_npz_atomic", real_write)
    assert (crash / "shard_00000.npz").exists() and not (crash / "shard_00001.npz").exists()
    assert not json.loads((crash / "index.json").read_text())["complete"]
    assert (crash / ".shard_00001.npz.tmp").exists()
    summary = _render(crash)
    assert (summary.reused_shards, summary.rendered_shards) == (1, 1)
    assert not list(crash.glob(".*.tmp"))
    _assert_same(out, crash)
    # a corrupt complete-named shard fails verification and is re-rendered
    p = crash / "shard_00000.npz"
    p.write_bytes(p.read_bytes()[:200])
    summary = _render(crash)
    assert summary.repaired_shards == 1 and summary.reused_shards == 1
    _assert_same(out, crash)


def test_other_configuration_in_same_folder_is_refused(tmp_path):
    _render(tmp_path, _cfg(views=1), categories=["car"])
    with pytest.raises(PoseshapeError, match="another configuration"):
        _render(tmp_path, _cfg(views=2), categories=["car"])
    s = _render(tmp_path, _cfg(views=2), categories=["car"], overwrite=True)
    assert s.num_samples == 2


def _write_cube(path: Path) -> None:
    import trimesh

    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box((1.0, 0.6, 0.8)).export(path)


def test_unparsable_mesh_is_reported_and_skipped(tmp_path):
    root = tmp_path / "meshes"
    _write_cube(root / "box" / "good.obj")
    bad = root / "box" / "bad.off"
    bad.write_text("OFF\n8 12 0\n1 2 3\n")  # truncated
    summary = render_dataset(root, tmp_path / "out", _cfg(views=2, voxel_res=8), progress=False)
    assert summary.num_samples == 2
    assert len(summary.skipped_meshes) == 1 and summary.skipped_meshes[0]["path"] == str(bad)
    assert "skipped 1 mesh" in str(summary)
    idx = json.loads((tmp_path / "out" / "index.json").read_text())
    assert idx["skipped"][0]["path"] == str(bad)


def test_empty_folder_gives_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoseshapeError, match="empty|no mesh"):
        render_dataset(tmp_path / "empty", tmp_path / "out", _cfg(), progress=False)
    with pytest.raises(PoseshapeError, match="neither a folder"):
        render_dataset(tmp_path / "missing", tmp_path / "out", _cfg(), progress=False)


@pytest.mark.parametrize("framing", ["fixed", "6dof"])
def test_other_framings_and_natural_domain(tmp_path, framing):
    cfg = _cfg(views=2, framing=framing, domain="natural", depth=True, posed_voxel_res=16, voxel_res=16)
    _render(tmp_path, cfg, categories=["car"])
    d = read_shard(tmp_path / "shard_00000.npz")
    assert str(d["domain"]) == "natural" and d["depth"].shape == (2, 64, 64)
    assert d["posed_voxels"].shape == (2, 16, 16, 2)
    assert (d["depth"][d["masks"]] > 0).all() and (d["depth"][~d["masks"]] == 0).all()
    assert d["masks"].any(axis=(1, 2)).all()
    if framing == "6dof":  # the camera stands at the fixed height above the ground, looking down
        C = -np.einsum("bji,bj->bi", d["R"], d["t"])
        np.testing.assert_allclose(C[:, 1] - C[0, 1], 0, atol=1e-5)
        K = d["K"][0]
        assert math.isclose(2 * math.degrees(math.atan(32 / K[0, 0])), cfg.pose.fov_6dof_deg, rel_tol=1e-5)


def test_cli_render(tmp_path, capsys):
    from poseshape.cli.data import add_parser, run

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(
        [
            "data",
            "render",
            "--meshes",
            "procedural",
            "--out",
            str(tmp_path / "o"),
            "--views",
            "2",
            "--size",
            "32",
            "--voxels",
            "8",
            "--categories",
            "car",
            "--models-per-category",
            "1",
            "--quiet",
            "--pose",
            "pascal",
        ]
    )
    assert run(args) == 0
    assert "2 samples in 1 shards" in capsys.readouterr().out
    args = parser.parse_args(["data", "render", "--meshes", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert run(args) == 1
    assert "error" in capsys.readouterr().err


def test_read_shard_errors(tmp_path, rendered):
    out, _ = rendered
    with pytest.raises(FileFormatError, match="temporary"):
        read_shard(tmp_path / ".shard_00000.npz.tmp")
    bad = tmp_path / "shard_00000.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(FileFormatError, match=str(bad)):
        read_shard(bad)
    d = read_shard(out / "shard_00000.npz")
    d["conventions_version"] = np.int64(999)
    synth.write_npz_atomic(bad, d)
    with pytest.raises(FileFormatError, match="conventions version 999"):
        read_shard(bad)


def test_output_does_not_depend_on_the_rasteriser_backend(tmp_path, rendered, monkeypatch):
    # the compiled rasteriser (poseshape.render.fastraster) and poseshape.render.mesh_hard give
    # bit-identical shards
    out, _ = rendered
    monkeypatch.setenv("POSESHAPE_NO_CPP", "1")
    _render(tmp_path / "torch")
    _assert_same(out, tmp_path / "torch")


_KILLER = r"""
import io, os, signal, sys
import numpy as np
from poseshape.data import synth
real = np.savez_compressed
calls = {"n": 0}
def dying(fh, **arrays):
    calls["n"] += 1
    if calls["n"] == 2:  # the second shard: write half of it, then die without cleanup
        buf = io.BytesIO()
        real(buf, **arrays)
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real(fh, **arrays)
synth.np.savez_compressed = dying
cfg = synth.SynthConfig(image_size=64, views=3, samples_per_shard=4, seed=5, voxel_res=32)
synth.render_dataset("procedural", sys.argv[1], cfg, categories=["chair", "car"], models_per_category=1,
                     progress=False)
"""


def test_resume_after_the_writer_is_killed_mid_shard(tmp_path, rendered):
    import os
    import signal
    import subprocess
    import sys

    from poseshape.data.dataset import ShardDataset

    out, _ = rendered
    crash = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(crash)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    tmps = list(crash.glob(".shard_00001.npz*.tmp"))  # hidden, with a random part (core.io)
    assert len(tmps) == 1, tmps
    tmp = tmps[0]
    assert (crash / "shard_00000.npz").is_file() and tmp.is_file() and not (crash / "shard_00001.npz").exists()
    assert 0 < tmp.stat().st_size
    assert not json.loads((crash / "index.json").read_text())["complete"]
    # the half-written shard is never read: the data set is refused, or only finished shards are used
    with pytest.raises(FileFormatError, match="incomplete"):
        ShardDataset(crash)
    part = ShardDataset(crash, allow_incomplete=True)
    assert len(part) == 4 and [int(part[i]["index"]) for i in range(4)] == [0, 1, 2, 3]
    with pytest.raises(FileFormatError, match="temporary"):
        read_shard(tmp)
    summary = _render(crash)
    assert (summary.reused_shards, summary.rendered_shards) == (1, 1)
    assert not tmp.exists()
    _assert_same(out, crash)
    assert len(ShardDataset(crash)) == 6


def test_background_image_folder(tmp_path):
    from PIL import Image

    bg = tmp_path / "bg"
    bg.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 255)).save(bg / "magenta.png")
    Image.new("RGB", (50, 50), (0, 255, 255)).save(bg / "cyan.jpg", quality=100)
    cfg = _cfg(views=12, voxel_res=0, backgrounds=str(bg))
    _render(tmp_path / "o", cfg, categories=["car"])
    idx = json.loads((tmp_path / "o" / "index.json").read_text())
    assert idx["config"]["backgrounds"] == str(bg)
    n_img = 0
    for d in _shards(tmp_path / "o").values():
        for im, m in zip(d["images"], d["masks"]):
            back = im[~m].astype(int)
            mag = (np.abs(back - [255, 0, 255]).max(1) <= 2).all()
            cya = (np.abs(back - [0, 255, 255]).max(1) <= 3).all()
            n_img += bool(mag or cya)
            assert not (np.abs(im[m].astype(int) - [255, 0, 255]).max(1) == 0).all()  # object drawn over it
    assert 0 < n_img < 12  # about half of the backgrounds are crops of the folder's images
    with pytest.raises(FileFormatError, match="background"):
        _render(tmp_path / "p", _cfg(backgrounds=str(tmp_path / "nothing")), categories=["car"])


def test_real_cli_entry_point_procedural_and_pascal3d(tmp_path, capsys, shared_data):
    from poseshape.cli.main import main
    from poseshape.data.dataset import ShardDataset

    common = ["--views", "2", "--size", "32", "--voxels", "8", "--workers", "2", "--seed", "3", "--quiet"]
    assert (
        main(
            [
                "data",
                "render",
                "--meshes",
                "procedural",
                "--out",
                str(tmp_path / "proc"),
                "--categories",
                "chair",
                "table",
                "--models-per-category",
                "2",
                *common,
            ]
        )
        == 0
    )
    ds = ShardDataset(tmp_path / "proc")
    assert len(ds) == 8 and ds.categories == ["chair", "table"] and ds[0]["voxels"].shape == (1, 8, 8, 8)
    assert (
        main(
            [
                "data",
                "render",
                "--meshes",
                str(shared_data / "pascal3d_cad"),
                "--out",
                str(tmp_path / "p3d"),
                "--categories",
                "car",
                "aeroplane",
                *common,
            ]
        )
        == 0
    )
    ds = ShardDataset(tmp_path / "p3d")
    idx = ds.meta
    assert ds.categories == ["aeroplane", "car"] and idx["num_samples"] == 2 * len(idx["models"])
    assert {m["path"].rsplit("/", 2)[-2] for m in idx["models"]} == {"aeroplane", "car"}
    assert all(ds[i]["mask"].sum() > 20 for i in range(len(ds)))
    assert "samples in" in capsys.readouterr().out
    # bad input through the real entry point: a clear message and a non-zero status
    (tmp_path / "empty").mkdir()
    assert main(["data", "render", "--meshes", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) != 0
    assert "no mesh files found" in capsys.readouterr().err


def test_held_out_split_shares_no_draws_with_the_training_split(tmp_path):
    """A test split rendered with the training seed must not repeat the training poses,
    lights and backgrounds (sampling version 1 did: test sample i = training sample i)."""
    cfg = _cfg(voxel_res=0, views=4, samples_per_shard=8)
    kw = {"categories": ["car"], "models_per_category": 10}
    _render(tmp_path / "train", cfg, split="train", **kw)
    _render(tmp_path / "test", cfg, split="test", **kw)
    _render(tmp_path / "all", cfg, **kw)
    tr, te, al = (
        {k: np.concatenate([s[k] for s in _shards(tmp_path / n).values()]) for k in ("viewpoint", "images", "model_id")}
        for n in ("train", "test", "all")
    )
    assert len(te["viewpoint"]) and len(tr["viewpoint"])
    dist = np.abs(te["viewpoint"][:, None, :3] - tr["viewpoint"][None, :, :3]).max(-1)
    assert dist.min() > 1e-4  # no test view has a training view's angles
    # a model renders the same whether its split is rendered alone or with every model
    for name in ("train", "test"):
        d = tr if name == "train" else te
        for j, mid in enumerate(d["model_id"]):
            k = np.nonzero(al["model_id"] == mid)[0][j % 4]
            np.testing.assert_array_equal(d["images"][j], al["images"][k])
    assert synth.model_key("car", "000") != synth.model_key("car", "001")
    assert synth.model_key("car", "000") == synth.model_key("car", "000")


@pytest.mark.parametrize(
    "elevation, needle",
    [((40.0, -10.0), "reversed"), ((-100.0, 10.0), "-90 <= LO"), ((0.0, float("inf")), "-90 <= LO"), ((1.0,), "pairs")],
)
def test_pose_config_refuses_bad_elevation_ranges(elevation, needle):
    with pytest.raises(ShapeError, match=needle):
        PoseConfig(elevation_deg=elevation)
    PoseConfig(elevation_deg=(20.0, 20.0))  # a single elevation is a valid range
