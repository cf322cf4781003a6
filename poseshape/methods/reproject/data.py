"""Data of ``reproject``: rendered (image, shape, pose) pairs and silhouette-only images.

Paper 000 trains stages 1-2 on rendered image-shape-pose triples and fine-tunes on natural
images that only carry a silhouette, mixing the two 1:1 in every batch (Appendix II). Here both
come from the data engine (:mod:`poseshape.data.synth`): a ``render``-domain set of the train
models, and a ``natural``-domain set of held-out models whose masks alone are used; a third
natural-domain set of other held-out models is the test set (it keeps its pose and shape
for evaluation). :func:`render_reproject_data` makes the three with the camera model the
method assumes (fixed field of view, distances 2.5-3.5, PASCAL3D+-like viewpoints, a small
image-plane shift), see :mod:`.frame`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from poseshape.core.errors import PoseshapeError
from poseshape.data.dataset import ShardDataset
from poseshape.data.synth import PoseConfig, SynthConfig, render_dataset
from poseshape.methods.reproject.config import ReprojectConfig
from poseshape.methods.reproject.frame import aligned_target, pinhole_to_posed

__all__ = [
    "MixedSamples",
    "RenderedSamples",
    "SilhouetteSamples",
    "render_reproject_data",
    "reproject_synth_config",
]


def _resize_image(img: torch.Tensor, size: int) -> torch.Tensor:
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(
        0, 1
    )


def _mask_to_frame(mask: torch.Tensor, res: int) -> torch.Tensor:
    """``(1, S, S)`` {0, 1} mask -> ``(1, Q, Q)`` coverage fraction in [0, 1] (area average)."""
    return F.interpolate(mask[None].float(), size=(res, res), mode="area")[0]


def _open(path: str, what: str, **kw) -> ShardDataset:
    if not path:
        raise PoseshapeError(
            f"reproject: no {what} data set given; render one with `poseshape data render` "
            f"(or poseshape.methods.reproject.data.render_reproject_data) and pass "
            f"--set data.{what}=FOLDER"
        )
    if not (Path(path) / "index.json").is_file():
        raise PoseshapeError(
            f"reproject: data.{what}={path} is not a rendered data set "
            "(no index.json); make it with `poseshape data render`"
        )
    return ShardDataset(path, **kw)


class RenderedSamples(Dataset):
    """Rendered samples with the targets of paper 000.

    Item: ``image (3, S, S)`` in [0, 1] (``S = config.image_size``), ``mask (1, Q, Q)``
    coverage in [0, 1] over the crop (``Q = config.voxel_res``), ``pose (5,)`` posed-frame
    pose, ``sigma ()`` style scale, ``voxels (1, Q, Q, Q)`` unit-cube ground truth and
    ``aligned (1, Q, Q, Q)`` the scaled {0, 1} target, ``category ()``; with
    ``config.image_input == "masked"`` also ``image_mask (1, S, S)`` in [0, 1], the object's
    mask at the image's size (``train.model_images`` composites the image with it).
    """

    def __init__(self, root: str | Path, config: ReprojectConfig, limit: int | None = None, what: str = "train"):
        self.ds = _open(str(root), what)
        self.cfg = config
        self.categories = self.ds.categories
        n = len(self.ds)
        self.n = n if limit is None else min(n, int(limit))
        if self.n == 0:
            raise PoseshapeError(f"reproject: data set {root} is empty")
        if "voxel_res" in self.ds.meta and not self.ds.meta.get("voxel_res"):
            raise PoseshapeError(f"reproject: {root} has no voxels; render it with --voxels {config.voxel_res}")
        # a limit takes samples spread evenly over the set (its models and categories), not the
        # first ones (the views of its first few models)
        self._index = None if self.n == n else np.linspace(0, n - 1, self.n).round().astype(np.int64)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.n <= i < self.n:
            raise IndexError(f"sample {i} out of range for {self.n} samples")
        it = self.ds[int(self._index[i]) if self._index is not None else i]
        Q = self.cfg.voxel_res
        S_data = it["image"].shape[-1]
        pose, sigma = pinhole_to_posed(
            it["R"][None].double(), it["t"][None].double(), it["K"][None].double(), S_data, self.cfg.frame_extent
        )
        vox = it["voxels"][None]
        if vox.shape[-1] != Q:
            vox = (F.interpolate(vox, size=(Q, Q, Q), mode="trilinear", align_corners=False) > 0.5).float()
        aligned = aligned_target(vox, sigma.float())
        return _with_image_mask(it, self.cfg) | {
            "mask": _mask_to_frame(it["mask"], Q),
            "pose": pose[0].float(),
            "sigma": sigma[0].float(),
            "voxels": vox[0],
            "aligned": aligned[0],
            "category": it["category"],
        }


def _with_image_mask(it: dict[str, Any], cfg: ReprojectConfig) -> dict[str, Any]:
    """``image (3, S, S)`` and, for a masked model, ``image_mask (1, S, S)`` of a data-engine item."""
    out = {"image": _resize_image(it["image"], cfg.image_size)}
    if cfg.image_input == "masked":
        out["image_mask"] = _resize_image(it["mask"].float(), cfg.image_size)
    return out


class SilhouetteSamples(Dataset):
    """Silhouette-only samples: ``image (3, S, S)`` and ``mask (1, Q, Q)`` (nothing else is read),
    plus ``image_mask (1, S, S)`` for a masked model (see :class:`RenderedSamples`)."""

    def __init__(self, root: str | Path, config: ReprojectConfig, what: str = "natural"):
        self.ds = _open(str(root), what, keys=("image", "mask"))
        self.cfg = config
        if len(self.ds) == 0:
            raise PoseshapeError(f"reproject: data set {root} is empty")

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.ds[i]
        return _with_image_mask(it, self.cfg) | {"mask": _mask_to_frame(it["mask"], self.cfg.voxel_res)}


class MixedSamples(Dataset):
    """Paper 000's fine-tuning batches: each item pairs one rendered and one silhouette sample.

    A batch of ``b`` items therefore holds ``b`` rendered and ``b`` natural images (1:1, as in
    Appendix II). The epoch runs over the rendered set; natural sample ``k`` of item ``i`` is
    ``perm[i % n_natural]`` for a fixed permutation.
    """

    def __init__(self, rendered: Dataset, natural: Dataset, seed: int = 0):
        self.rendered, self.natural = rendered, natural
        self.perm = np.random.default_rng(seed).permutation(len(natural))

    def __len__(self) -> int:
        return len(self.rendered)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"rendered": self.rendered[i], "natural": self.natural[int(self.perm[i % len(self.perm)])]}


def reproject_synth_config(
    image_size: int = 64, views: int = 24, voxel_res: int = 30, domain: str = "render", seed: int = 0
):
    """The data-engine settings ``reproject`` assumes (see :mod:`.frame` and :func:`.config.default_frame_extent`)."""
    return SynthConfig(
        image_size=image_size,
        views=views,
        voxel_res=voxel_res,
        framing="fixed",
        domain=domain,
        seed=seed,
        pose=PoseConfig(distribution="pascal", distance=(2.5, 3.5), fov_deg=30.0, translation_jitter=0.1),
    )


def render_reproject_data(
    meshes: Any,
    out: str | Path,
    categories: Sequence[str] | None = ("aeroplane", "car", "chair"),
    image_size: int = 64,
    views: int = 24,
    test_views: int | None = None,
    models_per_category: int | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    train_domain: str = "render",
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> dict[str, Path]:
    """Render the three sets of the reproject experiments into ``out/{train,natural,test}``.

    ``train``: the train-split models, clean renders (stages 1-2, rendered half of 3); pass
    ``train_domain="natural"`` to render them with the natural-like appearance instead (the
    shipped model does: a regressor trained on clean renders alone reached 5 deg rotation
    MedErr on its training images but 66 deg on natural-like held-out ones).
    ``natural``: the val-split models, natural-like domain (only its masks are used).
    ``test``: the test-split models, natural-like domain, with pose and shape for evaluation.
    ``split_fractions``: the model-level (train, natural, test) split of each category
    (:meth:`poseshape.data.collections.MeshCollection.split_indices`); small real collections
    (8 PASCAL3D+ aeroplanes) want e.g. ``(0.6, 0.2, 0.2)`` so that the test set has more than
    one model per category.
    Reruns resume (the data engine verifies finished shards).

    Returns:
        ``{"train": path, "natural": path, "test": path}``.
    """
    out = Path(out)
    plan = {
        "train": ("train", train_domain, views),
        "natural": ("val", "natural", views),
        "test": ("test", "natural", test_views or views),
    }
    paths = {}
    for name, (split, domain, nv) in plan.items():
        cfg = reproject_synth_config(image_size, nv, 30, domain, seed=seed)
        render_dataset(
            meshes,
            out / name,
            cfg,
            workers=workers,
            categories=list(categories) if categories else None,
            split=split,
            models_per_category=models_per_category,
            progress=progress,
            split_fractions=split_fractions,
        )
        paths[name] = out / name
    return paths
