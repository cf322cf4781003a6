"""Hostile-input probe of the CLI (issue 20): each case runs ``poseshape ...`` in a fresh
folder and is classed by what a user sees.

* ``error``: exit 2 (or 1 for a partly failed batch) and one ``error:`` line, no traceback;
* ``warning``: exit 0 and at least one ``warning:`` line on stderr (recorded in ``pose.json``
  where the command writes one);
* ``ok``: exit 0 and no warning (valid input);
* ``traceback``: a Python traceback reached the user;
* ``silent``: exit 0 without a word on a case that expects an error or a warning;
* ``loss``: earlier outputs were damaged by a failed rerun;
* ``exhaustion``: the command ran past the time limit (likely allocating without bounds).

::

    python bench/hostile.py            # prints the table of counts and every case's outcome

Inputs are made here (images, masks, meshes and voxel files written with numpy / PIL /
trimesh); nothing is read from ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
H = W = 128


def _inputs(d: Path) -> None:
    img = np.full((H, W, 3), 255, np.uint8)
    img[40:90, 30:100] = (200, 30, 30)
    m = np.zeros((H, W), np.uint8)
    m[40:90, 30:100] = 255
    Image.fromarray(img).save(d / "img.png")
    Image.fromarray(m).save(d / "m.png")
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(d / "ones.png")
    px = np.zeros((H, W), np.uint8)
    px[60, 60] = 255
    Image.fromarray(px).save(d / "px.png")
    noisy = (np.random.default_rng(0).random((H, W)) > 0.7).astype(np.uint8) * 255
    Image.fromarray(noisy).save(d / "noisy.png")
    Image.fromarray(255 - m).save(d / "inverted.png")
    grey = (m > 0).astype(np.uint8) * 140
    Image.fromarray(grey).save(d / "grey.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(d / "empty.png")
    Image.fromarray(m[:64]).save(d / "small_mask.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(d / "1x1.png")
    f = np.full((H, W), 0.5, np.float32)
    f[10:20, 10:20] = np.inf
    Image.fromarray(f, mode="F").save(d / "inf.tif")
    a = np.dstack([img, np.full((H, W), 255, np.uint8)])
    a[64, 64, 3] = 0
    Image.fromarray(a).save(d / "alpha_one_hole.png")
    a = np.dstack([img, np.zeros((H, W), np.uint8)])
    a[64, 64, 3] = 255
    Image.fromarray(a).save(d / "alpha_one_px.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (d / "notimage.png").write_text("hello")
    text = trimesh.creation.icosphere(2).export(file_type="obj")
    (d / "full.obj").write_text(text)
    (d / "cut.obj").write_text(text[: text.rstrip("\n").rindex("\n") + 4])
    (d / "half.obj").write_text(text[: len(text) // 2])
    (d / "latin.obj").write_bytes("# modèle\n".encode("latin-1") + text.encode())
    (d / "nan.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (d / "badidx.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    v = np.zeros((16, 16, 16), np.float32)
    v[4:12, 4:12, 4:12] = 1e30
    np.savez(d / "huge.npz", voxels=v)
    v[0, 0, 0] = np.nan
    np.savez(d / "nan.npz", voxels=v)
    (d / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    (d / "afile").write_text("keep")
    (d / "pose_bad.json").write_text("{not json")
    (d / "fake.pt").write_bytes(b"not a checkpoint")


RC = ["reconstruct", "img.png"]
RF = ["refine", "--mask", "m.png", "--azimuth", "0", "--elevation", "10", "--steps", "5", "--starts", "2"]
DR = ["data", "render", "--meshes", "procedural", "--views", "1", "--models-per-category", "1",
      "--categories", "car", "--quiet"]  # fmt: skip
TR = ["train", "retrieval", "--set", "preset=quick"]

#: (name, argv, expected class)
CASES: list[tuple[str, list[str], str]] = [
    # valid input: no word
    ("reconstruct, good mask", RC + ["--mask", "m.png", "--out", "o"], "ok"),
    ("refine, good mesh", RF + ["--mesh", "full.obj", "--out", "o"], "ok"),
    ("refine, Latin-1 OBJ comment", RF + ["--mesh", "latin.obj", "--out", "o"], "ok"),
    # doubtful input: a warning
    ("mask all ones", RC + ["--mask", "ones.png", "--out", "o"], "warning"),
    ("mask one pixel", RC + ["--mask", "px.png", "--out", "o"], "warning"),
    ("mask inverted", RC + ["--mask", "inverted.png", "--out", "o"], "warning"),
    ("mask noisy", RC + ["--mask", "noisy.png", "--out", "o"], "warning"),
    ("mask grey (non-binary)", RC + ["--mask", "grey.png", "--out", "o"], "warning"),
    ("no mask", RC + ["--out", "o"], "warning"),
    ("1x1 image", ["reconstruct", "1x1.png", "--out", "o"], "warning"),
    ("alpha with one transparent pixel", ["reconstruct", "alpha_one_hole.png", "--out", "o"], "warning"),
    ("alpha with one opaque pixel", ["reconstruct", "alpha_one_px.png", "--out", "o"], "warning"),
    ("OBJ with a cut last line", RF + ["--mesh", "cut.obj", "--out", "o"], "warning"),
    ("voxels of 1e30", RF + ["--voxels", "huge.npz", "--out", "o"], "warning"),
    (
        "refine, tiny mask",
        [
            "refine",
            "--mask",
            "px.png",
            "--mesh",
            "full.obj",
            "--azimuth",
            "0",
            "--steps",
            "5",
            "--starts",
            "2",
            "--out",
            "o",
        ],
        "warning",
    ),  # fmt: skip
    # bad input: a clear error
    ("float TIFF with inf", ["reconstruct", "inf.tif", "--out", "o"], "error"),
    ("empty mask", RC + ["--mask", "empty.png", "--out", "o"], "error"),
    ("mask of another size", RC + ["--mask", "small_mask.png", "--out", "o"], "error"),
    ("corrupt PNG", ["reconstruct", "corrupt.png", "--out", "o"], "error"),
    ("text file as image", ["reconstruct", "notimage.png", "--out", "o"], "error"),
    ("missing image", ["reconstruct", "nope.png", "--out", "o"], "error"),
    ("half-cut OBJ (no faces left)", RF + ["--mesh", "half.obj", "--out", "o"], "error"),
    ("OBJ with NaN vertex", RF + ["--mesh", "nan.obj", "--out", "o"], "error"),
    ("OBJ face index out of range", RF + ["--mesh", "badidx.obj", "--out", "o"], "error"),
    ("NaN voxels", RF + ["--voxels", "nan.npz", "--out", "o"], "error"),
    ("corrupt npz", RF + ["--voxels", "bad.npz", "--out", "o"], "error"),
    (
        "corrupt pose.json",
        ["refine", "--mask", "m.png", "--mesh", "full.obj", "--pose", "pose_bad.json", "--out", "o"],
        "error",
    ),  # fmt: skip
    ("corrupt checkpoint", RC + ["--mask", "m.png", "--checkpoint", "fake.pt", "--out", "o"], "error"),
    ("missing checkpoint", RC + ["--mask", "m.png", "--checkpoint", "none.pt", "--out", "o"], "error"),
    ("--out is a file", RC + ["--mask", "m.png", "--out", "afile"], "error"),
    ("--out inside the package", RC + ["--mask", "m.png", "--out", "{pkg}/probe"], "error"),
    ("--device cuda:7", RC + ["--mask", "m.png", "--device", "cuda:7", "--out", "o"], "error"),
    ("--device bogus", TR + ["--device", "bogus", "--out", "r"], "error"),
    ("--set lr=nan", TR + ["--set", "lr=nan", "--out", "r"], "error"),
    ("--set lr=-1", TR + ["--set", "lr=-1", "--out", "r"], "error"),
    ("--set width=0", ["train", "reproject", "--set", "width=0", "--out", "r"], "error"),
    ("--set unknown key", TR + ["--set", "nope=1", "--out", "r"], "error"),
    ("eval --batch-size 0", ["eval", "reproject", "--batch-size", "0"], "error"),
    ("data render --workers -1", DR + ["--workers", "-1", "--out", "d"], "error"),
    ("data render reversed elevation", DR + ["--elevation", "40", "-10", "--out", "d"], "error"),
    ("data render --size 20000", DR + ["--size", "20000", "--out", "d"], "error"),
    ("refine --render-size 8192", RF + ["--mesh", "full.obj", "--render-size", "8192", "--out", "o"], "error"),
    ("unknown method", RC + ["--method", "nope", "--out", "o"], "error"),
    ("two images, one mask", ["reconstruct", "img.png", "1x1.png", "--mask", "m.png", "--out", "o"], "error"),
    ("batch with one corrupt image", ["reconstruct", "img.png", "corrupt.png", "--out", "o"], "error"),
]


def classify(rc: int | None, err: str, expected: str) -> str:
    if rc is None:
        return "exhaustion"
    if "Traceback" in err:
        return "traceback"
    if rc != 0:
        lines = [ln for ln in err.strip().splitlines() if "error" in ln]
        return "error" if lines else "traceback"
    if "warning:" in err:
        return "warning"
    return "ok" if expected == "ok" else "silent"


def _loss_case(work: Path, timeout: float) -> str:
    """A rerun that fails mid-way must leave the earlier outputs whole."""
    cli = [sys.executable, "-m", "poseshape"]
    subprocess.run(cli + RC + ["--mask", "m.png", "--out", "keep"], cwd=work, capture_output=True, timeout=timeout)
    before = {p.name: p.read_bytes() for p in (work / "keep").iterdir()}
    subprocess.run(
        cli + ["reconstruct", "corrupt.png", "--out", "keep"], cwd=work, capture_output=True, timeout=timeout
    )
    after = {p.name: p.read_bytes() for p in (work / "keep").iterdir()}
    return "error" if before and after == before else "loss"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as exhaustion")
    ap.add_argument("--json", default=None, help="also write every case's outcome here")
    args = ap.parse_args()
    import poseshape

    pkg = str(Path(poseshape.__file__).resolve().parent)
    env = dict(os.environ, POSESHAPE_MAX_MEMORY_GB=os.environ.get("POSESHAPE_MAX_MEMORY_GB", "8"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _inputs(work)
        for name, argv, expected in CASES:
            argv = [a.format(pkg=pkg) for a in argv]
            try:
                r = subprocess.run(
                    [sys.executable, "-m", "poseshape", *argv],
                    cwd=work,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    env=env,
                )
                rc, err = r.returncode, r.stderr
            except subprocess.TimeoutExpired:
                rc, err = None, ""
            got = classify(rc, err, expected)
            first = next((ln for ln in err.splitlines() if "error" in ln or "warning:" in ln), "")
            rows.append({"case": name, "expected": expected, "got": got, "rc": rc, "message": first[:160]})
        rows.append(
            {"case": "failed rerun keeps earlier outputs", "expected": "error", "got": _loss_case(work, args.timeout)}
        )
    counts = Counter(r["got"] for r in rows)
    wrong = [r for r in rows if r["got"] != r["expected"]]
    print(f"| cases | {' | '.join(k for k in ('ok', 'warning', 'error', 'traceback', 'silent', 'loss', 'exhaustion'))} "
          "| not as expected |")  # fmt: skip
    print("|" + "---|" * 9)
    cells = " | ".join(str(counts.get(k, 0)) for k in ("ok", "warning", "error", "traceback", "silent", "loss",
                                                      "exhaustion"))  # fmt: skip
    print(f"| {len(rows)} | {cells} | {len(wrong)} |")
    print()
    for r in rows:
        mark = "" if r["got"] == r["expected"] else "  <-- expected " + r["expected"]
        print(f"- {r['case']}: {r['got']}{mark}  {r.get('message', '')}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
