"""``poseshape eval`` for refine6dof: Table 1 rows checked against independent computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from poseshape.core.errors import PoseshapeError
from poseshape.methods.refine6dof.data import PoseSamples
from poseshape.methods.refine6dof.evaluate import evaluate, evaluate_rows, row_settings
from poseshape.methods.refine6dof.predictor import Refine6DofPredictor
from poseshape.render.mesh_hard import rasterize


@pytest.fixture(scope="module")
def setup(tiny, trained):
    models, _ = trained
    ds = PoseSamples(tiny["paths"]["train"], tiny["cfg"], tiny["clusters"], limit=10, full_size=True)
    return models, ds


def test_encoder_row_matches_a_brute_force_computation(setup, tiny):
    models, ds = setup
    enc, bank = models["encoder"], models["medoids"]
    res = evaluate_rows(enc, bank, ds, {"encoder": row_settings(tiny["cfg"], "encoder")}, chunk=4, progress=False)
    m = res["encoder"]
    items = [ds[i] for i in range(len(ds))]
    with torch.no_grad():
        out = enc(torch.stack([it["input"] for it in items]))
    lab = out["logits"].argmax(1)
    gt = torch.stack([it["label"] for it in items])
    # geodesic angles by scipy, independently of poseshape.metrics
    ang = [
        np.degrees(
            (
                Rotation.from_matrix(out["R"][i].double().numpy()).inv()
                * Rotation.from_matrix(items[i]["R"].double().numpy())
            ).magnitude()
        )
        for i in range(len(items))
    ]
    terr = [float((out["t"][i] - items[i]["t"]).norm()) for i in range(len(items))]
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(float((lab == gt).float().mean()))
    # torch.median takes the lower middle value of an even count
    assert m["mve_deg"] == pytest.approx(sorted(ang)[(len(ang) - 1) // 2], abs=1e-3)
    assert m["acc_pi6"] == pytest.approx(np.mean(np.array(ang) < 30))
    assert m["t_err"] == pytest.approx(sorted(terr)[(len(terr) - 1) // 2], abs=1e-5)
    # mIoU: each predicted medoid drawn by the PyTorch reference rasteriser (not the C++ one the
    # evaluation uses) at the full-size camera, IoU counted in numpy
    ious = []
    for i, it in enumerate(items):
        mesh = bank.mesh(int(lab[i]))
        H = it["mask_full"].shape[-1]
        sil = (
            rasterize(
                mesh.verts.double(),
                mesh.faces,
                out["R"][i : i + 1].double(),
                out["t"][i : i + 1].double(),
                it["K_full"][None].double(),
                (H, H),
            )
            .mask[0, 0]
            .numpy()
            > 0.5
        )
        gt_m = it["mask_full"][0].numpy() > 0.5
        union = (sil | gt_m).sum()
        ious.append((sil & gt_m).sum() / union if union else 0.0)
    assert m["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)
    assert m["s_per_image"] == 0.0


def test_refine_row_raises_the_iou_and_online_row_runs(setup, tiny):
    models, ds = setup
    cfg = tiny["cfg"]
    rows = {
        "encoder": row_settings(cfg, "encoder"),
        "online": row_settings(cfg, "online", online=["steps=3", "lr=1e-4", "render=softras"]),
        "refine": row_settings(cfg, "refine", refine=["steps=20", "starts=4"]),
    }
    with pytest.raises(PoseshapeError, match="given for a row without that step"):
        row_settings(cfg, "refine", online=["steps=3"])
    assert rows["refine"]["refine"].starts == 4 and rows["online"]["online"]["lr"] == 1e-4
    res = evaluate_rows(models["encoder"], models["medoids"], ds, rows, chunk=5, progress=False)
    assert set(res) == {"encoder", "online", "refine"}
    # the direct refinement optimises the silhouette alignment: the mean IoU must rise
    assert res["refine"]["miou"] > res["encoder"]["miou"] + 0.02, res
    assert res["refine"]["s_per_image"] > 0 and res["online"]["s_per_image"] > 0
    # the class is the encoder's in every row
    assert res["refine"]["accuracy"] == res["encoder"]["accuracy"] == res["online"]["accuracy"]
    # the caller's encoder is left untouched by the online row
    assert not models["encoder"].training


def test_evaluate_on_a_given_set_and_bad_options(setup, tiny):
    models, _ = setup
    pred = Refine6DofPredictor(tiny["cfg"], models)
    res = evaluate(pred, tiny["paths"]["train"], rows=["encoder"], limit=4, run_dir=tiny["root"], progress=False)
    assert res["samples"] == 4 and list(res["rows"]) == ["encoder"] and len(res["medoids"]) == 2
    with pytest.raises(PoseshapeError, match="row 'bogus'"):
        evaluate(pred, tiny["paths"]["train"], rows=["bogus"], run_dir=tiny["root"])
    with pytest.raises(PoseshapeError, match="online: expected KEY=VALUE with KEY one of .*'speed=3'"):
        evaluate(pred, tiny["paths"]["train"], rows=["online"], online=["speed=3"], run_dir=tiny["root"])
    with pytest.raises(PoseshapeError, match="refine: starts: cannot use x as int"):
        evaluate(pred, tiny["paths"]["train"], rows=["refine"], refine=["starts=x"], run_dir=tiny["root"])
    with pytest.raises(PoseshapeError, match="unknown config key 'bogus' for RefineConfig"):
        row_settings(tiny["cfg"], "refine", refine=["bogus=1"])
    with pytest.raises(PoseshapeError, match="online_lr: cannot use abc as float"):
        row_settings(tiny["cfg"], "online", online=["lr=abc"])
    with pytest.raises(PoseshapeError, match="do not use them"):
        evaluate(pred, tiny["paths"]["train"], rows=["encoder"], refine=["steps=3"], run_dir=tiny["root"])
    with pytest.raises(PoseshapeError, match="not a rendered data set"):
        evaluate(pred, tiny["root"], rows=["encoder"], run_dir=tiny["root"])
    rf = row_settings(tiny["cfg"], "refine", refine=["coarse=false", "max_faces=null", "sigma=1e-5"])["refine"]
    assert (rf.coarse, rf.max_faces, rf.sigma) == (False, None, 1e-5)
    on = row_settings(tiny["cfg"], "online+refine", online=["steps=5", "render=softras"])["online"]
    assert on["steps"] == 5 and on["render"] == "softras" and on["lr"] == tiny["cfg"].online_lr


def test_full_size_test_masks_drive_the_iou(tiny):
    """A test set rendered larger than the encoder input: the items carry both sizes."""
    import dataclasses

    from poseshape.data.synth import render_dataset
    from poseshape.methods.refine6dof.data import compute_clusters, synth_config

    cfg = tiny["cfg"]
    assert "mask_full" not in PoseSamples(tiny["paths"]["train"], cfg, tiny["clusters"], limit=1)[0]  # training
    it = PoseSamples(tiny["paths"]["train"], cfg, tiny["clusters"], limit=1, full_size=True)[0]
    assert it["mask_full"] is it["mask"] and it["mask"].shape[-1] == cfg.image_size
    _, coll = compute_clusters(cfg, tiny["root"])
    root = tiny["root"] / "big"
    render_dataset(coll.subset([0]), root, synth_config(cfg, 2, 2 * cfg.image_size), split_fractions=(1.0, 0.0, 0.0))
    big = PoseSamples(root, dataclasses.replace(cfg), tiny["clusters"], full_size=True)[0]
    S = cfg.image_size
    assert big["mask"].shape[-1] == S and big["mask_full"].shape[-1] == 2 * S
    assert torch.allclose(big["K_full"][:2], big["K"][:2] * 2) and math.isclose(float(big["K_full"][2, 2]), 1.0)
    # the area-resized small mask is the big one averaged over 2 x 2 blocks
    assert torch.allclose(torch.nn.functional.avg_pool2d(big["mask_full"][None], 2)[0], big["mask"], atol=1e-5)


def test_cli_eval_json(tmp_path, setup, tiny, capsys, monkeypatch):
    """``poseshape eval`` dispatches to the method's table and writes OUT.json / OUT.md."""
    from poseshape.cli import eval as predict

    models, _ = setup
    pred = Refine6DofPredictor(tiny["cfg"], models)
    pred.method = "refine6dof"
    pred.checkpoint_path = tiny["root"] / "x.pt"  # the run folder holds clusters.json
    monkeypatch.setattr(predict, "load_predictor", lambda **kw: pred)
    from poseshape.cli.main import main

    rc = main(
        [
            "eval",
            "--checkpoint",
            "x.pt",
            "--data",
            str(tiny["paths"]["train"]),
            "--limit",
            "3",
            "--rows",
            "encoder,refine",
            "--refine",
            "steps=4",
            "--refine",
            "starts=2",
            "--no-progress",
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "MVE (deg)" in text and "refine" in text
    js = json.loads((tmp_path / "ev.json").read_text())
    assert set(js["x.pt"]["rows"]) == {"encoder", "refine"} and js["x.pt"]["samples"] == 3
    assert "| refine | 3 |" in (tmp_path / "ev.md").read_text()
    # options of another method's table are refused with a clear message
    assert main(["eval", "--checkpoint", "x.pt", "--rows", "nope", "--data", str(tiny["paths"]["train"])]) == 2
    assert "row 'nope'" in capsys.readouterr().err


def test_cli_eval_refuses_refine6dof_options_for_reproject(capsys):
    from poseshape.cli.main import main

    assert main(["eval", "--method", "reproject", "--rows", "encoder", "--data", "nowhere"]) == 2
    assert "not options of reproject" in capsys.readouterr().err
    assert main(["eval", "--method", "reproject"]) == 2
    assert "needs --data" in capsys.readouterr().err


def test_per_category_rows_partition_the_set(setup, tiny):
    """On a set of several categories every row also has per-category metrics that add up."""
    models, ds = setup

    class TwoCategories:  # the same samples, alternately labelled "car" and "van"
        def __init__(self, base):
            self.base, self.cfg = base, base.cfg
            self.ds = type("Meta", (), {"categories": ["car", "van"]})()

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            return dict(self.base[i], category=torch.tensor(i % 2))

    res = evaluate_rows(
        models["encoder"],
        models["medoids"],
        TwoCategories(ds),
        {"encoder": row_settings(tiny["cfg"], "encoder")},
        chunk=4,
        progress=False,
    )["encoder"]
    per = res["per_category"]
    assert set(per) == {"car", "van"} and per["car"]["n"] + per["van"]["n"] == res["n"] == 10
    mean_acc = (per["car"]["accuracy"] * per["car"]["n"] + per["van"]["accuracy"] * per["van"]["n"]) / 10
    mean_iou = (per["car"]["miou"] * per["car"]["n"] + per["van"]["miou"] * per["van"]["n"]) / 10
    assert res["accuracy"] == pytest.approx(mean_acc) and res["miou"] == pytest.approx(mean_iou)
    # a one-category set has no per-category breakdown
    one = evaluate_rows(
        models["encoder"],
        models["medoids"],
        ds,
        {"encoder": row_settings(tiny["cfg"], "encoder")},
        chunk=4,
        progress=False,
    )["encoder"]
    assert "per_category" not in one
