"""Issue 19's cross-dataset table: reproject models on data from sources they were not trained on.

Every test image goes through the user path (``Predictor.reconstruct`` with the render's mask),
once without refinement and once with the method's default refinement, and is scored against
the render's ground truth. Test sets (the data engine at 128 x 128, natural-like domain, seed
123, the reproject framing; no test model is in the training split of any model compared):

  procedural          procedural aeroplanes / cars / chairs nos. 100-119 of each category (every
                      training script uses nos. 0-99)
  pascal3d            the PASCAL3D+ CAD models of the world mix's test split
                      (:mod:`poseshape.data.world`, 60/15/25 at model level)
  objectnet3d         the ObjectNet3D CAD models of the seen categories, same test split
  objectnet3d-unseen  the ObjectNet3D models of the categories no world model is trained on
  samples             the shared data's own renders: the 3 R2N2 plane renders (with cameras) and
                      the 3 NMR inputs (mask only, no pose)

Columns: mask IoU of the posed shape's silhouette with the input mask (plain / refined),
rotation MedErr and Acc pi/6 against the render's rotation (plain / refined; an image whose
refinement is refused, a predicted shape that cannot cover the mask, keeps its plain figures and
is counted in ``refused``), the canonical
32^3 IoU (``poseshape eval``'s aligned IoU on the same renders), seconds per image (plain /
refined) and the AUROC of the refined ``pose.json`` confidence as a detector of "rotation error
> 30 deg" (1: every failure is less confident than every success; 0.5: chance).

    POSESHAPE_DATA=../shared/data python bench/cross_dataset.py \\
        --checkpoint poseshape/assets/reproject.pt --label shipped \\
        --checkpoint runs/world/reproject.pt --label world --json runs/cross_dataset.json

``--masks truth auto`` also runs every model on the masks a user without a mask gets:
``--mask auto``'s GrabCut on the whole frame (:func:`poseshape.engine.grabcut.auto_mask`). The
scores stay against the render's true mask and rotation; the ``input mask IoU`` column is the
automatic mask's IoU with the true one.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from poseshape.core.errors import PoseshapeError
from poseshape.core.paths import shared_data_dir
from poseshape.data.collections import MeshCollection
from poseshape.data.dataset import ShardDataset
from poseshape.data.real import NMRImages, R2N2Renderings
from poseshape.data.synth import render_dataset
from poseshape.data.world import WORLD_SPLIT, world_collection
from poseshape.engine.predictor import load_predictor
from poseshape.engine.reconstruct import AUTO, mask_from_spec
from poseshape.methods.reproject.data import reproject_synth_config
from poseshape.methods.reproject.evaluate import evaluate_predictor
from poseshape.metrics import failure_auroc, mask_iou, rotation_error

SETS = ("procedural", "pascal3d", "objectnet3d", "objectnet3d-unseen", "samples")


def set_collection(name: str, data: Path, models: int) -> MeshCollection:
    """The models of test set ``name`` (module docstring), at most ``models`` of them."""
    if name == "procedural":
        cats = ("aeroplane", "car", "chair")
        full = MeshCollection.procedural(cats, 120, cache_size=0)
        keep = [i for i, r in enumerate(full.models) if int(r.model_id.rsplit("_", 1)[1]) >= 100]
        col = full.subset(keep)
    elif name == "objectnet3d-unseen":
        col = world_collection(data, held_out=True)
    else:
        test = world_collection(data).split("test", WORLD_SPLIT)
        root = "pascal3d_cad" if name == "pascal3d" else "objectnet3d_cad"
        col = test.subset([i for i, r in enumerate(test.models) if r.path is not None and root in r.path.parts])
    # spread the choice over the categories: a round-robin of each category's models
    by_cat: dict[str, list[int]] = {}
    for i, r in enumerate(col.models):
        by_cat.setdefault(r.category, []).append(i)
    order, k = [], 0
    while len(order) < min(models, len(col)):
        for idx in by_cat.values():
            if k < len(idx) and len(order) < models:
                order.append(idx[k])
        k += 1
    return col.subset(sorted(order))


def render_set(name: str, data: Path, out: Path, models: int, views: int) -> list[dict]:
    """The test images of set ``name``: ``image (3, H, W)``, ``mask (1, H, W)``, ``R (3, 3)`` or None."""
    if name == "samples":
        items = []
        for it in R2N2Renderings(data / "samples" / "r2n2_renderings", category="aeroplane"):
            items.append({"image": it["image"], "mask": it["mask"], "R": it["R"], "category": "aeroplane (R2N2)"})
        for it in NMRImages(data / "samples" / "nmr_64", pattern="*_in.png"):
            cat = Path(it["path"]).name.split("_")[0]
            items.append({"image": it["image"], "mask": it["mask"], "R": None, "category": f"{cat} (NMR)"})
        return items
    col = set_collection(name, data, models)
    cfg = reproject_synth_config(128, views, 30, "natural", seed=123)
    render_dataset(col, out, cfg, workers=1, progress=False)
    ds = ShardDataset(out, keys=("image", "mask", "R", "category"))
    items = []
    for i in range(len(ds)):
        it = ds[i]  # one decode per sample
        items.append(
            {"image": it["image"], "mask": it["mask"], "R": it["R"], "category": ds.categories[it["category"]]}
        )
    return items


def input_mask(it: dict, source: str) -> tuple[torch.Tensor, float]:
    """The mask the predictor gets (``"truth"``: the render's; ``"auto"``: GrabCut's on the whole
    frame, or an empty one where it finds nothing) and its IoU with the true mask."""
    if source == "truth":
        return it["mask"], 1.0
    try:
        m = mask_from_spec(it["image"], AUTO)
    except PoseshapeError:
        m = torch.zeros_like(it["mask"])
    return m, float(mask_iou(m[None] >= 0.5, it["mask"][None] >= 0.5)[0])


def score(pred, items: list[dict], source: str = "truth") -> dict:
    """Plain and refined reconstructions of every item: IoU, rotation error, confidence, time.

    ``source``: the mask given to the predictor (:func:`input_mask`); an empty automatic mask
    counts as a failed image (IoU 0, rotation error 180 deg)."""
    rows = []
    for it in items:
        row = {"category": it["category"]}
        given, row["input_iou"] = input_mask(it, source)
        if not bool(given.any()):
            fail = {"iou": 0.0, "rot": 180.0 if it["R"] is not None else float("nan"), "conf": 0.0, "s": 0.0}
            rows.append({**row, "plain": fail, "refined": dict(fail), "no_mask": True})
            continue
        for variant, refine in (("plain", False), ("refined", True)):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # low-confidence warnings: the AUROC column scores the confidence
                try:
                    p = pred.reconstruct(it["image"], mask=given, refine=refine)
                except PoseshapeError:  # refinement refuses a shape that cannot cover the mask
                    if not refine:
                        raise
                    row["refused"] = True
                    row[variant] = dict(row["plain"])
                    continue
            dt = time.perf_counter() - t0
            sil = p.render_silhouette(0)
            iou = float(mask_iou(sil[None], it["mask"][None])[0])
            err = float("nan")
            if it["R"] is not None:
                err = float(rotation_error(p.R[:1].double().cpu(), it["R"][None].double())[0])
            conf = float(p.confidence[0]) if p.confidence is not None else float("nan")
            row[variant] = {"iou": iou, "rot": err, "conf": conf, "s": dt}
        rows.append(row)
    return rows


def summarise(rows: list[dict], canonical: float) -> dict:
    out = {"n": len(rows), "canonical_iou": canonical, "refused": sum(bool(r.get("refused")) for r in rows)}
    out["input_mask_iou"] = float(np.mean([r["input_iou"] for r in rows]))
    out["no_mask"] = sum(bool(r.get("no_mask")) for r in rows)
    for v in ("plain", "refined"):
        errs = np.array([r[v]["rot"] for r in rows])
        known = errs[np.isfinite(errs)]
        out[v] = {
            "mask_iou": float(np.mean([r[v]["iou"] for r in rows])),
            "rot_mederr": float(np.median(known)) if known.size else float("nan"),
            "acc_pi6": float(np.mean(known < 30)) if known.size else float("nan"),
            "s_per_image": float(np.median([r[v]["s"] for r in rows])),
        }
    ref = [r["refined"] for r in rows if math.isfinite(r["refined"]["rot"])]
    out["auroc"] = failure_auroc([r["conf"] for r in ref], [r["rot"] > 30 for r in ref])
    return out


def fmt(x: float, spec: str) -> str:
    return "--" if not math.isfinite(x) else format(x, spec)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", default=None, help="a reproject checkpoint (repeatable)")
    ap.add_argument("--label", action="append", default=None, help="one label per --checkpoint")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--models", type=int, default=24, help="models per test set (spread over its categories)")
    ap.add_argument("--views", type=int, default=2, help="rendered views per model")
    ap.add_argument(
        "--masks",
        nargs="+",
        default=["truth"],
        choices=("truth", "auto"),
        help="the masks given to the models: the renders' (truth) and/or --mask auto's (auto: the learned segmenter, or GrabCut with POSESHAPE_AUTO_MASK=grabcut)",
    )
    ap.add_argument("--data", default=None, help="shared data folder (default $POSESHAPE_DATA or ../shared/data)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument(
        "--headline",
        default=None,
        help="write the first checkpoint's figures as the headline `poseshape demo` prints "
        "(e.g. poseshape/assets/reproject_cross_dataset.json)",
    )
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else shared_data_dir()
    ckpts = args.checkpoint or [None]
    labels = args.label or [Path(c).stem if c else "shipped" for c in ckpts]
    if len(labels) != len(ckpts):
        ap.error("give one --label per --checkpoint")
    if args.headline and "truth" not in args.masks:
        ap.error("--headline reports the runs on the true masks: add truth to --masks")
    torch.manual_seed(0)
    results: dict = {"models": args.models, "views": args.views, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="cross_dataset_") as tmp:
        sets = {}
        for name in args.sets:
            t0 = time.perf_counter()
            sets[name] = render_set(name, data, Path(tmp) / name, args.models, args.views)
            cats = sorted({it["category"] for it in sets[name]})
            print(f"{name}: {len(sets[name])} images, {len(cats)} categories ({time.perf_counter() - t0:.1f} s)")
        for ck, label in zip(ckpts, labels):
            pred = load_predictor(checkpoint=ck, method="reproject", device="cpu")
            first = next(iter(sets.values()))[0]  # warm-up: builds the C++ kernels before any timing
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    pred.reconstruct(first["image"], mask=first["mask"], refine=True)
                except PoseshapeError:
                    pass
            for name, items in sets.items():
                canonical = float("nan")
                if name != "samples":
                    ev = evaluate_predictor(pred, Path(tmp) / name, progress=False)
                    canonical = ev["overall"]["iou3d_aligned"]
                for source in args.masks:
                    key = label if source == "truth" else f"{label}, auto mask"
                    s = summarise(score(pred, items, source), canonical)
                    results["sets"].setdefault(name, {})[key] = s
                    print(f"  {key:10s} {name:20s} {json.dumps(s)}", flush=True)
    print(
        "\n| test set | model | n | mask IoU plain / refined | rot MedErr (deg) plain / refined "
        "| Acc pi/6 plain / refined | canonical IoU | s/image plain / refined | AUROC (rot > 30 deg) | refused "
        "| input mask IoU |"
    )
    print("|---|---|---:|---|---|---|---:|---|---:|---:|---:|")
    for name, by_label in results["sets"].items():
        for label, s in by_label.items():
            p, r = s["plain"], s["refined"]
            print(
                f"| {name} | {label} | {s['n']} | {p['mask_iou']:.3f} / {r['mask_iou']:.3f} "
                f"| {fmt(p['rot_mederr'], '.1f')} / {fmt(r['rot_mederr'], '.1f')} "
                f"| {fmt(p['acc_pi6'], '.2f')} / {fmt(r['acc_pi6'], '.2f')} | {fmt(s['canonical_iou'], '.3f')} "
                f"| {p['s_per_image']:.2f} / {r['s_per_image']:.2f} | {fmt(s['auroc'], '.2f')} | {s['refused']} "
                f"| {s['input_mask_iou']:.3f} |"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.headline:
        write_headline(Path(args.headline), ckpts[0], labels[0], results, argv)
    return results


def write_headline(path: Path, checkpoint, label: str, results: dict, argv) -> None:
    """The figures of one checkpoint in the form :func:`poseshape.cli.demo.cross_dataset_headline` reads."""
    import hashlib
    import platform
    import sys

    from poseshape.core.io import atomic_write
    from poseshape.engine.predictor import default_checkpoint

    ck = Path(checkpoint) if checkpoint else default_checkpoint("reproject")
    sets = {}
    for name, by_label in results["sets"].items():
        s = by_label[label]
        sets[name] = {
            "n": s["n"],
            **{k: [s["plain"][k], s["refined"][k]] for k in ("mask_iou", "rot_mederr", "acc_pi6")},
        }
    head = {
        "format": "poseshape.cross_dataset/1",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "command": "python bench/cross_dataset.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint_sha256": hashlib.sha256(ck.read_bytes()).hexdigest(),
        "sets": sets,
    }
    atomic_write(path, json.dumps(head, indent=1, allow_nan=True).encode())


if __name__ == "__main__":
    main()
