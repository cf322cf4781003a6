"""Paper 003 on held-out models: Table 1 rows, Table 2 (render resolution), Fig. 6(c) (steps).

Trains ``refine6dof`` (or takes ``--checkpoint``) and evaluates it on the run's test split
(models of every cluster never seen in training, medoids excluded, as §4.1) with
:mod:`poseshape.methods.refine6dof.evaluate` (the code behind ``poseshape eval``; metrics:
class accuracy, mIoU of the medoid's exact silhouette, MVE, Acc_pi/6, translation error in
object units, seconds per image).

Table 1 rows (all on the same images): ``encoder``; ``+ online`` with the paper's settings
(30 steps, batch 20, Adam 1e-6, eq. 5 renderer); ``+ refine`` (``poseshape refine``'s direct
multi-start pose refinement of the medoid, 16 starts, 30 steps); extra rows
``--variant KEY=VALUE,...`` override the online settings (e.g. ``lr=1e-4,render=softras``) and
``--variant refine[:k=v,...]`` (RefineConfig overrides) / ``--variant
online+refine[:online k=v,...][|refine k=v,...]`` add those rows.

``--render-sizes 16,32,64,128,256``: Table 2, the online refinement with the first
``--variant``'s settings (or the paper's) at each render resolution.
``--steps-curve 0,10,30,100``: Fig. 6(c), the same with each number of online steps.
Writes ``OUT/table1.md`` and ``OUT/table1.json`` (and ``--plot PNG``: the two sweeps;
``--replot OUT/table1.json --plot PNG`` redraws it from a finished run).

Example (CPU, ~25 min training + ~15 min evaluation on 2 cores)::

    python bench/refine6dof_eval.py --out runs/r6_bench --set width=0.5 --set fc_hidden=256 \\
        --set image_size=64 --set lr=1e-4 --set encoder_iters=4000 --set data.views=60 \\
        --variant lr=1e-4,render=softras --variant refine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from poseshape.methods.refine6dof.data import compute_clusters  # noqa: E402 - after the sys.path line
from poseshape.methods.refine6dof.evaluate import eval_samples, evaluate_rows, row_settings  # noqa: E402


def _row(cfg, text: str) -> tuple[str, dict]:
    """A ``--variant`` -> (label, settings): ``"k=v,..."`` (online overrides), ``"refine[:k=v,...]"``
    (RefineConfig overrides) or ``"online+refine[:online k=v,...][|refine k=v,...]"``."""
    name, _, opts = text.partition(":") if text.startswith(("online+refine", "refine")) else ("online", "", text)
    parts = opts.split("|") if opts else []
    if name == "refine":
        online, refine = [], (parts[0].split(",") if parts else [])
    else:
        online = parts[0].split(",") if parts and parts[0] else []
        refine = parts[1].split(",") if len(parts) > 1 and parts[1] else []
    return f"+ {name}" + (f" ({opts})" if opts else ""), row_settings(cfg, name, online, refine)


def _table(rows: dict, first: str, ref: dict | None = None) -> list[str]:
    head = f"| {first} | accuracy | mIoU | MVE (deg) | Acc_pi/6 | t error (units) | s/img |"
    if ref is not None:
        head += " d IoU | d MVE (deg) | d t error |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, m in rows.items():
        line = (
            f"| {name} | {m['accuracy']:.3f} | {m['miou']:.3f} | {m['mve_deg']:.2f} | {m['acc_pi6']:.3f} "
            f"| {m['t_err']:.3f} | {m.get('s_per_image', 0.0):.2f} |"
        )
        if ref is not None:
            line += (
                f" {m['miou'] - ref['miou']:+.3f} | {m['mve_deg'] - ref['mve_deg']:+.2f} "
                f"| {m['t_err'] - ref['t_err']:+.3f} |"
            )
        lines.append(line)
    return lines


def _breakdown(rows: dict) -> list[str]:
    """Rows restricted to the right class, and per category (multi-category sets)."""
    out = []
    sub = {
        f"{k} (class right, n={m['class_correct']['n']})": m["class_correct"]
        for k, m in rows.items()
        if "class_correct" in m
    }
    if sub:
        out += ["", "Images whose class (so medoid) is right:", ""] + _table(sub, "model")
    cats = sorted({c for m in rows.values() for c in m.get("per_category", {})})
    for c in cats:
        out += ["", f"Category {c}:", ""] + _table(
            {k: m["per_category"][c] for k, m in rows.items() if c in m.get("per_category", {})}, "model"
        )
    return out


def plot_sweeps(info: dict, path: Path) -> Path | None:
    """Table 2 / Fig. 6(c) as a PNG: the change of mIoU and MVE against the render size and the steps."""
    sweeps = info.get("sweeps") or {}
    if not sweeps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    enc = info["rows"]["encoder"]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.6 * len(sweeps), 3.4), squeeze=False)
    titles = {"render_size": "Table 2: online render resolution", "steps": "Fig. 6(c): online steps"}
    for ax, (key, sw) in zip(axes[0], sweeps.items()):
        xs = [int(k.split("=")[1]) for k in sw]
        ax.plot(xs, [m["mve_deg"] - enc["mve_deg"] for m in sw.values()], "o-", label="d MVE (deg)")
        ax.set_xlabel(key.replace("_", " ") + (" (px)" if key == "render_size" else ""))
        ax.set_ylabel("d MVE (deg)")
        if key == "render_size":
            ax.set_xscale("log", base=2)
        ax2 = ax.twinx()
        ax2.plot(xs, [m["miou"] - enc["miou"] for m in sw.values()], "s--", color="tab:orange", label="d mIoU")
        ax2.set_ylabel("d mIoU", color="tab:orange")
        ax.set_title(titles.get(key, key), fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run directory (training, renders, tables)")
    ap.add_argument("--checkpoint", default=None, help="evaluate this checkpoint instead of training")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="extra row: online overrides (lr=1e-5,render=softras), 'refine' or 'online+refine'",
    )
    ap.add_argument("--limit", type=int, default=0, help="evaluate at most this many test images (0: all)")
    ap.add_argument("--render-sizes", default="", help="Table 2: comma-separated online render sizes")
    ap.add_argument(
        "--steps-curve",
        default="",
        help="Fig. 6(c): comma-separated online step counts "
        "(paper settings otherwise, or the first online --variant's), e.g. 0,10,30,100",
    )
    ap.add_argument(
        "--test-size",
        type=int,
        default=0,
        help="render the test split at this size (data.test_image_size; masks for refinement and mIoU)",
    )
    ap.add_argument("--plot", default="", help="write the sweeps as a PNG here")
    ap.add_argument("--replot", default="", metavar="TABLE1_JSON", help="only plot a finished run's table1.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.replot:
        print(plot_sweeps(json.loads(Path(args.replot).read_text()), Path(args.plot or "sweeps.png")))
        return 0
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    from poseshape.engine.registry import get_method
    from poseshape.engine.train import Trainer, load_trained

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
    run_dir = out if args.checkpoint is None else ckpt.parent
    if args.test_size:  # render the test split anew at that size (a given data.test is at another)
        cfg.data.test_image_size = int(args.test_size)
        cfg.data.test = ""
    ds = eval_samples(cfg, run_dir, limit=args.limit or None)
    clusters, _ = compute_clusters(cfg, run_dir)

    rows = {
        "encoder": row_settings(cfg, "encoder"),
        "+ online (paper: 30 steps, batch 20, lr 1e-6, eq. 5)": row_settings(cfg, "online"),
    }
    rows.update(_row(cfg, v) for v in args.variant)
    t1 = time.perf_counter()
    res = evaluate_rows(enc, bank, ds, rows, progress=False)
    print("\n".join(_table(res, "model") + _breakdown(res)), flush=True)
    online_variants = [v for v in args.variant if "=" in v]
    base = online_variants[0].split(",") if online_variants else []
    sweeps = {}
    for key, values in (("render_size", args.render_sizes), ("steps", args.steps_curve)):
        if not values:
            continue
        sweep = {}
        for v in [int(x) for x in values.split(",")]:
            opts = [o for o in base if not o.startswith(f"{key}=")] + [f"{key}={v}"]
            sweep[f"{key}={v}"] = row_settings(cfg, "online", opts)
        sweeps[key] = evaluate_rows(enc, bank, ds, sweep, progress=False)
        print(
            "\n".join(
                ["", f"online {key} sweep ({','.join(base) or 'paper settings'}):"]
                + _table(sweeps[key], key, res["encoder"])
            ),
            flush=True,
        )
    lines = _table(res, "model") + _breakdown(res)
    for key, sw in sweeps.items():
        other = ", ".join(base) or "the paper's"
        lines += ["", f"Online {key} sweep (other settings: {other}; d = change from the encoder row):", ""]
        lines += _table(sw, key, res["encoder"])
    text = "\n".join(lines) + "\n"
    info = {
        "checkpoint": str(ckpt),
        "test_images": len(ds),
        "test_size": int(ds[0]["mask_full"].shape[-1]),
        "test_models": len(ds.ds.meta["models"]),
        "clusters": clusters.num_clusters,
        "medoids": [clusters.keys[i] for i in clusters.medoids],
        "train_seconds": train_s,
        "eval_seconds": time.perf_counter() - t1,
        "overrides": args.overrides,
        "rows": res,
        "sweeps": sweeps,
        "load_end": os.getloadavg()[0],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1.md").write_text(text)
    (out / "table1.json").write_text(json.dumps(info, indent=1))
    if args.plot:
        plot_sweeps(info, Path(args.plot))
    print(
        f"{len(ds)} test images of {info['test_models']} held-out models; medoids {info['medoids']}; "
        f"eval {info['eval_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
