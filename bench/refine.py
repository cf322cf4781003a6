"""Test-time refinement benchmark (issue 6): speed, accuracy vs starts / steps, reconstruct IoU.

Parts (each well under 5 minutes on the 2-core CPU; run them one at a time):

``--part speed``
    The issue's speed target: a medoid of up to 5k faces (PASCAL3D+ car 01 of ``../shared/data``
    simplified to <= 5000 faces by vertex clustering; a procedural car without the data) at
    128 x 128, 30 steps: (a) 16 images x 1 start in one batch -> seconds per image, (b) one
    image alone, (c) 16 images x 8 starts in one batch (default pruning to 2 starts after 10
    steps, and without pruning). Naive reference in the same run: the same 16 x 8 work as one
    :func:`refine_pose` call per (image, start), timed on ``--naive-images`` images and scaled
    to 16 (the per-call cost does not depend on the image).
``--part starts``
    Rotation error vs number of starts (1, 2, 4, 8, 16) on ``--trials`` seeded car trials
    perturbed by 10-40 deg (the test of ``tests/test_refine.py`` with more trials).
``--part steps``
    Rotation error vs number of steps (paper 003 Fig. 6c) with the default 16 starts.
``--part large``
    Large meshes (issue 18): the full PASCAL3D+ car 01 (28,937 faces), 1 image x 1 start at
    128 x 128, 30 steps, optimised on the full mesh and on vertex-clustered proxies
    (``max_faces``); ``--trials`` seeded poses perturbed by up to 20 deg. Per setting: seconds
    per image, mean IoU of the refined pose measured with the *full* mesh (hard raster) and the
    median rotation error, so the cost of the proxy is the IoU / error difference to the full row.
``--part reconstruct``
    ``poseshape reconstruct`` with the shipped reproject model (or ``--checkpoint``), without
    refinement, with a pose-only refinement and with the pose + per-axis shape scale one at each
    ``--aspect-weights`` penalty, on held-out procedural images, or with ``--meshes FOLDER`` on
    renders of other CAD models (e.g. ``../shared/data/pascal3d_cad``) (natural domain, the data
    engine's reproject framing): mean mask IoU, rotation MedErr and Acc pi/6 against the
    render's ground truth.

Timings: median of ``--repeats`` after one warm-up, ``torch.set_num_threads(2)``,
``OMP_WAIT_POLICY=PASSIVE`` (see bench/render_mesh.py); the 1-minute load average is printed
with every figure because the machine is shared.

    python bench/refine.py --part speed
    python bench/refine.py --part starts --trials 20
    POSESHAPE_DATA=../shared/data python bench/refine.py --part large --trials 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poseshape.core.paths import shared_data_status
from poseshape.engine.refine import refine_pose, simplify_mesh
from poseshape.geometry.rotations import geodesic_distance
from poseshape.metrics import failure_auroc
from poseshape.shapes.meshes import Mesh, load_mesh
from poseshape.testing.refine_trials import perturbed_pose_trials

DEG = math.pi / 180


def load_car(max_faces: int = 5000) -> tuple[Mesh, str]:
    root, reason = shared_data_status()
    if reason is None:
        full = load_mesh(root / "pascal3d_cad" / "CAD" / "car" / "01.off", source="pascal3d", normalize=True)
        m = simplify_mesh(full, max_faces)
        return Mesh(m.verts.float(), m.faces), f"PASCAL3D+ car 01 ({full.num_faces} faces) -> {m.num_faces} faces"
    from poseshape.shapes.procedural import generate

    m, _ = generate("car", 0)
    m = simplify_mesh(m, max_faces)
    return Mesh(m.verts.float(), m.faces), f"procedural car ({m.num_faces} faces; {reason})"


def trials(mesh: Mesh, n: int, seed: int, size: int = 256, max_deg: float = 40.0):
    """Seeded trials (:func:`poseshape.testing.refine_trials.perturbed_pose_trials`): masks, R, t, K, R0, t0."""
    tr = perturbed_pose_trials(mesh, n, seed, size=size, max_deg=max_deg)
    return tr.masks, tr.R, tr.t, tr.K, tr.R0, tr.t0


def load1() -> float:
    return os.getloadavg()[0]


def timed(fn, repeats: int) -> tuple[float, list[float], float]:
    """Median wall time, all wall times, and the median process CPU time (both threads)."""
    fn()  # warm-up
    ts, cs = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return statistics.median(ts), ts, statistics.median(cs)


def part_speed(args) -> dict:
    mesh, desc = load_car(5000)
    masks, _, _, K, R0, t0 = trials(mesh, 16, seed=123)
    print(f"mesh: {desc}; 128 x 128, 30 steps; load {load1():.1f}")
    res = {"mesh": desc}

    def run(n, **kw):
        return lambda: refine_pose(masks[:n], mesh, R0[:n], t0[:n], K, **kw)

    cases = [
        ("16 images x 1 start (per image)", 16, {"starts": 1}, 16),
        ("1 image x 1 start", 1, {"starts": 1}, 1),
        ("16 images x 8 starts (keep 2 after 8 steps)", 16, {"starts": 8}, 1),
        ("16 images x 8 starts (no pruning)", 16, {"starts": 8, "keep": 8}, 1),
        ("16 images x 16 starts (default; keep 2 after 8 steps)", 16, {}, 1),
    ]
    print(f"{'case':56s} {'wall s':>8s} {'CPU s':>8s}  (CPU = process time of both threads)")
    for name, n, kw, div in cases:
        l0 = load1()
        med, ts, cpu = timed(run(n, **kw), args.repeats)
        res[name] = {"seconds": med / div, "cpu_seconds": cpu / div, "runs": ts, "load": [l0, load1()]}
        print(
            f"{name:56s} {med / div:8.2f} {cpu / div:8.2f}  (runs {[round(x, 2) for x in ts]}, "
            f"load {l0:.1f}-{load1():.1f})",
            flush=True,
        )
    # naive reference: one refine_pose call per (image, start), no batching, no pruning
    from poseshape.engine.refine import start_rotations

    k = args.naive_images
    starts = start_rotations(R0[:k], 8)

    def naive():
        for b in range(k):
            for j in range(8):
                refine_pose(masks[b : b + 1], mesh, starts[b : b + 1, j], t0[b : b + 1], K, starts=1)

    l0 = load1()
    med, ts, cpu = timed(naive, max(1, args.repeats // 2))
    naive16, naive16_cpu = med * 16 / k, cpu * 16 / k
    res[f"naive 16 x 8 (one call per image and start, scaled from {k} images)"] = {
        "seconds": naive16,
        "cpu_seconds": naive16_cpu,
        "runs": ts,
        "load": [l0, load1()],
    }
    batched = res["16 images x 8 starts (no pruning)"]
    pruned = res["16 images x 8 starts (keep 2 after 8 steps)"]
    print(
        f"{'naive 16 x 8, one call per (image, start)':56s} {naive16:8.2f} {naive16_cpu:8.2f}  (measured on {k} "
        f"images x 8: {[round(x, 2) for x in ts]}, load {l0:.1f}-{load1():.1f})"
    )
    for key, r in (("batched", batched), ("batched + pruning", pruned)):
        print(
            f"speed-up vs naive, {key}: wall {naive16 / r['seconds']:.1f}x, CPU {naive16_cpu / r['cpu_seconds']:.1f}x"
        )
    res["ratio_batched"] = [naive16 / batched["seconds"], naive16_cpu / batched["cpu_seconds"]]
    res["ratio_pruned"] = [naive16 / pruned["seconds"], naive16_cpu / pruned["cpu_seconds"]]
    return res


def _accuracy(mesh, n, seed, **kw):
    masks, R, _, K, R0, t0 = trials(mesh, n, seed)
    t1 = time.perf_counter()
    r = refine_pose(masks, mesh, R0, t0, K, **kw)
    err = geodesic_distance(r.R, R) / DEG
    ang0 = geodesic_distance(R0, R) / DEG
    return {
        "median_err_deg": float(err.median()),
        "acc3": float((err < 3).float().mean()),
        "acc_pi6": float((err < 30).float().mean()),
        "mean_iou": float(r.iou.mean()),
        "mean_iou_init": float(r.iou_init.mean()),
        "median_init_err_deg": float(ang0.median()),
        "seconds": time.perf_counter() - t1,
        "errors": [round(float(e), 2) for e in err],
    }


def part_starts(args) -> dict:
    mesh, desc = load_car(1500)
    print(
        f"mesh: {desc}; {args.trials} trials (seed {args.seed}), perturbation 10-40 deg, 30 steps; load {load1():.1f}"
    )
    print("| starts | median error (deg) | error < 3 deg | error < 30 deg | mean IoU (start -> refined) | s |")
    print("|---|---|---|---|---|---|")
    out = {"mesh": desc}
    for s in (1, 2, 4, 8, 16):
        a = _accuracy(mesh, args.trials, args.seed, starts=s)
        out[s] = a
        print(
            f"| {s} | {a['median_err_deg']:.2f} | {a['acc3']:.2f} | {a['acc_pi6']:.2f} | "
            f"{a['mean_iou_init']:.3f} -> {a['mean_iou']:.3f} | {a['seconds']:.0f} |",
            flush=True,
        )
    return out


def part_steps(args) -> dict:
    mesh, desc = load_car(1500)
    print(f"mesh: {desc}; {args.trials} trials (seed {args.seed}), 16 starts; load {load1():.1f}")
    print("| steps | median error (deg) | error < 3 deg | mean IoU | s |")
    print("|---|---|---|---|---|")
    out = {"mesh": desc}
    for n in (0, 10, 20, 30, 50):
        if n == 0:
            _, R, _, _, R0, _ = trials(mesh, args.trials, args.seed)
            e = geodesic_distance(R0, R) / DEG
            print(f"| 0 (start) | {float(e.median()):.2f} | {float((e < 3).float().mean()):.2f} | - | - |")
            continue
        a = _accuracy(mesh, args.trials, args.seed, steps=n)
        out[n] = a
        print(
            f"| {n} | {a['median_err_deg']:.2f} | {a['acc3']:.2f} | {a['mean_iou']:.3f} | {a['seconds']:.0f} |",
            flush=True,
        )
    return out


def part_large(args) -> dict:
    root, reason = shared_data_status()
    if reason is not None:
        raise SystemExit(f"--part large needs the PASCAL3D+ car of the shared data: {reason}")
    full = load_mesh(root / "pascal3d_cad" / "CAD" / "car" / "01.off", source="pascal3d", normalize=True)
    full = Mesh(full.verts.float(), full.faces)
    masks, R, _, K, R0, t0 = trials(full, args.trials, args.seed, max_deg=20.0)
    print(
        f"mesh: PASCAL3D+ car 01 ({full.num_faces} faces); {args.trials} trials (seed {args.seed}), "
        f"1 image x 1 start, 30 steps, 128 x 128; load {load1():.1f}"
    )
    print("| optimised on | faces | s / image (median) | mean IoU, full mesh (start -> refined) | median error (deg) |")
    print("|---|---:|---:|---|---:|")
    out = {"mesh_faces": full.num_faces}
    for max_faces in (None, 8000, 5000, 2500, 1500, 1000):
        faces = full.num_faces if max_faces is None else simplify_mesh(full, max_faces).num_faces
        ts, ious, ious0, errs = [], [], [], []
        refine_pose(masks[:1], full, R0[:1], t0[:1], K, starts=1, max_faces=max_faces)  # warm-up
        for i in range(args.trials):
            t1 = time.perf_counter()
            r = refine_pose(masks[i : i + 1], full, R0[i : i + 1], t0[i : i + 1], K, starts=1, max_faces=max_faces)
            ts.append(time.perf_counter() - t1)
            ious.append(float(r.iou[0]))
            ious0.append(float(r.iou_init[0]))
            errs.append(float(geodesic_distance(r.R, R[i : i + 1])[0]) / DEG)
        name = "full mesh" if max_faces is None else f"proxy, max_faces={max_faces}"
        row = {
            "faces": faces,
            "seconds": statistics.median(ts),
            "mean_iou": statistics.mean(ious),
            "mean_iou_init": statistics.mean(ious0),
            "median_err_deg": statistics.median(errs),
            "load": load1(),
        }
        out[name] = row
        print(
            f"| {name} | {faces} | {row['seconds']:.2f} | {row['mean_iou_init']:.3f} -> {row['mean_iou']:.3f} "
            f"| {row['median_err_deg']:.2f} |",
            flush=True,
        )
    return out


def part_reconstruct(args) -> dict:
    """Mask IoU and rotation error of ``reconstruct`` without refinement and with the refinement
    variants, on the same held-out images (the rotation error against the render's ground truth,
    so that a refinement that stretches the shape instead of turning it shows)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from poseshape.cli.reconstruct import reconstruct_image
    from poseshape.data.synth import load_models, render_views
    from poseshape.engine.predictor import load_predictor
    from poseshape.engine.refine import RefineConfig
    from poseshape.methods.reproject.data import reproject_synth_config

    pred = load_predictor(method="reproject", device="cpu", checkpoint=args.checkpoint)
    cfg = reproject_synth_config(image_size=128, views=4, domain="natural", seed=args.seed)
    variants = {"none": False, "pose only": RefineConfig(optimize_aspect=False)}
    for w in args.aspect_weights:
        variants[f"pose + aspect, w={w:g}"] = replace(pred.refine_config(), optimize_aspect=True, aspect_weight=w)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for c, cat in enumerate(("aeroplane", "car", "chair")):
            if args.meshes == "procedural":  # the generator's held-out split
                models, _ = load_models(
                    "procedural", categories=[cat], split="test", seed=args.seed, models_per_category=10
                )
            else:  # another source: every model is unseen by the procedural-only shipped model
                models, _ = load_models(args.meshes, categories=[cat])
            for k in range(args.per_category):
                mod = models[k % len(models)]
                idx = c * 1000 + k
                r = render_views(mod, idx, [idx], cfg, 0)
                ip, mp = tmp / f"{cat}{k}.png", tmp / f"{cat}{k}_m.png"
                Image.fromarray(r["images"][0]).save(ip)
                Image.fromarray(r["masks"][0].astype(np.uint8) * 255).save(mp)
                R_true = torch.as_tensor(np.asarray(r["R"][0]), dtype=torch.float64)[None]
                row = {"category": cat}
                for v, (name, refine) in enumerate(variants.items()):
                    t0 = time.perf_counter()
                    rec = json.loads(
                        reconstruct_image(pred, ip, mp, tmp / f"{cat}{k}_{v}", refine=refine)["pose"].read_text()
                    )
                    R = torch.tensor(rec["R"], dtype=torch.float64)[None]
                    row[name] = (
                        rec["mask_iou"],
                        float(geodesic_distance(R, R_true)[0]) / DEG,
                        time.perf_counter() - t0,
                        float(rec.get("confidence", float("nan"))),
                    )
                rows.append(row)
                print(
                    f"{cat:10s} {k}: "
                    + ", ".join(f"{n}: IoU {row[n][0]:.3f} rot {row[n][1]:.0f} deg" for n in variants),
                    flush=True,
                )
    print("| category | images | " + " | ".join(f"{n}: mask IoU / rot MedErr / Acc pi/6" for n in variants) + " |")
    print("|---|---:|" + "---|" * len(variants))
    out = {}
    for cat in ("aeroplane", "car", "chair", "all"):
        sel = [r for r in rows if cat in ("all", r["category"])]
        out[cat] = {"n": len(sel)}
        cells = []
        for n in variants:
            iou = float(np.mean([r[n][0] for r in sel]))
            err = [r[n][1] for r in sel]
            med, acc = float(np.median(err)), float(np.mean([e < 30 for e in err]))
            out[cat][n] = {"mask_iou": iou, "rot_mederr_deg": med, "acc_pi6": acc}
            cells.append(f"{iou:.3f} / {med:.1f} / {acc:.2f}")
        print(f"| {cat} | {len(sel)} | " + " | ".join(cells) + " |")
    out["seconds_per_image"] = {n: float(np.median([r[n][2] for r in rows])) for n in variants}
    # does pose.json's confidence rank the failures (rotation error > 30 deg)? AUROC of -confidence
    print("\n| variant | failures (rot > 30 deg) | AUROC of the confidence for failure |")
    print("|---|---:|---:|")
    out["auroc_failure"] = {}
    for n in variants:
        conf = np.array([r[n][3] for r in rows])
        fail = np.array([r[n][1] > 30 for r in rows])
        auc = failure_auroc(conf, fail)
        out["auroc_failure"][n] = auc
        print(f"| {n} | {int(fail.sum())}/{len(fail)} | {auc:.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("speed", "starts", "steps", "large", "reconstruct"), required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-images", type=int, default=2)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--per-category", type=int, default=4)
    ap.add_argument(
        "--meshes",
        default="procedural",
        help="reconstruct: 'procedural' (its held-out split) or a mesh folder, e.g. ../shared/data/pascal3d_cad",
    )
    ap.add_argument("--checkpoint", default=None, help="reconstruct: a reproject checkpoint (default: the shipped one)")
    ap.add_argument(
        "--aspect-weights",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="reconstruct: the aspect_weight values of the pose + per-axis-scale variants",
    )
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    res = {
        "speed": part_speed,
        "starts": part_starts,
        "steps": part_steps,
        "large": part_large,
        "reconstruct": part_reconstruct,
    }[args.part](args)
    res["wall_s"] = time.perf_counter() - t0
    res["load_end"] = load1()
    print(f"done in {res['wall_s']:.0f} s (load {res['load_end']:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
