"""Coverage of SO(3) by rotation-anchor grids: paper 004's eq. 1 grid vs super-Fibonacci and Hopf.

Prints a Markdown table: grid, parameter, anchor count, covering radius (max over random
rotations of the geodesic distance to the nearest anchor) and mean nearest distance, both in
degrees, from ``--samples`` uniform random rotations with a fixed ``--seed``. The covering
radius is a Monte-Carlo estimate (a lower bound that tightens with ``--samples``).

Then, when the shared data is present ($POSESHAPE_DATA), the IoU of our ``voxelize`` of
``samples/trimesh/chair_model.obj`` at 32^3 against its shipped ``chair_model.binvox``,
after placing the mesh in the binvox cube given by the file's translate/scale header.

    python bench/anchors.py [--samples 200000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from poseshape.geometry.anchors import (
    anchor_stats,
    hopf_anchors,
    quaternion_anchors,
    super_fibonacci_anchors,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)

    rows = []
    t0 = time.perf_counter()
    for n in (5, 7, 9):
        for dedup in ("exact", "rotation"):
            a = quaternion_anchors(n, dedup=dedup)
            rows.append((f"paper 004 eq. 1 (dedup={dedup})", f"n={n}", a))
        count = quaternion_anchors(n, dedup="rotation").shape[0]
        for c in sorted({count, quaternion_anchors(n, dedup="exact").shape[0]}):
            rows.append(("super-Fibonacci (Alexa 2022)", f"n={c}", super_fibonacci_anchors(c)))
    for level in (0, 1):
        h = hopf_anchors(level)
        rows.append(("Hopf / HEALPix (Yershova 2010)", f"level={level}", h))
        rows.append(("super-Fibonacci (Alexa 2022)", f"n={h.shape[0]}", super_fibonacci_anchors(h.shape[0])))

    print(f"{args.samples} uniform random rotations, seed {args.seed}\n")
    print("| grid | parameter | count | covering radius (deg) | mean nearest distance (deg) |")
    print("|---|---|---:|---:|---:|")
    for name, param, a in rows:
        s = anchor_stats(a, n_samples=args.samples, seed=args.seed)
        print(
            f"| {name} | {param} | {s['count']} | {math.degrees(s['covering_radius']):.2f} "
            f"| {math.degrees(s['mean_distance']):.2f} |"
        )
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    chair_iou()


def chair_iou() -> None:
    """Voxelize the trimesh sample chair at the binvox's resolution and compare."""
    from poseshape.core.paths import shared_data_status
    from poseshape.shapes.meshes import Mesh, load_mesh
    from poseshape.shapes.voxels import read_binvox, voxelize

    root, reason = shared_data_status()
    if reason is not None:
        print(f"\nchair IoU skipped: {reason}")
        return
    d = root / "samples" / "trimesh"
    ref, hdr = read_binvox(d / "chair_model.binvox")
    mesh = load_mesh(d / "chair_model.obj", dtype=torch.float64)
    t = torch.tensor(hdr.translate, dtype=torch.float64)
    unit = Mesh((mesh.verts - t) / hdr.scale - 0.5, mesh.faces)
    print(f"\nsamples/trimesh/chair_model.obj vs chair_model.binvox ({hdr.dims[0]}^3, {int(ref.sum())} voxels set)\n")
    print("| voxelize setting | voxels set | IoU |")
    print("|---|---:|---:|")
    for surface in (True, False):
        v = voxelize(unit, hdr.dims[0], surface=surface).bool()
        iou = (v & ref).sum().item() / (v | ref).sum().item()
        name = "parity votes + surface voxels (default)" if surface else "parity votes only"
        print(f"| {name} | {int(v.sum())} | {iou:.3f} |")


if __name__ == "__main__":
    main()
