"""Paper 001's Tables 1-4 and the symmetric-flip analysis for a ``selfconsistency`` model, on
held-out procedural renders and on renders of ``../shared/data`` CAD it never saw::

    python bench/selfconsistency_tables.py                       # the shipped model
    python bench/selfconsistency_tables.py --checkpoint RUN/last.pt --refine-limit 48

1. ``procedural``: the test split of ``scripts/train_default_selfconsistency.sh``'s own
   procedural set (24 models per category, model-level split: none of these models was
   trained on), 24-view ring at elevation 30 deg, the fixed frame.
2. ``pascal3d_cad``: the PASCAL3D+ CAD models of ``$POSESHAPE_DATA`` (aeroplane, car, chair),
   the same ring and frame: another source than the generator the model learned from.
3. Table 1's ``reproject`` column: the shipped ``reproject`` model on the same images (its
   own crop of the GT mask, no refinement), aligned IoU of its canonical 32^3 voxels. It was
   trained on another procedural set (free views, crop framing), not on this one.
4. Flip analysis: per image with its GT mask, the azimuth error before and after the
   engine's test-time refinement (``Predictor.refine``: multi-start silhouette alignment of
   the marching-cubes mesh); the share of errors > 150 deg (the ~180 deg flips of symmetric
   cars), per category.

Prints Markdown tables for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import poseshape  # noqa: E402
from poseshape.core.errors import PoseshapeError  # noqa: E402
from poseshape.core.paths import shared_data_dir  # noqa: E402
from poseshape.data.dataset import ShardDataset  # noqa: E402
from poseshape.geometry.camera import pose_to_viewpoint  # noqa: E402
from poseshape.methods.selfconsistency.evaluate import FLIP_DEG, azimuth_error, evaluate_predictor  # noqa: E402
from poseshape.metrics import voxel_iou  # noqa: E402

CATS = ("aeroplane", "car", "chair")
COLS = [
    ("aligned_iou", "T1 IoU"),
    ("rot_err", "T2 rot err"),
    ("rot_med", "rot med"),
    ("elev_err", "T2 elev err"),
    ("mask_iou", "T2 mask IoU"),
    ("posed_pp", "T3 pred/pred"),
    ("posed_pg", "T3 pred/GT"),
    ("posed_gp", "T3 GT/pred"),
    ("proj_pp", "T4 pp"),
    ("proj_pg", "T4 pg"),
    ("proj_gp", "T4 gp"),
    ("proj_gg", "T4 gg"),
    ("flip", "flip"),
]


def render(out: Path, meshes: str, models: int | None) -> Path:
    args = [sys.executable, "-m", "poseshape", "data", "render", "--meshes", meshes, "--out", str(out),
            "--pose", "ring24", "--framing", "fixed", "--size", "64", "--voxels", "32",
            "--categories", *CATS, "--workers", "2", "--quiet"]  # fmt: skip
    if models is not None:
        args += ["--split", "test", "--models-per-category", str(models)]
    subprocess.run(args, check=True)
    return out


def table(name: str, res: dict) -> str:
    head = "| set | category | n | " + " | ".join(h for _, h in COLS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLS))]
    rows = [*res["per_category"].items(), ("all", res["overall"])]
    for cat, r in rows:
        vals = " | ".join(f"{r[k]:.1f}" if k in ("rot_err", "rot_med", "elev_err") else f"{r[k]:.3f}" for k, _ in COLS)
        lines.append(f"| {name} | {cat} | {r['n']} | {vals} |")
    return "\n".join(lines)


@torch.no_grad()
def reproject_aligned_iou(root: Path, device: str) -> dict[str, float]:
    """Shipped reproject's canonical 32^3 voxels vs the GT voxels, per category (mean IoU)."""
    rp = poseshape.load("reproject", device=device)
    ds = ShardDataset(root)
    per: dict[str, list[float]] = {}
    for i in range(len(ds)):
        it = ds[i]
        img = it["image"]
        mask = it["mask"][0] > 0.5
        pred = rp.reconstruct(img, mask=mask, refine=False)
        v = pred.voxels.float()
        if v.shape[-1] != 32:
            v = F.interpolate(v, size=(32, 32, 32), mode="trilinear", align_corners=False)
        iou = float(voxel_iou(v, it["voxels"][None].float()).mean())
        per.setdefault(ds.categories[int(it["category"])], []).append(iou)
    out = {k: sum(v) / len(v) for k, v in per.items()}
    out["all"] = sum(sum(v) for v in per.values()) / sum(len(v) for v in per.values())
    return out


def flip_analysis(predictor, root: Path, limit: int | None) -> dict[str, dict[str, float]]:
    """Azimuth error and flip share before / after ``predictor.refine`` with the GT mask."""
    ds = ShardDataset(root)
    n = len(ds) if limit is None else min(limit, len(ds))
    # spread the limited images over all categories and views (evenly spaced indices)
    idx = sorted({int(round(k * (len(ds) - 1) / max(1, n - 1))) for k in range(n)})
    acc: dict[str, dict[str, list[float]]] = {}
    failed = [0]
    for i in idx:
        it = ds[i]
        with torch.no_grad():
            pred = predictor.predict(it["image"][None])
        mask = (it["mask"] > 0.5).float()
        try:
            refined, _ = predictor.refine(pred, 0, mask)
        except PoseshapeError:  # e.g. a near-empty predicted shape that cannot cover the mask
            refined = pred
            failed[0] += 1
        az_gt = float(pose_to_viewpoint(it["R"].double()[None], it["t"].double()[None])[0])
        errs = []
        for p in (pred, refined):
            az = float(pose_to_viewpoint(p.R.double().cpu(), p.t.double().cpu())[0])
            errs.append(float(azimuth_error(torch.tensor([az]), torch.tensor([az_gt]))))
        a = acc.setdefault(ds.categories[int(it["category"])], {"before": [], "after": []})
        a["before"].append(errs[0])
        a["after"].append(errs[1])
    out: dict = {"refine_failed": failed[0]}
    allb = [e for a in acc.values() for e in a["before"]]
    alla = [e for a in acc.values() for e in a["after"]]
    for cat, a in [*acc.items(), ("all", {"before": allb, "after": alla})]:
        b, f = torch.tensor(a["before"]), torch.tensor(a["after"])
        out[cat] = {
            "n": len(b),
            "flip_before": float((b > FLIP_DEG).float().mean()),
            "flip_after": float((f > FLIP_DEG).float().mean()),
            "az_med_before": float(b.median()),
            "az_med_after": float(f.median()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--models", type=int, default=24, help="procedural models per category (the training script's)")
    ap.add_argument("--refine-limit", type=int, default=96, help="images per set in the flip analysis")
    ap.add_argument("--work", default=None, help="folder for the renders (default: a temp folder)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    warnings.simplefilter("ignore")  # per-image low-confidence warnings: the tables report them
    pred = poseshape.load(args.checkpoint or "selfconsistency", method="selfconsistency", device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        sets = {"procedural": render(work / "procedural", "procedural", args.models)}
        cad = shared_data_dir() / "pascal3d_cad"
        if cad.is_dir():
            sets["pascal3d_cad"] = render(work / "pascal3d", str(cad), None)
        else:
            print(f"({cad} not found: the CAD rows are skipped)")
        for name, root in sets.items():
            res = evaluate_predictor(pred, root, progress=False)
            print(f"\n### {name} ({res['samples']} images)\n")
            print(table(name, res))
            rp = reproject_aligned_iou(root, args.device)
            t1 = {**{c: r["aligned_iou"] for c, r in res["per_category"].items()}, "all": res["overall"]["aligned_iou"]}
            print("\nTable 1, aligned IoU (selfconsistency / shipped reproject): ", end="")
            print(", ".join(f"{c} {t1[c]:.3f} / {rp.get(c, float('nan')):.3f}" for c in t1))
            fl = flip_analysis(pred, root, args.refine_limit)
            print("\n| set | category | n | flip before | flip after refine | az med before | az med after |")
            print("|---|---|---:|---:|---:|---:|---:|")
            print(f"(refinement refused on {fl.pop('refine_failed')} images: their pose is kept)")
            for c, r in fl.items():
                print(
                    f"| {name} | {c} | {r['n']} | {r['flip_before']:.3f} | {r['flip_after']:.3f} | "
                    f"{r['az_med_before']:.1f} | {r['az_med_after']:.1f} |"
                )


if __name__ == "__main__":
    main()
