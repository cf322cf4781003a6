"""Paper 002, Fig. 4: the distribution of predicted azimuths against the true one.

The pseudo pose regressor never sees a true azimuth, so its angles are the true ones up to one
global offset (the manifold's own front); the plot shifts the predictions by that offset
(:func:`poseshape.methods.posefree.evaluate.global_offset_error`, the same as Table 1's
azimuth MedErr) and shows both histograms (15 deg bins, the ring's spacing) plus predicted vs
true per image.

Usage::

    poseshape eval posefree --checkpoint poseshape/assets/posefree.pt --label shipped --out runs/pf_eval
    python bench/posefree_fig4.py --eval runs/pf_eval.json --label shipped   # -> bench/figures/posefree_fig4.png

``--eval`` takes the JSON that ``poseshape eval --out OUT`` writes (``OUT.json``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from poseshape.methods.posefree.evaluate import global_offset_error

REPO = Path(__file__).resolve().parents[1]


def fig4(pred: np.ndarray, gt: np.ndarray, out: Path, title: str = "") -> dict:
    """Plot the azimuth histograms of ``pred`` and ``gt`` ((N,) radians) to ``out`` (PNG).

    Returns ``{"offset_deg", "med_err_deg", "tv_distance"}``: the global offset, the median error
    after it, and the total-variation distance of the two 24-bin histograms (0: the same
    distribution, 1: disjoint).
    """
    err, offset = global_offset_error(torch.as_tensor(pred), torch.as_tensor(gt))
    shifted = np.mod(pred + offset, 2 * math.pi)
    edges = np.linspace(0, 360, 25) - 7.5  # bins centred on the ring's 15 deg views
    wrap = lambda a: np.mod(np.degrees(a) + 7.5, 360) - 7.5  # noqa: E731
    hp, _ = np.histogram(wrap(shifted), edges)
    hg, _ = np.histogram(wrap(gt), edges)
    tv = 0.5 * float(np.abs(hp / hp.sum() - hg / hg.sum()).sum())
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax[0].bar(centres - 3, hg, width=6, label="true", color="0.6")
    ax[0].bar(centres + 3, hp, width=6, label="predicted (+ global offset)", color="tab:blue")
    ax[0].set_xlabel("azimuth (deg)")
    ax[0].set_ylabel("images")
    ax[0].set_xticks(range(0, 361, 45))
    ax[0].legend(fontsize=8)
    ax[0].set_title(f"distribution (TV distance {tv:.2f})", fontsize=9)
    ax[1].scatter(np.degrees(gt), np.degrees(shifted), s=6, alpha=0.5)
    ax[1].plot([0, 360], [0, 360], color="0.5", lw=0.8)
    ax[1].set_xlabel("true azimuth (deg)")
    ax[1].set_ylabel("predicted azimuth (deg)")
    ax[1].set_xlim(0, 360)
    ax[1].set_ylim(0, 360)
    ax[1].set_title(f"per image (MedErr {float(err.median()):.1f} deg)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return {"offset_deg": math.degrees(offset), "med_err_deg": float(err.median()), "tv_distance": tv}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", type=Path, required=True, help="JSON written by `poseshape eval posefree --out OUT`")
    ap.add_argument("--label", default=None, help="row of the JSON (default: its only one)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "figures" / "posefree_fig4.png")
    args = ap.parse_args(argv)
    doc = json.loads(args.eval.read_text())
    label = args.label or next(iter(doc))
    if label not in doc:
        raise SystemExit(f"posefree_fig4: no row {label!r} in {args.eval} (rows: {', '.join(doc)})")
    az = doc[label]["result"]["azimuths"]
    stats = fig4(np.asarray(az["pred"]), np.asarray(az["gt"]), args.out, title=f"posefree {label}: Fig. 4")
    print(json.dumps({"figure": str(args.out), "n": len(az["pred"]), **stats}))
    return stats


if __name__ == "__main__":
    main()
