"""``poseshape refine``: align a shape's pose to an object mask (test-time refinement).

Examples::

    # refine the pose that `poseshape reconstruct` wrote, with its own shape
    poseshape refine --mask car_mask.png --voxels out/car/posed_voxels.npz --pose out/car/pose.json --out out/car_ref
    # a CAD model at a rough viewpoint (degrees, PASCAL3D+ convention), weak perspective
    poseshape refine --mask m.png --mesh car.off --source pascal3d --azimuth 30 --elevation 10 --out out/r
    # ... or a pinhole camera with a focal length in pixels
    poseshape refine --mask m.png --mesh car.obj --azimuth 30 --elevation 10 --distance 2.5 --focal 500 --out out/r

The shape is a mesh file (``--mesh``, OBJ/OFF/PLY in the object frame: +Y up, front +Z; use
``--source`` for a native CAD frame) or the aligned voxels of a ``posed_voxels.npz``
(``--voxels``; converted with marching cubes). The starting pose is a ``pose.json`` (the one
``poseshape reconstruct`` writes: ``R`` and its input-pixel ``weak_perspective`` camera; or
any file with ``R``, ``t`` and pinhole ``K``), or a viewpoint (``--azimuth``, ``--elevation``,
``--theta`` in degrees): then the object origin is placed at the mask's centre and, without
``--focal``, the weak-perspective scale makes the silhouette's area equal to the mask's.

Writes into ``--out``: ``pose.json`` (refined R, t, camera, IoU before/after, chosen start),
``loss.csv`` and ``loss.png`` (loss per step, every start), ``refine.gif`` and
``refine_strip.png`` (the silhouette over the mask crop across the steps, paper 003 Fig. 5)
and ``overlay.png`` (the refined silhouette over the image, or over the mask). Every input is
checked before anything is written, and the files are written atomically (all or none).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from poseshape.cli.args import output_path
from poseshape.core.checks import check_memory
from poseshape.core.config import apply_overrides
from poseshape.core.errors import FileFormatError, PoseshapeError, PoseshapeWarning
from poseshape.core.io import atomic_write_files as write_files_atomic
from poseshape.engine.diagnostics import mask_warnings
from poseshape.engine.inputs import crop_to_square, read_image, read_mask
from poseshape.engine.pose_record import pose_record, read_pose
from poseshape.engine.refine import (
    RefineConfig,
    hard_silhouettes,
    overlay_frames,
    refine_pose,
    save_animation,
)
from poseshape.geometry.camera import Camera, viewpoint_to_pose
from poseshape.shapes.convert import voxels_to_mesh
from poseshape.shapes.meshes import Mesh, load_mesh
from poseshape.viz import overlay_silhouette, png_bytes

__all__ = ["FILE_NAMES", "add_parser", "load_pose_json", "run"]

#: Files written by ``poseshape refine``, by key.
FILE_NAMES = {
    "pose": "pose.json",
    "loss_csv": "loss.csv",
    "loss_png": "loss.png",
    "gif": "refine.gif",
    "strip": "refine_strip.png",
    "overlay": "overlay.png",
}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "refine",
        help="refine a pose so that a shape's silhouette matches a mask",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mask", required=True, metavar="M", help="object mask image (white object on black)")
    shape = p.add_mutually_exclusive_group(required=True)
    shape.add_argument("--mesh", metavar="FILE", help="shape as a mesh file (.obj, .off, .ply)")
    shape.add_argument("--voxels", metavar="NPZ", help="posed_voxels.npz of `poseshape reconstruct` (its aligned grid)")
    p.add_argument(
        "--source",
        default=None,
        help="native frame of --mesh: pascal3d, objectnet3d, shapenet, yup_xfront (default: already +Y up, front +Z)",
    )
    p.add_argument("--no-normalize", action="store_true", help="keep --mesh's size (default: fit the unit cube)")
    p.add_argument("--pose", metavar="JSON", help="starting pose (pose.json of `poseshape reconstruct`, or R, t, K)")
    p.add_argument("--azimuth", type=float, default=None, metavar="DEG", help="starting azimuth, degrees")
    p.add_argument("--elevation", type=float, default=0.0, metavar="DEG", help="starting elevation, degrees")
    p.add_argument("--theta", type=float, default=0.0, metavar="DEG", help="starting in-plane rotation, degrees")
    p.add_argument("--distance", type=float, default=2.5, help="camera distance with --focal (object units)")
    p.add_argument(
        "--focal",
        type=float,
        default=None,
        metavar="PX",
        help="pinhole focal length in mask pixels, principal point at the image centre (default: weak perspective)",
    )
    p.add_argument("--image", default=None, metavar="IMG", help="photo to draw the overlays on (same size as the mask)")
    p.add_argument("--starts", type=int, default=None, metavar="K", help="starting rotations (default 16)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="optimisation steps (default 30)")
    p.add_argument("--render-size", type=int, default=None, metavar="S", help="working resolution (default 128)")
    p.add_argument("--optimize-verts", action="store_true", help="also deform the shape (Laplacian-regularised)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any RefineConfig setting (repeatable), e.g. --set select_margin=0 --set keep=4 (docs/refine.md)",
    )
    p.add_argument("--out", type=output_path, required=True, metavar="DIR", help="output folder")
    return p


# =============================================================================== inputs
def _matrix(x, name: str, shape: tuple[int, ...], where: Path) -> torch.Tensor:
    try:
        a = torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError):
        raise FileFormatError(f"{where}: {name} must be numbers of shape {shape}") from None
    if tuple(a.shape) != shape:
        raise FileFormatError(f"{where}: {name} must have shape {shape}, got {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise FileFormatError(f"{where}: {name} contains NaN or inf")
    return a


def load_pose_json(path, image_size: tuple[int, int] | None = None) -> dict:
    """Read a starting pose with :func:`poseshape.engine.pose_record.read_pose` (the one reader of
    ``pose.json``: this version, version 1, or hand-written ``R`` / ``t`` / ``K``), as the
    refinement's camera arguments: ``{"R" (3, 3), "t" (3,), "K" (3, 3) | None, "scale" float | None}``
    (weak perspective: ``t = (t2, 0)`` in pixels, ``u = scale (R X)[:2] + t2``).

    Raises:
        PoseshapeError: missing file; FileFormatError: not JSON, or missing / malformed keys.
    """
    pr = read_pose(path, image_size)
    R, t = pr.R[0], pr.t[0]
    if pr.camera.is_pinhole:
        return {"R": R, "t": t, "K": pr.camera.K[0].double(), "scale": None}
    K = pr.camera.K[0].double()
    s = float(K[0, 0])
    t2 = s * t[:2] + K[:2, 2]
    return {"R": R, "t": torch.cat([t2, torch.zeros(1, dtype=t2.dtype)]), "K": None, "scale": s}


def _load_shape(args):

    if args.mesh:
        m = load_mesh(args.mesh, source=args.source, normalize=not args.no_normalize)
        return Mesh(m.verts.float(), m.faces)
    p = Path(args.voxels)
    if not p.is_file():
        raise PoseshapeError(f"{p}: voxel file not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            key = "aligned" if "aligned" in z.files else ("voxels" if "voxels" in z.files else None)
            if key is None:
                raise FileFormatError(f"{p}: no 'aligned' (or 'voxels') grid in the file (keys: {z.files})")
            grid = np.asarray(z[key], dtype=np.float32)
    except FileFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - zip / npy errors of all kinds
        raise FileFormatError(f"{p}: cannot read the voxel file ({type(e).__name__}: {e})") from None
    if grid.ndim != 3 or min(grid.shape) < 2:
        raise FileFormatError(f"{p}: expected a (D, H, W) occupancy grid, got shape {grid.shape}")
    if not np.isfinite(grid).all():
        raise FileFormatError(f"{p}: the voxel grid holds {int((~np.isfinite(grid)).sum())} NaN or inf value(s)")
    lo, hi = float(grid.min()), float(grid.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        warnings.warn(
            f"{p}: voxel values span [{lo:.3g}, {hi:.3g}], outside the occupancy range [0, 1]; they were "
            "clipped and voxels >= 0.5 count as occupied: check that the file holds occupancies",
            PoseshapeWarning,
            stacklevel=2,
        )
        grid = np.clip(grid, 0.0, 1.0)
    m = voxels_to_mesh(torch.from_numpy(grid), 0.5)
    if m.num_faces == 0:
        raise FileFormatError(f"{p}: the voxel grid is empty (no voxel >= 0.5)")
    return Mesh(m.verts.float(), m.faces)


def _start_pose(args, mesh, mask: torch.Tensor):
    """``(R (1,3,3), t (1,3), K or None, scale or None)`` in mask pixels."""

    if args.pose:
        if args.azimuth is not None:
            raise PoseshapeError("give either --pose or --azimuth/--elevation/--theta, not both")
        rec = load_pose_json(args.pose, tuple(mask.shape[-2:]))
        K = rec["K"][None] if rec["K"] is not None else None
        s = torch.tensor([rec["scale"]], dtype=torch.float64) if rec["scale"] is not None else None
        return rec["R"][None], rec["t"][None], K, s
    if args.azimuth is None:
        raise PoseshapeError("no starting pose: give --pose FILE or a viewpoint (--azimuth, --elevation, --theta)")
    for name in ("azimuth", "elevation", "theta", "distance"):
        if not math.isfinite(getattr(args, name)):
            raise PoseshapeError(f"--{name}: expected a finite number")
    H, W = mask.shape[-2:]
    fg = mask[0] >= 0.5
    rows, cols = torch.nonzero(fg.any(1)).flatten(), torch.nonzero(fg.any(0)).flatten()
    cu, cv = (float(cols[0]) + float(cols[-1]) + 1) / 2, (float(rows[0]) + float(rows[-1]) + 1) / 2
    d = float(args.distance)
    if d <= 0:
        raise PoseshapeError("--distance: expected a positive number")
    R, _ = viewpoint_to_pose(
        *(
            torch.tensor([math.radians(getattr(args, n))], dtype=torch.float64)
            for n in ("azimuth", "elevation", "theta")
        ),
        torch.tensor([d], dtype=torch.float64),
    )
    if args.focal is not None:
        f = float(args.focal)
        if not (math.isfinite(f) and f > 0):
            raise PoseshapeError("--focal: expected a positive number of pixels")
        K = torch.tensor([[[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]]], dtype=torch.float64)
        t = torch.tensor([[(cu - W / 2) * d / f, (cv - H / 2) * d / f, d]], dtype=torch.float64)
        return R, t, K, None
    # weak perspective: origin at the mask box centre, scale from the areas (the silhouette
    # at 100 px per unit, centred on a 400 x 400 canvas; the area grows with scale^2)
    t = torch.tensor([[cu, cv, 0.0]], dtype=torch.float64)
    sil = hard_silhouettes(
        mesh.verts.double()[None],
        mesh.faces,
        R,
        torch.tensor([[200.0, 200.0, 0.0]], dtype=torch.float64),
        None,
        torch.tensor([100.0], dtype=torch.float64),
        (400, 400),
    )
    a1 = float(sil.sum())
    if a1 == 0:
        raise PoseshapeError("the shape has no visible silhouette at the given viewpoint")
    s = 100.0 * math.sqrt(float(fg.sum()) / a1)
    return R, t, None, torch.tensor([s], dtype=torch.float64)


# =============================================================================== outputs
def _loss_csv(res) -> bytes:
    steps, _, M = res.loss_starts.shape
    lines = ["step,loss_chosen," + ",".join(f"loss_start{j}" for j in range(M))]
    for k in range(steps):
        vals = [f"{float(res.loss[k, 0]):.6g}"] + [
            "" if math.isnan(float(res.loss_starts[k, 0, j])) else f"{float(res.loss_starts[k, 0, j]):.6g}"
            for j in range(M)
        ]
        lines.append(f"{k}," + ",".join(vals))
    return ("\n".join(lines) + "\n").encode()


def _loss_png(res) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, _, M = res.loss_starts.shape
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    x = np.arange(steps)
    chosen = int(res.start[0])
    for j in range(M):
        y = res.loss_starts[:, 0, j].numpy()
        if j != chosen:
            ax.plot(x, y, color="0.7", lw=0.8)
    ax.plot(x, res.loss[:, 0].numpy(), color="C3", lw=2, label=f"chosen start {chosen}")
    ax.set_xlabel("step")
    ax.set_ylabel("soft IoU + BCE (blurred)")
    ax.set_title(f"refinement: IoU {float(res.iou_init[0]):.3f} -> {float(res.iou[0]):.3f}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _record(res, K, hw, args, mask_path: Path) -> dict:
    """``pose.json`` of the refined pose (:func:`poseshape.engine.pose_record.pose_record`) plus the
    refinement's facts; the camera is in the mask's pixels."""
    R = res.R[0].double()
    if res.scale is None:
        t = res.t[0].double()
        cam = Camera.pinhole(K.double().reshape(1, 3, 3), hw)
    else:  # u = scale (R X)[:2] + t2: the object origin at the principal point t2
        t = torch.zeros(3, dtype=torch.float64)
        cam = Camera.weak_perspective(res.scale.double().reshape(1), res.t[0, :2].double().reshape(1, 2), hw)
    rec = pose_record(R, t, cam, method="refine")
    rec["image_size"] = {"height": int(hw[0]), "width": int(hw[1])}
    rec.update(
        {
            "iou": float(res.iou[0]),
            "iou_before": float(res.iou_init[0]),
            "iou_frame": "working crop around the mask (render_size pixels, hard raster)",
            "start": int(res.start[0]),
            "starts": int(res.starts_R.shape[1]),
            "start_iou": [None if math.isnan(float(v)) else float(v) for v in res.start_iou[0]],
            "steps": res.config.steps,
            "render_size": res.config.render_size,
            "seconds": res.seconds,
            "mask": str(mask_path),
            "shape": str(args.mesh or args.voxels),
            "start_pose": str(args.pose)
            if args.pose
            else {"azimuth_deg": args.azimuth, "elevation_deg": args.elevation, "theta_deg": args.theta},
            "files": dict(FILE_NAMES),
        }
    )
    return rec


def run(args) -> int:

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PoseshapeError(f"--out {out}: exists and is not a folder")
    # --- inputs (all checked before anything is written)
    mask_path = Path(args.mask)
    image = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PoseshapeWarning)
        if args.image:
            image, _ = read_image(args.image)
            mask = read_mask(mask_path, tuple(image.shape[-2:]), image_path=Path(args.image))
        else:
            mask = read_mask(mask_path)
        mesh = _load_shape(args)
    notes = []
    for w in caught:
        if issubclass(w.category, PoseshapeWarning):
            notes.append(str(w.message))
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for msg in mask_warnings(mask):
        notes.append(f"{mask_path}: {msg}")
        print(f"warning: {mask_path}: {msg}", file=sys.stderr)
    R, t, K, s = _start_pose(args, mesh, mask)
    kw = {
        k: v
        for k, v in (("starts", args.starts), ("steps", args.steps), ("render_size", args.render_size))
        if v is not None
    }
    cfg = RefineConfig(record_frames=True, optimize_verts=bool(args.optimize_verts), **kw)
    if args.overrides:
        cfg = apply_overrides(cfg, list(args.overrides))  # ConfigError names the bad key / value

    # Estimated working set of the soft renderer (forward + backward, ~128 B per pixel per start).
    check_memory(cfg.starts * cfg.render_size**2 * 128, f"refine at render_size {cfg.render_size}", "--render-size")

    # --- refinement
    res = refine_pose(mask[None], mesh, R, t, K, scale=s, config=cfg, progress=sys.stderr.isatty())
    print(
        f"refine: IoU {float(res.iou_init[0]):.3f} -> {float(res.iou[0]):.3f} (start {int(res.start[0])} of "
        f"{res.starts_R.shape[1]}, {res.seconds:.1f} s)",
        file=sys.stderr,
    )

    # --- pictures
    crop_img = None
    if image is not None:
        crop_img, _, _ = crop_to_square(image, mask, cfg.render_size, margin=cfg.crop_margin)
    frames = overlay_frames(res, 0, crop_img)
    anim = save_animation(frames)
    H, W = mask.shape[-2:]
    shape_verts = res.verts[0] if res.verts is not None else mesh.verts
    if res.verts is not None and res.verts[0].shape[0] != mesh.num_verts:  # a proxy was optimised
        shape_verts = mesh.verts
    sil = hard_silhouettes(
        shape_verts.double()[None],
        mesh.faces,
        res.R.double(),
        res.t.double(),
        K if res.scale is None else None,
        res.scale,
        (H, W),
    )[0, 0]
    base = image if image is not None else (0.35 + 0.4 * mask).expand(3, -1, -1)
    overlay = overlay_silhouette(base, sil, mask[0])
    record = _record(res, K, (H, W), args, mask_path)
    record["warnings"] = notes
    payloads = {
        "pose": (json.dumps(record, indent=2) + "\n").encode(),
        "loss_csv": _loss_csv(res),
        "loss_png": _loss_png(res),
        "gif": anim["gif"],
        "strip": anim["strip"],
        "overlay": png_bytes(overlay),
    }

    # --- atomic writes: all files or none
    written = write_files_atomic(out, {FILE_NAMES[k]: v for k, v in payloads.items()}, keys=list(payloads))
    for key, p in written.items():
        print(f"  {key:9s} {p}")
    return 0
