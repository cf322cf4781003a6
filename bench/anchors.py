"""Coverage of SO(3) by rotation-anchor grids: paper 004's eq. 1 grid vs super-Fibonacci.

Prints a Markdown table: grid, parameter, anchor count, covering radius (max over random
rotations of the geodesic distance to the nearest anchor) and mean nearest distance, both in
degrees, from ``--samples`` uniform random rotations with a fixed ``--seed``.

    python bench/anchors.py [--samples 200000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from poseshape.geometry.anchors import anchor_stats, quaternion_anchors, super_fibonacci_anchors


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


if __name__ == "__main__":
    main()
