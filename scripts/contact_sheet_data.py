"""Contact sheet of the synthetic data engine: image | mask | stored voxels posed and reprojected.

Renders a small data set with the real pipeline (``poseshape.data.synth.render_dataset``, the
same code as ``poseshape data render``) into a temporary folder, reads it back through
``poseshape.data.dataset.ShardDataset`` and, for each sample, shows

1. the RGB image,
2. the stored mask,
3. the stored *aligned* voxel grid posed with the stored ``R, t, K`` and projected
   (``poseshape.render.voxel.project_voxels``, max mode, threshold 0.5), in white, with the
   stored mask's outline drawn over it in red, and the IoU of the two in the title.

    python scripts/contact_sheet_data.py                          # docs/img/data_samples.png
    python scripts/contact_sheet_data.py --meshes ../shared/data/pascal3d_cad --out /tmp/p3d.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from poseshape.data.dataset import ShardDataset
from poseshape.data.synth import SynthConfig, render_dataset
from poseshape.render.voxel import project_voxels

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CATEGORIES = ["chair", "table", "sofa", "car", "aeroplane", "monitor"]


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask (H, W)`` bool with a 4-neighbour outside the mask."""
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def categories_in_order(firsts: dict) -> list[str]:
    """The categories in the order the user listed them (DEFAULT_CATEGORIES first)."""
    order = {c: i for i, c in enumerate(DEFAULT_CATEGORIES)}
    return sorted(firsts, key=lambda c: (order.get(c, len(order)), c))


def contact_sheet(
    meshes: str,
    out: Path,
    categories,
    per_category: int = 2,
    size: int = 96,
    voxels: int = 32,
    seed: int = 0,
    domain: str = "render",
    per_row: int = 4,
) -> Path:
    """Render ``per_category`` samples of each category and save the sheet to ``out`` (PNG)."""
    cfg = SynthConfig(image_size=size, views=per_category, voxel_res=voxels, seed=seed, domain=domain)
    with tempfile.TemporaryDirectory() as tmp:
        render_dataset(meshes, tmp, cfg, categories=categories, models_per_category=1, progress=False, workers=1)
        ds = ShardDataset(tmp)
        # one model per category (the first), its views
        firsts = {}
        for m in ds.meta["models"]:
            firsts.setdefault(m["category"], m)
        picks = [firsts[c]["first"] + v for c in categories_in_order(firsts) for v in range(firsts[c]["views"])]
        items = [ds[int(np.searchsorted(ds.indices, g))] for g in picks]
    n = len(items)
    rows = (n + per_row - 1) // per_row
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(1.35 * 3 * per_row, 1.55 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, it in enumerate(items):
        r, c0 = divmod(k, per_row)
        c0 *= 3
        vox = it["voxels"][None]
        sil = (
            project_voxels(
                vox, it["R"][None], it["t"][None], it["K"][None], image_size=size, mode="max", n_samples=2 * size
            )[0, 0].numpy()
            > 0.5
        )
        mask = it["mask"][0].numpy() > 0.5
        iou = (sil & mask).sum() / max((sil | mask).sum(), 1)
        over = np.repeat(sil[..., None].astype(np.float32) * 0.85, 3, axis=-1)
        over[_outline(mask)] = (1.0, 0.1, 0.1)
        axes[r, c0].imshow(it["image"].permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[r, c0 + 1].imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, c0 + 2].imshow(over, interpolation="nearest")
        az, el = np.degrees(it["viewpoint"][:2].numpy())
        axes[r, c0].set_title(f"{it['category_name']} az {az:.0f} el {el:.0f}", fontsize=6.5, loc="left")
        axes[r, c0 + 1].set_title("mask", fontsize=6.5)
        axes[r, c0 + 2].set_title(f"voxels {voxels}$^3$ posed, IoU {iou:.2f}", fontsize=6.5)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.01, top=0.9, wspace=0.04, hspace=0.3)
    fig.suptitle(
        f"poseshape data render --meshes {Path(meshes).name} --size {size} --voxels {voxels} "
        f"--seed {seed}: image | mask | stored voxels posed with the stored pose (white) and mask "
        "outline (red)",
        fontsize=7.5,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meshes", default="procedural", help="'procedural' or a mesh folder")
    ap.add_argument("--categories", nargs="+", default=DEFAULT_CATEGORIES)
    ap.add_argument("--per-category", type=int, default=2, help="views of one model per category")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--voxels", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain", default="render", choices=("render", "natural"))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "data_samples.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    print(
        contact_sheet(
            args.meshes, args.out, args.categories, args.per_category, args.size, args.voxels, args.seed, args.domain
        )
    )


if __name__ == "__main__":
    main()
