"""Voxel-renderer cases of the render benchmark (``bench/render.py`` is the entry point).

For a 32^3 grid -> 64^2 image (64 samples per ray) and a 64^3 grid -> 128^2 image (128
samples per ray), batch 1 and 64: the ``max`` and ``absorption`` projections
(:func:`poseshape.render.project_voxels`, pinhole camera) and paper 001's ray-consistency
loss (:func:`poseshape.losses.consistency.ray_consistency_loss`, eqs. 1-4, against a random mask).
``fwd+bwd`` adds the backward pass with gradients w.r.t. the voxels, R and t. Timing and
peak memory as in ``bench/render_mesh.py`` (median of ``repeats`` after one warm-up; RSS
growth sampled every 1 ms after ``malloc_trim``).

Run alone: ``python bench/render_voxel.py [--quick]`` prints the voxel table only.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

# Waiting OpenMP threads sleep instead of spinning: on a shared 2-core machine a spinning
# thread starves its partner (measured: 455 ms -> 10 ms for one hard raster at load 2). Must be
# set before torch loads OpenMP; export OMP_WAIT_POLICY=ACTIVE to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_mesh import time_fn

from poseshape.geometry.camera import intrinsics, viewpoint_to_pose
from poseshape.losses.consistency import ray_consistency_loss
from poseshape.render import project_voxels

CASES = [(32, 64, 64), (64, 128, 128)]  # (grid, image, samples per ray)
KINDS = ["max", "absorption", "ray-consistency loss"]


def inputs(grid: int, image: int, batch: int):
    """A blurred box plus noise, random views at distance 2.5, focal 1.4 * image, random mask."""
    g = torch.Generator().manual_seed(0)
    vox = torch.zeros(batch, 1, grid, grid, grid)
    q = grid // 4
    vox[..., q : 3 * q, q + q // 2 : 3 * q - q // 2, q : 3 * q] = 1.0
    vox = torch.nn.functional.avg_pool3d(vox, 3, 1, 1)
    vox = (vox + 0.05 * torch.rand(vox.shape, generator=g)).clamp(0, 1)
    az = torch.rand(batch, generator=g) * 2 * math.pi
    el = torch.rand(batch, generator=g) * 0.6
    R, t = viewpoint_to_pose(az, el, torch.zeros(batch), torch.full((batch,), 2.5))
    K = intrinsics(1.4 * image, image / 2, image / 2)
    mask = (torch.rand(batch, 1, image, image, generator=g) > 0.5).float()
    return vox, R.float(), t.float(), K.float(), mask


def _step(kind, image, samples, data, backward):
    vox0, R0, t0, K, mask = data

    def step():
        with torch.set_grad_enabled(backward):
            v, R, t = (x.clone().requires_grad_(backward) for x in (vox0, R0, t0))
            if kind == "ray-consistency loss":
                out = ray_consistency_loss(v, R, t, K, mask, n_samples=samples)
            else:
                out = project_voxels(v, R, t, K, image_size=image, mode=kind, n_samples=samples)
            if backward:
                out.sum().backward()

    return step


def run_voxel(quick: bool, repeats: int, log=print) -> list[dict]:
    rows = []
    for grid, image, samples in CASES:
        for batch in [1] if quick else [1, 64]:
            data = inputs(grid, image, batch)
            for kind in KINDS:
                fwd, mem_f = time_fn(_step(kind, image, samples, data, False), repeats)
                both, mem_b = time_fn(_step(kind, image, samples, data, True), repeats)
                rows.append(
                    {
                        "grid": grid,
                        "image": image,
                        "samples": samples,
                        "B": batch,
                        "kind": kind,
                        "fwd": fwd,
                        "both": both,
                        "mem_f": mem_f,
                        "mem_b": mem_b,
                    }
                )
                log(f"  {kind:22s} {grid}^3->{image}^2 B{batch}: fwd {fwd * 1e3:8.1f} ms  fwd+bwd {both * 1e3:8.1f} ms")
    return rows


def voxel_table(rows: list[dict]) -> str:
    out = [
        (
            "| grid -> image (samples/ray) | batch | kind | fwd img/s | fwd+bwd img/s | fwd ms | fwd+bwd ms "
            "| peak MiB fwd / fwd+bwd |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['grid']}^3 -> {r['image']}^2 ({r['samples']}) | {r['B']} | {r['kind']} "
            f"| {r['B'] / r['fwd']:.1f} | {r['B'] / r['both']:.1f} | {r['fwd'] * 1e3:.1f} "
            f"| {r['both'] * 1e3:.1f} | {r['mem_f']:.0f} / {r['mem_b']:.0f} |"
        )
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1 only, 3 repeats")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    print(voxel_table(run_voxel(args.quick, 3 if args.quick else max(5, args.repeats))))


if __name__ == "__main__":
    main()
