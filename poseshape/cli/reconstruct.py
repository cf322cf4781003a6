"""``poseshape reconstruct``: image(s) -> pose-aware shape, mesh, pose and pictures.

Examples::

    poseshape reconstruct car.jpg --out out/car                 # the shipped reproject model
    poseshape reconstruct car.png --mask car_mask.png --out out/car
    poseshape reconstruct a.png b.png --mask a_m.png b_m.png --checkpoint runs/rp/last.pt --out out

Any image size is accepted. With a mask (or an RGBA image's alpha) the object is cropped
around the mask's bounding box; otherwise the whole image is used, padded to a square.
Methods whose predictor sees the uncropped camera image (``full_frame``, e.g. ``refine6dof``,
which predicts the translation in it) always get the whole image padded to a square, with
the mask of that same square (``refine6dof`` refines its pose online against it). For
each image it writes ``posed_voxels.npz``, ``mesh.obj``, ``mesh.glb``, ``pose.json``,
``overlay.png`` and ``views.png`` into ``--out`` (one image) or ``--out/<image name>/``
(several). All inputs and the checkpoint are checked before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from poseshape.core.errors import PoseshapeError

__all__ = ["InputItem", "add_parser", "check_refine_supported", "load_input", "output_folders",
           "predictor_square", "reconstruct_image", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("reconstruct", help="pose-aware 3-D shape, mesh and pose from image(s)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="input image file(s), any size")
    p.add_argument("--mask", nargs="+", default=None, metavar="M",
                   help="object mask file(s), one per image, same size as the image")
    p.add_argument("--checkpoint", default=None, metavar="C",
                   help="checkpoint written by `poseshape train` (default: the method's shipped model)")
    p.add_argument("--method", default=None,
                   help="method whose shipped default model to use (default reproject); with "
                        "--checkpoint, the method the checkpoint must belong to")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--refine", action="store_true",
                   help="refine the predicted pose against the mask (test-time silhouette alignment, "
                        "docs/refine.md); needs a mask or an RGBA image. Not for full-frame methods "
                        "(refine6dof), which refine online by themselves")
    p.add_argument("--refine-steps", type=int, default=None, metavar="N", help="refinement steps (default 30)")
    p.add_argument("--refine-starts", type=int, default=None, metavar="K", help="refinement starts (default 16)")
    return p


@dataclass
class InputItem:
    """One validated input.

    Attributes:
        image: ``(3, H, W)`` float in [0, 1]; mask: ``(1, H, W)`` {0, 1} or None.
        mask_source: ``"file"``, ``"alpha"`` (the image's alpha channel) or None.
        image_path, mask_path: the files.
    """

    image: torch.Tensor
    mask: torch.Tensor | None
    mask_source: str | None
    image_path: Path
    mask_path: Path | None


def load_input(image_path, mask_path=None) -> InputItem:
    """Read and check an image and its optional mask (see :func:`poseshape.engine.predict.read_image`).

    Raises:
        PoseshapeError (and subclasses): unreadable / corrupt files, a mask of another size,
            an empty mask.
    """
    from poseshape.engine.predict import read_image, read_mask

    ip = Path(image_path)
    image, alpha = read_image(ip)
    if mask_path is not None:
        mp = Path(mask_path)
        return InputItem(image, read_mask(mp, tuple(image.shape[-2:]), image_path=ip), "file", ip, mp)
    return InputItem(image, alpha, "alpha" if alpha is not None else None, ip, None)


def predictor_square(predictor, image: torch.Tensor, mask: torch.Tensor | None, name: str = "mask"
                     ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
    """The ``S x S`` square ``predictor`` sees (``S = predictor.image_size``), and its box.

    A ``full_frame`` predictor (``refine6dof``: the translation is predicted in the uncropped
    camera image) gets the whole image padded to a square, with the mask cut from that same
    square; any other gets :func:`poseshape.engine.predict.crop_to_square`'s crop around the mask's
    box (``predictor.crop_margin``, default 0.1), or the whole image without a mask.

    Args:
        image: ``(3, H, W)`` in [0, 1]; mask: ``(1, H, W)`` {0, 1} or None.
        name: what to call the mask in errors (e.g. its file).

    Returns:
        ``(crop (3, S, S), crop_mask (1, S, S) or None, box (x0, y0, side))`` as
        :func:`poseshape.engine.predict.crop_to_square`.

    Raises:
        PoseshapeError: the object vanishes at the full frame's ``S x S`` resolution (less than
            half a pixel of the resized mask), and the errors of ``crop_to_square``.
    """
    from poseshape.engine.predict import crop_to_square

    full = bool(getattr(predictor, "full_frame", False))
    margin = float(getattr(predictor, "crop_margin", 0.1))  # the framing the method was trained on
    S = int(predictor.image_size)
    crop, crop_mask, box = crop_to_square(image, mask, size=S, margin=margin, full_frame=full)
    if full and crop_mask is not None and not bool(crop_mask.any()):
        raise PoseshapeError(f"{name}: the object is too small for the model: its mask keeps no pixel when the "
                             f"whole {box[2]}x{box[2]} frame is resized to the model's {S}x{S} input")
    return crop, crop_mask, box


def check_refine_supported(predictor) -> None:
    """Refuse ``--refine`` for a ``full_frame`` predictor without its own ``refine_prediction``.

    :func:`poseshape.engine.refine.refine_prediction` aligns the weak-perspective posed frame of a
    crop (the reproject family); a full-frame method predicts a pinhole pose, which only a
    method-specific ``predictor.refine_prediction(pred, i, mask, config)`` can refine
    consistently (``refine6dof`` has one: the multi-start refinement of its medoid).

    Raises:
        PoseshapeError: ``predictor.full_frame`` is true and it has no ``refine_prediction``.
    """
    if getattr(predictor, "full_frame", False) and not callable(getattr(predictor, "refine_prediction", None)):
        name = getattr(predictor, "method", "") or type(predictor).__name__
        raise PoseshapeError(f"--refine is for crop-based methods such as reproject (docs/refine.md); method "
                             f"{name!r} sees the whole frame and predicts a pinhole pose that it cannot refine "
                             "here, so drop --refine")


def reconstruct_image(predictor, image_path, mask_path, out_dir, *, item: InputItem | None = None,
                      refine=None) -> dict:
    """Reconstruct one image and write its files into ``out_dir``.

    Steps: :func:`load_input` -> :func:`predictor_square` (the mask's box, or the whole image;
    always the whole image, padded to a square, for a ``full_frame`` predictor such as
    ``refine6dof``, which then gets the mask of that square) -> ``predictor(crop, crop_mask)``
    -> optionally :func:`poseshape.engine.refine.refine_prediction` (the pose aligned to the mask of
    the same crop, cut at the refinement's ``render_size``) ->
    :func:`poseshape.engine.predict.write_prediction` (the box is the whole padded square for a
    ``full_frame`` predictor, so the overlay and the weak-perspective camera of ``pose.json``
    refer to the input image as usual).

    With ``refine``, a predictor's own ``refine_prediction`` is used when it has one
    (``refine6dof``: its medoid and pinhole pose, against the full-resolution mask of the
    square, after its online refinement); a ``full_frame`` predictor without one is refused
    (:func:`check_refine_supported`).

    Args:
        predictor: a :class:`poseshape.engine.predict.Predictor`.
        image_path, mask_path: input files (``mask_path`` may be None).
        out_dir: output folder.
        item: an already loaded :class:`InputItem` (skips reading the files again).
        refine: ``None``/``False`` (off), ``True`` (default settings) or a
            :class:`poseshape.engine.refine.RefineConfig`. Needs a mask (file or alpha).

    Returns:
        ``{"voxels", "obj", "glb", "pose", "overlay", "views"} -> Path``.

    Raises:
        PoseshapeError: ``refine`` without a mask or with a ``full_frame`` predictor, and the
            errors of the steps.
    """
    from poseshape.engine.predict import crop_to_square, write_prediction

    item = item or load_input(image_path, mask_path)
    if refine:
        check_refine_supported(predictor)
    if refine and item.mask is None:
        raise PoseshapeError(f"{item.image_path}: --refine needs an object mask (--mask, or an RGBA image's alpha)")
    margin = float(getattr(predictor, "crop_margin", 0.1))  # the framing the method was trained on
    crop, crop_mask, box = predictor_square(predictor, item.image, item.mask,
                                            str(item.mask_path or item.image_path))
    with torch.no_grad():
        pred = predictor(crop[None], crop_mask[None] if crop_mask is not None else None)
    info = {"image": str(item.image_path), "mask": str(item.mask_path) if item.mask_path else None,
            "mask_source": item.mask_source, "crop_size": int(predictor.image_size)}
    if getattr(predictor, "full_frame", False):
        info["full_frame"] = True  # the box is the whole image padded to a square
    if refine and getattr(predictor, "refine_prediction", None) is not None:
        from poseshape.engine.refine import RefineConfig

        cfg = refine if isinstance(refine, RefineConfig) else RefineConfig()
        full = bool(getattr(predictor, "full_frame", False))
        # the same square at its own resolution (capped): refine_pose crops around the mask itself
        size = max(cfg.render_size, min(int(box[2]), 512))
        _, rmask, rbox = crop_to_square(item.image, item.mask, size=size, margin=margin, full_frame=full)
        assert tuple(rbox) == tuple(box)
        pred, res = predictor.refine_prediction(pred, 0, rmask, config=cfg)
        info["refine"] = {"iou_before": float(res.iou_init[0]), "iou": float(res.iou[0]),
                          "start": int(res.start[0]), "starts": int(res.starts_R.shape[1]), "steps": cfg.steps,
                          "iou_frame": "refinement crop of the mask square (hard raster)"}
    elif refine:
        from poseshape.engine.refine import RefineConfig, refine_prediction

        # a predicted shape's proportions are uncertain: refine its per-axis scale too
        cfg = refine if isinstance(refine, RefineConfig) else RefineConfig(optimize_aspect=True)
        # the same square (the box depends on the mask only), at the refinement's resolution
        _, rmask, rbox = crop_to_square(item.image, item.mask, size=cfg.render_size, margin=margin)
        assert tuple(rbox) == tuple(box)
        pred, res = refine_prediction(pred, 0, rmask, config=cfg)
        info["refine"] = {"iou_before": float(res.iou_init[0]), "iou": float(res.iou[0]),
                          "start": int(res.start[0]), "starts": int(res.starts_R.shape[1]),
                          "steps": cfg.steps, "scale_factor": float(pred.extras["refine_scale"]),
                          "shape_scale_xyz": pred.extras["refine_aspect"],
                          "iou_frame": "refinement crop (render_size, hard raster)"}
    return write_prediction(pred, 0, out_dir, item.image, box, mask=item.mask,
                            method=getattr(predictor, "method", ""), info=info)


def output_folders(images: list[Path], out: Path) -> list[Path]:
    """``out`` for one image; ``out/<stem>`` for several (``_2``, ``_3``, ... on name clashes)."""
    if len(images) == 1:
        return [out]
    seen: dict[str, int] = {}
    folders = []
    for p in images:
        stem = p.stem or "image"
        k = seen.get(stem, 0) + 1
        seen[stem] = k
        folders.append(out / (stem if k == 1 else f"{stem}_{k}"))
    return folders


def run(args) -> int:
    from poseshape.engine.predict import load_predictor

    images = [Path(p) for p in args.images]
    masks = [Path(p) for p in args.mask] if args.mask else [None] * len(images)
    if len(masks) != len(images):
        raise PoseshapeError(f"--mask: got {len(masks)} mask(s) for {len(images)} image(s); give one "
                             "mask per image, in the same order, or none")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PoseshapeError(f"--out {out}: exists and is not a folder")
    refine = None
    if args.refine or args.refine_steps is not None or args.refine_starts is not None:
        from poseshape.engine.refine import RefineConfig

        kw = {k: v for k, v in (("steps", args.refine_steps), ("starts", args.refine_starts)) if v is not None}
        refine = RefineConfig(optimize_aspect=True, **kw)
    # Check every input and the checkpoint before writing anything.
    # (the images are read again later rather than kept: a long list of photos need not fit in memory)
    for ip, mp in zip(images, masks):
        it = load_input(ip, mp)
        if refine is not None and it.mask is None:
            raise PoseshapeError(f"{ip}: --refine needs an object mask (--mask, or an RGBA image's alpha)")
    method = args.method or (None if args.checkpoint else "reproject")
    predictor = load_predictor(checkpoint=args.checkpoint, method=method, device=args.device)
    if refine is not None:
        check_refine_supported(predictor)
    if getattr(predictor, "full_frame", False):  # a small object's mask may vanish in the S x S full frame
        for ip, mp in zip(images, masks):
            it = load_input(ip, mp)
            predictor_square(predictor, it.image, it.mask, str(mp or ip))
    print(f"{predictor.method}: {args.checkpoint or 'shipped default model'}", file=sys.stderr)
    for ip, mp, folder in zip(images, masks, output_folders(images, out)):
        files = reconstruct_image(predictor, ip, mp, folder, refine=refine)
        print(f"{ip}:")
        for key, path in files.items():
            print(f"  {key:8s} {path}")
    return 0
