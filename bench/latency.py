"""Latency budget per image on the CPU (issue 18), for every method with a shipped model.

Inputs: 16 renders of procedural shapes (car, chair, aeroplane, sofa; the data engine's
``natural`` domain, crop framing) with their masks, at 64 x 64 and 128 x 128. Per method and
input size, median wall time per image of:

* ``predict B1`` / ``predict B16``: the networks alone, :meth:`Predictor.predict` on the
  method's square crops, one image per call / 16 per call (per image);
* ``-> Prediction``: ``model.reconstruct(image, mask, refine=False)`` (reading, crop, predict,
  diagnostics; the posed voxels or mesh of the prediction): one image, and a list of 16 (per image);
* ``-> posed mesh``: the same plus :meth:`Prediction.posed_mesh` (marching cubes for voxel methods);
* ``-> files``: ``poseshape reconstruct``'s work, :func:`reconstruct_image` with
  ``refine=False`` (OBJ, GLB, voxels, pose.json, overlay and views PNGs);
* ``refine``: the default refinement's extra time (``refine=None`` minus ``refine=False``), on
  the first input whose prediction can be refined (not an empty shape).

``refine6dof``'s prediction *is* paper 003's online refinement (30 Adam steps fine-tuning the
encoder on the mask, §4.2) whenever a mask is given, so its ``predict`` is not the network alone.

Targets: < 30 ms to a Prediction (posed voxels), < 100 ms to a posed mesh, refinement <= 0.5 s.
``--profile`` adds a cProfile of ``-> files`` and of the refinement (128 x 128, one image)
per method: the functions with the most cumulative time.

    python bench/latency.py [--methods reproject retrieval] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import poseshape
from poseshape.core.errors import PoseshapeError
from poseshape.data.synth import ModelRecord, SynthConfig, render_views
from poseshape.engine.reconstruct import load_input, predictor_square, reconstruct_image
from poseshape.shapes.procedural import generate
from poseshape.web.app import shipped_methods

CATEGORIES = ("car", "chair", "aeroplane", "sofa")
TARGETS = {"-> Prediction": 0.030, "-> posed mesh": 0.100, "refine": 0.5}


def inputs(size: int, n: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` (image (3, S, S), mask (1, S, S)) renders of procedural shapes, 4 views each."""
    cfg = SynthConfig(image_size=size, views=4, voxel_res=0, domain="natural", seed=3)
    out = []
    for c, cat in enumerate(CATEGORIES):
        mesh, _ = generate(cat, 0)
        rec = ModelRecord(cat, "0", "all", mesh.verts.float().numpy(), mesh.faces.numpy())
        r = render_views(rec, c, list(range(4)), cfg, c)
        for i in range(4):
            img = torch.from_numpy(np.asarray(r["images"][i])).float()
            img = img.permute(2, 0, 1) / 255.0 if img.shape[-1] == 3 else img
            out.append((img.clamp(0, 1), torch.from_numpy(r["masks"][i])[None].float()))
    return out[:n]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def top_functions(fn, n: int = 14, sort: str = "cumulative") -> str:
    """cProfile of one call of ``fn``: the ``n`` functions with the most ``sort`` time
    (``"cumulative"``, or ``"tottime"``: own time, e.g. a C++ kernel's)."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats(sort).print_stats(n)
    lines = [ln for ln in s.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return "\n".join(lines[start : start + n + 1])


def run_method(method: str, sizes, repeats: int, profile: bool, log=print) -> list[dict]:
    model = poseshape.load(method, device="cpu")
    rows = []
    for size in sizes:
        data = inputs(size)
        img0, m0 = data[0]
        crops = [predictor_square(model, im, m, "x") for im, m in data]
        x = torch.stack([c[0] for c in crops])
        xm = torch.stack([c[1] for c in crops]) if crops[0][1] is not None else None
        row = {"method": method, "size": size}

        def predict(k):
            with torch.no_grad():
                return model.predict(x[:k], xm[:k] if xm is not None else None)

        row["predict B1"] = median_time(lambda: predict(1), repeats)
        row["predict B16"] = median_time(lambda: predict(16), max(1, repeats // 2)) / 16
        row["-> Prediction"] = median_time(lambda: model.reconstruct(img0, m0, refine=False), repeats)
        row["-> Prediction B16"] = (
            median_time(
                lambda: model.reconstruct([d[0] for d in data], [d[1] for d in data], refine=False),
                max(1, repeats // 2),
            )
            / 16
        )
        row["-> posed mesh"] = median_time(lambda: model.reconstruct(img0, m0, refine=False).posed_mesh(0), repeats)
        with tempfile.TemporaryDirectory() as tmp:
            item = load_input(img0, m0)
            row["-> files"] = median_time(
                lambda: reconstruct_image(model, None, None, Path(tmp) / "o", item=item, refine=False), repeats
            )
        refine_on = None  # the first input whose prediction can be refined (not an empty shape)
        if model.capabilities.refinable:
            for k, (im, m) in enumerate(data):
                try:
                    model.reconstruct(im, m)
                except PoseshapeError as exc:
                    log(f"  {method} {size}^2: input {k} cannot be refined ({exc}); trying the next")
                    continue
                refine_on = (im, m)
                break
        if refine_on is not None:
            im, m = refine_on
            plain = median_time(lambda: model.reconstruct(im, m, refine=False), repeats)
            row["refine"] = median_time(lambda: model.reconstruct(im, m), repeats) - plain
        rows.append(row)
        log(
            f"  {method:16s} {size:3d}^2  "
            + "  ".join(f"{k} {v * 1e3:.0f} ms" for k, v in row.items() if isinstance(v, float))
        )
        if profile and size == max(sizes):
            with tempfile.TemporaryDirectory() as tmp:
                item = load_input(img0, m0)
                row["profile files"] = top_functions(
                    lambda: reconstruct_image(model, None, None, Path(tmp) / "o", item=item, refine=False)
                )
            if refine_on is not None:
                row["profile refine"] = top_functions(lambda: model.reconstruct(*refine_on))
                row["profile refine, own time"] = top_functions(lambda: model.reconstruct(*refine_on), 8, "tottime")
    return rows


COLUMNS = [
    "predict B1",
    "predict B16",
    "-> Prediction",
    "-> Prediction B16",
    "-> posed mesh",
    "-> files",
    "refine",
]


def table(rows: list[dict]) -> str:
    out = [
        "| method | input | " + " | ".join(f"{c} ms" for c in COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for r in rows:
        cells = []
        for c in COLUMNS:
            v = r.get(c)
            if v is None:
                cells.append("-")
                continue
            target = TARGETS.get(c)
            mark = "" if target is None else (" (met)" if v < target else " (**over**)")
            cells.append(f"{v * 1e3:.0f}{mark}")
        out.append(f"| {r['method']} | {r['size']}^2 | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=None, help="default: every method with a shipped model")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile of -> files and refine at the largest size")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")  # the diagnostics' warnings about the inputs are not timed
    t0 = time.perf_counter()
    rows = []
    for m in args.methods or shipped_methods():
        rows += run_method(m, args.sizes, args.repeats, args.profile)
    text = [
        f"Machine: {platform.machine()} {os.cpu_count()} logical cores, torch {torch.__version__}, 2 threads, "
        f"CPU; load average at end {os.getloadavg()[0]:.2f}; run time {time.perf_counter() - t0:.0f} s.",
        "",
        table(rows),
    ]
    for r in rows:
        for key in ("profile files", "profile refine", "profile refine, own time"):
            if key in r:
                text += [
                    "",
                    f"{r['method']} {r['size']}^2, {key[8:]} (cProfile, top "
                    + ("own" if key.endswith("own time") else "cumulative")
                    + " time):",
                    "```",
                    r[key],
                    "```",
                ]
    text = "\n".join(text)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
