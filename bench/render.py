"""Benchmark of the differentiable renderers (issue 3): the single entry point.

    python bench/render.py                                   # full run (~10-15 min on 2 idle cores)
    python bench/render.py --quick                           # smaller grid, 3 repeats (~2 min)
    python bench/render.py --out bench/results_frag/render.md   # also write the Markdown fragment

Sections (cases and timing rules are documented in ``bench/render_mesh.py`` and
``bench/render_voxel.py``, which this script imports):

1. Mesh soft silhouette (SoftRas and paper-003 edge forms; C++ kernels and the pure-PyTorch
   fallback) and the hard z-buffer raster, icosphere level 3 (1,280 faces) and level 5
   (20,480 faces), 64/128/256 pixels, batch 1 and 8, forward and forward+backward (w.r.t.
   vertices and pose), peak memory, and the naive all-faces x all-pixels references in the
   same run (``x dense`` = speed-up over them).
2. Voxel projection 32^3 -> 64^2 and 64^3 -> 128^2, batch 1 and 64, ``max`` and
   ``absorption`` (pinhole and weak perspective), plus the ray-consistency loss (also at 48^2),
   compiled kernel and PyTorch reference in the same run (``bench/render_voxel.py``).
3. The issue's targets against the PyTorch3D 0.7.9 figures quoted in issue 3 (measured by
   the issue's author on a 2-core machine, not in this run; ``bench/vs_pytorch3d.py`` measures
   PyTorch3D in the same process): soft silhouette fwd+bwd at
   128^2, 1,280 faces, batch 8 (target >= 10 img/s = 30x PyTorch3D's 0.32 img/s) and a 30-step
   Adam pose optimisation at 128^2 (target < 1 s; PyTorch3D 72-86 s).

All timings use ``torch.set_num_threads(2)`` (with ``OMP_WAIT_POLICY=PASSIVE`` unless the
environment sets it: see the comment at the imports) and the median of >= 5 repeats after a warm-up
(3 with ``--quick``). The machine is shared: the load average at start and end is printed;
compare figures only within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

# Waiting OpenMP threads sleep instead of spinning: on a shared 2-core machine a spinning
# thread starves its partner (measured: 455 ms -> 10 ms for one hard raster at load 2). Must be
# set before torch loads OpenMP; export OMP_WAIT_POLICY=ACTIVE to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import render_mesh as rm
import render_voxel as rv

from poseshape.render import cpp_available

#: The issue's PyTorch3D 0.7.9 CPU figures (2 cores, 2 threads): img/s (fwd, fwd+bwd).
PYTORCH3D = {
    ("soft", 64): (28.0, 1.27),
    ("soft", 128): (8.9, 0.32),
    ("hard", 128): (10.8, 2.85),
}
PYTORCH3D_POSE_S = (72.0, 86.0)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _find(rows, name, level, H, B):
    return next((r for r in rows if r["name"] == name and r["level"] == level and r["H"] == H and r["B"] == B), None)


def targets(mesh_rows, repeats: int, log=print) -> tuple[str, list[str]]:
    """The issue's target table; measures what the mesh grid did not already cover."""
    soft = "soft softras (C++)" if cpp_available() else "soft softras (torch)"
    lines = [
        "| case | PyTorch3D 0.7.9 (issue) | ours | ours / PyTorch3D | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    verdicts = []
    for H in (64, 128):
        r = _find(mesh_rows, soft, 3, H, 8)
        if r is None:
            sc = rm.scene(3, H, 8)
            fn = rm.mesh_cases(3, H, 8, True)[0][1]
            fwd, _ = rm.time_fn(rm._mesh_step(fn, sc, False), repeats)
            both, _ = rm.time_fn(rm._mesh_step(fn, sc, True), repeats)
            r = {"fwd": fwd, "both": both, "B": 8}
        p_f, p_b = PYTORCH3D[("soft", H)]
        ours_f, ours_b = 8 / r["fwd"], 8 / r["both"]
        lines.append(
            f"| soft silhouette fwd, 1,280 faces, {H}^2, batch 8 | {p_f} img/s | {ours_f:.1f} img/s "
            f"| {ours_f / p_f:.0f}x | - | - |"
        )
        if H == 128:
            met = ours_b >= 10.0
            verdicts.append(
                f"soft fwd+bwd 128^2 B8: {ours_b:.1f} img/s ({ours_b / p_b:.0f}x PyTorch3D) -> "
                f"{'met' if met else 'NOT met'}"
            )
            lines.append(
                f"| **soft silhouette fwd+bwd, 1,280 faces, 128^2, batch 8** | {p_b} img/s "
                f"| {ours_b:.1f} img/s | {ours_b / p_b:.0f}x | >= 10 img/s (30x) | {'yes' if met else 'no'} |"
            )
        else:
            lines.append(
                f"| soft silhouette fwd+bwd, 1,280 faces, {H}^2, batch 8 | {p_b} img/s "
                f"| {ours_b:.1f} img/s | {ours_b / p_b:.0f}x | - | - |"
            )
    r = _find(mesh_rows, "hard raster", 3, 128, 8)
    p_f, _ = PYTORCH3D[("hard", 128)]
    if r is not None:
        lines.append(
            f"| hard silhouette fwd, 1,280 faces, 128^2, batch 8 | {p_f} img/s | {8 / r['fwd']:.1f} img/s "
            f"| {8 / r['fwd'] / p_f:.0f}x | - | - |"
        )
    log("  pose optimisation (icosphere level 3) ...")
    m = rm.icosphere(3, radius=0.5, dtype=torch.float32)
    po = rm.pose_optimisation(m.verts, m.faces, H=128, steps=30, runs=3)
    met = po["median_s"] < 1.0
    verdicts.append(f"30-step Adam pose optimisation 128^2: {po['median_s']:.3f} s -> {'met' if met else 'NOT met'}")
    lo, hi = PYTORCH3D_POSE_S
    lines.append(
        f"| **30 Adam steps of pose optimisation from a silhouette, 128^2, 1,280 faces** | {lo:.0f}-{hi:.0f} s "
        f"| {po['median_s']:.3f} s | {lo / po['median_s']:.0f}-{hi / po['median_s']:.0f}x faster "
        f"| < 1 s | {'yes' if met else 'no'} |"
    )
    car = None
    try:
        from poseshape.core.paths import shared_data_dir
        from poseshape.shapes.meshes import load_mesh

        path = shared_data_dir() / "pascal3d_cad/CAD/car/01.off"
        if path.is_file():
            car = load_mesh(path, source="pascal3d", normalize=True)
    except Exception as exc:  # noqa: BLE001 - optional extra row
        log(f"  (PASCAL3D+ car row skipped: {exc})")
    if car is not None:
        log("  pose optimisation (PASCAL3D+ car) ...")
        po = rm.pose_optimisation(car.verts.float(), car.faces, H=128, steps=30, runs=3)
        lines.append(
            f"| same, PASCAL3D+ car/01 ({car.faces.shape[0]:,} faces) | - | {po['median_s']:.3f} s | - "
            f"| (< 1 s asked for 1,280 faces) | {'yes' if po['median_s'] < 1 else 'no'} |"
        )
    return "\n".join(lines), verdicts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="smaller grid (no 256^2, no level-5 batch 8, voxel batch 1), 3 repeats"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per case (>= 5 in a full run)")
    ap.add_argument("--out", type=Path, help="also write the Markdown fragment here")
    ap.add_argument(
        "--only",
        choices=["mesh", "voxel", "targets"],
        action="append",
        help="run only these sections (targets needs mesh; default: all)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    repeats = 3 if args.quick else max(5, args.repeats)
    only = set(args.only or ["mesh", "voxel", "targets"])
    if "targets" in only:
        only.add("mesh")
    cmd = "python bench/render.py" + ("".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])))
    load0 = os.getloadavg()
    t_start = time.perf_counter()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, C++ kernels: {cpp_available()}")
    sections = []
    mesh_rows = []
    if "mesh" in only:
        log("mesh renderers ...")
        mesh_rows = rm.run_mesh(args.quick, repeats, log)
        sections.append(
            "### Mesh renderers (icosphere, pinhole, sigma = 1e-4 NDC^2)\n\n"
            "`x dense` = speed-up over the naive all-faces x all-pixels reference of the same "
            "renderer in this run (computed where B*F*H*W <= 6e6). The hard raster is not "
            "differentiable (no fwd+bwd). Peak MiB = RSS growth during the case (1 ms sampling).\n\n"
            + rm.mesh_table(mesh_rows)
        )
    verdicts = []
    if "targets" in only:
        log("targets ...")
        table, verdicts = targets(mesh_rows, repeats, log)
        sections.insert(
            0, "### Targets of issue 3 (PyTorch3D figures are the issue's, not re-measured here)\n\n" + table
        )
    if "voxel" in only:
        log("voxel renderers ...")
        sections.append(
            "### Voxel projection and ray consistency (kernel vs PyTorch reference, random views)\n\n"
            + rv.voxel_table(rv.run_voxel(args.quick, repeats, log))
        )
    load1 = os.getloadavg()
    head = (
        f"## Renderers (issue 3)\n\n"
        f"Machine: 2-core CPU ({_cpu_name()}, {os.cpu_count()} logical cores), torch {torch.__version__}, "
        f"2 threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}; C++ soft-raster kernels "
        f"{'on' if cpp_available() else 'off'}. Median of {repeats} repeats after "
        f"a warm-up. The machine was shared with other jobs: load average {load0[0]:.2f} at start, "
        f"{load1[0]:.2f} at end; run time {time.perf_counter() - t_start:.0f} s.\n\n"
        f"Command: `{cmd}`"
    )
    text = head + "\n\n" + "\n\n".join(sections) + "\n"
    if verdicts:
        text += "\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
