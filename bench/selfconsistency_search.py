"""Why ``selfconsistency`` searches azimuth bins: the landscape of eq. 6 over the azimuth, and
how often the gradient-free search finds the true bin (issue 15)::

    python bench/selfconsistency_search.py            # ~20 s on a 2-core CPU

Renders the procedural test split of ``scripts/train_default_selfconsistency.sh`` (24 models
per category, ring24 at elevation 30 deg, the fixed frame; models it never trained on), then

1. **landscape**: for 4 views per model (90 deg apart), ``L_sc`` of the GT voxels at 72 azimuths (5 deg
   apart, true elevation): the width of the true azimuth's basin (the contiguous run of
   azimuths around it over which the loss rises monotonically away from it), and the number
   of other local minima;
2. **search**: :func:`poseshape.methods.selfconsistency.pose_search.search_bins` (16 bins at
   24^2, 32 samples, the ``cpu`` preset's) at the true elevation and at elevations 15 and 30
   deg off: the share of images whose best bin holds the true azimuth (within half a bin),
   per category.

Prints Markdown tables for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from poseshape.losses.consistency import self_consistency_loss  # noqa: E402
from poseshape.methods.selfconsistency.config import CPU_PRESET, SelfConsistencyConfig  # noqa: E402
from poseshape.methods.selfconsistency.data import SelfConsistencySamples  # noqa: E402
from poseshape.methods.selfconsistency.frame import pose_to_rt  # noqa: E402
from poseshape.methods.selfconsistency.pose_search import bin_centers, search_bins  # noqa: E402

CATS = ("aeroplane", "car", "chair")


def _wrap_deg(a: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(torch.sin(a), torch.cos(a)))


def render(out: Path, models: int) -> None:
    cmd = [sys.executable, "-m", "poseshape", "data", "render", "--meshes", "procedural", "--out", str(out),
           "--pose", "ring24", "--framing", "fixed", "--size", "64", "--voxels", "32", "--categories", *CATS,
           "--split", "test", "--models-per-category", str(models), "--quiet"]  # fmt: skip
    subprocess.run(cmd, check=True)


def landscape(ds: SelfConsistencySamples, cfg: SelfConsistencyConfig, step_deg: float = 5.0) -> dict:
    """Per category: mean basin half-width (deg) and mean count of other local minima."""
    azs = torch.deg2rad(torch.arange(-180.0, 180.0, step_deg))
    n = len(azs)
    out = {c: {"basin": [], "minima": []} for c in CATS}
    with torch.no_grad():
        for i in range(0, len(ds), 6):  # 4 views (90 deg apart) per model
            s = ds[i]
            el = float(s["pose"][1])
            R, t = pose_to_rt(torch.stack([azs, torch.full_like(azs, el)], 1), cfg.distance)
            L = self_consistency_loss(
                s["voxels"][None].expand(n, -1, -1, -1, -1),
                R,
                t,
                s["K"][None].expand(n, 3, 3),
                s["mask"][None].expand(n, -1, -1, -1),
                n_samples=cfg.n_samples,
                reduction="none",
            )
            k0 = int(_wrap_deg(azs - s["pose"][0]).abs().argmin())
            w = 0
            while w < n // 2 and L[(k0 + w + 1) % n] >= L[(k0 + w) % n] and L[(k0 - w - 1) % n] >= L[(k0 - w) % n]:
                w += 1
            minima = sum(1 for k in range(n) if L[k] < L[(k - 1) % n] and L[k] < L[(k + 1) % n] and k != k0)
            cat = CATS[int(s["category"])]
            out[cat]["basin"].append(w * step_deg)
            out[cat]["minima"].append(minima)
    return out


def search(ds: SelfConsistencySamples, cfg: SelfConsistencyConfig, bins: int, offsets_deg) -> dict:
    items = [ds[i] for i in range(len(ds))]
    vox = torch.stack([s["voxels"] for s in items])
    mask = torch.stack([s["mask"] for s in items])
    K = torch.stack([s["K"] for s in items])
    pose = torch.stack([s["pose"] for s in items])
    cat = torch.tensor([int(s["category"]) for s in items])
    res = {}
    for off in offsets_deg:
        hits = []
        for b0 in range(0, len(items), 64):
            sl = slice(b0, b0 + 64)
            k, _, _ = search_bins(
                vox[sl], pose[sl, 1] + math.radians(off), K[sl], mask[sl], bins, cfg.distance,
                res=cfg.search_res, n_samples=cfg.search_samples,
            )  # fmt: skip
            d = _wrap_deg(bin_centers(bins)[k] - pose[sl, 0]).abs()
            hits.append(d <= 180.0 / bins + 1e-3)
        h = torch.cat(hits).float()
        res[off] = {c: float(h[cat == j].mean()) for j, c in enumerate(CATS)}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=24, help="procedural models per category (the training script's)")
    ap.add_argument("--work", default=None, help="folder for the renders (default: a temp folder)")
    args = ap.parse_args(argv)
    cfg = SelfConsistencyConfig()  # search_res / search_samples: the defaults, which the cpu preset keeps
    bins = int(CPU_PRESET["pose_bins"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        if not (work / "test" / "index.json").is_file():
            render(work / "test", args.models)
        ds = SelfConsistencySamples(work / "test", cfg, what="test")
        land = landscape(ds, cfg)
        print("| category | views | true-azimuth basin half-width (deg, mean) | other local minima (mean) |")
        print("|---|---:|---:|---:|")
        for c in CATS:
            b, m = land[c]["basin"], land[c]["minima"]
            print(f"| {c} | {len(b)} | {sum(b) / max(1, len(b)):.1f} | {sum(m) / max(1, len(m)):.1f} |")
        offs = (0.0, 15.0, -30.0)
        sr = search(ds, cfg, bins, offs)
        print(
            f"\nSearch ({bins} bins at {cfg.search_res}^2, {cfg.search_samples} samples), {len(ds)} images: share whose"
        )
        print("best bin holds the true azimuth, at the true elevation and at elevations off by 15 and -30 deg\n")
        print("| category | " + " | ".join(f"elevation {o:+.0f} deg" for o in offs) + " |")
        print("|---|" + "---:|" * len(offs))
        for c in CATS:
            print(f"| {c} | " + " | ".join(f"{sr[o][c]:.2f}" for o in offs) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
