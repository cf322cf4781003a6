"""Wall time of every method's ``--set preset=quick`` training run, end to end on the CLI.

Each method trains from nothing in a temporary folder, on data it renders itself or on the
smallest procedural set that its training accepts (rendered first, timed separately)::

    python bench/presets.py                    # every registered method
    python bench/presets.py --methods reproject refine6dof

Prints a Markdown table (method, data seconds, training seconds, exit code) for README's
preset table and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "poseshape", *args]


def _data_reproject(work: Path) -> list[str]:
    from poseshape.methods.reproject.data import render_reproject_data

    p = render_reproject_data(
        "procedural",
        work / "data",
        categories=("aeroplane", "car", "chair"),
        image_size=64,
        views=4,
        models_per_category=10,
        seed=0,
        progress=False,
    )
    return [f"data.train={p['train']}", f"data.natural={p['natural']}", f"data.val={p['test']}"]


def _data_selfconsistency(work: Path) -> list[str]:
    out = []
    for split in ("train", "val"):
        subprocess.run(
            _cli(
                "data", "render", "--meshes", "procedural", "--out", str(work / split), "--pose", "ring24",
                "--framing", "fixed", "--size", "64", "--voxels", "32", "--categories", "car", "chair",
                "--split", split, "--models-per-category", "4", "--quiet",
            ),
            check=True,
        )  # fmt: skip
        out.append(f"data.{split}={work / split}")
    return out


#: Methods whose training needs a rendered set first: a function that renders it and returns
#: the ``--set`` overrides that point the training at it.
DATA = {"reproject": _data_reproject, "selfconsistency": _data_selfconsistency}


def main() -> None:
    from poseshape.engine.registry import list_methods

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--preset", default="quick")
    args = ap.parse_args()
    methods = args.methods or list_methods()
    rows = []
    for m in methods:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            t0 = time.perf_counter()
            sets = DATA[m](work) if m in DATA else []
            t_data = time.perf_counter() - t0
            cmd = _cli("train", m, "--out", str(work / "run"), "--no-progress", "--set", f"preset={args.preset}")
            for s in sets:
                cmd += ["--set", s]
            t1 = time.perf_counter()
            rc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode
            t_train = time.perf_counter() - t1
        rows.append((m, t_data, t_train, rc))
        print(f"{m}: data {t_data:.0f} s, train {t_train:.0f} s, exit {rc}", flush=True)
    print("\n| method | preset | data (s) | training (s) | exit |\n|---|---|---:|---:|---:|")
    for m, a, b, rc in rows:
        print(f"| {m} | {args.preset} | {a:.0f} | {b:.0f} | {rc} |")


if __name__ == "__main__":
    main()
