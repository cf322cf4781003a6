#!/usr/bin/env bash
# Build PyTorch3D v0.7.9 from its public source, CPU only, for bench/vs_pytorch3d.py.
#
# PyTorch3D is never a runtime, test or CI dependency of poseshape: this is for the side-by-side
# benchmark only. No PyTorch3D wheel on the registry loads with torch 2.14.1 (easypytorch3d
# 0.7.9.post1 is a CUDA-13 build for an older torch, pipablepytorch3d 0.7.6 is CUDA 12), so
# it is compiled here against the torch of poseshape's venv and installed into a separate
# directory (not into the venv), which the benchmark puts on sys.path:
#
#   $POSESHAPE_CACHE/pytorch3d-0.7.9-torch<version>/      (default cache ~/.cache/poseshape)
#
# Usage: bash bench/build_pytorch3d.sh [SOURCE]
#   SOURCE: a git clone of https://github.com/facebookresearch/pytorch3d (any revision holding
#   tag v0.7.9), default $PYTORCH3D_SRC, else cloned from GitHub. Takes ~20-40 min on 2 cores;
#   a finished build is cached and reused (the script prints its path and exits).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/setup.sh" | tail -n 1)"
py="$venv/bin/python"
tv="$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')"
cache="${POSESHAPE_CACHE:-$HOME/.cache/poseshape}"
dest="$cache/pytorch3d-0.7.9-torch$tv"
if [[ -f "$dest/.complete" ]]; then
  echo "$dest"
  exit 0
fi
src="${1:-${PYTORCH3D_SRC:-}}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -z "$src" ]]; then
  git clone --quiet --filter=blob:none https://github.com/facebookresearch/pytorch3d "$work/clone"
  src="$work/clone"
fi
# only what the build reads (a partial clone may lack the repository's large media files)
mkdir -p "$work/src"
git -C "$src" archive --format=tar v0.7.9 setup.py setup.cfg pytorch3d projects LICENSE README.md | tar -x -C "$work/src"
# torch 2.14's headers need C++20; v0.7.9's setup.py pins -std=c++17
sed -i 's/-std=c++17/-std=c++20/g' "$work/src/setup.py"
# its Python dependencies (pure Python) go next to it, from the registry
"$py" -m pip install --quiet --no-deps --target "$work/deps" iopath portalocker
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
(
  cd "$work/src"
  FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" PYTHONPATH="$work/deps" \
    "$py" -m pip install --no-deps --no-build-isolation --target "$dest.partial" .
)
cp -r "$work/deps/." "$dest.partial/"
PYTHONPATH="$dest.partial" "$py" -c 'import torch, pytorch3d, pytorch3d._C; print("pytorch3d", pytorch3d.__version__)'
touch "$dest.partial/.complete"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$dest"
