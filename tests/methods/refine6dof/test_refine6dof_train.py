"""``poseshape train refine6dof``: stages, checkpoints, predictor, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from poseshape.core.errors import PoseshapeError
from poseshape.engine.registry import get_method
from poseshape.engine.train import Trainer

#: a whole run: 12 procedural cars -> 2 clusters, 3 renders each, 6 encoder steps
RUN = [
    "width=0.25",
    "fc_hidden=32",
    "image_size=32",
    "num_clusters=2",
    "data.models_per_category=12",
    "data.views=3",
    "hog_size=32",
    "encoder_iters=6",
    "batch_size=4",
    "val_every=3",
    "online_steps=2",
    "voxel_res=16",
]


def test_registered_with_the_papers_defaults():
    spec = get_method("refine6dof")
    cfg = spec.default_config()
    assert (cfg.lr, cfg.batch_size, cfg.dropout, cfg.leaky_slope) == (1e-5, 64, 0.5, 0.2)
    assert (cfg.online_steps, cfg.online_batch, cfg.online_lr, cfg.online_render) == (30, 20, 1e-6, "edge")
    assert (cfg.num_clusters, cfg.cluster_distance, tuple(cfg.split_fractions)) == (3, "hog", (0.6, 0.2, 0.2))
    assert cfg.data.meshes == "procedural" and cfg.data.categories == ["car"]
    assert [s.name for s in spec.get_stages(cfg)] == ["clusters", "encoder"]


def test_cli_trains_all_stages_checkpoints_and_predicts(tmp_path, capsys):
    from poseshape.cli.main import main
    from poseshape.engine.predictor import load_predictor

    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = ["train", "refine6dof", "--out", str(out), "--no-progress"]
    for s in RUN:
        args += ["--set", s]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("last.pt")
    for f in (
        "last.pt",
        "stage_0_clusters.pt",
        "stage_1_encoder.pt",
        "best_encoder.pt",
        "clusters.json",
        "config.yaml",
        "logs/train_1_encoder.csv",
        "logs/val_1_encoder.csv",
    ):
        assert (out / f).is_file(), f
    assert {p.name for p in (out / "data").iterdir()} == {"train", "val", "test"}
    ck = torch.load(out / "last.pt", weights_only=True)
    bank = ck["models"]["medoids"]
    assert bank["verts"].shape[0] == 2 and bank["voxels"].shape == (2, 16, 16, 16)
    stage0 = torch.load(out / "stage_0_clusters.pt", weights_only=True)
    assert torch.equal(stage0["models"]["medoids"]["faces"], bank["faces"])
    clusters = json.loads((out / "clusters.json").read_text())["clusters"]
    assert len(clusters["medoids"]) == 2 and len(clusters["keys"]) == 12
    # rerun: resumes and finds nothing to do
    assert main(args) == 0

    pred_fn = load_predictor(out / "last.pt", method="refine6dof", device="cpu")
    assert pred_fn.capabilities.full_frame and pred_fn.image_size == 32
    from poseshape.data.dataset import ShardDataset

    ds = ShardDataset(out / "data" / "test")
    imgs = torch.stack([ds[i]["image"] for i in range(3)])
    masks = torch.stack([ds[i]["mask"] for i in range(3)])
    pred = pred_fn(imgs, masks)
    ex = pred.extras
    assert pred.voxels.shape == (3, 1, 16, 16, 16) and pred.posed_voxels.shape == (3, 1, 16, 16, 16)
    assert pred.silhouette.shape == (3, 1, 32, 32) and (pred.t[:, 2] > 0).all()  # a pinhole translation
    assert pred.camera.kind == "pinhole" and pred.camera.K.shape == (3, 3, 3) and pred.camera.image_size == (32, 32)
    assert ex["class_probs"].shape == (3, 2) and torch.allclose(ex["class_probs"].sum(1), torch.ones(3))
    assert ex["online_loss"].shape == (3, 3) and len(pred.meshes) == 3 and pred.shape_kinds == ("mesh", "voxels")
    # the medoid mesh itself (not a marching-cubes remesh), named, with its class probability
    bank = pred_fn.bank
    for i in range(3):
        k = int(ex["label"][i])
        assert torch.equal(pred.canonical_mesh(i).faces, bank.mesh(k).faces)
        assert pred.model_id[i] == bank.name(k) and pred.category[i] == bank.name(k).split("/")[0]
        assert float(pred.confidence[i]) == pytest.approx(float(ex["class_probs"][i, k]))
    assert torch.allclose(torch.det(pred.R), torch.ones(3), atol=1e-5)
    # without masks: the encoder alone (no online refinement)
    plain = pred_fn(imgs)
    assert "online_loss" not in plain.extras and torch.allclose(plain.R, ex["encoder_R"], atol=1e-6)
    # the scene of the three predictions loads back
    from poseshape.methods.refine6dof.scene import export_scene, scene_from_prediction

    p = export_scene(scene_from_prediction(pred), tmp_path / "scene.glb")
    import trimesh

    assert len(trimesh.load(p, force="scene").geometry) == 3


def test_posed_frame_agrees_with_the_pinhole_render(tiny):
    """The weak-perspective posed grid projects close to the exact pinhole silhouette."""
    import math

    from poseshape.methods.refine6dof.data import PoseSamples
    from poseshape.methods.refine6dof.model import MedoidBank
    from poseshape.methods.refine6dof.online import hard_silhouettes
    from poseshape.methods.refine6dof.predictor import posed_from_pinhole
    from poseshape.metrics import mask_iou

    cfg = tiny["cfg"]
    bank = MedoidBank()
    bank.set(**tiny["buffers"])
    ds = PoseSamples(tiny["paths"]["train"], cfg, tiny["clusters"])
    items = [ds[i] for i in range(0, len(ds), 7)][:6]
    R = torch.stack([it["R"] for it in items])
    t = torch.stack([it["t"] for it in items])
    K = torch.stack([it["K"] for it in items])
    lab = torch.stack([it["label"] for it in items])
    E = 2 * cfg.posed_depth * math.tan(math.radians(cfg.fov_deg) / 2)
    aligned = torch.stack([bank.voxel_grid(int(c)) for c in lab])[:, None]
    posed, _c, sigma = posed_from_pinhole(aligned, R, t, K, 64, E, cfg.posed_depth, out_size=64)
    sil = hard_silhouettes(bank, lab, R, t, K, 64)
    proj = posed.amax(2)  # (B, 1, 64, 64): rows y down, columns x right
    ious = mask_iou(proj, sil)
    assert float(ious.min()) > 0.6, ious
    assert torch.allclose(sigma, cfg.posed_depth / t[:, 2])


def test_missing_data_is_a_clear_error(tmp_path):
    spec = get_method("refine6dof")
    cfg = spec.make_config(None, RUN + [f"data.meshes={tmp_path / 'nope'}"])
    with pytest.raises(PoseshapeError, match="data.meshes=.*nope.*neither 'procedural' nor an existing folder"):
        Trainer(spec, cfg, out_dir=tmp_path / "r", progress=False, tensorboard=False).fit()
    cfg = spec.make_config(None, RUN + [f"data.train={tmp_path}"])
    with pytest.raises(PoseshapeError, match="data.train=.*index.json"):
        Trainer(spec, cfg, out_dir=tmp_path / "r2", progress=False, tensorboard=False).fit()
    with pytest.raises(PoseshapeError, match="data.categories is empty"):
        spec.build_models(spec.make_config(None, ["data.categories=[]"]))
    with pytest.raises(PoseshapeError, match="pose_repr"):
        spec.build_models(spec.make_config(None, ["pose_repr=quaternion"]))
    cfg = spec.make_config(None, RUN + ["num_clusters=13"])
    with pytest.raises(PoseshapeError, match="fewer than num_clusters=13"):
        Trainer(spec, cfg, out_dir=tmp_path / "r3", progress=False, tensorboard=False).fit()


def test_predictor_bad_input(tmp_path):
    from poseshape.core.errors import ShapeError
    from poseshape.methods.refine6dof.predictor import Refine6DofPredictor

    spec = get_method("refine6dof")
    cfg = spec.make_config(None, RUN)
    models = spec.build_models(cfg)
    with pytest.raises(PoseshapeError, match="no medoids"):
        Refine6DofPredictor(cfg, models)
    from poseshape.methods.refine6dof.train import medoid_buffers

    models["medoids"].set(**medoid_buffers(cfg))
    p = Refine6DofPredictor(cfg, models)
    with pytest.raises(ShapeError):
        p(torch.rand(2, 3, 32, 40))
    with pytest.raises(ShapeError, match="masks"):
        p(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 16, 16))
    with pytest.raises(ShapeError, match="empty mask"):
        p(torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))
    out = p(torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64))  # other sizes are resized
    assert out.silhouette.shape == (1, 1, 32, 32)


def test_prerendered_sets_via_data_train(tiny, tmp_path):
    """``--set data.train=DIR``: sets rendered beforehand are used as they are (no re-render)."""
    from poseshape.data.synth import SynthConfig, render_dataset

    spec = get_method("refine6dof")
    over = [*tiny["overrides"], "encoder_iters=2", "batch_size=4", f"data.train={tiny['paths']['train']}"]
    tr = Trainer(spec, spec.make_config(None, over), out_dir=tmp_path / "r", progress=False, tensorboard=False)
    tr.fit()
    assert not (tmp_path / "r" / "data" / "train").exists()
    assert len(tr.models["medoids"]) == 2
    # a set of another framing (cropped, paper 000's) is refused with the reason
    crop = tmp_path / "crop"
    render_dataset(
        "procedural",
        crop,
        SynthConfig(image_size=32, views=2, voxel_res=0, framing="crop"),
        categories=["car"],
        models_per_category=8,
        split_fractions=(1, 0, 0),
        progress=False,
    )
    over[-1] = f"data.train={crop}"
    with pytest.raises(PoseshapeError, match="framing='crop'.*6dof"):
        Trainer(spec, spec.make_config(None, over), out_dir=tmp_path / "r2", progress=False, tensorboard=False).fit()
