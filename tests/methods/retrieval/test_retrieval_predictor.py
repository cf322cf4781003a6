"""retrieval: the predictor's frames (posed retrieved mesh on the silhouette), database errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.errors import CheckpointError, FileFormatError, PoseshapeError
from poseshape.data.synth import render_dataset
from poseshape.methods.retrieval.data import ImageSamples, config_collection, synth_config
from poseshape.methods.retrieval.database import (
    ModelBank,
    collection_buffers,
    load_database,
    open_collection,
    save_database,
)
from poseshape.methods.retrieval.evaluate import evaluate
from poseshape.methods.retrieval.model import encode_rotation
from poseshape.methods.retrieval.predictor import RetrievalPredictor


class _OracleRegressor(nn.Module):
    """Returns the database embedding of the true model and the true translation cell."""

    def __init__(self, real, shape, t_idx, t_res):
        super().__init__()
        self.real = real
        self.p = nn.Parameter(torch.zeros(1))
        self.shape, self.t_idx, self.t_res = shape, t_idx, t_res

    def forward(self, images):
        T = self.real.t_anchors.num_anchors
        res = torch.zeros(1, T, 3)
        res[0, self.t_idx] = self.t_res
        return {
            "shape": self.shape[None],
            "pose": torch.zeros(1, self.real.embed_dim),
            "t_logits": F.one_hot(self.t_idx, T).float()[None],
            "t_residual": res,
        }

    def translation(self, out):
        return self.real.translation(out)


class _OracleHeads(nn.Module):
    def __init__(self, real, idx, res):
        super().__init__()
        self.real, self.idx, self.res = real, idx, res

    def forward(self, shape, pose):
        A = self.real.num_anchors
        r = torch.zeros(1, A, 4)
        r[0, self.idx] = self.res
        return {"shape_logits": torch.zeros(1, 1), "anchor_logits": F.one_hot(self.idx, A).float()[None], "residual": r}

    def rotation(self, out):
        return self.real.rotation(out)

    def rotation_topk(self, out, k):
        return self.real.rotation_topk(out, k)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def test_predictor_poses_the_retrieved_mesh_onto_the_rendered_silhouette(tiny, tmp_path):
    cfg, models = tiny
    render_dataset(config_collection(cfg), tmp_path / "r", synth_config(cfg, 2, seed=3), progress=False)
    pred = RetrievalPredictor(cfg, models)
    names = [pred.bank.name(i) for i in range(len(pred.bank))]
    ds = ImageSamples(tmp_path / "r", names)
    for i in (1, 6):
        it = ds[i]
        m = int(it["model"])
        a_idx, a_res = encode_rotation(it["q"][None].double(), pred.heads.anchors.double())
        t_idx, t_res = pred.regressor.t_anchors.encode(it["t"].double())
        oracle = RetrievalPredictor(cfg, models)
        oracle.regressor = _OracleRegressor(pred.regressor, pred.bank.embeddings[m], t_idx, t_res.float())
        oracle.heads = _OracleHeads(pred.heads, a_idx[0], a_res[0].float())
        out = oracle(it["image"][None])
        assert out.model_id == [names[m]] and float(out.extras["distance"][0]) < 1e-3
        assert torch.equal(out.meshes[0].faces, pred.bank.mesh(m).faces)
        R_err = (out.R[0].double() - it["R"].double()).abs().max()
        assert float(R_err) < 1e-4 and float((out.t[0] - it["t"]).abs().max()) < 1e-4
        torch.testing.assert_close(out.camera.K[0].float(), it["K"].float(), atol=1e-3, rtol=1e-4)
        sil = out.render_silhouette(0)
        assert _iou(sil[0], it["mask"][0]) > 0.95


def test_predictor_outputs_and_capabilities(tiny):
    cfg, models = tiny
    pred = RetrievalPredictor(cfg, models)
    out = pred(torch.rand(3, 3, 80, 80))
    assert len(out) == 3 and out.R.shape == (3, 3, 3) and out.voxels.shape == (3, 1, 32, 32, 32)
    assert all(mid in {pred.bank.name(i) for i in range(len(pred.bank))} for mid in out.model_id)
    assert out.camera.kind == "pinhole" and pred.capabilities.camera == "pinhole"
    assert set(pred.capabilities.shape_kinds) == {"mesh", "voxels"}
    # the distance is the exact distance to the retrieved entry
    emb = pred.embeddings(torch.rand(1, 3, 64, 64))
    d = torch.cdist(emb["shape"], pred.bank.embeddings)
    o = pred.predict(torch.rand(1, 3, 64, 64))
    assert o.extras["topk_distance"].shape[1] == min(5, len(pred.bank))
    assert float(d.min()) >= 0
    with pytest.raises(PoseshapeError):
        pred(torch.rand(3, 64, 64))


def test_empty_and_foreign_databases_are_refused(tiny, make_tiny, tmp_path):
    tiny_config, tiny_models = make_tiny
    cfg, models = tiny
    pred = RetrievalPredictor(cfg, models)
    with pytest.raises(PoseshapeError, match="empty"):
        pred.use_bank(ModelBank())
    other = tiny_models(tiny_config("voxnet_channels=4"))["bank"]  # another embedding network
    save_database(tmp_path / "other.db", other, [])
    with pytest.raises(CheckpointError, match="another embedding network"):
        pred.use_database(tmp_path / "other.db")
    save_database(tmp_path / "own.db", models["bank"], [("x.obj", "bad")])
    info = pred.use_database(tmp_path / "own.db")
    assert info["count"] == len(models["bank"]) and info["skipped"] == [["x.obj", "bad"]]
    with pytest.raises(PoseshapeError, match="empty or unindexed"):
        save_database(tmp_path / "e.db", ModelBank(), [])
    (tmp_path / "junk.db").write_bytes(b"not a database")
    with pytest.raises(FileFormatError, match="not a retrieval database"):
        load_database(tmp_path / "junk.db")
    with pytest.raises(FileFormatError, match="no such database"):
        load_database(tmp_path / "missing.db")


def test_broken_mesh_files_are_skipped_by_name_and_counted(tmp_path):
    good = open_collection("procedural", ["car"], 1, 0).mesh(0)
    folder = tmp_path / "meshes" / "cars"
    folder.mkdir(parents=True)
    with open(folder / "good.obj", "w") as f:
        for v in good.verts.tolist():
            f.write(f"v {v[0]} {v[1]} {v[2]}\n")
        for t in (good.faces + 1).tolist():
            f.write(f"f {t[0]} {t[1]} {t[2]}\n")
    (folder / "broken.obj").write_text("v 1 2\nf 1 2 9\ngarbage\n")
    (folder / "broken2.off").write_text("OFF\n3 1\n")
    with pytest.warns(UserWarning, match="broken"):
        buffers, skipped = collection_buffers(open_collection(str(tmp_path / "meshes")))
    assert buffers["num_verts"].shape == (1,) and len(skipped) == 2
    assert {p.split("/")[-1] for p, _ in skipped} == {"broken.obj", "broken2.off"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileFormatError, match="no mesh files"):
        open_collection(str(tmp_path / "empty"))
    with pytest.raises(FileFormatError, match="does not exist"):
        open_collection(str(tmp_path / "nope"))
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "broken.obj").write_text("garbage\n")
    with pytest.warns(UserWarning), pytest.raises(PoseshapeError, match="database would be empty"):
        collection_buffers(open_collection(str(only_bad)))


def test_evaluate_rows_against_a_direct_computation(tiny, tmp_path):
    cfg, models = tiny
    pred = RetrievalPredictor(cfg, models)
    pred.method = "retrieval"
    render_dataset(config_collection(cfg), tmp_path / "t", synth_config(cfg, 3, seed=9), progress=False)
    res = evaluate(pred, tmp_path / "t", rows=["full", "head", "small", "large"], progress=False)
    assert [c[0] for c in res["columns"]] == ["n", "top1", "MedErr", "Acc_pi6", "t_err"]
    names = [pred.bank.name(i) for i in range(len(pred.bank))]
    ds = ImageSamples(tmp_path / "t", names)
    hits, errs = [], []
    for i in range(len(ds)):
        it = ds[i]
        p = pred(it["image"][None])
        hits.append(p.model_id[0] == names[int(it["model"])])
        c = float(((p.R[0].double().T @ it["R"].double()).trace() - 1) / 2)
        errs.append(math.degrees(math.acos(max(-1.0, min(1.0, c)))))
    full = res["rows"]["full"]
    assert full["n"] == len(ds) == 12
    assert full["top1"] == pytest.approx(np.mean(hits))
    assert full["MedErr"] == pytest.approx(float(torch.tensor(errs).median()), abs=0.05)
    assert full["Acc_pi6"] == pytest.approx(np.mean(np.array(errs) < 30))
    assert res["rows"]["small"]["n"] + res["rows"]["large"]["n"] == 12
    assert set(full["per_category"]) == {"car", "sofa"}
    with pytest.raises(PoseshapeError, match="rows"):
        evaluate(pred, tmp_path / "t", rows=["bogus"])
