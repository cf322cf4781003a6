"""Paper 003, Table 1 rows on held-out models: encoder vs encoder + online refinement.

Trains ``refine6dof`` (or takes ``--checkpoint``) and evaluates it on the run's test split
(models of every cluster never seen in training, medoids excluded, as §4.1):

* class accuracy (the predicted cluster vs the model's cluster);
* mIoU of the exact (z-buffer) silhouette of the predicted cluster's medoid at the predicted
  pose vs the ground-truth mask;
* MVE, the median geodesic rotation error (degrees), and Acc_pi/6;
* the translation error, median ``|t - t_gt|`` in object units (models fit the unit cube;
  the paper's are 6 units long, so multiply by 6 to compare scales).

Rows: ``encoder``; ``encoder+online`` with the paper's online settings (30 steps, batch 20,
Adam 1e-6, eq. 5 renderer); extra rows ``--variant KEY=VALUE,...`` override the online
settings (e.g. ``lr=1e-5,render=softras``; ``render_size=16,...`` for Table 2's render
resolution ablation). Writes ``OUT/table1.md`` and ``OUT/table1.json``.

Example (CPU, ~25 min on 2 loaded cores)::

    python bench/refine6dof_eval.py --out runs/r6_bench --set width=0.5 --set fc_hidden=256 \\
        --set image_size=64 --set lr=1e-4 --set encoder_iters=4000 --set data.views=60 \\
        --variant lr=1e-5 --variant lr=1e-5,render=softras
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from poseshape.methods.refine6dof.data import PoseSamples, prepare_renders
from poseshape.methods.refine6dof.online import hard_silhouettes, online_refine
from poseshape.metrics import rotation_error

PAPER_ONLINE = {"steps": 30, "batch": 20, "lr": 1e-6, "render": "edge", "loss": "iou", "render_size": 0}


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    A, B = a.flatten(1) > 0.5, b.flatten(1) > 0.5
    inter, union = (A & B).sum(1).double(), (A | B).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def evaluate(encoder, bank, ds: PoseSamples, online: dict | None, chunk: int = 20) -> dict:
    """Metrics of one row over the whole set ``ds``."""
    acc, rot, terr, ious, secs = [], [], [], [], 0.0
    S = ds.cfg.image_size
    for lo in range(0, len(ds), chunk):
        items = [ds[i] for i in range(lo, min(len(ds), lo + chunk))]
        b = {k: torch.stack([it[k] for it in items]) for k in ("input", "mask", "R", "t", "K", "label")}
        with torch.no_grad():
            out = encoder(b["input"])
        lab = out["logits"].argmax(1)
        R, t = out["R"], out["t"]
        if online is not None:
            t0 = time.perf_counter()
            opts = dict(online, render_size=online.get("render_size") or None)
            res = online_refine(encoder, bank, b["input"], b["mask"], b["K"], labels=lab, **opts)
            secs += time.perf_counter() - t0
            R, t = res.R, res.t
        acc.append((lab == b["label"]).float())
        rot.append(rotation_error(R.double(), b["R"].double()))
        terr.append((t - b["t"]).norm(dim=-1))
        ious.append(_iou(hard_silhouettes(bank, lab, R, t, b["K"], S), b["mask"]))
    r = torch.cat(rot)
    return {"accuracy": float(torch.cat(acc).mean()), "miou": float(torch.cat(ious).mean()),
            "mve_deg": float(r.median()), "acc_pi6": float((r < 30).float().mean()),
            "t_err": float(torch.cat(terr).median()), "n": int(r.numel()),
            "online_s_per_image": secs / max(1, int(r.numel())) if online is not None else 0.0}


def _parse_variant(text: str) -> dict:
    out = dict(PAPER_ONLINE)
    for kv in text.split(","):
        k, v = kv.split("=", 1)
        if k not in out:
            raise SystemExit(f"--variant: unknown key {k!r}; keys: {sorted(out)}")
        out[k] = type(out[k])(float(v)) if isinstance(out[k], (int, float)) else v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run directory (training, renders, tables)")
    ap.add_argument("--checkpoint", default=None, help="evaluate this checkpoint instead of training")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--variant", action="append", default=[], help="extra online row, e.g. lr=1e-5,render=softras")
    ap.add_argument("--limit", type=int, default=0, help="evaluate at most this many test images (0: all)")
    ap.add_argument("--steps-curve", default="", help="Fig. 6(c): comma-separated online step counts "
                    "(paper settings otherwise, or the first --variant's), e.g. 0,10,30,100")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    from poseshape.methods.registry import get_method
    from poseshape.train import Trainer, load_trained

    t0 = time.perf_counter()
    if args.checkpoint is None:
        spec = get_method("refine6dof")
        cfg = spec.make_config(None, args.overrides)
        Trainer(spec, cfg, out_dir=out, progress=False, tensorboard=False, checkpoint_every=500).fit()
        ckpt = out / "last.pt"
    else:
        ckpt = Path(args.checkpoint)
    train_s = time.perf_counter() - t0
    _, cfg, models = load_trained(ckpt, method="refine6dof", device="cpu")
    enc, bank = models["encoder"].eval(), models["medoids"]
    clusters, paths = prepare_renders(cfg, out if args.checkpoint is None else ckpt.parent)
    if paths.get("test") is None:
        raise SystemExit("no test split: add models (data.models_per_category)")
    ds = PoseSamples(paths["test"], cfg, clusters, limit=args.limit or None, what="test")
    rows = {"encoder": evaluate(enc, bank, ds, None)}
    rows["encoder+online (paper: 30 steps, batch 20, lr 1e-6, eq. 5)"] = evaluate(enc, bank, ds, dict(PAPER_ONLINE))
    for v in args.variant:
        rows[f"encoder+online ({v})"] = evaluate(enc, bank, ds, _parse_variant(v))
    curve = {}
    if args.steps_curve:
        base = _parse_variant(args.variant[0]) if args.variant else dict(PAPER_ONLINE)
        for n in [int(x) for x in args.steps_curve.split(",")]:
            curve[n] = evaluate(enc, bank, ds, dict(base, steps=n))
    lines = ["| model | accuracy | mIoU | MVE (deg) | Acc_pi/6 | t error (units) | online s/img |",
             "|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['accuracy']:.3f} | {m['miou']:.3f} | {m['mve_deg']:.2f} | {m['acc_pi6']:.3f} "
                     f"| {m['t_err']:.3f} | {m['online_s_per_image']:.2f} |")
    if curve:
        lines += ["", "Online steps (Fig. 6c): " + ", ".join(f"{k}={v}" for k, v in base.items() if k != "steps"), "",
                  "| steps | mIoU | MVE (deg) | Acc_pi/6 | t error |", "|---|---|---|---|---|"]
        lines += [f"| {n} | {m['miou']:.3f} | {m['mve_deg']:.2f} | {m['acc_pi6']:.3f} | {m['t_err']:.3f} |"
                  for n, m in curve.items()]
    text = "\n".join(lines) + "\n"
    info = {"checkpoint": str(ckpt), "test_images": len(ds), "test_models": sum(1 for _ in ds.ds.meta["models"]),
            "clusters": clusters.num_clusters, "medoids": [clusters.keys[i] for i in clusters.medoids],
            "train_seconds": train_s, "overrides": args.overrides, "rows": rows,
            "steps_curve": {str(k): v for k, v in curve.items()}}
    (out / "table1.md").write_text(text)
    (out / "table1.json").write_text(json.dumps(info, indent=1))
    print(text)
    print(f"{len(ds)} test images of {info['test_models']} held-out models; medoids {info['medoids']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
