"""reproject through the trainer's crash-safety and multi-process paths (issue 5).

The generic mechanisms are tested on a toy method in ``tests/test_train.py``; these run the
real reproject stages (VAE -> regressors -> reprojection fine-tuning, with their data sets,
frozen generator and validation) on a tiny procedural set:

* a run SIGKILLed in the middle of the regressor stage and rerun with the same command ends
  with the same weights, bit for bit, as an uninterrupted run;
* ``torchrun`` with 2 CPU processes on gloo keeps the weights identical on both ranks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
TINY = [
    "image_size=32",
    "batch_size=4",
    "vae_iters=5",
    "regress_iters=6",
    "finetune_iters=5",
    "val_every=4",
    "val_samples=8",
    "width=0.25",
    "latent=16",
]

DRIVER = textwrap.dedent("""
    import dataclasses, os, signal, sys
    import torch
    from poseshape.engine.registry import get_method
    from poseshape.engine.train import Trainer

    out, *overrides = sys.argv[1:]
    spec = get_method("reproject")
    cfg = spec.make_config(None, overrides)
    kill = os.environ.get("KILL_AT")  # "stage_index:step": SIGKILL this process there

    def stages(c):
        def wrap(step):
            def run(models, batch, ctx):
                if kill and (ctx.stage_index, ctx.step) == tuple(int(v) for v in kill.split(":")):
                    os.kill(os.getpid(), signal.SIGKILL)
                return step(models, batch, ctx)
            return run
        return [dataclasses.replace(s, step=wrap(s.step)) for s in spec.stages(c)]

    tr = Trainer(dataclasses.replace(spec, stages=stages), cfg, out_dir=out, seed=0, progress=False,
                 tensorboard=False, checkpoint_every=2)
    models = tr.fit()
    rank = int(os.environ.get("RANK", "0"))
    torch.save({f"{n}.{k}": v.detach().cpu() for n, m in models.items()
                for k, v in getattr(m, "module", m).state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from poseshape.methods.reproject.data import render_reproject_data

    root = tmp_path_factory.mktemp("rp_resume")
    paths = render_reproject_data(
        "procedural",
        root / "data",
        categories=("car", "chair"),
        image_size=32,
        views=4,
        models_per_category=10,
        seed=0,
        progress=False,
    )
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    args = TINY + [f"data.train={paths['train']}", f"data.natural={paths['natural']}", f"data.val={paths['test']}"]
    return driver, args


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "KILL_AT"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    return env


def _run(driver, out, args, **env):
    return subprocess.run(
        [sys.executable, str(driver), str(out), *args],
        cwd=REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_reproject_resume_after_sigkill_is_bit_exact(setup, tmp_path):
    from poseshape.engine.checkpoint import load_checkpoint

    driver, args = setup
    ref = _run(driver, tmp_path / "ref", args)
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = _run(driver, tmp_path / "run", args, KILL_AT="1:5")  # regressor stage, step 5
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ts = load_checkpoint(tmp_path / "run" / "last.pt").trainer_state
    assert (ts["stage_index"], ts["step"]) == (1, 4)  # the last checkpoint before the kill
    assert not (tmp_path / "run" / "rank0.pt").exists()
    again = _run(driver, tmp_path / "run", args)
    assert again.returncode == 0, again.stderr[-3000:]
    a = torch.load(tmp_path / "ref" / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    assert set(a) == set(b) and len(a) > 20
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the frozen generator really stayed frozen through stages 2-3 of the resumed run
    s0 = torch.load(tmp_path / "run" / "stage_0_vae.pt", weights_only=True)["models"]
    dec = {k: v for k, v in s0["decoder"].items()}
    for k, v in dec.items():
        assert torch.equal(b[f"decoder.{k}"], v), k


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reproject_ddp_two_processes_keep_identical_weights(setup, tmp_path):
    driver, args = setup
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(driver),
        str(tmp_path / "ddp"),
        *args,
    ]
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    assert set(w0) == set(w1)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    from poseshape.engine.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "ddp" / "last.pt").trainer_state["world_size"] == 2
