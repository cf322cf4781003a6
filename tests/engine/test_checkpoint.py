"""Tests of poseshape.engine.checkpoint: round trip, atomic writes, and every refusal case."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

import poseshape
import poseshape.engine.checkpoint as ckmod
from poseshape.core.errors import CheckpointError
from poseshape.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointVersionWarning,
    load_checkpoint,
    restore_models,
    save_checkpoint,
    unwrap_module,
)
from poseshape.geometry.conventions import CONVENTIONS_VERSION


@dataclass
class Inner:
    sizes: tuple[int, int] = (2, 3)


@dataclass
class Cfg:
    lr: float = 1e-3
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def _models():
    torch.manual_seed(0)
    return {"enc": nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), "dec": nn.Linear(4, 2)}


def _save(path, **kw):
    models = kw.pop("models", None) or _models()
    args = {"method": "toy", "config": Cfg(), "models": models}
    args.update(kw)
    return save_checkpoint(path, **args), models


def test_roundtrip_and_contents(tmp_path):
    models = _models()
    opt = torch.optim.Adam([p for m in models.values() for p in m.parameters()], lr=0.1)
    models["dec"](models["enc"](torch.randn(5, 3))).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 3)
    path = save_checkpoint(
        tmp_path / "sub" / "c.pt",
        method="toy",
        config=Cfg(),
        models=models,
        optimizers={"opt": opt},
        schedulers={"s": sched},
        trainer_state={"stage_index": 1, "rng": torch.get_rng_state()},
        extra={"note": "hi", "vals": [1, 2.5, None]},
    )
    ck = load_checkpoint(path, expected_method="toy")
    assert ck.method == "toy" and ck.format_version == FORMAT_VERSION
    assert ck.poseshape_version == poseshape.__version__
    assert ck.conventions_version == CONVENTIONS_VERSION
    assert ck.config == {"lr": 1e-3, "name": "x", "inner": {"sizes": [2, 3]}}
    assert ck.extra == {"note": "hi", "vals": [1, 2.5, None]}
    assert ck.trainer_state["stage_index"] == 1
    fresh = {"enc": nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), "dec": nn.Linear(4, 2)}
    restore_models(fresh, ck)
    for n in models:
        for k, v in models[n].state_dict().items():
            assert torch.equal(fresh[n].state_dict()[k], v), (n, k)
    opt2 = torch.optim.Adam([p for m in fresh.values() for p in m.parameters()], lr=0.1)
    opt2.load_state_dict(ck.optimizers["opt"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert ck.schedulers["s"]["step_size"] == 3
    # the file really is plain: torch's own weights_only loader accepts it
    raw = torch.load(path, weights_only=True)
    assert raw["method"] == "toy" and set(raw["models"]) == {"enc", "dec"}


def test_ddp_like_wrappers_are_unwrapped(tmp_path):
    m = nn.Linear(2, 2)
    wrapped = nn.DataParallel(m)
    assert unwrap_module(wrapped) is m
    path, _ = _save(tmp_path / "c.pt", models={"m": wrapped})
    assert set(load_checkpoint(path).models["m"]) == {"weight", "bias"}  # no "module." prefix


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


def test_wrong_method(tmp_path):
    path, _ = _save(tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"c\.pt: checkpoint is for method 'toy', expected 'other'"):
        load_checkpoint(path, expected_method="other")


def test_conventions_mismatch(tmp_path, monkeypatch):
    monkeypatch.setattr(ckmod, "CONVENTIONS_VERSION", CONVENTIONS_VERSION + 1)
    path, _ = _save(tmp_path / "c.pt")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=f"conventions_version {CONVENTIONS_VERSION + 1}"):
        load_checkpoint(path)


def test_unknown_format_and_foreign_files(tmp_path):
    path, _ = _save(tmp_path / "c.pt")
    data = torch.load(path, weights_only=True)
    data["format_version"] = 99
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future\.pt: unknown checkpoint format_version 99"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")  # a bare state dict
    with pytest.raises(CheckpointError, match="not a poseshape checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    del data["method"]
    data["format_version"] = FORMAT_VERSION
    torch.save(data, tmp_path / "nomethod.pt")
    with pytest.raises(CheckpointError, match="lacks the entries"):
        load_checkpoint(tmp_path / "nomethod.pt")


def test_corrupt_and_truncated(tmp_path):
    path, _ = _save(tmp_path / "c.pt")
    blob = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match=r"garbage\.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "garbage.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "empty.pt")
    # flip bytes inside the data.pkl record of the zip
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        info = z.getinfo(name)
    bad = bytearray(blob)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    bad[start : start + 20] = b"\xff" * 20
    (tmp_path / "flipped.pt").write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="flipped.pt"):
        load_checkpoint(tmp_path / "flipped.pt")


class _Evil:
    """Unpickling this runs os.makedirs(marker): weights_only must never do that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@dataclass
class _Custom:
    a: int = 1


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = {
        "format_version": FORMAT_VERSION,
        "method": "toy",
        "config": {},
        "conventions_version": CONVENTIONS_VERSION,
        "models": {},
        "extra": {"x": _Evil(str(marker))},
    }
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # a plain pickle (not even torch's zip format) with a custom class
    with open(tmp_path / "evil2.pt", "wb") as f:
        pickle.dump(_Evil(str(marker)), f)
    with pytest.raises(CheckpointError, match="evil2.pt"):
        load_checkpoint(tmp_path / "evil2.pt")
    assert not marker.exists()
    payload["extra"] = {"x": _Custom()}
    torch.save(payload, tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match=r"custom\.pt: refused"):
        load_checkpoint(tmp_path / "custom.pt")


def test_version_difference_only_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(ckmod, "__version__", "0.0.0-old")
    path, _ = _save(tmp_path / "c.pt")
    monkeypatch.undo()
    with pytest.warns(CheckpointVersionWarning, match="0.0.0-old"):
        ck = load_checkpoint(path)
    assert ck.poseshape_version == "0.0.0-old"


def test_save_refuses_unsafe_values_and_writes_nothing(tmp_path):
    for bad in ({"f": lambda: 1}, {"arr": np.zeros(3)}, {"obj": _Custom()}, {(1, 2): 3}):
        with pytest.raises(CheckpointError, match=r"c\.pt: extra"):
            _save(tmp_path / "c.pt", extra=bad)
    assert not list(tmp_path.iterdir())
    with pytest.raises(CheckpointError, match="config"):
        _save(tmp_path / "c.pt", config={"f": object()})


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path, _ = _save(tmp_path / "c.pt", extra={"v": 1})
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        _save(path, extra={"v": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path).extra == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary left
    # a stray tmp file from a killed writer does not disturb readers or writers
    (tmp_path / ".c.pt.tmp.12345").write_bytes(b"junk")
    _save(path, extra={"v": 3})
    assert load_checkpoint(path).extra == {"v": 3}


def test_restore_models_mismatch(tmp_path):
    path, _ = _save(tmp_path / "c.pt")
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="modules differ"):
        restore_models({"enc": nn.Linear(3, 4)}, ck)
    with pytest.raises(CheckpointError, match="cannot load module 'dec'"):
        restore_models({"enc": _models()["enc"], "dec": nn.Linear(4, 3)}, ck)


def test_export_keeps_weights_drops_training_state_and_applies_config_overrides(tmp_path, capsys):
    from poseshape.engine.checkpoint import _main, export_checkpoint
    from poseshape.engine.registry import get_method

    cfg = get_method("refine6dof").default_config()
    cfg.data.test = "/somewhere/only/on/the/training/machine"
    lin = nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters())
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    src = save_checkpoint(
        tmp_path / "run.pt",
        method="refine6dof",
        config=cfg,
        models={"encoder": lin},
        optimizers={"encoder": opt},
        trainer_state={"stage": 1},
    )
    dst = export_checkpoint(src, tmp_path / "ship.pt", ["data.test=", "online_lr=1e-4"])
    ck = load_checkpoint(dst)
    assert ck.config["data"]["test"] == "" and ck.config["online_lr"] == 1e-4
    assert ck.config["data"]["views"] == cfg.data.views  # the rest is untouched
    assert torch.equal(ck.models["encoder"]["weight"], lin.weight.detach())
    raw = torch.load(dst, weights_only=True)
    assert raw["optimizers"] == {} and raw["trainer_state"] == {} and raw["extra"]["exported_from"] == "run.pt"
    # a bad override: a clear error, nothing written
    with pytest.raises(CheckpointError, match="unknown config key 'data.bogus'"):
        export_checkpoint(src, tmp_path / "bad.pt", ["data.bogus=1"])
    assert not (tmp_path / "bad.pt").exists()
    assert _main(["export", str(src), str(tmp_path / "cli.pt"), "--set", "data.test="]) == 0
    assert load_checkpoint(tmp_path / "cli.pt").config["data"]["test"] == ""
    assert _main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "x.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
