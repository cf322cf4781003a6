"""``posefree``'s predictor: image + silhouette -> R's mesh (642 vertices) + pseudo azimuth.

For each square crop (framed like the training renders, ``Capabilities.crop_margin``): R gives
the deformed icosphere in its own canonical frame (G's: up +Y, azimuth origin chosen by the GAN,
not the category's), Rpose gives the azimuth from the mask. The :class:`Prediction` carries that
mesh itself, the pose ``(R, t)`` of the NMR camera at that azimuth (elevation 30 deg, distance
2.732, ``X_cam = R X + t``) and the pinhole :class:`Camera` (``fov_deg``) of the ``S x S`` crop;
``silhouette`` is the soft rendering of the posed mesh, ``confidence`` its IoU with the mask.
``extras``: ``azimuth (B,)`` radians.

Rpose reads silhouettes, so a mask is needed (``needs_mask``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.checks import check_finite
from poseshape.core.errors import ShapeError
from poseshape.engine.prediction import Prediction
from poseshape.engine.predictor import Capabilities, Predictor
from poseshape.engine.refine.hypotheses import flip_hypotheses
from poseshape.geometry.camera import Camera
from poseshape.methods.posefree.config import PosefreeConfig
from poseshape.methods.posefree.model import azimuth_pose, camera_intrinsics, render
from poseshape.shapes.meshes import Mesh

__all__ = ["PosefreePredictor"]


class PosefreePredictor(Predictor):
    """Paper 002 at test time: ``predictor(images (B, 3, S', S') in [0, 1], masks (B, 1, S', S'))``.

    Other square sizes are resized to ``config.data.image_size``.
    """

    method = "posefree"
    capabilities = Capabilities(
        needs_mask=True, uses_mask=True, crop_margin=0.2, shape_kinds=("mesh",), camera="pinhole"
    )

    def __init__(self, config: PosefreeConfig, models: dict[str, nn.Module]):
        self.config = config
        self.models = models
        for m in models.values():
            m.eval()
        self.R = models["R"]
        self.Rpose = models["Rpose"]
        self.image_size = int(config.data.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.R.parameters()).device

    def _prepare(self, images: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ShapeError(f"images: expected shape (B, 3, S, S), got {tuple(getattr(images, 'shape', ()))}")
        if images.shape[-1] != images.shape[-2]:
            raise ShapeError(f"images: expected square crops (B, 3, S, S), got {tuple(images.shape)}")
        if masks is None:
            raise ShapeError("posefree needs masks (B, 1, S, S): its pose regressor reads the silhouette")
        if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0]:
            raise ShapeError(f"masks: expected ({images.shape[0]}, 1, S, S), got {tuple(masks.shape)}")
        check_finite(images, "images")
        S = self.image_size
        x = images.to(self.device, torch.float32)
        m = masks.to(self.device, torch.float32)
        if x.shape[-1] != S:
            x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        if m.shape[-1] != S:
            m = (F.interpolate(m, size=(S, S), mode="area") >= 0.5).float()
        return x, m

    @torch.no_grad()
    def predict(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        cfg = self.config
        x, m = self._prepare(images, masks)
        B = x.shape[0]
        verts = self.R(x)
        faces = self.R.decoder.faces
        az = self.Rpose(m)
        R, t = azimuth_pose(az, cfg.elevation_deg, cfg.distance)
        sil = render(
            verts,
            faces,
            az,
            elevation_deg=cfg.elevation_deg,
            distance=cfg.distance,
            fov_deg=cfg.fov_deg,
            image_size=self.image_size,
            sigma=cfg.sigma,
        )
        s, mm = sil > 0.5, m > 0.5
        iou = (s & mm).flatten(1).sum(1).float() / (s | mm).flatten(1).sum(1).clamp(min=1).float()
        K = camera_intrinsics(cfg.fov_deg, self.image_size).to(self.device).expand(B, 3, 3).clone()
        cats = list(cfg.data.categories)
        return Prediction(
            R=R.float(),
            hypotheses=flip_hypotheses(R.float()),
            t=t.float(),
            camera=Camera.pinhole(K, (self.image_size, self.image_size)),
            meshes=[Mesh(verts[i].float(), faces) for i in range(B)],
            silhouette=sil,
            category=[cats[0] if len(cats) == 1 else None] * B,
            confidence=iou,
            extras={"azimuth": az},
        )
