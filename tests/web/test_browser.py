"""``poseshape serve`` in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
upload a photo and its mask, press Reconstruct, wait for the 3-D view, and check that the
Model3D area shows a model (not a blank canvas), and that the overlay, the pose table and the
files are there.

Skipped when Chromium or Playwright is missing, unless ``POSESHAPE_REQUIRE_BROWSER=1`` (CI
sets it: ``scripts/setup_browser.sh`` installs Chromium there).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # fmt: skip


def _need(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("POSESHAPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"POSESHAPE_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    try:
        import cv2  # noqa: F401
        import gradio  # noqa: F401
    except ImportError as exc:
        _need(False, f"the web extra is not installed ({exc.name})")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poseshape",
            "serve",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "r"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield url, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_serve_in_headless_chromium(server, photo):
    _need(os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM} (run scripts/setup_browser.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed")
    url, tmp = server
    inputs, _ = photo
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#run", timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(str(inputs / "photo.png"))
            page.locator("#mask input[type=file]").set_input_files(str(inputs / "mask.png"))
            page.wait_for_selector("#photo img", timeout=30_000)
            page.wait_for_selector("#mask img", timeout=30_000)
            page.locator("#run").click()
            page.wait_for_selector("#model3d canvas", timeout=120_000)
            page.wait_for_selector("#overlay img", timeout=120_000)
            page.wait_for_function("document.querySelector('#summary').innerText.includes('confidence')")
            # the canvas draws after the GLB loads: poll the screenshot until a model shows
            for _ in range(40):
                shot = np.asarray(Image.open(io.BytesIO(page.locator("#model3d canvas").screenshot())).convert("RGB"))
                bg = np.median(shot.reshape(-1, 3), axis=0)
                drawn = float((np.abs(shot.astype(float) - bg).max(-1) > 25).mean())
                if drawn > 0.01:
                    break
                time.sleep(0.5)
            page.screenshot(path=str(tmp / "page.png"), full_page=True)
            assert drawn > 0.01, f"the 3-D view stayed blank ({100 * drawn:.2f}% drawn); see {tmp / 'page.png'}"
            text = page.locator("#summary").inner_text()
            assert "reproject" in text and "silhouette IoU" in text
            files = page.locator("#files").inner_text().replace("\n", "")
            for name in ("mesh.glb", "mesh.obj", "pose.json", "overlay.png"):
                assert name in files, files
        finally:
            browser.close()
    written = list((tmp / "r").glob("*/mesh.glb"))
    assert len(written) == 1 and written[0].stat().st_size > 1000
