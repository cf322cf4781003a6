"""Tests of poseshape.engine.train.Trainer with a toy two-stage method defined here.

This file is also a script, run in subprocesses by the resume and DDP tests:

    python tests/test_train.py train OUT_DIR [key=value ...]     # env TOY_KILL_AT="stage:step"
    python -m torch.distributed.run --nproc_per_node=2 tests/test_train.py ddp OUT_DIR [...]
"""

from __future__ import annotations

import csv
import os
import random
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from poseshape.core.config import apply_overrides
from poseshape.core.errors import CheckpointError, PoseshapeError
from poseshape.engine.checkpoint import load_checkpoint, save_checkpoint
from poseshape.engine.registry import MethodSpec, Stage, register_method
from poseshape.engine.train import (
    Trainer,
    derive_seed,
    get_rng_state,
    load_trained,
    move_to_device,
    seed_everything,
    set_rng_state,
)

REPO = Path(__file__).resolve().parents[1]
TOY = "toy_train"


# --------------------------------------------------------------------------- the toy method
@dataclass
class ToyConfig:
    lr: float = 0.03
    batch_size: int = 8
    n_train: int = 64
    iters_head: int = 12
    iters_joint: int = 24
    noise: float = 0.01  # input noise from the global torch RNG (exercises RNG resume)
    rng_weight: float = 0.01  # loss weight jitter from numpy + python RNGs
    val_every: int = 5
    lr_step: int = 10  # StepLR period (halving) in the joint stage


W_TRUE = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
OBSERVED: list[tuple[str, int, bool, bool, bool]] = []  # (stage, step, body.training, body grad, head grad)


def toy_build(cfg: ToyConfig) -> dict[str, nn.Module]:
    return {"body": nn.Linear(4, 8), "head": nn.Linear(8, 1)}


def toy_data(cfg: ToyConfig, ctx):
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(cfg.n_train + 32, 4, generator=g)
    y = x @ W_TRUE + 0.7
    train = torch.utils.data.TensorDataset(x[: cfg.n_train], y[: cfg.n_train])
    val = torch.utils.data.TensorDataset(x[cfg.n_train :], y[cfg.n_train :])
    return train, val


def toy_step(models, batch, ctx):
    cfg = ctx.config
    x, y = batch
    kill = os.environ.get("TOY_KILL_AT")
    if kill and (ctx.stage_index, ctx.step) == tuple(int(v) for v in kill.split(":")):
        os.kill(os.getpid(), signal.SIGKILL)
    stop = os.environ.get("TOY_SIGNAL_AT")  # "stage:step:SIGNAME": a polite stop (Ctrl-C, kill)
    if stop and (ctx.stage_index, ctx.step) == tuple(int(v) for v in stop.split(":")[:2]):
        os.kill(os.getpid(), getattr(signal, stop.split(":")[2]))
    body = models["body"]
    inner = getattr(body, "module", body)
    OBSERVED.append(
        (
            ctx.stage,
            ctx.step,
            inner.training,
            inner.weight.requires_grad,
            getattr(models["head"], "module", models["head"]).weight.requires_grad,
        )
    )
    if cfg.noise:
        x = x + cfg.noise * torch.randn_like(x)
    w = 1.0 + cfg.rng_weight * (float(np.random.rand()) + random.random())
    mse = nn.functional.mse_loss(models["head"](body(x)), y)
    return {"loss": w * mse, "mse": mse.detach()}


def toy_validate(models, batches, ctx):
    errs = [nn.functional.mse_loss(models["head"](models["body"](x)), y) for x, y in batches]
    return {"val_mse": torch.stack(errs).mean()}


def toy_adam(modules, cfg):
    return torch.optim.Adam([p for m in modules.values() for p in m.parameters()], lr=cfg.lr)


def toy_sched(opt, cfg):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=0.5)


def toy_stages(cfg: ToyConfig) -> list[Stage]:
    common = {
        "data": toy_data,
        "step": toy_step,
        "optimizer": toy_adam,
        "batch_size": cfg.batch_size,
        "validate": toy_validate,
        "val_every": cfg.val_every,
    }
    return [
        Stage("head", train=["head"], iterations=cfg.iters_head, best_metric="val_mse", **common),
        Stage(
            "joint", train=["body", "head"], iterations=cfg.iters_joint, scheduler=toy_sched, grad_clip=10.0, **common
        ),
    ]


SPEC = register_method(
    MethodSpec(name=TOY, config_cls=ToyConfig, build=toy_build, stages=toy_stages, description="test toy"), replace=True
)


def weights(models) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().cpu().clone() for n, m in models.items() for k, v in m.state_dict().items()}


def run_script(*args, env_extra=None, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("TOY_KILL_AT", "TOY_SIGNAL_AT")}
    env.update(PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- tests
def test_overfit_toy_to_near_zero(tmp_path):
    cfg = ToyConfig(noise=0.0, rng_weight=0.0, iters_head=20, iters_joint=300, lr=0.03, lr_step=100)
    trainer = Trainer(TOY, cfg, out_dir=tmp_path, progress=False, tensorboard=False, checkpoint_every=10_000)
    models = trainer.fit()
    rows = read_csv(tmp_path / "logs" / "train_1_joint.csv")
    first, last = float(rows[0]["mse"]), float(rows[-1]["mse"])
    assert last < 1e-3 and last < 1e-3 * first
    assert trainer.val_metrics["joint"]["val_mse"] < 1e-3
    # the trained model reproduces y = x W + 0.7 on fresh inputs
    x = torch.randn(16, 4)
    with torch.no_grad():
        pred = models["head"](models["body"](x))
    torch.testing.assert_close(pred, x @ W_TRUE + 0.7, atol=0.05, rtol=0)


def test_stage_order_and_frozen_modules(tmp_path):
    OBSERVED.clear()
    cfg = ToyConfig(iters_head=7, iters_joint=0)
    seed_everything(3)
    init = weights(SPEC.build_models(cfg))  # the trainer builds under the same seed
    trainer = Trainer(TOY, cfg, seed=3, out_dir=None, progress=False)
    after = weights(trainer.fit())
    assert [o[0] for o in OBSERVED] == ["head"] * 7
    assert [o[1] for o in OBSERVED] == list(range(7))
    assert all(not tr and not bg and hg for _, _, tr, bg, hg in OBSERVED)  # body frozen, eval
    for k in ("body.weight", "body.bias"):
        assert torch.equal(after[k], init[k]), k
    assert not torch.equal(after["head.weight"], init["head.weight"])
    # in the joint stage both train and the body changes
    OBSERVED.clear()
    trainer = Trainer(TOY, apply_overrides(cfg, ["iters_joint=4"]), seed=3, progress=False)
    after2 = weights(trainer.fit())
    assert [o[0] for o in OBSERVED] == ["head"] * 7 + ["joint"] * 4
    assert all(tr and bg and hg for s, _, tr, bg, hg in OBSERVED if s == "joint")
    assert not torch.equal(after2["body.weight"], init["body.weight"])
    # after fit every parameter is trainable again and modules are in eval mode
    assert all(p.requires_grad for m in trainer.models.values() for p in m.parameters())
    assert not any(m.training for m in trainer.models.values())


def test_seeded_runs_are_identical_and_seed_matters():
    cfg = ToyConfig(iters_head=3, iters_joint=3)
    a = weights(Trainer(TOY, cfg, seed=1, progress=False).fit())
    b = weights(Trainer(TOY, cfg, seed=1, progress=False).fit())
    c = weights(Trainer(TOY, cfg, seed=2, progress=False).fit())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["body.weight"], c["body.weight"])


def test_csv_logs_checkpoints_and_config(tmp_path):
    cfg = ToyConfig(iters_head=6, iters_joint=11, val_every=5)
    Trainer(TOY, cfg, out_dir=tmp_path, progress=False, checkpoint_every=4).fit()
    rows = read_csv(tmp_path / "logs" / "train_0_head.csv")
    assert list(rows[0]) == ["stage", "step", "global_step", "time", "lr", "loss", "mse"]
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert {r["stage"] for r in rows} == {"head"}
    assert all(float(r["time"]) >= 0 and float(r["lr"]) == pytest.approx(0.03) for r in rows)
    joint = read_csv(tmp_path / "logs" / "train_1_joint.csv")
    assert [int(r["global_step"]) for r in joint] == list(range(7, 18))
    # the lr each step used: StepLR(10, 0.5) halves it after 10 steps
    assert [float(r["lr"]) for r in joint] == pytest.approx([0.03] * 10 + [0.015])
    val = read_csv(tmp_path / "logs" / "val_1_joint.csv")
    assert list(val[0]) == ["stage", "step", "global_step", "time", "val_mse"]
    assert [int(r["step"]) for r in val] == [5, 10, 11]  # every 5 steps + the stage end
    assert (tmp_path / "config.yaml").read_text().startswith("lr: 0.03")
    ck = load_checkpoint(tmp_path / "last.pt", expected_method=TOY)
    assert ck.trainer_state["done"] and ck.trainer_state["stage_index"] == 2
    assert ck.config == {**ck.config, "iters_joint": 11}
    best = load_checkpoint(tmp_path / "best_head.pt", expected_method=TOY)
    assert best.extra["best_metric"] == "val_mse"
    assert best.extra["best_value"] == pytest.approx(
        min(float(r["val_mse"]) for r in read_csv(tmp_path / "logs" / "val_0_head.csv"))
    )
    assert not list(tmp_path.glob(".*tmp*"))
    # load_trained rebuilds the models
    spec, cfg2, models = load_trained(tmp_path / "last.pt")
    assert spec.name == TOY and cfg2 == cfg and not models["body"].training
    # rerunning a finished run does nothing and returns the same weights
    again = Trainer(TOY, cfg, out_dir=tmp_path, progress=False).fit()
    assert torch.equal(again["body"].weight, models["body"].weight)


def test_resume_refuses_other_config_and_seed(tmp_path):
    cfg = ToyConfig(iters_head=2, iters_joint=2)
    Trainer(TOY, cfg, out_dir=tmp_path, progress=False).fit()
    with pytest.raises(CheckpointError, match="lr"):
        Trainer(TOY, apply_overrides(cfg, ["lr=0.5"]), out_dir=tmp_path, progress=False).fit()
    with pytest.raises(CheckpointError, match="seed"):
        Trainer(TOY, cfg, seed=9, out_dir=tmp_path, progress=False).fit()
    # resume=False starts over
    Trainer(TOY, apply_overrides(cfg, ["lr=0.5"]), out_dir=tmp_path, progress=False, resume=False).fit()
    assert load_checkpoint(tmp_path / "last.pt").config["lr"] == 0.5


def test_resume_in_process_is_bit_exact(tmp_path, monkeypatch):
    """Resume from a mid-stage checkpoint (as a killed run leaves it): same weights and logs."""
    import shutil

    import poseshape.engine.train as train_mod

    cfg = ToyConfig(iters_head=9, iters_joint=13)
    ref = weights(Trainer(TOY, cfg, progress=False).fit())
    run = tmp_path / "run"

    def spy(path, **kw):  # keep a copy of the checkpoint written at joint step 8
        out = save_checkpoint(path, **kw)
        ts = kw["trainer_state"]
        if Path(path).name == "last.pt" and (ts["stage_index"], ts["step"]) == (1, 8):
            shutil.copy(path, tmp_path / "mid.pt")
        return out

    monkeypatch.setattr(train_mod, "save_checkpoint", spy)
    Trainer(TOY, cfg, out_dir=run, progress=False, checkpoint_every=4).fit()
    monkeypatch.undo()
    shutil.copy(tmp_path / "mid.pt", run / "last.pt")  # as if killed after step 8
    resumed = weights(Trainer(TOY, cfg, out_dir=run, progress=False, checkpoint_every=4).fit())
    for k in ref:
        assert torch.equal(ref[k], resumed[k]), k
    rows = read_csv(run / "logs" / "train_1_joint.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 14))  # no duplicated rows


def test_resume_after_sigkill_is_bit_exact(tmp_path):
    """Kill (SIGKILL) a run mid-stage after a checkpoint was written, rerun it, compare."""
    args = ["iters_head=11", "iters_joint=17"]
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    cfg = apply_overrides(ToyConfig(), args)
    ref = weights(Trainer(TOY, cfg, out_dir=ref_dir, progress=False, checkpoint_every=5).fit())

    r1 = run_script("train", str(run_dir), *args, env_extra={"TOY_KILL_AT": "1:13"}, check=False)
    assert r1.returncode == -signal.SIGKILL, r1.stderr
    ts = load_checkpoint(run_dir / "last.pt").trainer_state
    assert (ts["stage_index"], ts["step"]) == (1, 10)  # killed 3 steps after a checkpoint
    assert int(read_csv(run_dir / "logs" / "train_1_joint.csv")[-1]["step"]) == 13
    (run_dir / ".last.pt.tmp.999999").write_bytes(b"half a checkpoint")  # killed mid-write
    r3 = run_script("train", str(run_dir), *args)
    assert r3.returncode == 0, r3.stderr

    assert not list(run_dir.glob(".*tmp*"))
    final = torch.load(run_dir / "final.pt", weights_only=True)
    for k in ref:
        assert torch.equal(ref[k], final[k]), k
    for name in ("train_0_head.csv", "train_1_joint.csv", "val_0_head.csv", "val_1_joint.csv"):
        a, b = read_csv(ref_dir / "logs" / name), read_csv(run_dir / "logs" / name)
        assert [r["step"] for r in a] == [r["step"] for r in b], name
        assert [r["loss" if "train" in name else "val_mse"] for r in a] == [
            r["loss" if "train" in name else "val_mse"] for r in b
        ], name


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_save_a_resumable_checkpoint(tmp_path, signame):
    """A polite stop finishes the step, writes last.pt at it, exits non-zero; the rerun gives
    exactly the weights of an uninterrupted run."""
    args = ["iters_head=11", "iters_joint=17"]
    ref = weights(Trainer(TOY, apply_overrides(ToyConfig(), args), progress=False).fit())
    run_dir = tmp_path / "run"
    r1 = run_script("train", str(run_dir), *args, env_extra={"TOY_SIGNAL_AT": f"1:6:{signame}"}, check=False)
    assert r1.returncode != 0 and "rerun the same command to resume" in r1.stderr, r1.stderr
    ts = load_checkpoint(run_dir / "last.pt").trainer_state
    assert (ts["stage_index"], ts["step"]) == (1, 7)  # the step in flight finished and was saved
    r2 = run_script("train", str(run_dir), *args)
    assert r2.returncode == 0, r2.stderr
    final = torch.load(run_dir / "final.pt", weights_only=True)
    for k in ref:
        assert torch.equal(ref[k], final[k]), k


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_keep_identical_weights(tmp_path):
    args = ["noise=0", "rng_weight=0", "iters_head=4", "iters_joint=6", "batch_size=4"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("TOY_KILL_AT", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(Path(__file__).resolve()),
        "ddp",
        str(tmp_path / "run"),
        *args,
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # the strided shards of 2 ranks x 4 samples make the same global batches as 1 x 8
    cfg = apply_overrides(ToyConfig(), [*args[:-1], "batch_size=8"])
    single = weights(Trainer(TOY, cfg, progress=False).fit())
    for k in single:
        torch.testing.assert_close(w0[k], single[k], atol=1e-5, rtol=1e-5)
    # only rank 0 wrote logs: one row per step
    rows = read_csv(tmp_path / "run" / "logs" / "train_1_joint.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert load_checkpoint(tmp_path / "run" / "last.pt").trainer_state["world_size"] == 2


def test_epochs_and_iterable_data(tmp_path):
    batches = [(torch.randn(5, 4), torch.randn(5, 1)) for _ in range(3)]
    seen = []

    def data(cfg, ctx):
        return batches, None

    def step(models, batch, ctx):
        seen.append((ctx.epoch, ctx.step))
        x, y = batch
        return {"loss": nn.functional.mse_loss(models["head"](models["body"](x)), y)}

    spec = MethodSpec(
        name="toy_iter",
        config_cls=ToyConfig,
        build=toy_build,
        stages=[Stage("all", data=data, step=step, optimizer=toy_adam, epochs=2)],
    )
    Trainer(spec, out_dir=tmp_path, progress=False).fit()
    assert seen == [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]
    # map-style data with epochs=: steps = epochs * ceil(n / batch_size)
    OBSERVED.clear()
    spec2 = MethodSpec(
        name="toy_ep",
        config_cls=ToyConfig,
        build=toy_build,
        stages=[Stage("e", data=toy_data, step=toy_step, optimizer=toy_adam, epochs=2, batch_size=10)],
    )
    Trainer(spec2, ToyConfig(n_train=25), progress=False).fit()
    assert len(OBSERVED) == 6


def _scripted_spec(name: str, restore: bool, scores: list[float], seen: list):
    """One stage validated every 4 steps whose metric follows ``scores``; ``seen`` gets the
    weights at each validation."""
    calls = iter(scores)

    def validate(models, batches, ctx):
        seen.append(weights(models))
        return {"val_score": next(calls)}

    stage = Stage(
        "only",
        data=toy_data,
        step=toy_step,
        optimizer=toy_adam,
        batch_size=8,
        iterations=16,
        validate=validate,
        val_every=4,
        best_metric="val_score",
        restore_best=restore,
    )
    return MethodSpec(name=name, config_cls=ToyConfig, build=toy_build, stages=[stage])


def test_restore_best_keeps_the_best_validation_weights(tmp_path):
    seen: list = []
    models = Trainer(_scripted_spec("toy_best", True, [3.0, 1.0, 2.0, 5.0], seen), progress=False).fit()
    got = weights(models)
    assert len(seen) == 4 and all(torch.equal(got[k], seen[1][k]) for k in got)  # step 8, not 16
    assert not all(torch.equal(got[k], seen[3][k]) for k in got)
    seen = []
    models = Trainer(_scripted_spec("toy_last", False, [3.0, 1.0, 2.0, 5.0], seen), progress=False).fit()
    assert all(torch.equal(v, seen[3][k]) for k, v in weights(models).items())  # off: the last weights
    # written out, last.pt and the stage checkpoint hold the best weights too
    seen = []
    Trainer(_scripted_spec("toy_best2", True, [3.0, 1.0, 2.0, 5.0], seen), out_dir=tmp_path, progress=False).fit()
    for f in ("last.pt", "stage_0_only.pt", "best_only.pt"):
        ck = load_checkpoint(tmp_path / f, expected_method="toy_best2")
        for n, sd in ck.models.items():
            for k, v in sd.items():
                assert torch.equal(v, seen[1][f"{n}.{k}"]), (f, n, k)
    with pytest.raises(PoseshapeError, match="restore_best needs best_metric"):
        Stage("s", data=toy_data, step=toy_step, optimizer=toy_adam, iterations=1, restore_best=True)


def test_restore_best_after_a_resume_reads_the_best_checkpoint(tmp_path, monkeypatch):
    import shutil

    import poseshape.engine.train as train_mod

    def spy(path, **kw):  # keep the mid-stage checkpoint of step 12 (after the best, at step 8)
        out = save_checkpoint(path, **kw)
        ts = kw["trainer_state"]
        if Path(path).name == "last.pt" and (ts["stage_index"], ts["step"]) == (0, 12):
            shutil.copy(path, tmp_path / "mid.pt")
        return out

    seen: list = []
    monkeypatch.setattr(train_mod, "save_checkpoint", spy)
    spec = _scripted_spec("toy_best3", True, [3.0, 1.0, 2.0, 5.0], seen)
    Trainer(spec, out_dir=tmp_path / "run", progress=False, checkpoint_every=4).fit()
    monkeypatch.undo()
    shutil.copy(tmp_path / "mid.pt", tmp_path / "run" / "last.pt")  # as if killed after step 12
    later: list = []
    spec = _scripted_spec("toy_best3", True, [9.0], later)  # the one validation left is worse
    models = Trainer(spec, out_dir=tmp_path / "run", progress=False, checkpoint_every=4).fit()
    assert len(later) == 1
    assert all(torch.equal(v, seen[1][k]) for k, v in weights(models).items())


def test_step_errors_are_clear():
    def bad_step(models, batch, ctx):
        return {"mse": torch.tensor(1.0)}

    spec = MethodSpec(
        name="toy_bad",
        config_cls=ToyConfig,
        build=toy_build,
        stages=[Stage("s", data=toy_data, step=bad_step, optimizer=toy_adam, iterations=1)],
    )
    with pytest.raises(PoseshapeError, match="'loss'"):
        Trainer(spec, progress=False).fit()
    spec = MethodSpec(
        name="toy_bad2",
        config_cls=ToyConfig,
        build=toy_build,
        stages=[Stage("s", data=toy_data, step=toy_step, optimizer=toy_adam, iterations=1, train=["nope"])],
    )
    with pytest.raises(PoseshapeError, match="nope"):
        Trainer(spec, progress=False).fit()
    with pytest.raises(PoseshapeError, match="ToyConfig"):
        Trainer(TOY, config={"lr": 1})


def test_rng_state_roundtrip_and_helpers(tmp_path):
    seed_everything(5)
    st = get_rng_state()
    a = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(st)
    b = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    # the state survives a weights_only round trip
    torch.save(st, tmp_path / "rng.pt")
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), a[0])
    assert derive_seed(1, "a", 2) == derive_seed(1, "a", 2) != derive_seed(1, "a", 3)
    moved = move_to_device({"x": [torch.ones(1), (torch.zeros(1), 3)]}, torch.device("cpu"))
    assert moved["x"][1][1] == 3 and isinstance(moved["x"][1], tuple)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_and_cpu_loading(tmp_path):
    cfg = ToyConfig(iters_head=3, iters_joint=4)
    trainer = Trainer(TOY, cfg, out_dir=tmp_path, progress=False, checkpoint_every=2)
    models = trainer.fit()
    assert trainer.device.type == "cuda" and models["body"].weight.is_cuda
    _, _, cpu_models = load_trained(tmp_path / "last.pt", device="cpu")
    torch.testing.assert_close(cpu_models["body"].weight, models["body"].weight.cpu(), rtol=0, atol=0)
    assert "cuda" in load_checkpoint(tmp_path / "last.pt").trainer_state["rng"][0]


# --------------------------------------------------------------------------- script mode
def _main(argv: list[str]) -> None:
    torch.set_num_threads(2 if argv[0] == "train" else 1)
    mode, out = argv[0], Path(argv[1])
    cfg = apply_overrides(ToyConfig(), argv[2:])
    trainer = Trainer(TOY, cfg, out_dir=out, progress=False, checkpoint_every=5, tensorboard=False, device="cpu")
    models = trainer.fit()
    if mode == "train":
        torch.save(weights(models), out / "final.pt")
    else:
        torch.save(weights(models), out / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    _main(sys.argv[1:])
