#!/usr/bin/env bash
# Set up (or reuse) the environment, check lint and format (ruff), then run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup.sh" | tail -n 1)"
cd "$root"
# Debian's Chromium for the web demo's browser test (skipped without it, unless POSESHAPE_REQUIRE_BROWSER=1)
bash "$root/scripts/setup_browser.sh" >&2 || echo "[test] no chromium: tests/web/test_browser.py will be skipped" >&2
echo "[test] ruff check + ruff format --check" >&2
"$venv/bin/ruff" check poseshape tests bench scripts
"$venv/bin/ruff" format --check poseshape tests bench scripts
# OpenMP threads that spin while waiting stall each other on a busy 2-core machine
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export POSESHAPE_DATA="${POSESHAPE_DATA:-$root/../shared/data}"
exec "$venv/bin/python" -m pytest -q "$@"
