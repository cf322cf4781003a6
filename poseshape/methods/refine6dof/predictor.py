"""``refine6dof``'s predictor: image -> class + 6-DoF pose -> posed medoid (-> online refinement).

The method's output is a *pinhole* 6-DoF pose ``(R, t)`` (object units, ``X_cam = R X + t``)
with its :class:`~poseshape.geometry.camera.Camera` (``K`` from ``config.fov_deg`` for the
``S x S`` input: the whole uncropped camera image, as in §4.1), and the **medoid mesh** of the
predicted cluster as the canonical shape (``Prediction.meshes``; its voxelisation from the
checkpoint's medoid bank as ``voxels``). ``category`` / ``model_id`` name the medoid,
``confidence`` is the class probability. ``extras``:

======================  ====================================================================
``class_probs``         ``(B, C)`` softmax of the class branch; ``label`` ``(B,)`` its argmax
``medoid_names``        list of ``B`` ``"category/model_id"``
``posed_voxels``        (the field) the weak-perspective approximation of the pinhole pose
                        about the object's centre (:func:`posed_from_pinhole`), in a posed
                        frame of side ``frame_extent = 2 posed_depth tan(fov / 2)``
``sigma``               ``(B,)`` that approximation's scale
``encoder_R/_t``        the encoder's pose before online refinement (only when refined)
``online_loss``         ``(steps + 1, B)`` silhouette loss curve (only when refined)
======================  ====================================================================

``silhouette`` is the exact z-buffer raster of the medoid under the pinhole pose at ``S x S``.
With masks (``(B, 1, S, S)``) and ``predict_online`` (default) the pose is refined online
(:func:`.online.online_refine`, paper §4.2) first.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.engine.prediction import Prediction
from poseshape.engine.predictor import Capabilities, Predictor
from poseshape.engine.refine import RefineConfig, refine_prediction
from poseshape.engine.refine.hypotheses import flip_hypotheses
from poseshape.geometry.camera import Camera, intrinsics_from_fov
from poseshape.methods.refine6dof.config import Refine6DofConfig
from poseshape.methods.refine6dof.data import network_input
from poseshape.methods.refine6dof.model import MedoidBank
from poseshape.methods.refine6dof.online import hard_silhouettes, online_refine
from poseshape.shapes.voxels import warp_voxels

__all__ = ["Refine6DofPredictor", "posed_from_pinhole"]


def posed_from_pinhole(
    aligned: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    image_size: int,
    frame_extent: float,
    posed_depth: float,
    out_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weak-perspective posed grids of aligned shapes under pinhole poses (module docstring).

    Args:
        aligned: ``(B, 1, Q, Q, Q)`` object-frame occupancy over the unit cube.
        R: ``(B, 3, 3)``; t: ``(B, 3)`` object units (``t_z > 0``); K: ``(B, 3, 3)`` pixels of
            the ``S x S`` image.
        frame_extent: ``E``; posed_depth: reference depth; out_size: ``P`` (default ``Q``).

    Returns:
        ``(posed (B, 1, P, P, P), c (B, 3) posed-frame centre, sigma (B,))``.
    """
    Q = aligned.shape[-1]
    P = int(out_size or Q)
    S = float(image_size)
    E = float(frame_extent)
    z = t[:, 2].clamp_min(1e-6)
    uv = (K @ t.unsqueeze(-1)).squeeze(-1)
    u0, v0 = uv[:, 0] / uv[:, 2].clamp_min(1e-9), uv[:, 1] / uv[:, 2].clamp_min(1e-9)
    c = torch.stack([(u0 - S / 2) * E / S, (v0 - S / 2) * E / S, torch.zeros_like(u0)], -1)
    sigma = posed_depth / z
    # posed point p = E x (x: the posed grid's unit-cube coordinate) holds the aligned shape at
    # X = R^T (p - c) / sigma = M^T (x - c / E) with M = (E / sigma) R: the shapes layer's warp
    M = (E / sigma)[:, None, None].to(aligned.dtype) * R.to(aligned.dtype)
    posed = warp_voxels(aligned, M, c.to(aligned.dtype) / E, out_size=P)
    return posed, c, sigma


class Refine6DofPredictor(Predictor):
    """Paper 003 at test time. ``predictor(images (B, 3, S', S') in [0, 1], masks=None)``.

    Images (and masks) of another square size are resized to ``config.image_size``; they must
    be the *whole* camera image (the translation is predicted in it), so ``full_frame`` tells
    callers not to crop around the mask. ``online`` (default ``config.predict_online``) runs
    the online refinement when masks are given. See the module docstring for the outputs.
    """

    method = "refine6dof"
    #: The encoder sees the uncropped camera image (§4.1): callers do not crop around the mask.
    capabilities = Capabilities(
        uses_mask=True, full_frame=True, crop_margin=0.0, shape_kinds=("mesh", "voxels"), camera="pinhole"
    )

    def __init__(self, config: Refine6DofConfig, models: dict[str, nn.Module]):
        self.config = config
        self.models = models
        self.encoder = models["encoder"]
        self.bank: MedoidBank = models["medoids"]
        self.image_size = int(config.image_size)
        self.online = bool(config.predict_online)
        for m in models.values():
            m.eval()
        if self.bank.empty:
            raise PoseshapeError(
                "refine6dof: the checkpoint has no medoids (its 'clusters' stage did not run); "
                "use a checkpoint written after that stage"
            )
        if len(self.bank) != self.encoder.num_classes:
            raise PoseshapeError(
                f"refine6dof: the checkpoint has {len(self.bank)} medoids but the class branch "
                f"has {self.encoder.num_classes} outputs"
            )

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def frame_extent(self) -> float:
        return 2.0 * float(self.config.posed_depth) * math.tan(math.radians(self.config.fov_deg) / 2)

    def intrinsics(self, batch: int) -> torch.Tensor:
        """``(B, 3, 3)`` pinhole intrinsics of the ``S x S`` input (``config.fov_deg``)."""
        K = intrinsics_from_fov(math.radians(self.config.fov_deg), self.image_size).float()
        return K.to(self.device).expand(batch, 3, 3).clone()

    def _prepare(self, images: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_shape(images, "images", (3, None, None))
        if images.dim() != 4:
            raise ShapeError(f"images: expected shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-1] != images.shape[-2]:
            raise ShapeError(f"images: expected square camera images (B, 3, S, S), got {tuple(images.shape)}")
        check_finite(images, "images")
        S = self.image_size
        x = images.to(self.device, torch.float32)
        if x.shape[-1] != S:
            x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        m = None
        if masks is not None:
            if (
                not isinstance(masks, torch.Tensor)
                or masks.dim() != 4
                or masks.shape[1] != 1
                or masks.shape[0] != images.shape[0]
                or masks.shape[-2:] != images.shape[-2:]
            ):
                raise ShapeError(
                    f"masks: expected shape ({images.shape[0]}, 1, {images.shape[-2]}, "
                    f"{images.shape[-1]}), got {tuple(getattr(masks, 'shape', ()))}"
                )
            check_finite(masks, "masks")
            m = masks.to(self.device, torch.float32)
            if m.shape[-1] != S:
                m = F.interpolate(m, size=(S, S), mode="area")
        return x, m

    @torch.no_grad()
    def predict(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        cfg = self.config
        x, m = self._prepare(images, masks)
        B = x.shape[0]
        inp = network_input(x, m, cfg.input)
        K = self.intrinsics(B)
        out = self.encoder(inp)
        probs = out["logits"].softmax(1)
        label = probs.argmax(1)
        R, t = out["R"], out["t"]
        extras: dict = {}
        if m is not None and self.online and cfg.online_steps > 0:
            res = online_refine(
                self.encoder,
                self.bank,
                inp,
                m,
                K,
                steps=cfg.online_steps,
                batch=cfg.online_batch,
                lr=cfg.online_lr,
                render=cfg.online_render,
                sigma=cfg.online_sigma,
                loss=cfg.online_loss,
                render_size=cfg.render_size or None,
                labels=label,
            )
            extras.update(encoder_R=R, encoder_t=t, online_loss=res.losses)
            R, t = res.R, res.t
        aligned = torch.stack([self.bank.voxel_grid(int(c)) for c in label])[:, None].to(x.device)
        E = self.frame_extent
        posed, _, sigma = posed_from_pinhole(aligned, R, t, K, self.image_size, E, cfg.posed_depth)
        sil = hard_silhouettes(self.bank, label, R, t, K, self.image_size)
        names = [self.bank.name(int(k)) for k in label]
        extras.update(class_probs=probs, label=label, sigma=sigma, medoid_names=names, frame_extent=E)
        return Prediction(
            R=R,
            hypotheses=flip_hypotheses(R.float()),
            t=t,
            camera=Camera.pinhole(K, (self.image_size, self.image_size)),
            meshes=[self.bank.mesh(int(k)) for k in label],
            voxels=aligned,
            posed_voxels=posed,
            silhouette=sil,
            category=[n.split("/")[0] for n in names],
            model_id=names,
            confidence=probs.gather(1, label[:, None])[:, 0],
            extras=extras,
        )

    def refine_config(self) -> RefineConfig:
        """The medoid's shape stays as it is (the scene places medoids): pose only."""
        return RefineConfig(optimize_aspect=False, optimize_verts=False)

    def refine(self, pred: Prediction, i: int, mask: torch.Tensor, config: RefineConfig | None = None):
        """The generic multi-start refinement of the medoid's pinhole pose (``reconstruct
        --refine``), pose only; the posed grid and the silhouette are recomputed for it."""
        cfg = replace(config or self.refine_config(), optimize_aspect=False, optimize_verts=False)
        out, res = refine_prediction(pred, i, mask, cfg)
        S = self.image_size
        K = out.camera.resize(S).K.float()
        R, t = out.R.float(), out.t.float()
        posed, _, sigma = posed_from_pinhole(
            out.voxels.float(), R, t, K, S, out.extras["frame_extent"], self.config.posed_depth
        )
        sil = hard_silhouettes(self.bank, out.extras["label"].cpu(), R, t, K, S)
        extras = dict(out.extras)
        extras["sigma"] = sigma
        return out.replace(posed_voxels=posed, silhouette=sil, extras=extras), res
