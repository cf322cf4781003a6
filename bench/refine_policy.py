"""Choose a method's test-time refinement policy on *validation* renders (issue 19, item 2).

The refinement keeps the start whose refined silhouette fits the mask best; among the starts
within ``select_margin`` IoU of the best, the one nearest the prediction wins. A coarse predicted
shape (selfconsistency's marching-cubes mesh of a 32^3 grid) can fit the mask better at a wrong
pose than at the right one, so the margin decides whether refinement keeps a right prediction.
This script runs ``predictor.refine`` with the GT mask under a few policies on the validation
split of the method's own training set (never its test split) and prints, per policy, the
rotation error (geodesic and azimuth medians, share > 30 deg) before and after refinement and
the refined mask IoU (the refinement's hard IoU in its working crop)::

    python bench/refine_policy.py                          # selfconsistency, shipped model
    python bench/refine_policy.py --checkpoint RUN/last.pt --limit 48

The renders are those of ``scripts/train_default_selfconsistency.sh`` (procedural aeroplane /
car / chair, 24-view ring at elevation 30 deg, fixed framing, 64 px), ``--split val``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import poseshape  # noqa: E402
from poseshape.core.errors import PoseshapeError  # noqa: E402
from poseshape.data.dataset import ShardDataset  # noqa: E402
from poseshape.geometry.camera import pose_to_viewpoint  # noqa: E402
from poseshape.methods.selfconsistency.evaluate import azimuth_error  # noqa: E402
from poseshape.metrics import rotation_error  # noqa: E402

#: name -> RefineConfig overrides of the method's own refine_config()
POLICIES: dict[str, dict] = {
    "default (margin 0.01)": {},
    "margin 0.03": {"select_margin": 0.03},
    "margin 0.05": {"select_margin": 0.05},
    "margin 0.10": {"select_margin": 0.10},
    "local (4 starts, 15 deg, no hypotheses)": {"starts": 4, "perturb_deg": 15.0, "use_hypotheses": False},
    "local + rotation prior 1": {"starts": 4, "perturb_deg": 15.0, "use_hypotheses": False, "rotation_weight": 1.0},
    "local + rotation prior 4": {"starts": 4, "perturb_deg": 15.0, "use_hypotheses": False, "rotation_weight": 4.0},
}


def render_val(out: Path, models: int) -> Path:
    args = [sys.executable, "-m", "poseshape", "data", "render", "--meshes", "procedural", "--out", str(out),
            "--pose", "ring24", "--framing", "fixed", "--size", "64", "--voxels", "32",
            "--categories", "aeroplane", "car", "chair", "--workers", "2", "--quiet",
            "--split", "val", "--models-per-category", str(models)]  # fmt: skip
    subprocess.run(args, check=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped selfconsistency model")
    ap.add_argument("--models", type=int, default=24, help="procedural models per category (the training script's)")
    ap.add_argument("--limit", type=int, default=72, help="validation images (spread over the set)")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    warnings.simplefilter("ignore")
    pred = poseshape.load(args.checkpoint or "selfconsistency", method="selfconsistency", device="cpu")
    base = pred.refine_config()
    with tempfile.TemporaryDirectory() as tmp:
        ds = ShardDataset(render_val(Path(tmp) / "val", args.models))
        n = min(args.limit, len(ds))
        idx = sorted({int(round(k * (len(ds) - 1) / max(1, n - 1))) for k in range(n)})
        items = [ds[i] for i in idx]
    preds = []
    for it in items:
        with torch.no_grad():
            preds.append(pred.predict(it["image"][None]))
    print(f"{len(items)} validation images ({args.models} models per category, val split), checkpoint "
          f"{args.checkpoint or 'shipped'}\n")  # fmt: skip
    print("| policy | rot med before | rot med after | az med after | rot > 30 deg after | mask IoU after | s/image |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.policies:
        cfg = replace(base, **POLICIES[name])
        rot_b, rot_a, az_a, ious = [], [], [], []
        t0 = time.perf_counter()
        for it, p in zip(items, preds):
            mask = (it["mask"] > 0.5).float()
            try:
                r, res = pred.refine(p, 0, mask, cfg)
                iou = float(res.iou[0])
            except PoseshapeError:  # refused (e.g. a near-empty shape): the pose is kept
                r, iou = p, float("nan")
            R_gt = it["R"].double()[None]
            rot_b.append(float(rotation_error(p.R.double()[:1], R_gt)))
            rot_a.append(float(rotation_error(r.R.double()[:1], R_gt)))
            az_gt = pose_to_viewpoint(R_gt, it["t"].double()[None])[0]
            az = pose_to_viewpoint(r.R.double()[:1], r.t.double()[:1])[0]
            az_a.append(float(azimuth_error(az, az_gt)))
            ious.append(iou)
        dt = (time.perf_counter() - t0) / len(items)
        rb, ra = torch.tensor(rot_b), torch.tensor(rot_a)
        print(f"| {name} | {rb.median():.1f} | {ra.median():.1f} | {torch.tensor(az_a).median():.1f} | "
              f"{(ra > 30).float().mean():.3f} | {torch.tensor(ious).nanmean():.3f} | {dt:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
