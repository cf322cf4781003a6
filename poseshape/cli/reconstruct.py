"""``poseshape reconstruct``: image(s) -> pose-aware shape, mesh, pose and pictures.

Examples::

    poseshape reconstruct car.jpg --out out/car                 # the shipped reproject model
    poseshape reconstruct car.png --mask car_mask.png --out out/car
    poseshape reconstruct car.jpg --mask box:40,30,210,160 --out out/car   # GrabCut in a box
    poseshape reconstruct a.jpg b.jpg --mask auto --out out             # GrabCut, no box
    poseshape reconstruct a.png b.png --mask a_m.png b_m.png --checkpoint runs/rp/last.pt --out out

Any image size is accepted. With a mask (or an RGBA image's alpha) the object is cropped
around the mask's bounding box; otherwise the whole image is used, padded to a square. A mask may
also be made by GrabCut: ``box:x0,y0,x1,y1`` around the object, or ``auto`` (the whole
frame less a thin border: one object, clear of the image border); the mask made is written
as ``mask.png``. A method that needs a mask (the shipped ``reproject`` model) and gets none
makes the ``auto`` one, with a warning.
Methods whose predictor sees the uncropped camera image (``full_frame``, e.g. ``refine6dof``,
which predicts the translation in it) always get the whole image padded to a square, with
the mask of that same square (``refine6dof`` refines its pose online against it). For
each image it writes ``posed_voxels.npz``, ``mesh.obj``, ``mesh.glb``, ``pose.json``,
``overlay.png`` and ``views.png`` into ``--out`` (one image) or ``--out/<image name>/``
(several). All inputs and the checkpoint are checked before anything is written.

With a mask the pose is refined against it by default (``--no-refine`` turns it off). Each
doubtful input or result (no mask; an inverted, tiny or border-cut mask; a low silhouette
IoU; an uncertain category) is printed as ``warning: ...`` with its fix and recorded in
``pose.json``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from poseshape.cli.args import output_path
from poseshape.core.errors import PoseshapeError, PoseshapeWarning
from poseshape.engine.predictor import load_predictor
from poseshape.engine.reconstruct import AUTO, fill_mask, is_mask_spec, load_input, predictor_square, reconstruct_image

__all__ = ["add_parser", "output_folders", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reconstruct",
        help="pose-aware 3-D shape, mesh and pose from image(s)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="input image file(s), any size")
    p.add_argument(
        "--mask",
        nargs="+",
        default=None,
        metavar="M",
        help="object mask file(s), one per image, same size as the image (white object on "
        "black); or box:x0,y0,x1,y1 (GrabCut in that box) or auto (GrabCut on the whole frame); "
        "one 'auto' applies to every image",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="C",
        help="checkpoint written by `poseshape train` (default: the method's shipped model)",
    )
    p.add_argument(
        "--method",
        default=None,
        help="method whose shipped default model to use (default reproject); with "
        "--checkpoint, the method the checkpoint must belong to",
    )
    p.add_argument("--out", type=output_path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument(
        "--refine",
        action="store_true",
        help="require refinement of the pose against the mask (an error without a mask). By "
        "default the pose is refined whenever there is a mask and the method can refine "
        "(test-time silhouette alignment, docs/refine.md)",
    )
    ref.add_argument("--no-refine", action="store_true", help="do not refine the predicted pose")
    p.add_argument(
        "--category",
        default=None,
        help="the object's category, if you know it: only used to warn when the model was not trained on it",
    )
    p.add_argument("--refine-steps", type=int, default=None, metavar="N", help="refinement steps (default 30)")
    p.add_argument("--refine-starts", type=int, default=None, metavar="K", help="refinement starts (default 16)")
    return p


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
    images = [Path(p) for p in args.images]
    specs = list(args.mask) if args.mask else [None] * len(images)
    if specs == [AUTO] and len(images) > 1:
        specs = [AUTO] * len(images)
    masks = [m if m is None or is_mask_spec(m) else Path(m) for m in specs]
    if len(masks) != len(images):
        raise PoseshapeError(
            f"--mask: got {len(masks)} mask(s) for {len(images)} image(s); give one "
            "mask per image, in the same order, or none"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PoseshapeError(f"--out {out}: exists and is not a folder")
    method = args.method or (None if args.checkpoint else "reproject")
    predictor = load_predictor(checkpoint=args.checkpoint, method=method, device=args.device)
    refine = False if args.no_refine else None  # None: refine when there is a mask
    if not args.no_refine and (args.refine or args.refine_steps is not None or args.refine_starts is not None):
        kw = {k: v for k, v in (("steps", args.refine_steps), ("starts", args.refine_starts)) if v is not None}
        refine = replace(predictor.refine_config(), **kw)
        if not predictor.capabilities.refinable:
            raise PoseshapeError(f"--refine: method {predictor.method!r} cannot refine its predictions")
    # Check every input before writing anything (the images are read again later rather than
    # kept: a long list of photos need not fit in memory).
    # With several images, one that fails (a bad file, an empty mask, a shape that cannot cover
    # its mask) is reported with its reason and skipped; the others are written, and the exit
    # code is 1 (some failed) or 2 (all failed). A single image fails as a whole (exit 2).
    many = len(images) > 1
    failed: list[tuple[Path, str]] = []
    ok = []
    for ip, mp, folder in zip(images, masks, output_folders(images, out)):
        try:
            it = fill_mask(predictor, load_input(ip, mp))
            if args.refine and it.mask is None:
                raise PoseshapeError(f"{ip}: --refine needs an object mask (--mask, or an RGBA image's alpha)")
            predictor_square(predictor, it.image, it.mask, str(mp or ip))
        except PoseshapeError as exc:
            if not many:
                raise
            failed.append((ip, str(exc)))
            continue
        ok.append((ip, mp, folder))
    print(f"{predictor.method}: {args.checkpoint or 'shipped default model'}", file=sys.stderr)
    bar = tqdm(ok, desc="reconstruct", unit="image", disable=len(ok) < 2, file=sys.stderr)
    for ip, mp, folder in bar:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PoseshapeWarning)
            try:
                files = reconstruct_image(
                    predictor,
                    ip,
                    mp,
                    folder,
                    refine=_per_image(refine, args, ip, mp, predictor),
                    category=args.category,
                )
            except PoseshapeError as exc:
                if not many:
                    raise
                failed.append((ip, str(exc)))
                files = None
        if files is None:
            continue
        for w in caught:
            if issubclass(w.category, PoseshapeWarning):
                bar.write(f"warning: {w.message}", file=sys.stderr)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        print(f"{ip}:")
        for key, path in files.items():
            print(f"  {key:8s} {path}")
    for ip, why in failed:
        print(f"poseshape reconstruct: error: {ip}: skipped: {why}", file=sys.stderr)
    if failed:
        print(
            f"poseshape reconstruct: {len(failed)} of {len(images)} images failed "
            f"({', '.join(str(ip) for ip, _ in failed)}); the others were written",
            file=sys.stderr,
        )
        return 2 if len(failed) == len(images) else 1
    return 0


def _per_image(refine, args, image: Path, mask, predictor):
    """Refinement settings given without ``--refine`` (``--refine-steps`` / ``--refine-starts``)
    apply to the images that have a mask; the others are not refined (``--refine`` demands a
    mask of every image, checked before anything is written)."""
    if refine is None or refine is False or args.refine or mask is not None:
        return refine
    if predictor.capabilities.needs_mask:
        return refine  # it makes the automatic mask (fill_mask)
    return refine if load_input(image, None).mask is not None else False  # an RGBA image's alpha
