"""``selfconsistency``'s predictor: image -> aligned 32^3 voxels + (azimuth, elevation) -> posed.

Its camera is the training frame, a true pinhole: intrinsics ``K`` of a ``fov_deg`` field
of view over the ``S x S`` input (``S = image_size``, 64) and the fixed translation ``t =
(0, 0, distance)`` (object units); ``R`` comes from the predicted azimuth and elevation
(no in-plane rotation). The Prediction's ``silhouette`` is the absorption rendering
``1 - q_pen`` of the aligned voxels through that camera (the paper's ``P(y, p)``), and
``posed_voxels`` is eq. 7's 48^3 pose-aware grid (camera axes, no translation, side 1.5).
"""

from __future__ import annotations

import torch
from torch import nn

from poseshape.core.checks import check_finite
from poseshape.core.errors import ShapeError
from poseshape.engine.prediction import Prediction
from poseshape.engine.predictor import Capabilities, Predictor
from poseshape.engine.refine import RefineConfig
from poseshape.engine.refine.hypotheses import flip_hypotheses
from poseshape.geometry.camera import Camera
from poseshape.methods.selfconsistency.config import SelfConsistencyConfig
from poseshape.methods.selfconsistency.data import resize_image
from poseshape.methods.selfconsistency.frame import intrinsics, pose_to_rt, posed_grid
from poseshape.methods.selfconsistency.pose_search import binned_azimuth
from poseshape.methods.selfconsistency.train import forward
from poseshape.render.voxel import project_voxels

__all__ = ["SelfConsistencyPredictor"]


class SelfConsistencyPredictor(Predictor):
    """Paper 001 at test time (no mask needed).

    ``predict(images (B, 3, H, W) in [0, 1], masks=None)`` returns a :class:`Prediction`
    with canonical ``voxels (B, 1, 32, 32, 32)``, ``R (B, 3, 3)``, ``t (B, 3)`` = (0, 0,
    distance), a pinhole :class:`Camera` over the ``S x S`` input, ``posed_voxels (B, 1, 48,
    48, 48)``, ``silhouette (B, 1, S, S)`` and ``extras``: ``pose (B, 2)`` (azimuth,
    elevation, radians), ``mask (B, 1, 48, 48)`` (the mask decoder), ``frame_extent`` (1.5).
    ``hypotheses (B, 4, 3, 3)``: a binned pose head's 4 best azimuth bins, else the flips of
    ``R`` (:func:`~poseshape.engine.refine.hypotheses.flip_hypotheses`).
    Square images of another size are resized to ``S`` (the camera then refers to the
    resized ``S x S`` image, i.e. the same field of view); non-square images are refused.
    ``masks``, when given, must not be empty (the method does not read them otherwise).
    """

    method = "selfconsistency"
    #: The fixed frame (30 deg field of view, distance 2.732) shows a unit object over about
    #: 60-75 % of the image side: crops around a mask get a 0.2 margin.
    capabilities = Capabilities(crop_margin=0.2, shape_kinds=("voxels",), camera="pinhole")

    def __init__(self, config: SelfConsistencyConfig, models: dict[str, nn.Module]):
        self.config = config
        self.models = models
        self.image_size = int(config.image_size)
        for m in models.values():
            m.eval()

    @property
    def device(self) -> torch.device:
        return next(self.models["encoder"].parameters()).device

    def refine_config(self) -> RefineConfig:
        """A *local* refinement: 4 starts within 15 deg of the prediction, without the further
        hypotheses, and a prior ``4 |w|^2`` on each start's rotation residual (radians). The
        head's pose is usually right (median 10 deg on validation) and the marching-cubes mesh of
        its 32^3 grid can fit the mask better at a wrong pose, so the engine's wide multi-start
        search moved right poses away. Chosen on validation renders (``python
        bench/refine_policy.py``, bench/RESULTS.md): rotation median after refinement 23.9 (engine
        default) -> 15.4 (local) -> 6.3 deg (local + prior), share > 30 deg 0.42 -> 0.30 -> 0.17,
        mask IoU 0.727 -> 0.717 -> 0.693, 0.61 -> 0.34 s."""
        return RefineConfig(starts=4, perturb_deg=15.0, use_hypotheses=False, rotation_weight=4.0)

    def camera(self, batch: int) -> Camera:
        """The ``batch`` pinhole cameras of the training frame over the ``S x S`` input."""
        K = intrinsics(self.image_size, self.config.fov_deg, batch)
        return Camera.pinhole(K, (self.image_size, self.image_size))

    def _hypotheses(self, out: dict[str, torch.Tensor], R: torch.Tensor) -> torch.Tensor:
        """``(B, 4, 3, 3)``, best first: a binned head's 4 most likely azimuth bins (each with
        its residual and the predicted elevation), else the flip hypotheses of ``R``."""
        bins = int(getattr(self.models["pose_head"], "bins", 0))
        if bins < 4:
            return flip_hypotheses(R.float())
        parts = out["pose_parts"]
        top = parts["logits"].topk(4, dim=1).indices  # (B, 4); the first is the argmax
        az = binned_azimuth(top.flatten(), parts["residual"].gather(1, top).flatten(), bins)
        el = parts["elevation"].repeat_interleave(4)
        Rk, _ = pose_to_rt(torch.stack([az, el], 1), self.config.distance)
        return Rk.view(-1, 4, 3, 3).float()

    @torch.no_grad()
    def predict(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ShapeError(f"images: expected shape (B, 3, H, W), got {tuple(getattr(images, 'shape', ()))}")
        if images.shape[0] < 1:
            raise ShapeError("images: empty batch")
        if images.shape[2] != images.shape[3]:
            raise ShapeError(
                f"images: expected square crops (B, 3, S, S) of the object, got {tuple(images.shape)}; "
                "crop around the object first (poseshape reconstruct does)"
            )
        check_finite(images, "images")
        if masks is not None:
            if not isinstance(masks, torch.Tensor) or masks.dim() != 4 or masks.shape[0] != images.shape[0]:
                raise ShapeError(f"masks: expected shape (B, 1, H, W), got {tuple(getattr(masks, 'shape', ()))}")
            empty = (masks.flatten(1) > 0.5).sum(1) == 0
            if empty.any():
                raise ShapeError(f"masks: item(s) {empty.nonzero().flatten().tolist()} are empty (no object pixel)")
        cfg = self.config
        x = resize_image(images.to(self.device, torch.float32), self.image_size)
        out = forward(self.models, x)
        B = x.shape[0]
        R, t = pose_to_rt(out["pose"], cfg.distance)
        cam = self.camera(B).to(x.device)
        aligned = out["voxels"]
        sil = project_voxels(
            aligned, R, t, cam.K, image_size=self.image_size, mode="absorption", n_samples=cfg.n_samples
        )
        return Prediction(
            R=R,
            hypotheses=self._hypotheses(out, R),
            t=t,
            camera=cam,
            voxels=aligned,
            posed_voxels=posed_grid(aligned, R, cfg.posed_res),
            silhouette=sil,
            extras={"pose": out["pose"], "mask": out["mask"], "frame_extent": cfg.posed_res / cfg.voxel_res},
        )
