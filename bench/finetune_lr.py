"""Learning-rate sweep of reproject's reprojection fine-tuning (stage 3, paper 000 Appendix II).

Paper 000 prints a fine-tuning rate of 1e-12, which cannot move float32 weights of order 1e-2
(the update is far below their float32 spacing). This starts stage 3 from one stage-2
checkpoint (``stage_1_regress.pt`` of a run) with each rate, for the same number of steps and
the same data order, and evaluates every result on a validation set (held-out models whose
silhouettes the fine-tuning saw: the paper's transductive set-up) and on the test set (models
never seen). Choose the rate on the validation columns.

    python bench/finetune_lr.py --run runs/shared/run --val runs/shared/data/natural \\
        --test runs/shared/data/test --lrs 1e-12 1e-6 1e-5 1e-4 1e-3 --iters 200 --out runs/lr_sweep
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def start_from(stage_ckpt: Path, out_dir: Path, config) -> None:
    """Write ``out_dir/last.pt``: the weights and trainer position of ``stage_ckpt`` with ``config``."""
    from poseshape.engine.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(stage_ckpt, expected_method="reproject")
    save_checkpoint(
        out_dir / "last.pt", method="reproject", config=config, models=ck.models, trainer_state=ck.trainer_state
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="run folder holding stage_1_regress.pt")
    ap.add_argument("--val", required=True, help="validation set (rendered, with poses and voxels)")
    ap.add_argument("--test", required=True, help="test set")
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-12, 1e-6, 1e-5, 1e-4, 1e-3])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from poseshape.core.config import config_from_dict
    from poseshape.engine.checkpoint import load_checkpoint
    from poseshape.engine.predictor import load_predictor
    from poseshape.engine.registry import get_method
    from poseshape.engine.train import Trainer
    from poseshape.methods.reproject.evaluate import evaluate_predictor

    spec = get_method("reproject")
    stage1 = Path(args.run) / "stage_1_regress.pt"
    base = config_from_dict(spec.config_cls, load_checkpoint(stage1, expected_method="reproject").config)
    out = Path(args.out)
    rows = []
    keys = ("ap2d", "ap3d", "ap3d_aligned", "acc_pi6", "rot_mederr", "trans_mederr")
    before = {
        "val": evaluate_predictor(load_predictor(stage1), args.val, progress=False)["overall"],
        "test": evaluate_predictor(load_predictor(stage1), args.test, progress=False)["overall"],
    }
    rows.append(
        {"lr": "none (stage 2)", **{f"{s}_{k}": before[s][k] for s in ("val", "test") for k in keys}, "seconds": 0.0}
    )
    for lr in args.lrs:
        cfg = dataclasses.replace(base, finetune_lr=lr, finetune_iters=args.iters, val_every=max(args.iters, 1))
        run = out / f"lr_{lr:g}"
        if not (run / "stage_2_finetune.pt").exists():
            start_from(stage1, run, cfg)
            t0 = time.perf_counter()
            Trainer(spec, cfg, out_dir=run, seed=0, progress=False, tensorboard=False, checkpoint_every=10**9).fit()
            (run / "seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
        pred = load_predictor(run / "stage_2_finetune.pt")
        res = {
            s: evaluate_predictor(pred, p, progress=False)["overall"]
            for s, p in (("val", args.val), ("test", args.test))
        }
        rows.append(
            {
                "lr": f"{lr:g}",
                **{f"{s}_{k}": res[s][k] for s in ("val", "test") for k in keys},
                "seconds": float((run / "seconds.txt").read_text()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    head = ["lr"] + [f"{s} {k}" for s in ("val", "test") for k in ("2D AP", "3D AP", "MedErr")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["lr"]] + [
            f"{r[f'{s}_{k}']:.3f}" if k != "rot_mederr" else f"{r[f'{s}_{k}']:.1f}"
            for s in ("val", "test")
            for k in ("ap2d", "ap3d", "rot_mederr")
        ]
        print("| " + " | ".join(cells) + " |")
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
