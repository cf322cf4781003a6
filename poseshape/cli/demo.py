"""``poseshape demo``: the whole pipeline on project-made data, in a few minutes on a CPU.

1. Render a small procedural data set (aeroplane, car, chair: paper 000's categories) with the
   data engine: a clean training set, a natural-like silhouette set and a natural-like test set
   of held-out models.
2. Load the shipped default ``reproject`` model (``poseshape/assets/reproject.pt``), or, with
   ``--train`` (or when it is missing), train one briefly with the paper's three stages.
3. Evaluate it on the test set (paper 000's Table 3 columns) and print the table.
4. Reconstruct a few held-out test images: pose-aware voxels, a mesh (OBJ/GLB), the pose, an
   overlay and four views per image, and a gallery of all of them.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from poseshape.cli.args import output_path
from poseshape.core.errors import PoseshapeWarning
from poseshape.data.dataset import ShardDataset
from poseshape.engine.output import write_prediction
from poseshape.engine.predictor import default_checkpoint, load_predictor, resolve_device
from poseshape.engine.registry import get_method
from poseshape.engine.report import format_table, results_rows, write_report
from poseshape.engine.train import Trainer
from poseshape.methods.reproject.data import render_reproject_data
from poseshape.methods.reproject.evaluate import COLUMNS, evaluate_predictor
from poseshape.viz import save_gallery

__all__ = ["add_parser", "run", "run_demo"]

#: Small training schedule for ``--train`` (the shipped model's is in scripts/train_default.sh).
DEMO_TRAIN = [
    "image_size=64",
    "batch_size=32",
    "vae_iters=300",
    "regress_iters=400",
    "finetune_iters=100",
    "val_every=100",
    "val_samples=64",
    "width=0.5",
]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="render data, load/train reproject, evaluate, reconstruct a gallery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=output_path, default="poseshape_demo", help="output folder (default ./poseshape_demo)")
    p.add_argument("--train", action="store_true", help="train a small model instead of loading the default")
    p.add_argument("--models-per-category", type=int, default=10)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--images", type=int, default=6, help="test images to reconstruct")
    p.add_argument("--seed", type=int, default=123, help="seed of the procedural shapes and views")
    p.add_argument("--device", default=None)
    return p


def run(args) -> int:
    run_demo(
        Path(args.out),
        train=args.train,
        models_per_category=args.models_per_category,
        views=args.views,
        n_images=args.images,
        seed=args.seed,
        device=args.device,
    )
    return 0


def run_demo(
    out: Path,
    train: bool = False,
    models_per_category: int = 10,
    views: int = 8,
    n_images: int = 6,
    seed: int = 123,
    device: str | None = None,
) -> dict:
    t0 = time.perf_counter()
    device = str(resolve_device(device))
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] rendering procedural data into {out / 'data'}", file=sys.stderr)
    paths = render_reproject_data(
        "procedural", out / "data", image_size=64, views=views, models_per_category=models_per_category, seed=seed
    )
    ckpt = default_checkpoint("reproject")
    if train or not ckpt.is_file():
        why = "--train" if train else f"no default model at {ckpt}"
        print(f"[2/4] training reproject briefly ({why})", file=sys.stderr)
        spec = get_method("reproject")
        cfg = spec.make_config(
            None,
            DEMO_TRAIN
            + [f"data.train={paths['train']}", f"data.natural={paths['natural']}", f"data.val={paths['test']}"],
        )
        Trainer(spec, cfg, out_dir=out / "run", seed=0, device=device, progress=True).fit()
        ckpt = out / "run" / "last.pt"
    else:
        print(f"[2/4] loading the shipped default model {ckpt}", file=sys.stderr)
    predictor = load_predictor(checkpoint=ckpt, method="reproject", device=device)
    print("[3/4] evaluating on held-out models", file=sys.stderr)
    res = evaluate_predictor(predictor, paths["test"], batch_size=32)
    print(format_table(results_rows(res), COLUMNS))
    write_report({"reproject": res}, out / "metrics", columns=COLUMNS)
    print(f"[4/4] reconstructing {n_images} test images into {out / 'recon'}", file=sys.stderr)
    gallery = reconstruct_gallery(predictor, paths["test"], out / "recon", n_images)
    print(f"gallery: {gallery}")
    print(f"metrics: {out / 'metrics.md'}")
    headline = cross_dataset_headline(ckpt)
    if headline:
        print(headline)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return res


#: The cross-dataset figures of the shipped reproject model (``bench/cross_dataset.py --headline``).
HEADLINE_FILE = "reproject_cross_dataset.json"
_HEADLINE_SETS = {
    "procedural": "held-out procedural shapes",
    "pascal3d": "PASCAL3D+ CAD (held out)",
    "objectnet3d": "ObjectNet3D CAD (held-out models)",
    "objectnet3d-unseen": "ObjectNet3D, categories never trained on",
    "samples": "the shared data's R2N2 / NMR renders",
}


def cross_dataset_headline(checkpoint: Path, path: Path | None = None) -> str | None:
    """The recorded cross-dataset figures of ``checkpoint`` as printable lines, or ``None``.

    Read from ``path`` (default: :data:`HEADLINE_FILE` next to the shipped model), written by
    ``bench/cross_dataset.py --headline``. ``None`` when there is no such file, it is not a
    valid record, or it was measured on another checkpoint (its SHA-256 differs): a model
    the demo just trained has no recorded figures.
    """
    import hashlib
    import json
    import math

    path = path or default_checkpoint("reproject").with_name(HEADLINE_FILE)
    try:
        head = json.loads(Path(path).read_text())
        if head.get("format") != "poseshape.cross_dataset/1" or not isinstance(head.get("sets"), dict):
            return None
        if head.get("checkpoint_sha256") != hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest():
            return None
        lines = [
            f"on data from other sources than its training data ({head['date']}, {head['machine']}; "
            f"`{head['command']}`), mask IoU / rotation MedErr, plain -> refined:"
        ]
        for key, what in _HEADLINE_SETS.items():
            s = head["sets"].get(key)
            if s is None:
                continue
            (i0, i1), (r0, r1) = s["mask_iou"], s["rot_mederr"]
            rot = "" if not (math.isfinite(r0) and math.isfinite(r1)) else f", {r0:.0f} -> {r1:.0f} deg"
            lines.append(f"  {what:42s} n={int(s['n']):3d}  IoU {i0:.2f} -> {i1:.2f}{rot}")
        return "\n".join(lines)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def reconstruct_gallery(predictor, data_root: Path, out: Path, n: int) -> Path:
    """Reconstruct ``n`` evenly spaced samples of a rendered set; write their files and a gallery."""
    import numpy as np
    from PIL import Image

    ds = ShardDataset(data_root)
    idx = np.linspace(0, len(ds) - 1, n).round().astype(int)
    rows = []
    for k, i in enumerate(idx):
        item = ds[int(i)]
        image, mask = item["image"], item["mask"]
        with warnings.catch_warnings():  # "no mask" is deliberate here
            warnings.simplefilter("ignore", PoseshapeWarning)
            if predictor.capabilities.needs_mask:  # a masked model: the crop around the mask, plain
                pred = predictor.reconstruct(image, mask, refine=False)
            else:  # the whole image: the renders are framed as in training
                pred = predictor.reconstruct(image)
        folder = out / f"{k:02d}_{item['category_name']}"
        files = write_prediction(pred, 0, folder, mask=mask, method=predictor.method)
        rows.append(
            [
                np.asarray(Image.open(files["overlay"]).convert("RGB")),
                np.asarray(Image.open(files["views"]).convert("RGB")),
            ]
        )
    return save_gallery(rows, out / "gallery.png")
