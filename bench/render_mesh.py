"""Benchmark of the mesh renderers (poseshape.render.mesh_soft / mesh_hard).

Usage::

    python bench/render_mesh.py            # full grid (~10 min on 2 cores)
    python bench/render_mesh.py --quick    # 64^2 and 128^2, no level-5 batch 8 (~3 min)

Scene: icosphere (level 3: 1,280 faces; level 5: 20,480 faces), radius 0.5, at distance 2.5,
focal 2.2 * H pixels (the sphere spans ~88 % of the image), identity rotation.
Timing: median of ``--repeats`` (default 5) runs after one warm-up, ``torch.set_num_threads(2)``.
``fwd`` is the forward pass; ``fwd+bwd`` adds ``out.sum().backward()`` with gradients w.r.t.
the vertices and the pose (R, t). Peak memory: the process RSS is sampled every 1 ms by a
thread during the case; the table shows the peak minus the RSS before the case (MiB; an
approximation: the allocator may reuse memory freed by earlier cases).
The naive reference (``render_silhouette_dense``: all faces x all pixels, plain autograd)
runs only where B*F*H*W <= 6e6 so that speed-ups are ratios within one run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poseshape.render.mesh_hard import rasterize
from poseshape.render.mesh_soft import cpp_available, render_silhouette, render_silhouette_dense
from poseshape.shapes.meshes import icosphere


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Context manager sampling RSS in a thread; ``.peak`` = max RSS - RSS at entry (MiB)."""

    def __enter__(self):
        self.base = _rss_mib()
        self.peak_abs = self.base
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak_abs = max(self.peak_abs, _rss_mib())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak_abs = max(self.peak_abs, _rss_mib())
        self.peak = self.peak_abs - self.base


def scene(level: int, H: int, B: int):
    m = icosphere(level, radius=0.5, dtype=torch.float32)
    K = torch.tensor([[2.2 * H, 0, H / 2], [0, 2.2 * H, H / 2], [0, 0, 1.0]])
    R = torch.eye(3).repeat(B, 1, 1)
    t = torch.tensor([0.0, 0.0, 2.5]).repeat(B, 1)
    return m.verts, m.faces, R, t, K


def time_case(fn, backward: bool, repeats: int):
    def once():
        v, f, R, t, K = fn.args
        v, R, t = (x.clone().requires_grad_(backward) for x in (v, R, t))
        t0 = time.perf_counter()
        out = fn(v, f, R, t, K)
        if backward:
            out.sum().backward()
        return time.perf_counter() - t0

    once()  # warm-up
    with PeakRSS() as mem:
        ts = [once() for _ in range(repeats)]
    return statistics.median(ts), mem.peak


class Case:
    def __init__(self, name, call, args):
        self.name, self.call, self.args = name, call, args

    def __call__(self, *a):
        return self.call(*a)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64^2 and 128^2 only, no level-5 batch 8")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, C++ kernels: {cpp_available()}")
    sizes = [64, 128] if args.quick else [64, 128, 256]
    rows = []
    for level in (3, 5):
        for H in sizes:
            for B in (1, 8):
                if args.quick and level == 5 and B == 8:
                    continue
                sc = scene(level, H, B)
                F = sc[1].shape[0]
                cases = []
                for mode in ("softras", "edge"):
                    cases.append(Case(f"soft {mode} (auto)", lambda v, f, R, t, K, m=mode, H=H: render_silhouette(
                        v, f, R, t, K, image_size=H, mode=m), sc))
                    if level == 3 or (H <= 128 and B == 1):
                        cases.append(Case(f"soft {mode} (torch)", lambda v, f, R, t, K, m=mode, H=H: render_silhouette(
                            v, f, R, t, K, image_size=H, mode=m, backend="torch"), sc))
                    if B * F * H * H <= 6e6:
                        cases.append(Case(f"soft {mode} (naive dense)", lambda v, f, R, t, K, m=mode, H=H:
                                          render_silhouette_dense(v, f, R, t, K, image_size=H, mode=m), sc))
                cases.append(Case("hard raster", lambda v, f, R, t, K, H=H: rasterize(v, f, R, t, K, H).mask, sc))
                for c in cases:
                    fwd, mem_f = time_case(c, False, args.repeats)
                    if c.name == "hard raster":
                        both, mem_b = float("nan"), float("nan")
                    else:
                        both, mem_b = time_case(c, True, args.repeats)
                    rows.append((c.name, level, F, H, B, fwd, both, mem_f, mem_b))
                    print(f"  {c.name:26s} L{level} {H:4d}^2 B{B}: fwd {fwd * 1e3:8.1f} ms  "
                          f"fwd+bwd {both * 1e3:8.1f} ms", flush=True)

    # 30-step Adam pose optimisation, 128^2, batch 1, 1,280 faces.
    v, f, R, t, K = scene(3, 128, 1)
    target = render_silhouette(v, f, R, t + torch.tensor([0.05, -0.03, 0.1]), K, image_size=128).detach()
    pose_times = []
    for _ in range(3):
        w = torch.zeros(3, requires_grad=True)
        tt = t.clone().requires_grad_(True)
        opt = torch.optim.Adam([w, tt], lr=0.01)
        t0 = time.perf_counter()
        for _ in range(30):
            from poseshape.geometry.rotations import axis_angle_to_matrix

            sil = render_silhouette(v, f, axis_angle_to_matrix(w)[None] @ R, tt, K, image_size=128)
            loss = ((sil - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        pose_times.append(time.perf_counter() - t0)

    print()
    print("| renderer | faces | size | batch | fwd img/s | fwd+bwd img/s | fwd ms | fwd+bwd ms | peak MiB fwd / fwd+bwd |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, level, F, H, B, fwd, both, mf, mb in rows:
        nob = math.isnan(both)
        ips_b = "-" if nob else f"{B / both:.1f}"
        ms_b = "-" if nob else f"{both * 1e3:.1f}"
        mb_s = "-" if nob else f"{mb:.0f}"
        print(f"| {name} | {F} | {H} | {B} | {B / fwd:.1f} | {ips_b} | {fwd * 1e3:.1f} | {ms_b} | {mf:.0f} / {mb_s} |")
    print()
    print(f"30-step Adam pose optimisation (softras, sigma 1e-4, 128^2, batch 1, 1,280 faces): "
          f"median {statistics.median(pose_times):.3f} s over 3 runs")


if __name__ == "__main__":
    main()
