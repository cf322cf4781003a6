"""How good is ``--mask auto`` (the learned segmenter, :func:`poseshape.engine.segmenter.learned_mask`,
with and without GrabCut snapping it to the edges) against GrabCut on the whole frame
(:func:`poseshape.engine.grabcut.auto_mask`, the fallback)?

Mean IoU of the automatic mask with the true mask, on renders that no test table uses: the
world mix's ``val`` models (:mod:`poseshape.data.world`; the cross-dataset tables use its
``test`` models) and procedural models nos. 120-139 (the tables use 100-119), natural-like
domain, the reproject framing, seed 321. Variants of the GrabCut set-up are compared here, on
these validation renders, and the chosen one is then reported on the test sets by
``bench/cross_dataset.py --masks truth auto``.

    POSESHAPE_DATA=../shared/data python bench/auto_mask.py --models 24 --views 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from poseshape.core.errors import PoseshapeError
from poseshape.core.paths import shared_data_dir
from poseshape.data.collections import MeshCollection
from poseshape.data.dataset import ShardDataset
from poseshape.data.synth import render_dataset
from poseshape.data.world import WORLD_SPLIT, world_collection
from poseshape.engine.grabcut import auto_mask
from poseshape.engine.segmenter import learned_mask
from poseshape.methods.reproject.data import reproject_synth_config


def val_collection(name: str, data: Path, models: int) -> MeshCollection:
    if name == "procedural":
        full = MeshCollection.procedural(("aeroplane", "car", "chair"), 140, cache_size=0)
        keep = [i for i, r in enumerate(full.models) if int(r.model_id.rsplit("_", 1)[1]) >= 120]
        col = full.subset(keep)
    else:
        col = world_collection(data).split("val", WORLD_SPLIT)
    step = max(1, len(col) // models)
    return col.subset(list(range(0, len(col), step))[:models])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return float((a & b).sum()) / float(u) if u else 1.0


#: label -> (H, W, 3) uint8 -> (H, W) bool
VARIANTS = {
    "segmenter": lambda rgb: learned_mask(rgb),
    "segmenter + GrabCut": lambda rgb: learned_mask(rgb, grabcut=True),
    "inset 0.04 (default)": lambda rgb: auto_mask(rgb),
    "inset 0.02": lambda rgb: auto_mask(rgb, inset=0.02),
    "inset 0.08": lambda rgb: auto_mask(rgb, inset=0.08),
    "max side 128": lambda rgb: auto_mask(rgb, max_side=128),
    "10 iterations": lambda rgb: auto_mask(rgb, iterations=10),
}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else shared_data_dir()
    out = {}
    with tempfile.TemporaryDirectory(prefix="auto_mask_") as tmp:
        for name in ("procedural", "world-val"):
            col = val_collection(name, data, args.models)
            render_dataset(
                col,
                Path(tmp) / name,
                reproject_synth_config(args.size, args.views, 30, "natural", seed=321),
                workers=1,
                progress=False,
            )
            ds = ShardDataset(Path(tmp) / name, keys=("image", "mask"))
            items = [ds[i] for i in range(len(ds))]
            for label, make in VARIANTS.items():
                ious, t0, missed = [], time.perf_counter(), 0
                for it in items:
                    rgb = (it["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
                    truth = it["mask"][0].numpy() >= 0.5
                    try:
                        m = make(rgb)
                    except PoseshapeError:
                        m, missed = np.zeros_like(truth), missed + 1
                    ious.append(iou(m, truth))
                dt = (time.perf_counter() - t0) / len(items)
                out.setdefault(name, {})[label] = {
                    "n": len(items),
                    "iou": float(np.mean(ious)),
                    "median": float(np.median(ious)),
                    "missed": missed,
                    "ms": 1e3 * dt,
                }
                print(
                    f"{name:11s} {label:22s} n={len(items)} mean IoU {np.mean(ious):.3f} median "
                    f"{np.median(ious):.3f} no object {missed} {1e3 * dt:.0f} ms/image",
                    flush=True,
                )
    return out


if __name__ == "__main__":
    main()
