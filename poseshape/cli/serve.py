"""``poseshape serve``: the web demo (Gradio) on this machine.

Examples::

    poseshape serve                         # http://127.0.0.1:7860
    poseshape serve --port 8080 --out demo_results --device cpu

Open the address in a browser, upload a photo, give a mask (upload one, use the photo's
alpha, or click two corners of a box for GrabCut), choose a method and press Reconstruct: the
page shows the posed silhouette over the photo, the posed mesh in 3-D, the pose, the
confidence and any warning, and offers the files (``mesh.glb``, ``mesh.obj``, ``pose.json``,
``overlay.png``, ``views.png``, ``posed_voxels.npz``) for download. Each request's inputs and
files stay in a folder under ``--out``. Needs the ``web`` extra (``pip install
'poseshape[web]'``: Gradio and OpenCV). Nothing is sent off this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from poseshape.cli.args import int_at_least, output_path
from poseshape.core.errors import PoseshapeError
from poseshape.engine.predictor import resolve_device
from poseshape.web.app import build_app, theme

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="the web demo in the browser (Gradio)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int_at_least(1), default=7860, help="port (default 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")
    p.add_argument(
        "--out", type=output_path, default=None, help="folder for each request's files (default: a temporary folder)"
    )
    return p


def run(args) -> int:
    if args.port > 65535:
        raise PoseshapeError(f"--port {args.port}: expected a port number in 1..65535")
    device = resolve_device(args.device)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import cv2  # noqa: F401
        import gradio  # noqa: F401
    except ImportError as exc:
        raise PoseshapeError(
            f"the web demo needs Gradio and OpenCV ({exc.name} is missing): pip install 'poseshape[web]'"
        ) from None
    work = args.out or tempfile.mkdtemp(prefix="poseshape_serve_")
    os.makedirs(work, exist_ok=True)
    app = build_app(work, device=device)
    print(f"poseshape serve: http://{args.host}:{args.port}  (results in {work}; Ctrl-C stops)", file=sys.stderr)
    app.queue().launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        show_error=True,
        allowed_paths=[work],
        quiet=True,
        theme=theme(),
    )
    return 0
