#!/usr/bin/env bash
# Set up (or reuse) the environment, then run `poseshape demo` (extra arguments go to it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup.sh" | tail -n 1)"
cd "$root"
exec "$venv/bin/poseshape" demo "$@"
