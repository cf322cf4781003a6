"""Benchmark the voxel renderer (poseshape.render.voxel) on CPU.

Measures, for a 32^3 grid -> 64^2 image (64 samples per ray) and a 64^3 grid -> 128^2
image (128 samples per ray), batch 1 and 64, the ``max`` and ``absorption`` projections
and paper 001's self-consistency loss (ray consistency + projection IoU):

* forward time and forward+backward time (gradients w.r.t. voxels, R and t), median of
  ``--repeats`` runs after one warm-up run, and images/s from the median;
* peak extra memory: each (case, pass) runs in a fresh subprocess and reports the growth of
  the process's resident-set high-water mark (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
  from just before the first render (inputs allocated) to the end (warm-up + repeats).
  This counts every allocation torch makes on the CPU, including freed temporaries.

Usage::

    python bench/render_voxel.py            # full table (a few minutes on 2 cores)
    python bench/render_voxel.py --quick    # batch 1 only, 3 repeats

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

CASES = [  # (grid, image, samples)
    (32, 64, 64),
    (64, 128, 128),
]
KINDS = ["max", "absorption", "self-consistency loss"]


def _maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes vs KiB


def _inputs(grid: int, image: int, batch: int):
    from poseshape.geometry.camera import intrinsics, viewpoint_to_pose

    g = torch.Generator().manual_seed(0)
    vox = torch.zeros(batch, 1, grid, grid, grid)
    q = grid // 4
    vox[..., q:3 * q, q + q // 2:3 * q - q // 2, q:3 * q] = 1.0  # a box, blurred
    vox = torch.nn.functional.avg_pool3d(vox, 3, 1, 1)
    vox = (vox + 0.05 * torch.rand(vox.shape, generator=g)).clamp(0, 1)
    az = torch.rand(batch, generator=g) * 2 * math.pi
    el = torch.rand(batch, generator=g) * 0.6
    R, t = viewpoint_to_pose(az, el, torch.zeros(batch), torch.full((batch,), 2.5))
    K = intrinsics(1.4 * image, image / 2, image / 2)
    mask = (torch.rand(batch, 1, image, image, generator=g) > 0.5).float()
    return vox, R.float(), t.float(), K.float(), mask


def run_one(grid: int, image: int, samples: int, batch: int, kind: str, backward: bool,
            repeats: int) -> dict:
    from poseshape.render.voxel import project_voxels, self_consistency_loss

    torch.set_num_threads(2)
    vox, R, t, K, mask = _inputs(grid, image, batch)

    def step():
        v = vox.requires_grad_(backward)
        RR = R.clone().requires_grad_(backward)
        tt = t.clone().requires_grad_(backward)
        if kind == "self-consistency loss":
            out = self_consistency_loss(v, RR, tt, K, mask, n_samples=samples)
        else:
            out = project_voxels(v, RR, tt, K, image_size=image, mode=kind, n_samples=samples)
        if backward:
            out.sum().backward()
        return out

    rss0 = _maxrss_mib()
    with torch.set_grad_enabled(backward):
        step()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"median_s": med, "images_per_s": batch / med, "peak_mib": _maxrss_mib() - rss0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch 1 only, 3 repeats")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case as JSON
    args = ap.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(run_one(**spec)))
        return
    batches = [1] if args.quick else [1, 64]
    repeats = 3 if args.quick else max(5, args.repeats)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, 2 threads, median of {repeats} after 1 warm-up; "
          f"peak = ru_maxrss growth per fresh process; load average at start "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| grid -> image (samples) | batch | kind | fwd ms | fwd img/s | fwd peak MiB "
          "| fwd+bwd ms | fwd+bwd img/s | fwd+bwd peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for grid, image, samples in CASES:
        for batch in batches:
            for kind in KINDS:
                res = []
                for backward in (False, True):
                    spec = {"grid": grid, "image": image, "samples": samples, "batch": batch,
                                "kind": kind, "backward": backward, "repeats": repeats}
                    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)],
                                         capture_output=True, text=True, check=True)
                    res.append(json.loads(out.stdout.strip().splitlines()[-1]))
                f, b = res
                print(f"| {grid}^3 -> {image}^2 ({samples}) | {batch} | {kind} "
                      f"| {1e3 * f['median_s']:.1f} | {f['images_per_s']:.1f} "
                      f"| {f['peak_mib']:.0f} | {1e3 * b['median_s']:.1f} "
                      f"| {b['images_per_s']:.1f} | {b['peak_mib']:.0f} |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f} (timings are only comparable on "
          f"an otherwise idle machine)")


if __name__ == "__main__":
    main()
