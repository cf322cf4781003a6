"""Tests of the shard Dataset (poseshape/data/dataset.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from poseshape.core.errors import FileFormatError
from poseshape.data.dataset import Augment, ShardDataset
from poseshape.data.synth import SynthConfig, read_shard, render_dataset, unpack_voxels


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    cfg = SynthConfig(image_size=32, views=3, samples_per_shard=4, seed=2, voxel_res=16, depth=True)
    render_dataset("procedural", out, cfg, categories=["car", "sofa"], models_per_category=2, progress=False)
    return out


def test_items_match_the_shards(root):
    ds = ShardDataset(root)
    assert len(ds) == 12 and ds.categories == ["car", "sofa"]
    for i in (0, 5, 11, -1):
        it = ds[i]
        g = i % len(ds)
        d = read_shard(root / f"shard_{g // 4:05d}.npz")
        o = g % 4
        assert it["image"].shape == (3, 32, 32) and it["image"].dtype == torch.float32
        torch.testing.assert_close(it["image"], torch.from_numpy(d["images"][o]).permute(2, 0, 1).float() / 255)
        assert it["mask"].shape == (1, 32, 32)
        np.testing.assert_array_equal(it["mask"][0].numpy() > 0.5, d["masks"][o])
        np.testing.assert_array_equal(it["R"].numpy(), d["R"][o])
        np.testing.assert_array_equal(it["K"].numpy(), d["K"][o])
        assert it["voxels"].shape == (1, 16, 16, 16)
        np.testing.assert_array_equal(it["voxels"][0].numpy() > 0.5, unpack_voxels(d["voxels"][o], 16))
        assert it["depth"].shape == (1, 32, 32)
        assert int(it["index"]) == g and ds.categories[int(it["category"])] == it["category_name"]
        assert it["model_index"].dtype == torch.int64 and int(it["model_index"]) == int(d["model_index"][o])
        assert ds.meta["models"][int(it["model_index"])]["model_id"] == it["model_id"]
    with pytest.raises(IndexError):
        ds[12]


def test_split_and_category_filters(root):
    idx = json.loads((root / "index.json").read_text())
    splits = {m["split"] for m in idx["models"]}
    total = sum(len(ShardDataset(root, split=s)) for s in splits)
    assert total == 12
    sofa = ShardDataset(root, categories=["sofa"])
    assert len(sofa) == 6 and all(sofa[i]["category_name"] == "sofa" for i in range(6))
    with pytest.raises(FileFormatError, match="unknown categories"):
        ShardDataset(root, categories=["plane"])


def test_dataloader_with_workers(root):
    ds = ShardDataset(root, cache_shards=1)
    dl = DataLoader(ds, batch_size=5, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    seen = []
    for b in dl:
        assert b["image"].shape[1:] == (3, 32, 32) and b["voxels"].shape[1:] == (1, 16, 16, 16)
        seen += b["index"].tolist()
    assert sorted(seen) == list(range(12))


def test_augmentation_keeps_the_pose_consistent_with_the_mask(root):
    from poseshape.data.collections import MeshCollection
    from poseshape.render.mesh_hard import rasterize

    plain = ShardDataset(root)
    aug = ShardDataset(root, augment=Augment(crop_shift=0.1, crop_scale=0.2, seed=1))
    coll = MeshCollection.procedural(categories=["car", "sofa"], per_category=2, seed=2)
    for i in (1, 7):
        a, p = aug[i], plain[i]
        assert not torch.equal(a["image"], p["image"]) and not torch.equal(a["K"], p["K"])
        assert a["image"].min() >= 0 and a["image"].max() <= 1
        mesh = coll.mesh(coll.index(a["category_name"], a["model_id"]))
        fr = rasterize(mesh.verts.float(), mesh.faces, a["R"][None], a["t"][None], a["K"], 32)
        m1, m2 = fr.mask[0, 0] > 0.5, a["mask"][0] > 0.5
        iou = (m1 & m2).sum() / (m1 | m2).sum()
        assert iou > 0.9, float(iou)  # only nearest-neighbour resampling differs
        torch.testing.assert_close(aug[i]["image"], a["image"])  # deterministic per (seed, epoch, index)


def test_incomplete_and_tmp_files(root, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    # a half-written tmp shard lying around is never read
    (dst / ".shard_00001.npz.tmp").write_bytes(b"garbage")
    assert len(ShardDataset(dst)) == 12 and ShardDataset(dst)[5]["image"].shape == (3, 32, 32)
    # an interrupted data set: refused unless asked, then only finished shards are used
    idx = json.loads((dst / "index.json").read_text())
    idx["complete"] = False
    (dst / "index.json").write_text(json.dumps(idx))
    (dst / "shard_00001.npz").unlink()
    with pytest.raises(FileFormatError, match="incomplete"):
        ShardDataset(dst)
    part = ShardDataset(dst, allow_incomplete=True)
    assert len(part) == 8 and sorted(int(part[i]["index"]) for i in range(8)) == [0, 1, 2, 3, 8, 9, 10, 11]


def test_other_conventions_and_corrupt_shards_are_refused(root, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    idx = json.loads((dst / "index.json").read_text())
    (dst / "index.json").write_text(json.dumps({**idx, "conventions_version": 0}))
    with pytest.raises(FileFormatError, match="conventions version 0"):
        ShardDataset(dst)
    (dst / "index.json").write_text(json.dumps(idx))
    bad = dst / "shard_00002.npz"
    bad.write_bytes(bad.read_bytes()[:300])
    ds = ShardDataset(dst)
    ds[0]
    with pytest.raises(FileFormatError, match="shard_00002.npz"):
        ds[9]
    with pytest.raises(FileFormatError, match="missing index"):
        ShardDataset(tmp_path)
