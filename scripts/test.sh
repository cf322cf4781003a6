#!/usr/bin/env bash
# Set up (or reuse) the environment, then run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup.sh" | tail -n 1)"
cd "$root"
# OpenMP threads that spin while waiting stall each other on a busy 2-core machine
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export POSESHAPE_DATA="${POSESHAPE_DATA:-$root/../shared/data}"
exec "$venv/bin/python" -m pytest -q "$@"
