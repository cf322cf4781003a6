"""Mesh-renderer cases of the render benchmark (``bench/render.py`` is the entry point).

Also holds the timing and memory helpers that ``bench/render_voxel.py`` reuses.

Scene: icosphere (level 3: 1,280 faces; level 5: 20,480 faces), radius 0.5, at distance 2.5,
focal 2.2 * H pixels (the sphere spans ~88 % of the image), identity rotation.
Timing: median of ``repeats`` (>= 5 in the full run) after one warm-up, with
``torch.set_num_threads(2)``. ``fwd`` is the forward pass; ``fwd+bwd`` adds
``out.sum().backward()`` with gradients w.r.t. the vertices and the pose (R, t).
Peak memory: see :class:`PeakRSS`.
The naive references (``render_silhouette_dense`` / ``rasterize_dense``: all faces x all
pixels) run where ``B*F*H*W <= 6e6`` so that speed-ups are ratios within one run.

Run alone: ``python bench/render_mesh.py [--quick]`` prints the mesh table only.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

# Waiting OpenMP threads sleep instead of spinning: on a shared 2-core machine a spinning
# thread starves its partner (measured: 455 ms -> 10 ms for one hard raster at load 2). Must be
# set before torch loads OpenMP; export OMP_WAIT_POLICY=ACTIVE to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poseshape.geometry.rotations import axis_angle_to_matrix
from poseshape.render import (
    cpp_available,
    rasterize,
    rasterize_dense,
    render_silhouette,
    render_silhouette_dense,
)
from poseshape.shapes.meshes import icosphere

DENSE_LIMIT = 6e6  # B * F * H * W above which the naive references are skipped

try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # pragma: no cover - non-glibc systems
    _LIBC = None


# ----------------------------------------------------------------------------------------
# shared helpers (also used by render_voxel.py)
# ----------------------------------------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Context manager sampling the process RSS every 1 ms in a thread.

    ``.peak`` is the maximum RSS during the block minus the RSS at entry (MiB). Before entry
    ``malloc_trim(0)`` hands memory freed by earlier cases back to the OS, so that a case
    cannot hide its peak in memory the allocator kept; it is still an approximation
    (1 ms sampling; memory freed inside the block and reused does not count twice).
    """

    def __enter__(self):
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
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


def time_fn(step, repeats: int) -> tuple[float, float]:
    """Median wall time (s) of ``step()`` over ``repeats`` runs after one warm-up, and peak MiB.

    The warm-up runs inside the memory probe too (its peak is the same computation).
    """
    with PeakRSS() as mem:
        step()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts), mem.peak


# ----------------------------------------------------------------------------------------
# mesh cases
# ----------------------------------------------------------------------------------------
def scene(level: int, H: int, B: int):
    """Icosphere ``level`` at distance 2.5, focal ``2.2 H``: ``(verts, faces, R, t, K)``."""
    m = icosphere(level, radius=0.5, dtype=torch.float32)
    K = torch.tensor([[2.2 * H, 0, H / 2], [0, 2.2 * H, H / 2], [0, 0, 1.0]])
    R = torch.eye(3).repeat(B, 1, 1)
    t = torch.tensor([0.0, 0.0, 2.5]).repeat(B, 1)
    return m.verts, m.faces, R, t, K


def _soft(mode, H, backend="auto"):
    return lambda v, f, R, t, K: render_silhouette(v, f, R, t, K, image_size=H, mode=mode, backend=backend)


def _soft_dense(mode, H):
    return lambda v, f, R, t, K: render_silhouette_dense(v, f, R, t, K, image_size=H, mode=mode)


def _mesh_step(fn, sc, backward: bool):
    v0, f, R0, t0, K = sc

    def step():
        v, R, t = (x.clone().requires_grad_(backward) for x in (v0, R0, t0))
        out = fn(v, f, R, t, K)
        if backward:
            out.sum().backward()

    return step


def mesh_cases(level: int, H: int, B: int, quick: bool):
    """``[(name, fn, differentiable, reference_name_or_None)]`` for one configuration."""
    F = 20 * 4**level
    dense = B * F * H * H <= DENSE_LIMIT
    cases = []
    for mode in ("softras", "edge"):
        ref = f"soft {mode} (naive dense)" if dense else None
        cases.append((f"soft {mode} (C++)" if cpp_available() else f"soft {mode} (torch)", _soft(mode, H), True, ref))
        if cpp_available() and not quick and (level == 3 or (H <= 128 and B == 1)):
            cases.append((f"soft {mode} (torch)", _soft(mode, H, "torch"), True, ref))
        if dense:
            cases.append((ref, _soft_dense(mode, H), True, None))
    href = "hard raster (naive dense)" if dense else None
    cases.append(("hard raster", lambda v, f, R, t, K: rasterize(v, f, R, t, K, H).mask, False, href))
    if dense:
        cases.append((href, lambda v, f, R, t, K: rasterize_dense(v, f, R, t, K, H).mask, False, None))
    return cases


def mesh_configs(quick: bool):
    sizes = [64, 128] if quick else [64, 128, 256]
    for level in (3, 5):
        for H in sizes:
            for B in (1, 8):
                if quick and level == 5 and B == 8:
                    continue
                yield level, H, B


def run_mesh(quick: bool, repeats: int, log=print) -> list[dict]:
    """Time every mesh case; returns one dict per (case, configuration)."""
    rows = []
    for level, H, B in mesh_configs(quick):
        sc = scene(level, H, B)
        F = sc[1].shape[0]
        for name, fn, diff, ref in mesh_cases(level, H, B, quick):
            fwd, mem_f = time_fn(_mesh_step(fn, sc, False), repeats)
            both, mem_b = time_fn(_mesh_step(fn, sc, True), repeats) if diff else (math.nan, math.nan)
            rows.append(
                {
                    "name": name,
                    "level": level,
                    "F": F,
                    "H": H,
                    "B": B,
                    "fwd": fwd,
                    "both": both,
                    "mem_f": mem_f,
                    "mem_b": mem_b,
                    "ref": ref,
                }
            )
            log(f"  {name:28s} L{level} {H:4d}^2 B{B}: fwd {fwd * 1e3:8.1f} ms  fwd+bwd {both * 1e3:8.1f} ms")
    return rows


def _ratio(row, rows, key):
    if row["ref"] is None:
        return "-"
    ref = next((r for r in rows if r["name"] == row["ref"] and all(r[k] == row[k] for k in ("level", "H", "B"))), None)
    if ref is None or math.isnan(ref[key]) or math.isnan(row[key]):
        return "-"
    return f"{ref[key] / row[key]:.1f}x"


def mesh_table(rows: list[dict]) -> str:
    """Markdown table; ``x dense`` is the speed-up over the naive reference of the same case."""
    out = [
        (
            "| renderer | faces | size | batch | fwd img/s | fwd+bwd img/s | fwd ms | fwd+bwd ms "
            "| x dense fwd | x dense fwd+bwd | peak MiB fwd / fwd+bwd |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        nob = math.isnan(r["both"])
        ips_b = "-" if nob else f"{r['B'] / r['both']:.1f}"
        ms_b = "-" if nob else f"{r['both'] * 1e3:.1f}"
        mem_b = "-" if nob else f"{r['mem_b']:.0f}"
        out.append(
            f"| {r['name']} | {r['F']} | {r['H']} | {r['B']} | {r['B'] / r['fwd']:.1f} | {ips_b} "
            f"| {r['fwd'] * 1e3:.1f} | {ms_b} | {_ratio(r, rows, 'fwd')} | {_ratio(r, rows, 'both')} "
            f"| {r['mem_f']:.0f} / {mem_b} |"
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# pose optimisation (the issue's "30 Adam steps at 128^2")
# ----------------------------------------------------------------------------------------
def pose_optimisation(
    verts,
    faces,
    H: int = 128,
    steps: int = 30,
    runs: int = 3,
    sigma: float = 1e-4,
    fx: float | None = None,
    dist: float = 2.5,
) -> dict:
    """Wall time of ``steps`` Adam steps on (axis-angle, t) from a silhouette (batch 1).

    Target: the soft silhouette at a reference pose; start: rotated by 10 degrees about
    (1, 1, 0)/sqrt(2) and shifted by (0.05, -0.03, 0.1). Every step renders (softras,
    ``sigma`` NDC^2), computes a soft-IoU loss, backpropagates to the pose and steps Adam.
    Returns the median time over ``runs`` and the final loss of the last run.
    """
    fx = 2.2 * H if fx is None else fx
    K = torch.tensor([[fx, 0, H / 2], [0, fx, H / 2], [0, 0, 1.0]])
    R_gt = axis_angle_to_matrix(torch.tensor([0.3, 0.8, 0.1]))[None]
    t_gt = torch.tensor([[0.0, 0.0, dist]])
    with torch.no_grad():
        target = render_silhouette(verts, faces, R_gt, t_gt, K, image_size=H, sigma=sigma)
    R0 = axis_angle_to_matrix(torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2) * math.radians(10)) @ R_gt
    times, loss = [], None
    for _ in range(runs):
        w = torch.full((3,), 1e-6, requires_grad=True)
        tt = (t_gt + torch.tensor([[0.05, -0.03, 0.1]])).requires_grad_(True)
        opt = torch.optim.Adam([w, tt], lr=0.01)
        t0 = time.perf_counter()
        for _ in range(steps):
            sil = render_silhouette(verts, faces, axis_angle_to_matrix(w) @ R0, tt, K, image_size=H, sigma=sigma)
            loss = 1 - (sil * target).sum() / (sil + target - sil * target).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "times": times, "final_loss": float(loss.detach())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64^2 and 128^2 only, no level-5 batch 8, 3 repeats")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    rows = run_mesh(args.quick, 3 if args.quick else max(5, args.repeats))
    print(mesh_table(rows))


if __name__ == "__main__":
    main()
