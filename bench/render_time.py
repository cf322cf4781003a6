"""Paper 003 Fig. 6(b): silhouette rendering time of our mesh renderers vs voxel projection.

    python bench/render_time.py                         # full run: N = 16..256, batch 1 and 16
    python bench/render_time.py --quick --no-plot       # N = 16, 32, 64, 1 repeat (< 1 min)
    python bench/render_time.py --json out/render_time.json --plot bench/figures/render_time.png

What the paper plots (Sec. 4, "Renderer ablation study"): the rendering time of its mesh
rasteriser (eq. 5) and of PTN's voxel projection (Yan et al.) "for different image (and PTN
voxel) resolutions"; the claim is that the voxel path is only competitive at very low
resolution and that its time grows much faster with resolution ("footprint scales with the
cube of the resolution"). Here, for every image side ``N``:

* mesh, soft (:func:`poseshape.render.render_silhouette`): ``mode="edge"`` (paper 003's eq. 5)
  and ``mode="softras"``, ``N x N`` image, sigma 1e-4 NDC^2, C++ kernels when they build;
* mesh, hard (:func:`poseshape.render.rasterize`, exact z-buffer): forward only, it is not
  differentiable;
* voxel ``N^3`` (:func:`poseshape.render.project_voxels`, ``mode="max"`` = paper 000's eq. 3,
  PTN's projection): an ``N^3`` occupancy grid rendered to ``N x N`` with ``N`` samples per
  ray, i.e. ``N^3`` trilinear reads per image (PTN resamples an ``N^3`` grid and takes the max
  along depth);
* voxel ``32^3`` (same, fixed 32^3 grid, 32 samples per ray, as PTN's fixed 32^3 output in
  Fig. 6(a)): the grid stays the same, only the image grows (``32 N^2`` reads per image).

Shape: the procedural car ``poseshape.shapes.procedural.generate("car", 0)`` (464 faces) and its
solid voxelisation at each grid size (:func:`poseshape.shapes.convert.mesh_to_voxels`; not
timed). When ``../shared/data`` holds it, the PASCAL3D+ CAD ``car/01`` (28,937 faces) is also
rendered by the mesh renderers (``--no-pascal`` skips it); its voxel projection would cost the
same as the procedural car's (the voxel cost does not depend on the shape).
Camera: pinhole, focal ``2 N`` px, distance 2.5 (the car's 1-unit length spans ~0.8 N), elevation
0.35 rad, ``B`` azimuths spread over the circle; one shape, ``B`` poses (the refinement use
case: one medoid, many poses). ``fwd+bwd`` adds ``out.sum().backward()`` with gradients
w.r.t. the shape (vertices / voxels) and the pose (R, t).
``IoU`` (batch 1 rows): silhouette > 0.5 against the z-buffer mask of the same mesh, a check
that every renderer draws the same object.

Timing: ``bench/render_mesh.py``'s ``time_fn`` (one warm-up, then the median of ``--repeats``
>= 3; cases under 20 ms are re-timed with more repeats), ``torch.set_num_threads(2)`` and
``OMP_WAIT_POLICY=PASSIVE`` (set by importing ``bench/render.py``; see the comment there). The
machine is shared: every row prints the 1-min load average at its end; compare rows within
one run only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Importing bench/render.py sets OMP_WAIT_POLICY=PASSIVE (unless the environment sets it) before
# torch loads OpenMP, and brings the shared timing helpers of render_mesh / render_voxel.
import render as rb  # bench/render.py
import render_mesh as rm
import render_voxel as rv
import torch

from poseshape.geometry.camera import intrinsics, viewpoint_to_pose
from poseshape.render import cpp_available, project_voxels, rasterize, render_silhouette
from poseshape.shapes.convert import mesh_to_voxels
from poseshape.shapes.meshes import Mesh
from poseshape.shapes.procedural import generate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PLOT = ROOT / "bench" / "figures" / "render_time.png"
FULL_RES = (16, 32, 64, 128, 256)
QUICK_RES = (16, 32, 64)
FIXED_GRID = 32
DISTANCE = 2.5
ELEVATION = 0.35
FOCAL_PER_PX = 2.0
FAST_S = 0.02  # cases faster than this are re-timed with more repeats
FAST_REPEATS = 15


def poses(B: int):
    az = 0.5 + torch.arange(B, dtype=torch.float64) * (2 * math.pi / B)
    R, t = viewpoint_to_pose(
        az,
        torch.full((B,), ELEVATION, dtype=torch.float64),
        torch.zeros(B, dtype=torch.float64),
        torch.full((B,), DISTANCE, dtype=torch.float64),
    )
    return R.float(), t.float()


def camera(N: int) -> torch.Tensor:
    return intrinsics(FOCAL_PER_PX * N, N / 2, N / 2).float()


def load_shapes(pascal: bool, log) -> dict:
    """``{label: Mesh}``: the procedural car and (optionally) PASCAL3D+ car/01."""
    mesh, _ = generate("car", 0, dtype=torch.float32)
    shapes = {"procedural car": mesh}
    if pascal:
        try:
            from poseshape.core.paths import shared_data_status
            from poseshape.shapes.meshes import load_mesh

            root, why = shared_data_status()
            path = root / "pascal3d_cad/CAD/car/01.off"
            if why is None and path.is_file():
                m = load_mesh(path, source="pascal3d", normalize=True)
                shapes["PASCAL3D+ car/01"] = Mesh(m.verts.float(), m.faces)
            else:
                log(f"  (PASCAL3D+ car skipped: {why or f'{path} missing'})")
        except Exception as exc:  # noqa: BLE001 - optional extra shape
            log(f"  (PASCAL3D+ car skipped: {exc})")
    return shapes


def mesh_renderers():
    """``[(name, fn(v, f, R, t, K, N), differentiable)]``."""

    def soft(mode):
        return lambda v, f, R, t, K, N: render_silhouette(v, f, R, t, K, image_size=N, mode=mode)

    return [
        ("mesh soft edge (eq. 5)", soft("edge"), True),
        ("mesh soft softras", soft("softras"), True),
        ("mesh hard z-buffer", lambda v, f, R, t, K, N: rasterize(v, f, R, t, K, N).mask.float(), False),
    ]


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.reshape(-1) > 0.5, b.reshape(-1) > 0.5
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def _time(step, repeats: int) -> tuple[float, float]:
    sec, mib = rm.time_fn(step, repeats)
    if sec < FAST_S and repeats < FAST_REPEATS:
        sec, mib = rm.time_fn(step, FAST_REPEATS)
    return sec, mib


def run(
    resolutions, batches, repeats: int, shapes: dict, voxel_mode: str, fixed_grid: bool, max_voxel_res: int, log
) -> list[dict]:
    rows = []
    car = shapes["procedural car"]
    for B in batches:
        R, t = poses(B)
        for N in resolutions:
            K = camera(N)
            ref = {}
            with torch.no_grad():
                for label, m in shapes.items():
                    ref[label] = rasterize(m.verts, m.faces, R[:1], t[:1], K, N).mask.float()

            def record(name, shape, size, fwd, both, mem_f, mem_b, iou, N=N, B=B):
                load = os.getloadavg()[0]
                row = {
                    "renderer": name,
                    "shape": shape,
                    "size": size,
                    "N": N,
                    "B": B,
                    "fwd_s": fwd,
                    "both_s": both,
                    "mem_fwd_mib": mem_f,
                    "mem_both_mib": mem_b,
                    "iou_vs_zbuffer": iou,
                    "load1": load,
                }
                rows.append(row)
                both_txt = "       -   " if math.isnan(both) else f"{both * 1e3:9.1f} ms"
                iou_txt = "" if iou is None else f"  IoU {iou:.3f}"
                log(
                    f"  B{B:<3d} N{N:<4d} {name:26s} {shape:18s} fwd {fwd * 1e3:9.1f} ms  fwd+bwd {both_txt}"
                    f"{iou_txt}  load {load:.2f}"
                )

            for label, m in shapes.items():
                sc = (m.verts, m.faces, R, t, K)
                for name, fn, diff in mesh_renderers():

                    def fn_n(v, f, R_, t_, K_, fn=fn, N=N):
                        return fn(v, f, R_, t_, K_, N)

                    fwd, mem_f = _time(rm._mesh_step(fn_n, sc, False), repeats)
                    both, mem_b = _time(rm._mesh_step(fn_n, sc, True), repeats) if diff else (math.nan, math.nan)
                    iou = None
                    if B == 1:
                        with torch.no_grad():
                            iou = _iou(fn_n(*sc), ref[label])
                    record(name, label, f"{m.faces.shape[0]:,} faces", fwd, both, mem_f, mem_b, iou)

            grids = []
            if N <= max_voxel_res:
                grids.append((f"voxel N^3 {voxel_mode}", N))
            if fixed_grid:
                grids.append((f"voxel {FIXED_GRID}^3 {voxel_mode}", FIXED_GRID))
            for name, G in grids:
                vox = mesh_to_voxels(car, G)[None, None].float()
                data = (vox, R, t, K, None)
                fwd, mem_f = _time(rv._step(voxel_mode, N, G, data, False), repeats)
                both, mem_b = _time(rv._step(voxel_mode, N, G, data, True), repeats)
                iou = None
                if B == 1:
                    with torch.no_grad():
                        out = project_voxels(vox, R, t, K, image_size=N, mode=voxel_mode, n_samples=G)
                    iou = _iou(out, ref["procedural car"])
                record(name, "procedural car", f"{G}^3, {G} samples/ray", fwd, both, mem_f, mem_b, iou)
    return rows


def _ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x * 1e3:.2f}" if x < 0.01 else f"{x * 1e3:.1f}" if x < 1 else f"{x * 1e3:.0f}"


def table(rows: list[dict]) -> str:
    out = [
        (
            "| renderer | shape | faces / grid | N (image NxN) | batch | fwd ms | fwd+bwd ms | fwd+bwd ms/img "
            "| peak MiB fwd / fwd+bwd | IoU vs z-buffer | load 1-min |"
        ),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per = r["both_s"] / r["B"]
        mem_b = "-" if math.isnan(r["mem_both_mib"]) else f"{r['mem_both_mib']:.0f}"
        iou = "-" if r["iou_vs_zbuffer"] is None else f"{r['iou_vs_zbuffer']:.3f}"
        out.append(
            f"| {r['renderer']} | {r['shape']} | {r['size']} | {r['N']} | {r['B']} | {_ms(r['fwd_s'])} "
            f"| {_ms(r['both_s'])} | {_ms(per)} | {r['mem_fwd_mib']:.0f} / {mem_b} | {iou} "
            f"| {r['load1']:.2f} |"
        )
    return "\n".join(out)


def ratio_table(rows: list[dict], voxel_mode: str) -> str:
    """mesh / voxel N^3 time ratios (procedural car), within this run."""

    def get(name, N, B, shape="procedural car"):
        return next(
            (r for r in rows if r["renderer"] == name and r["N"] == N and r["B"] == B and r["shape"] == shape), None
        )

    vname = f"voxel N^3 {voxel_mode}"
    out = [
        (
            "| batch | N | edge / voxel N^3, fwd | edge / voxel N^3, fwd+bwd | softras / voxel N^3, fwd+bwd "
            f"| z-buffer / voxel N^3, fwd | edge / voxel {FIXED_GRID}^3, fwd+bwd |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = sorted({(r["B"], r["N"]) for r in rows})
    for B, N in keys:
        vox, vfix = get(vname, N, B), get(f"voxel {FIXED_GRID}^3 {voxel_mode}", N, B)
        edge, soft, hard = (
            get("mesh soft edge (eq. 5)", N, B),
            get("mesh soft softras", N, B),
            get("mesh hard z-buffer", N, B),
        )

        def rat(a, b, key):
            return "-" if a is None or b is None else f"{a[key] / b[key]:.3g}"

        out.append(
            f"| {B} | {N} | {rat(edge, vox, 'fwd_s')} | {rat(edge, vox, 'both_s')} "
            f"| {rat(soft, vox, 'both_s')} | {rat(hard, vox, 'fwd_s')} | {rat(edge, vfix, 'both_s')} |"
        )
    return "\n".join(out)


def pivot_table(rows: list[dict]) -> str:
    """One row per (batch, renderer, shape), one column per N: ``fwd / fwd+bwd`` ms."""
    Ns = sorted({r["N"] for r in rows})
    keys = []
    for r in rows:
        k = (r["B"], r["renderer"], r["shape"])
        if k not in keys:
            keys.append(k)
    out = [
        "| batch | renderer | shape | " + " | ".join(f"N = {N}" for N in Ns) + " |",
        "|---:|---|---|" + "---:|" * len(Ns),
    ]
    for B, name, shape in keys:
        cells = []
        for N in Ns:
            r = next((r for r in rows if (r["B"], r["renderer"], r["shape"], r["N"]) == (B, name, shape, N)), None)
            cells.append(
                "-"
                if r is None
                else _ms(r["fwd_s"])
                if math.isnan(r["both_s"])
                else f"{_ms(r['fwd_s'])} / {_ms(r['both_s'])}"
            )
        out.append(f"| {B} | {name} | {shape} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["B"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.0 * len(batches), 4.6), squeeze=False)
    names = sorted({r["renderer"] for r in rows}, key=lambda n: (n.startswith("voxel"), n))
    shapes = sorted({r["shape"] for r in rows}, key=lambda s: s != "procedural car")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = [("o", "-"), ("^", "-.")]
    for ax, B in zip(axes[0], batches):
        for i, name in enumerate(names):
            for j, shape in enumerate(shapes):
                rs = sorted(
                    (r for r in rows if r["renderer"] == name and r["shape"] == shape and r["B"] == B),
                    key=lambda r: r["N"],
                )
                if not rs:
                    continue
                marker, ls = styles[min(j, len(styles) - 1)]
                c = colours[i % len(colours)]
                xs = [r["N"] for r in rs]
                hard = math.isnan(rs[0]["both_s"])
                label = name + ("" if shape == "procedural car" else f", {shape}") + (" (fwd only)" if hard else "")
                ys = [r["fwd_s" if hard else "both_s"] * 1e3 for r in rs]
                ax.plot(xs, ys, marker=marker, ls=ls, color=c, label=label, ms=4)
                if not hard and shape == "procedural car":
                    ax.plot(xs, [r["fwd_s"] * 1e3 for r in rs], ":", color=c, lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("image side N (voxel N^3: grid N^3)")
        ax.set_ylabel("time per batch (ms)")
        ax.set_title(f"batch {B}: fwd+bwd (dotted: fwd, procedural car)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 16, 32, 64 and 1 repeat")
    ap.add_argument("--resolutions", type=int, nargs="+", help=f"image sides (default {FULL_RES})")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up (>= 3 unless --quick)")
    ap.add_argument(
        "--max-voxel-res",
        type=int,
        default=10**9,
        help="skip the voxel N^3 case above this N (if the largest grid is too slow)",
    )
    ap.add_argument("--voxel-mode", choices=["max", "absorption"], default="max")
    ap.add_argument("--no-fixed-grid", action="store_true", help=f"skip the fixed {FIXED_GRID}^3 voxel case")
    ap.add_argument("--no-pascal", action="store_true", help="skip the PASCAL3D+ car (../shared/data)")
    ap.add_argument("--json", type=Path, help="also write the rows and metadata as JSON here")
    ap.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG log-log plot (default %(default)s)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--from-json", type=Path, help="re-print the tables (and plot) of a saved --json run, no timing")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        meta = saved["meta"]
        rows = [
            {k: (math.nan if v is None and k in ("both_s", "mem_both_mib") else v) for k, v in r.items()}
            for r in saved["rows"]
        ]
    else:
        meta, rows = measure(args, argv, log)
    head = (
        f"Machine: {meta['cpu']}, {meta['logical_cores']} logical cores, torch {meta['torch']}, "
        f"{meta['threads']} threads, OMP_WAIT_POLICY={meta['omp_wait_policy']}, C++ soft-raster kernels "
        f"{'on' if meta['cpp_kernels'] else 'off'}. Median of {meta['repeats']} repeat(s) after a warm-up "
        f"(cases < {FAST_S * 1e3:.0f} ms: {FAST_REPEATS}). Load average {meta['load1_start']:.2f} at start, "
        f"{meta['load1_end']:.2f} at end; run time {meta['wall_s']:.0f} s.\n\n"
        f"Command: `{meta['command']}`"
    )
    text = (
        head
        + "\n\n"
        + table(rows)
        + "\n\nSummary, fwd / fwd+bwd ms per batch (z-buffer: fwd only):\n\n"
        + pivot_table(rows)
        + "\n\nTime ratios mesh / voxel (procedural car, same run; < 1: the mesh "
        "renderer is faster):\n\n" + ratio_table(rows, meta["voxel_mode"]) + "\n"
    )
    print(text)
    if args.json and not args.from_json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
        args.json.write_text(json.dumps({"meta": meta, "rows": clean}, indent=1) + "\n")
        log(f"wrote {args.json}")
    if not args.no_plot:
        plot(
            rows,
            args.plot,
            f"Paper 003 Fig. 6(b) repro: {meta['logical_cores']}-core shared CPU, "
            f"{meta['threads']} threads, median of {meta['repeats']}; voxel mode '{meta['voxel_mode']}'",
        )
        log(f"wrote {args.plot}")


def measure(args, argv, log) -> tuple[dict, list[dict]]:
    torch.set_num_threads(2)
    resolutions = args.resolutions or (QUICK_RES if args.quick else FULL_RES)
    repeats = 1 if args.quick else max(3, args.repeats)
    cmd = "python bench/render_time.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    log(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, C++ kernels: {cpp_available()}"
    )
    shapes = load_shapes(not args.no_pascal, log)
    rows = run(
        resolutions, args.batches, repeats, shapes, args.voxel_mode, not args.no_fixed_grid, args.max_voxel_res, log
    )
    meta = {
        "command": cmd,
        "cpu": rb._cpu_name(),
        "logical_cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpp_kernels": cpp_available(),
        "repeats": repeats,
        "load1_start": load0[0],
        "load1_end": os.getloadavg()[0],
        "wall_s": time.perf_counter() - t_start,
        "resolutions": list(resolutions),
        "batches": list(args.batches),
        "voxel_mode": args.voxel_mode,
        "focal_per_px": FOCAL_PER_PX,
        "distance": DISTANCE,
    }
    return meta, rows


if __name__ == "__main__":
    main()
