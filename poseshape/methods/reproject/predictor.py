"""``reproject``'s predictor: image -> style and pose -> aligned shape -> pose-aware shape.

Its camera is weak perspective, declared as such: the posed frame (``docs/reproject.md``) is
a cube of side ``E = frame_extent`` object units covering the ``S x S`` crop, so crop pixel
``u = (S / E) (R X + t)[:2] + S / 2``: a :class:`~poseshape.geometry.camera.Camera` of scale
``S / E`` and principal point ``(S / 2, S / 2)``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import ShapeError
from poseshape.engine.prediction import Prediction
from poseshape.engine.predictor import Capabilities, Predictor
from poseshape.engine.refine import RefineConfig, refine_prediction
from poseshape.engine.refine.hypotheses import flip_hypotheses
from poseshape.geometry.camera import Camera
from poseshape.methods.reproject.config import ReprojectConfig
from poseshape.methods.reproject.frame import rt_to_pose
from poseshape.methods.reproject.train import model_images, regress_rt, style_code
from poseshape.render.voxel import max_projection, pose_voxels
from poseshape.shapes.voxels import warp_voxels

__all__ = ["ReprojectPredictor", "posed_frame_camera"]


def posed_frame_camera(batch: int, image_size: int, frame_extent: float) -> Camera:
    """The weak-perspective cameras of the posed frame over an ``S x S`` crop."""
    S, E = float(image_size), float(frame_extent)
    return Camera.weak_perspective(torch.full((batch,), S / E), torch.full((batch, 2), S / 2), (image_size, image_size))


class ReprojectPredictor(Predictor):
    """Paper 000 at test time (no silhouette needed): ``style -> decoder -> W^-1 -> max``.

    Args:
        config: the run's :class:`ReprojectConfig`.
        models: the trained networks (``style``, ``pose``, ``decoder``; others are ignored).

    ``predict(images (B, 3, H, W) in [0, 1], masks=None)`` returns a :class:`Prediction`
    with canonical ``voxels`` and ``posed_voxels`` ``(B, 1, Q, Q, Q)`` (``Q =
    config.voxel_res``), the posed frame's weak-perspective camera, ``silhouette``
    ``(B, 1, Q, Q)`` over the crop, and ``extras`` ``style (B, L)``, ``pose (B, 5)``,
    ``frame_extent``. Images (and ``masks (B, 1, H, W)`` in [0, 1]) of another size are resized
    to ``config.image_size``. ``masks`` are used only by a model trained with
    ``image_input="masked"`` (ours; it then needs them), which sees the object composited on grey.
    """

    method = "reproject"
    #: The data engine's reproject sets frame an object of unit size in ``frame_extent`` =
    #: 1.34 units at 2.5-3.5 units away, so its silhouette spans about 55-75 % of the image:
    #: crops around a mask get a 0.25 margin.
    capabilities = Capabilities(crop_margin=0.25, shape_kinds=("voxels",), camera="weak_perspective")

    def __init__(self, config: ReprojectConfig, models: dict[str, nn.Module]):
        self.config = config
        self.models = models
        self.image_size = int(config.image_size)
        if config.image_input == "masked":  # its networks see the object on grey: a mask is needed
            self.capabilities = dataclasses.replace(type(self).capabilities, needs_mask=True, uses_mask=True)
        for m in models.values():
            m.eval()

    @property
    def device(self) -> torch.device:
        return next(self.models["decoder"].parameters()).device

    @torch.no_grad()
    def predict(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        check_shape(images, "images", (3, None, None))
        if images.dim() != 4:
            raise ShapeError(f"images: expected shape (B, 3, H, W), got {tuple(images.shape)}")
        check_finite(images, "images")
        cfg = self.config
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            ).clamp(0, 1)
        if masks is not None and cfg.image_input == "masked":
            check_shape(masks, "masks", (1, None, None))
            m = masks.to(x.device, torch.float32)
            if m.shape[-2:] != x.shape[-2:]:
                m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
            masks = m.clamp(0, 1)
        x = model_images(x, masks, cfg)
        mu, _ = style_code(self.models, x, cfg)
        aligned = self.models["decoder"](mu)
        R, t = regress_rt(self.models, x, cfg)
        pose = rt_to_pose(R, t)
        posed = pose_voxels(aligned, R, t, out_size=aligned.shape[-1], extent=cfg.frame_extent)
        E = float(cfg.frame_extent)
        cam = posed_frame_camera(x.shape[0], self.image_size, E).to(x.device)
        return Prediction(
            R=R,
            hypotheses=flip_hypotheses(R.float()),
            t=t,
            camera=cam,
            voxels=aligned,
            posed_voxels=posed,
            silhouette=posed.amax(dim=2),
            extras={"style": mu, "pose": pose, "frame_extent": E},
        )

    def refine_config(self) -> RefineConfig:
        """A predicted shape's proportions are uncertain: refine its per-axis scale too."""
        return RefineConfig(optimize_aspect=True)

    def refine(self, pred: Prediction, i: int, mask: torch.Tensor, config: RefineConfig | None = None):
        """The generic refinement, with the scale kept as shape (paper 000: scale belongs to the
        shape, the posed frame is fixed): the refined camera scale ``s'`` becomes a style scale
        ``c = s' / s`` of the aligned grid (times the per-axis aspect), ``t`` is scaled by ``c``,
        and the posed grid (at least 64^3: a 30^3 re-posing thins legs and wings) and the
        silhouette are recomputed, so every file shows the refined pose."""
        one = pred.item(i).to("cpu")
        out, res = refine_prediction(one, 0, mask, config or self.refine_config())
        s0, s1 = float(one.camera.scale[0]), float(out.camera.scale[0])
        c = s1 / s0
        factors = torch.tensor(out.extras["refine_aspect"], dtype=torch.float32) * c
        aligned = one.voxels.float()
        if (factors - 1).abs().max() > 1e-6:
            aligned = warp_voxels(aligned, torch.diag(1.0 / factors)[None], torch.zeros(1, 3))
        E = float(one.extras.get("frame_extent", self.config.frame_extent))
        t = out.t.float() * c
        t[:, 2] = 0.0
        P = max(one.posed_voxels.shape[-1] if one.posed_voxels is not None else 0, 64)
        posed = pose_voxels(aligned, out.R.float(), t, out_size=P, extent=E)
        extras = dict(out.extras)
        extras.pop("pose", None)  # the network's raw pose vector no longer describes (R, t)
        extras.update(refine_scale=c, refine_aspect=factors.tolist())
        return out.replace(
            t=t, camera=one.camera, voxels=aligned, posed_voxels=posed, silhouette=max_projection(posed), extras=extras
        ), res
