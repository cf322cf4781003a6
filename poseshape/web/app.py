"""The web demo behind ``poseshape serve``: one photo in, the posed mesh, its overlay, the pose
and the files out, in the browser.

Data flow (the same steps as ``poseshape reconstruct``, :mod:`poseshape.engine.reconstruct`):

1. the photo (any image file; an RGBA photo's alpha is a mask) and the mask source: an
   uploaded mask, the photo's alpha, or a box (two clicks on the photo, or typed) cut out
   by GrabCut (:func:`poseshape.engine.grabcut.grabcut_mask`);
2. the photo and mask are written as PNG files into a fresh folder under the work folder, and
   :func:`~poseshape.engine.reconstruct.reconstruct_image` runs the chosen method's shipped
   model on them (refined against the mask by default) and writes the usual files;
3. the page shows ``overlay.png``, the GLB (``gr.Model3D``), the pose numbers, the
   confidence and every warning, and offers every file for download.

:func:`run_reconstruction` is the whole handler as a plain function (tested without a
browser); :func:`build_app` wires it into Gradio, imported only here.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from poseshape.core.errors import PoseshapeError, PoseshapeWarning
from poseshape.engine.grabcut import box_from_points, grabcut_mask
from poseshape.engine.inputs import read_image
from poseshape.engine.predictor import Predictor, default_checkpoint, load_predictor
from poseshape.engine.reconstruct import reconstruct_image
from poseshape.engine.registry import list_methods

__all__ = [
    "MASK_SOURCES",
    "PredictorCache",
    "build_app",
    "parse_box",
    "run_reconstruction",
    "shipped_methods",
    "theme",
]

#: How the mask is given: ``auto`` takes the uploaded mask, else a box, else the photo's alpha.
MASK_SOURCES = ("auto", "uploaded mask", "photo alpha", "box + GrabCut", "none")


def shipped_methods() -> list[str]:
    """The registered methods that have a shipped model in ``poseshape/assets/``."""
    return [m for m in list_methods() if default_checkpoint(m).is_file()]


class PredictorCache:
    """Loads each method's shipped model once (thread-safe), on ``device``."""

    def __init__(self, device=None, loader: Callable[..., Predictor] = load_predictor):
        self.device, self._loader, self._cache, self._lock = device, loader, {}, threading.Lock()

    def __call__(self, method: str) -> Predictor:
        with self._lock:
            if method not in self._cache:
                self._cache[method] = self._loader(None, method=method, device=self.device)
            return self._cache[method]


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """``"x0 y0 x1 y1"`` (spaces or commas) -> four floats; empty -> None.

    Raises:
        PoseshapeError: not four numbers.
    """
    if text is None or not str(text).strip():
        return None
    parts = str(text).replace(",", " ").split()
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise PoseshapeError(f"box: expected four numbers 'x0 y0 x1 y1' in pixels, got {text!r}")
    return vals  # type: ignore[return-value]


def _read_rgb(path: Path) -> np.ndarray:
    img, _ = read_image(path)
    return (img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _summary(pose: dict, warned: list[str]) -> str:
    """The pose numbers, confidence and warnings as Markdown."""
    vp = pose.get("viewpoint") or {}
    rows = [
        ("method", pose.get("method")),
        ("category", pose.get("category") or "-"),
        ("confidence", f"{pose['confidence']:.3f}" if pose.get("confidence") is not None else "-"),
        ("silhouette IoU with the mask", f"{pose['mask_iou']:.3f}" if pose.get("mask_iou") is not None else "-"),
        ("refined", "yes" if pose.get("refined") else "no"),
    ]
    if vp:
        rows += [
            (
                "azimuth / elevation / in-plane (deg)",
                f"{vp['azimuth_deg']:.1f} / {vp['elevation_deg']:.1f} / {vp['theta_deg']:.1f}",
            ),  # fmt: skip
        ]
    rows.append(("rotation angle (deg)", f"{pose.get('rotation_angle_deg', float('nan')):.1f}"))
    rows.append(("R (rows)", "<br>".join(" ".join(f"{v:+.3f}" for v in r) for r in pose["R"])))
    rows.append(("t", " ".join(f"{v:+.3f}" for v in pose["t"])))
    rows.append(("camera", pose["camera"]["kind"]))
    lines = ["| result | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    notes = list(dict.fromkeys(list(pose.get("warnings") or []) + warned))
    if notes:
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in notes]
    return "\n".join(lines)


_counter = itertools.count()


def run_reconstruction(
    photo: str | os.PathLike | None,
    mask_file: str | os.PathLike | None,
    mask_source: str,
    box_text: str | None,
    method: str,
    refine: bool,
    work_dir: str | os.PathLike,
    predictors: Callable[[str], Predictor],
) -> dict:
    """One request of the demo, from uploaded files to written results.

    Args:
        photo: the uploaded photo file.
        mask_file: an uploaded mask file (same size as the photo) or None.
        mask_source: one of :data:`MASK_SOURCES`.
        box_text: ``"x0 y0 x1 y1"`` for the GrabCut box, or empty.
        method: a method with a shipped model.
        refine: align the pose to the mask (when there is one).
        work_dir: the folder that receives one sub-folder per request.
        predictors: ``method -> Predictor`` (a :class:`PredictorCache`).

    Returns:
        ``{"folder", "files" ({key: Path}), "pose" (dict), "summary" (Markdown), "mask" (Path
        of the mask used, or None), "warnings" (list[str])}``.

    Raises:
        PoseshapeError: no photo, a mask source without its input, a bad box, an unknown
            method, and the reconstruct path's errors (each message says what to fix).
    """
    if photo is None:
        raise PoseshapeError("upload a photo first")
    if mask_source not in MASK_SOURCES:
        raise PoseshapeError(f"mask source: expected one of {', '.join(MASK_SOURCES)}, got {mask_source!r}")
    if method not in list_methods():
        raise PoseshapeError(f"unknown method {method!r}; the methods are {', '.join(list_methods())}")
    box = parse_box(box_text)
    source = mask_source
    if source == "auto":
        source = "uploaded mask" if mask_file else ("box + GrabCut" if box else "photo alpha")
    folder = Path(work_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_counter)}"
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=False)
    photo = Path(photo)
    rgb_path = inputs / f"photo{photo.suffix.lower() or '.png'}"
    rgb_path.write_bytes(photo.read_bytes())
    mask_path = None
    if source == "uploaded mask":
        if not mask_file:
            raise PoseshapeError("mask source 'uploaded mask': upload a mask image (white object on black)")
        mask_path = inputs / f"mask{Path(mask_file).suffix.lower() or '.png'}"
        mask_path.write_bytes(Path(mask_file).read_bytes())
    elif source == "box + GrabCut":
        if box is None:
            raise PoseshapeError("mask source 'box + GrabCut': click two corners on the photo or type 'x0 y0 x1 y1'")
        rgb = _read_rgb(rgb_path)
        m = grabcut_mask(rgb, box_from_points(box, rgb.shape[:2]))
        mask_path = inputs / "mask_grabcut.png"
        Image.fromarray(m.astype(np.uint8) * 255).save(mask_path)
    elif source == "none":  # the photo without its alpha
        rgb_path2 = inputs / "photo_rgb.png"
        Image.fromarray(_read_rgb(rgb_path)).save(rgb_path2)
        rgb_path = rgb_path2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PoseshapeWarning)
        files = reconstruct_image(predictors(method), rgb_path, mask_path, folder, refine=None if refine else False)
    warned = [str(w.message).split(": ", 1)[-1] for w in caught if issubclass(w.category, PoseshapeWarning)]
    pose = json.loads(Path(files["pose"]).read_text())
    return {
        "folder": folder,
        "files": files,
        "pose": pose,
        "summary": _summary(pose, warned),
        "mask": mask_path,
        "warnings": warned,
    }


def theme():
    """The demo's Gradio theme (pass it to ``launch``): system fonts, since the default theme
    would fetch Google Fonts and nothing may leave this machine."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_app(work_dir: str | os.PathLike, device=None, predictors: Callable[[str], Predictor] | None = None):
    """The Gradio ``Blocks`` app (not launched). ``work_dir`` receives one folder per request."""
    import gradio as gr

    predictors = predictors or PredictorCache(device)
    methods = shipped_methods()
    if not methods:
        raise PoseshapeError("no method has a shipped model in poseshape/assets/; the demo has nothing to run")
    default = "reproject" if "reproject" in methods else methods[0]

    def on_select(points, evt: gr.SelectData):
        pts = (list(points or []) + [list(evt.index)])[-2:]
        text = " ".join(f"{v:.0f}" for v in pts[0] + pts[1]) if len(pts) == 2 else ""
        return pts, text

    def on_run(photo, mask_file, mask_source, box_text, method, refine):
        try:
            r = run_reconstruction(photo, mask_file, mask_source, box_text, method, refine, work_dir, predictors)
        except PoseshapeError as exc:
            raise gr.Error(str(exc)) from None
        f = r["files"]
        keys = [k for k in ("glb", "obj", "pose", "overlay", "views", "voxels") if k in f]
        return str(f["overlay"]), str(f["glb"]), r["summary"], [str(f[k]) for k in keys]

    on_select.__annotations__["evt"] = gr.SelectData  # (string annotations: Gradio looks for the class)
    with gr.Blocks(title="poseshape: pose-aware 3-D shape from one photo") as app:
        gr.Markdown(
            "## poseshape\nOne photo of an object in: its 3-D shape at the photo's 6-DoF pose out. "
            "Give a mask (upload one, use the photo's alpha, or click two corners of a box on the photo "
            "for GrabCut), choose a method and run. Everything runs on this machine."
        )
        points = gr.State([])
        with gr.Row():
            with gr.Column():
                photo = gr.Image(type="filepath", label="photo (click two corners for a box)", elem_id="photo")
                mask_file = gr.Image(type="filepath", label="mask (optional, white object on black)", elem_id="mask")
                mask_source = gr.Radio(list(MASK_SOURCES), value="auto", label="mask source", elem_id="mask_source")
                box = gr.Textbox(label="box x0 y0 x1 y1 (pixels)", placeholder="e.g. 30 40 200 180", elem_id="box")
                method = gr.Dropdown(methods, value=default, label="method", elem_id="method")
                refine = gr.Checkbox(value=True, label="refine the pose against the mask", elem_id="refine")
                run = gr.Button("Reconstruct", variant="primary", elem_id="run")
            with gr.Column():
                overlay = gr.Image(label="posed silhouette over the photo", elem_id="overlay", interactive=False)
                model3d = gr.Model3D(label="posed mesh (GLB)", elem_id="model3d", clear_color=(0.22, 0.24, 0.28, 1.0))
                summary = gr.Markdown(elem_id="summary")
                files = gr.File(label="files", file_count="multiple", elem_id="files", interactive=False)
        photo.select(on_select, inputs=[points], outputs=[points, box])
        photo.change(lambda: ([], ""), outputs=[points, box])
        run.click(
            on_run,
            inputs=[photo, mask_file, mask_source, box, method, refine],
            outputs=[overlay, model3d, summary, files],
        )
    return app
