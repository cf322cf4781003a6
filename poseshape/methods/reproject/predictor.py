"""``reproject``'s predictor: image -> style and pose -> aligned shape -> pose-aware shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import ShapeError
from poseshape.engine.predict import Prediction, Predictor
from poseshape.methods.reproject.config import ReprojectConfig
from poseshape.methods.reproject.frame import pose_to_rt, posed_voxels
from poseshape.methods.reproject.train import regress_pose, style_code

__all__ = ["ReprojectPredictor"]


class ReprojectPredictor(Predictor):
    """Paper 000 at test time (no silhouette needed): ``style -> decoder -> W^-1 -> max``.

    Args:
        config: the run's :class:`ReprojectConfig`.
        models: the trained networks (``style``, ``pose``, ``decoder``; others are ignored).

    ``predictor(images (B, 3, H, W) in [0, 1], masks=None)`` returns a
    :class:`poseshape.engine.predict.Prediction` whose ``aligned`` and ``posed`` grids are
    ``(B, 1, Q, Q, Q)`` (``Q = config.voxel_res``), ``silhouette`` ``(B, 1, Q, Q)`` covers the
    input crop, and ``extras`` holds ``style (B, L)`` and ``pose (B, 5)``. Images of another
    size are resized to ``config.image_size``; ``masks`` are not used by this method.
    """

    method = "reproject"
    #: Margin (fraction of the mask box's side, each side) of the square crop that
    #: ``poseshape reconstruct`` cuts around a mask: the data engine's reproject sets frame an
    #: object of unit size in ``frame_extent`` = 1.34 units at 2.5-3.5 units away, so its
    #: silhouette spans about 55-75 % of the image.
    crop_margin = 0.25

    def __init__(self, config: ReprojectConfig, models: dict[str, nn.Module]):
        self.config = config
        self.models = models
        self.image_size = int(config.image_size)
        for m in models.values():
            m.eval()

    @property
    def device(self) -> torch.device:
        return next(self.models["decoder"].parameters()).device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        check_shape(images, "images", (3, None, None))
        if images.dim() != 4:
            raise ShapeError(f"images: expected shape (B, 3, H, W), got {tuple(images.shape)}")
        check_finite(images, "images")
        cfg = self.config
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False).clamp(0, 1)
        mu, _ = style_code(self.models, x, cfg)
        aligned = self.models["decoder"](mu)
        pose = regress_pose(self.models, x, cfg.twist_gain)
        posed = posed_voxels(aligned, pose, cfg.frame_extent)
        R, t = pose_to_rt(pose)
        return Prediction(aligned=aligned, posed=posed, R=R, t=t, silhouette=posed.amax(dim=2),
                          frame_extent=float(cfg.frame_extent), extras={"style": mu, "pose": pose})
