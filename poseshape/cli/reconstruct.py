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
from dataclasses import replace
from pathlib import Path

from poseshape.core.errors import PoseshapeError
from poseshape.engine.predictor import load_predictor
from poseshape.engine.reconstruct import load_input, predictor_square, reconstruct_image

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
        help="object mask file(s), one per image, same size as the image",
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
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument(
        "--refine",
        action="store_true",
        help="refine the predicted pose against the mask (test-time silhouette alignment, "
        "docs/refine.md); needs a mask or an RGBA image; every method that declares itself "
        "refinable (reproject, refine6dof) supports it",
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
    masks = [Path(p) for p in args.mask] if args.mask else [None] * len(images)
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
    refine = None
    if args.refine or args.refine_steps is not None or args.refine_starts is not None:
        kw = {k: v for k, v in (("steps", args.refine_steps), ("starts", args.refine_starts)) if v is not None}
        refine = replace(predictor.refine_config(), **kw)
        if not predictor.capabilities.refinable:
            raise PoseshapeError(f"--refine: method {predictor.method!r} cannot refine its predictions")
    # Check every input before writing anything (the images are read again later rather than
    # kept: a long list of photos need not fit in memory).
    for ip, mp in zip(images, masks):
        it = load_input(ip, mp)
        if refine is not None and it.mask is None:
            raise PoseshapeError(f"{ip}: --refine needs an object mask (--mask, or an RGBA image's alpha)")
        predictor_square(predictor, it.image, it.mask, str(mp or ip))
    print(f"{predictor.method}: {args.checkpoint or 'shipped default model'}", file=sys.stderr)
    for ip, mp, folder in zip(images, masks, output_folders(images, out)):
        files = reconstruct_image(predictor, ip, mp, folder, refine=refine)
        print(f"{ip}:")
        for key, path in files.items():
            print(f"  {key:8s} {path}")
    return 0
