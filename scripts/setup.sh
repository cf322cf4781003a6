#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install poseshape into it.
# The venv lives in .venv-<hash>, keyed by a hash of pyproject.toml's dependency list,
# so repeated runs (and CI on the same machine) do not reinstall torch every time.
# Prints the venv path on its last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${POSESHAPE_PYTHON:-$(command -v python3.11 || command -v python3)}"
hash=$(sed -n '/^dependencies/,/^\]/p;/^dev *=/p' pyproject.toml | "$py" -c 'import sys,hashlib;print(hashlib.sha256(sys.stdin.read().encode()).hexdigest()[:12])')
venv="${POSESHAPE_VENV:-$HOME/.cache/poseshape/venv-$hash}"
if [ ! -f "$venv/.complete" ]; then
    echo "[setup] creating $venv (first run installs torch; this takes a few minutes)" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel >&2
    "$venv/bin/python" -m pip install -q -e ".[dev]" >&2
    touch "$venv/.complete"
else
    # cheap re-link of this checkout (the venv may have been made from another clone)
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >&2
fi
echo "$venv"
