"""Compare refine6dof checkpoints on the same held-out cars (encoder and online rows).

The test split (5 cars never seen in training) is rendered once into ``--run-dir`` by the method's
own evaluate hook and shared by every checkpoint, so the rows compare like with like::

    python bench/refine6dof_shipped.py poseshape/assets/refine6dof.pt runs/r6v2/refine6dof.pt --limit 24
"""

from __future__ import annotations

import argparse
import json

from poseshape.engine.predictor import load_predictor
from poseshape.methods.refine6dof.evaluate import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--limit", type=int, default=24, help="test images (default 24)")
    ap.add_argument("--run-dir", default="runs/refine6dof_shipped_eval")
    args = ap.parse_args()
    print("| checkpoint | row | n | mIoU | MVE (deg) | Acc_pi/6 | t error | s/img |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for ck in args.checkpoints:
        p = load_predictor(checkpoint=ck, method="refine6dof", device="cpu")
        res = evaluate(p, rows=["encoder", "online"], limit=args.limit, run_dir=args.run_dir, progress=False)
        for row, r in res["rows"].items():
            print(
                f"| {ck} | {row} | {res['samples']} | {r['miou']:.3f} | {r['mve_deg']:.1f} | {r['acc_pi6']:.3f} "
                f"| {r['t_err']:.3f} | {r['s_per_image']:.2f} |"
            )
        print(json.dumps({"checkpoint": ck, "models": res["models"]}))


if __name__ == "__main__":
    main()
