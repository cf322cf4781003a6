"""Voxel-renderer cases of the render benchmark (``bench/render.py`` is the entry point).

Cases (grid -> image, samples per ray), batch 1 and 64, random views at distance 2.5:

* 32^3 -> 64^2 (64) and 64^3 -> 128^2 (128): the ``max`` and ``absorption`` projections
  (:func:`poseshape.render.project_voxels`), pinhole and weak perspective, and paper 001's
  ray-consistency loss (:func:`poseshape.losses.consistency.ray_consistency_loss`, eqs. 1-4,
  against a random mask);
* 32^3 -> 48^2 (64): the ray-consistency loss at ``selfconsistency``'s training size.

Every case runs twice in the same process: with the compiled kernel (``_cpp/voxel_march.cpp``,
the default) and with the pure-PyTorch reference (``POSESHAPE_NO_CPP=1``: ``grid_sample`` over
all samples, chunked), and the table gives the ratio. ``fwd+bwd`` adds the backward pass with
gradients w.r.t. the voxels, R and t. Timing and peak memory as in ``bench/render_mesh.py``
(median of ``repeats`` after one warm-up; RSS growth sampled every 1 ms after ``malloc_trim``);
the slow reference runs ``--ref-repeats`` times.

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
from poseshape.render.voxel_march import cpp_available

#: (grid, image, samples per ray, kinds)
CASES = [
    (32, 64, 64, ["max", "absorption", "max (weak persp.)", "absorption (weak persp.)", "ray-consistency loss"]),
    (32, 48, 64, ["ray-consistency loss"]),
    (64, 128, 128, ["max", "absorption", "absorption (weak persp.)", "ray-consistency loss"]),
]
BACKENDS = {"kernel": None, "torch": "1"}  # value of POSESHAPE_NO_CPP


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
    weak = kind.endswith("(weak persp.)")
    mode = kind.split(" ")[0]
    # weak perspective: the same views, 0.55 * image pixels per object unit, centred
    t_weak = torch.full((t0.shape[0], 2), image / 2)

    def step():
        with torch.set_grad_enabled(backward):
            v, R, t = (x.clone().requires_grad_(backward) for x in (vox0, R0, t_weak if weak else t0))
            if kind == "ray-consistency loss":
                out = ray_consistency_loss(v, R, t, K, mask, n_samples=samples)
            elif weak:
                out = project_voxels(v, R, t, scale=0.55 * image, image_size=image, mode=mode, n_samples=samples)
            else:
                out = project_voxels(v, R, t, K, image_size=image, mode=mode, n_samples=samples)
            if backward:
                out.sum().backward()

    return step


def _timed(backend: str, step, repeats: int):
    old = os.environ.pop("POSESHAPE_NO_CPP", None)
    try:
        if BACKENDS[backend] is not None:
            os.environ["POSESHAPE_NO_CPP"] = BACKENDS[backend]
        return time_fn(step, repeats)
    finally:
        os.environ.pop("POSESHAPE_NO_CPP", None)
        if old is not None:
            os.environ["POSESHAPE_NO_CPP"] = old


def run_voxel(quick: bool, repeats: int, log=print, ref_repeats: int = 3) -> list[dict]:
    if not cpp_available():
        log("  (the compiled voxel kernel did not build: kernel rows run the reference too)")
    rows = []
    for grid, image, samples, kinds in CASES:
        for batch in [1] if quick else [1, 64]:
            data = inputs(grid, image, batch)
            for kind in kinds:
                row = {"grid": grid, "image": image, "samples": samples, "B": batch, "kind": kind}
                for backend in BACKENDS:
                    reps = repeats if backend == "kernel" else min(repeats, ref_repeats)
                    fwd, mem_f = _timed(backend, _step(kind, image, samples, data, False), reps)
                    both, mem_b = _timed(backend, _step(kind, image, samples, data, True), reps)
                    row[backend] = {"fwd": fwd, "both": both, "mem_f": mem_f, "mem_b": mem_b}
                    log(
                        f"  {kind:26s} {grid}^3->{image}^2 B{batch} {backend:6s}: fwd {fwd * 1e3:8.1f} ms  "
                        f"fwd+bwd {both * 1e3:8.1f} ms"
                    )
                rows.append(row)
    return rows


def voxel_table(rows: list[dict]) -> str:
    out = [
        (
            "| grid -> image (samples/ray) | batch | kind | kernel fwd img/s | kernel fwd+bwd img/s "
            "| torch fwd img/s | torch fwd+bwd img/s | x torch fwd | x torch fwd+bwd "
            "| peak MiB fwd+bwd kernel / torch |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        k, t = r["kernel"], r["torch"]
        out.append(
            f"| {r['grid']}^3 -> {r['image']}^2 ({r['samples']}) | {r['B']} | {r['kind']} "
            f"| {r['B'] / k['fwd']:.1f} | {r['B'] / k['both']:.1f} | {r['B'] / t['fwd']:.1f} "
            f"| {r['B'] / t['both']:.1f} | {t['fwd'] / k['fwd']:.1f}x | {t['both'] / k['both']:.1f}x "
            f"| {k['mem_b']:.0f} / {t['mem_b']:.0f} |"
        )
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1 only, 3 repeats")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-repeats", type=int, default=3, help="repeats of the (slow) PyTorch reference")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    reps = 3 if args.quick else max(5, args.repeats)
    print(voxel_table(run_voxel(args.quick, reps, ref_repeats=args.ref_repeats)))


if __name__ == "__main__":
    main()
