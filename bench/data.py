"""Benchmark of the synthetic data engine: samples/s for 64^2 and 128^2 renders with 32^3 voxels.

Renders the PASCAL3D+ CAD models of ``../shared/data/pascal3d_cad`` (``$POSESHAPE_DATA``)
with ``poseshape.data.synth.render_dataset`` (crop framing, uniform poses, render domain,
compressed shards) into a temporary folder, with 1 and 2 worker processes, and prints a
Markdown table. Mesh loading (done once, before rendering) is reported separately and
excluded from the rate; voxelisation, rasterisation, shading, backgrounds, JPEG/noise and
shard writing are included.

    python bench/data.py                       # full: 73 models x 24 views
    python bench/data.py --models 2 --views 8  # quick

The rasteriser is ``poseshape.render.fastraster`` (compiled loop, bit-identical output); the
baseline rows rerun the same configuration with ``POSESHAPE_NO_CPP=1``, i.e. with the
PyTorch rasteriser ``poseshape.render.mesh_hard.rasterize`` (``--baseline-models`` models per
category, to keep the run short), and the ratio compares samples/s of the two. ``cpu s`` is
the CPU time of this process and its worker processes: on a shared machine the wall-clock
rate depends on the load, ``samples / cpu s`` much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time

import torch

from poseshape.core.paths import shared_data_dir
from poseshape.data import synth


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--models", type=int, default=None, help="models per category (default: all)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--domain", default="render")
    ap.add_argument(
        "--baseline-models",
        type=int,
        default=1,
        help="models per category for the PyTorch-rasteriser baseline rows (0: none)",
    )
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
    print(
        f"loaded {len(models)} PASCAL3D+ CAD models (mean {faces:.0f} faces) in {load_s:.1f} s; "
        f"{len(skipped)} skipped; {platform.processor() or platform.machine()}, torch {torch.__version__}"
    )

    class _Preloaded:  # hand the already-loaded models to render_dataset
        pass

    from poseshape.render import fastraster as _fastraster

    _fastraster.available()  # build the extension before timing

    def cpu() -> float:
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def subset(k):
        keep, seen = [], {}
        for m in models:
            seen[m.category] = seen.get(m.category, 0) + 1
            if seen[m.category] <= k:
                keep.append(m)
        return keep

    orig = synth.load_models
    rows = []

    def run(size, w, ms, label):
        synth.load_models = lambda *a, **k: (ms, skipped)
        cfg = synth.SynthConfig(image_size=size, views=args.views, voxel_res=32, domain=args.domain, seed=0)
        with tempfile.TemporaryDirectory() as out:
            c0, t = cpu(), time.perf_counter()
            s = synth.render_dataset(_Preloaded(), out, cfg, workers=w, progress=False, start_method="fork")
            dt, dc = time.perf_counter() - t, cpu() - c0
        rows.append((label, size, w, len(ms), s.num_samples, dt, dc, s.num_samples / dt))
        print(
            f"  {label}: {size}^2, {w} worker(s): {s.num_samples} samples in {dt:.1f} s "
            f"(cpu {dc:.1f} s) = {s.num_samples / dt:.0f} samples/s",
            flush=True,
        )
        return s.num_samples / dt

    try:
        for size in args.sizes:
            for w in args.workers:
                run(size, w, models, "C++ raster")
        if args.baseline_models:
            small = subset(args.baseline_models)
            for w in args.workers:
                fast = run(64, w, small, "C++ raster")
                os.environ["POSESHAPE_NO_CPP"] = "1"
                try:
                    slow = run(64, w, small, "mesh_hard (PyTorch)")
                finally:
                    del os.environ["POSESHAPE_NO_CPP"]
                print(f"  speed-up of the compiled rasteriser, 64^2, {w} worker(s): {fast / slow:.1f}x")
    finally:
        synth.load_models = orig
    print(
        "\n| rasteriser | image | voxels | workers | models | samples | seconds | cpu s | samples/s | samples / cpu s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, size, w, nm, n, dt, dc, rate in rows:
        print(f"| {label} | {size}^2 | 32^3 | {w} | {nm} | {n} | {dt:.1f} | {dc:.1f} | {rate:.0f} | {n / dc:.0f} |")


if __name__ == "__main__":
    main()
