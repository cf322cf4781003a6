"""Benchmark of the synthetic data engine: samples/s for 64^2 and 128^2 renders with 32^3 voxels.

Renders the PASCAL3D+ CAD models of ``../shared/data/pascal3d_cad`` (``$POSESHAPE_DATA``)
with ``poseshape.data.synth.render_dataset`` (crop framing, uniform poses, render domain,
compressed shards) into a temporary folder, with 1 and 2 worker processes, and prints a
Markdown table. Mesh loading (done once, before rendering) is reported separately and
excluded from the rate; voxelisation, rasterisation, shading, backgrounds, JPEG/noise and
shard writing are included.

    python bench/data.py                       # full: 73 models x 24 views
    python bench/data.py --models 2 --views 8  # quick
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from poseshape.data import synth
from poseshape.paths import shared_data_dir


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--models", type=int, default=None, help="models per category (default: all)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--domain", default="render")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    root = shared_data_dir() / "pascal3d_cad"
    if not root.is_dir():
        raise SystemExit(f"PASCAL3D+ CAD not found at {root} (set POSESHAPE_DATA)")
    t0 = time.perf_counter()
    models, skipped = synth.load_models(root)
    if args.models:
        keep, seen = [], {}
        for m in models:
            seen[m.category] = seen.get(m.category, 0) + 1
            if seen[m.category] <= args.models:
                keep.append(m)
        models = keep
    load_s = time.perf_counter() - t0
    faces = sum(len(m.faces) for m in models) / len(models)
    print(f"loaded {len(models)} PASCAL3D+ CAD models (mean {faces:.0f} faces) in {load_s:.1f} s; "
          f"{len(skipped)} skipped; {platform.processor() or platform.machine()}, torch {torch.__version__}")

    class _Preloaded:  # hand the already-loaded models to render_dataset
        pass

    orig = synth.load_models
    synth.load_models = lambda *a, **k: (models, skipped)
    rows = []
    try:
        for size in args.sizes:
            for w in args.workers:
                cfg = synth.SynthConfig(image_size=size, views=args.views, voxel_res=32, domain=args.domain, seed=0)
                with tempfile.TemporaryDirectory() as out:
                    t = time.perf_counter()
                    s = synth.render_dataset(_Preloaded(), out, cfg, workers=w, progress=False)
                    dt = time.perf_counter() - t
                rows.append((size, w, s.num_samples, dt, s.num_samples / dt))
                print(f"  {size}^2, {w} worker(s): {s.num_samples} samples in {dt:.1f} s = {s.num_samples / dt:.0f} samples/s",
                      flush=True)
    finally:
        synth.load_models = orig
    print("\n| image | voxels | workers | samples | seconds | samples/s |")
    print("|---|---|---|---|---|---|")
    for size, w, n, dt, rate in rows:
        print(f"| {size}^2 | 32^3 | {w} | {n} | {dt:.1f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
