#!/usr/bin/env bash
# Install Debian's Chromium for the web demo's browser test (tests/web/test_browser.py), if it
# is not there. Playwright drives this system browser; no browser is downloaded at run time.
# Needs root (CI) or sudo; prints the browser's version.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    echo "[setup_browser] installing Debian's chromium" >&2
    $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || {
        $SUDO apt-get update -qq >/dev/null
        $SUDO apt-get install -y -qq chromium >/dev/null
    }
fi
chromium --version
