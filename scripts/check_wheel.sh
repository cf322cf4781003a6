#!/usr/bin/env bash
# Build the wheel (`pip wheel .`), check that it holds only the `poseshape` package, install it in a
# clean virtual environment (dependencies from pip's usual sources; torch from the local disk here)
# and run it from outside the checkout: `poseshape info` and a reconstruction with a shipped model.
# Used by CI (.ci/run). About two minutes, most of it installing torch into the clean venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${POSESHAPE_PYTHON:-$(command -v python3.11 || command -v python3)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "[wheel] building" >&2
"$py" -m venv "$work/build"
"$work/build/bin/python" -m pip install -q --upgrade pip setuptools wheel >&2
"$work/build/bin/python" -m pip wheel -q --no-deps -w "$work/dist" "$root" >&2
whl="$(ls "$work"/dist/poseshape-*.whl)"
"$py" - "$whl" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
top = {n.split("/")[0] for n in names}
bad = sorted(t for t in top if t != "poseshape" and not t.endswith(".dist-info"))
assert not bad, f"the wheel holds more than the poseshape package: {bad}"
for need in ("poseshape/assets/reproject.pt", "poseshape/assets/segmenter.pt", "poseshape/render/_cpp/"):
    assert any(n.startswith(need) for n in names), f"the wheel lacks {need}"
print(f"[wheel] {len(names)} files, top level {sorted(top)}", file=sys.stderr)
PY
echo "[wheel] installing into a clean venv" >&2
"$py" -m venv "$work/clean"
"$work/clean/bin/python" -m pip install -q "$whl" >&2
cd "$work"  # nothing of the checkout on sys.path
"$work/clean/bin/python" - <<'PY'
import pathlib, poseshape
p = pathlib.Path(poseshape.__file__).resolve()
assert "site-packages" in str(p), p
print(f"[wheel] imported from {p.parent}")
PY
"$work/clean/bin/poseshape" info >/dev/null
"$work/clean/bin/python" - <<'PY'
import numpy as np
from PIL import Image
img = np.full((96, 96, 3), 40, np.uint8)
img[28:70, 20:78] = (200, 60, 50)
Image.fromarray(img).save("photo.png")
m = np.zeros((96, 96), np.uint8)
m[28:70, 20:78] = 255
Image.fromarray(m).save("mask.png")
PY
"$work/clean/bin/poseshape" reconstruct photo.png --mask mask.png --out out 2>/dev/null
for f in mesh.obj mesh.glb pose.json; do
    test -s "out/photo/$f" || test -s "out/$f" || { echo "[wheel] reconstruct wrote no $f" >&2; ls -R out >&2; exit 1; }
done
# no mask: the shipped reproject model makes one with the shipped segmenter (+ GrabCut, OpenCV)
"$work/clean/bin/poseshape" reconstruct photo.png --out out_auto 2>/dev/null
test -s out_auto/mask.png && grep -q '"segmenter-auto"' out_auto/pose.json \
    || { echo "[wheel] a mask-less reconstruct made no automatic mask" >&2; ls -R out_auto >&2; exit 1; }
echo "[wheel] ok: built, installed in a clean venv, reconstructs from outside the checkout (with and without a mask)" >&2
