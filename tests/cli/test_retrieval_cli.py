"""``poseshape retrieval index``: database from a mesh folder, broken files, empty folders."""

from __future__ import annotations

import pytest

from poseshape.cli.main import main
from poseshape.core.config import apply_overrides
from poseshape.engine.checkpoint import save_checkpoint
from poseshape.engine.predictor import load_predictor
from poseshape.methods.retrieval import SPEC
from poseshape.methods.retrieval.config import RetrievalConfig
from poseshape.methods.retrieval.data import config_collection
from poseshape.methods.retrieval.database import collection_buffers, embed_models, load_database, network_fingerprint
from poseshape.methods.retrieval.train import index_rotations


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = apply_overrides(
        RetrievalConfig(),
        [
            "embed_dim=16",
            "voxnet_channels=4",
            "backbone=resnet18",
            "backbone_width=8",
            "data.categories=[car]",
            "data.models_per_category=2",
            "data.image_size=64",
            "index_rotations=2",
        ],
    )
    models = SPEC.build_models(cfg)
    buffers, _ = collection_buffers(config_collection(cfg))
    models["bank"].set(**buffers)
    models["bank"].set_embeddings(
        embed_models(models["embed"], models["bank"].voxels, index_rotations(cfg)), network_fingerprint(models["embed"])
    )
    path = tmp_path_factory.mktemp("ck") / "rt.pt"
    save_checkpoint(path, method="retrieval", config=cfg, models=models)
    return path


def _write_obj(path, mesh):
    with open(path, "w") as f:
        for v in mesh.verts.tolist():
            f.write(f"v {v[0]} {v[1]} {v[2]}\n")
        for t in (mesh.faces + 1).tolist():
            f.write(f"f {t[0]} {t[1]} {t[2]}\n")


def test_index_a_folder_skips_broken_files_and_the_predictor_searches_it(checkpoint, tmp_path, capsys):
    pred = load_predictor(checkpoint, method="retrieval", device="cpu")
    folder = tmp_path / "cad" / "cars"
    folder.mkdir(parents=True)
    for i in range(3):
        _write_obj(folder / f"m{i}.obj", pred.bank.mesh(i % len(pred.bank)))
    (folder / "broken.obj").write_text("not a mesh\n")
    db = tmp_path / "cad.db"
    with pytest.warns(UserWarning, match="broken.obj"):
        rc = main(
            ["retrieval", "index", "--meshes", str(tmp_path / "cad"), "--out", str(db), "--checkpoint", str(checkpoint)]
        )
    assert rc == 0
    out = capsys.readouterr().out
    assert "3 models embedded, 1 skipped" in out and "broken.obj" in out
    bank, info = load_database(db)
    assert len(bank) == 3 and info["count"] == 3 and len(info["skipped"]) == 1
    assert info["fingerprint"] == pred.fingerprint
    pred.use_database(db)
    p = pred.predict(pred.bank.voxels.new_zeros(1, 3, 64, 64).float())
    assert p.model_id[0].startswith("car/")


def test_index_errors(checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(
        [
            "retrieval",
            "index",
            "--meshes",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "x.db"),
            "--checkpoint",
            str(checkpoint),
        ]
    )
    assert rc == 2 and "no mesh files" in capsys.readouterr().err
    rc = main(
        [
            "retrieval",
            "index",
            "--meshes",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "x.db"),
            "--checkpoint",
            str(checkpoint),
        ]
    )
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_index_procedural(checkpoint, tmp_path, capsys):
    db = tmp_path / "p.db"
    rc = main(
        [
            "retrieval",
            "index",
            "--meshes",
            "procedural",
            "--per-category",
            "3",
            "--out",
            str(db),
            "--checkpoint",
            str(checkpoint),
        ]
    )
    assert rc == 0 and "3 models embedded, 0 skipped" in capsys.readouterr().out
