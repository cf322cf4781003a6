"""``retrieval``'s predictor: image -> embeddings -> nearest CAD model + 6-DoF pose.

For each image (a square crop around the object, framed like the training renders:
``Capabilities.crop_margin``): the regression network gives the shape and pose embeddings
and the translation cell scores; the nearest database model (exact L2 search on the shape
embeddings) is the retrieved shape, the frozen stage-I heads decode the rotation (best
anchor + its residual) and the translation head the translation (best cell + residual).
The :class:`Prediction` carries the *retrieved CAD mesh itself* as its canonical mesh (and
its 32^3 occupancy as ``voxels``), the pinhole pose ``(R, t)`` (object units, ``X_cam = R X +
t``) with :class:`Camera` ``K`` from ``config.fov_deg`` for the ``S x S`` crop, ``model_id``
``"category/model_id"``, ``category`` and ``confidence`` (softmax of the negative distances
over the database, at the retrieved model). ``extras``: ``distance (B,)`` to the retrieved
model, ``database_index (B,)``, ``anchor_probs (B, A)``, ``topk_index / topk_distance (B, k)``.

Refinement (``reconstruct --refine``) is the engine's generic pose refinement of the posed
mesh against the mask (the retrieved shape is kept).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.checks import check_finite
from poseshape.core.errors import CheckpointError, PoseshapeError, ShapeError
from poseshape.engine.prediction import Prediction
from poseshape.engine.predictor import Capabilities, Predictor
from poseshape.engine.refine import RefineConfig, refine_prediction
from poseshape.geometry.camera import Camera, intrinsics_from_fov
from poseshape.geometry.rotations import quaternion_to_matrix
from poseshape.methods.retrieval.config import RetrievalConfig
from poseshape.methods.retrieval.database import ExactIndex, ModelBank, load_database, network_fingerprint

__all__ = ["RetrievalPredictor"]


class RetrievalPredictor(Predictor):
    """Paper 004 at test time: ``predictor(images (B, 3, S', S') in [0, 1], masks=None)``.

    Images of another square size are resized to ``config.data.image_size``. ``topk``: how
    many neighbours ``extras`` lists (default 5).
    """

    method = "retrieval"
    capabilities = Capabilities(
        uses_mask=False, full_frame=False, crop_margin=0.25, shape_kinds=("mesh", "voxels"), camera="pinhole"
    )

    def __init__(self, config: RetrievalConfig, models: dict[str, nn.Module], topk: int = 5):
        self.config = config
        self.models = models
        for m in models.values():
            m.eval()
        self.embed = models["embed"]
        self.heads = models["heads"]
        self.regressor = models["regressor"]
        self.image_size = int(config.data.image_size)
        self.topk = int(topk)
        #: rotation hypotheses per image (``Prediction.hypotheses``): the best-scoring anchors
        self.num_hypotheses = 4
        self.fingerprint = network_fingerprint(self.embed)
        bank: ModelBank = models["bank"]
        if config.database:
            bank, _ = load_database(config.database)
            bank = bank.to(self.device)
        self.use_bank(bank, where="the checkpoint" if not config.database else config.database)

    @property
    def device(self) -> torch.device:
        return next(self.regressor.parameters()).device

    def use_bank(self, bank: ModelBank, where: str = "the database") -> None:
        """Search ``bank`` from now on.

        Raises:
            PoseshapeError: it is empty or not indexed.
            CheckpointError: its embeddings come from another embedding network.
        """
        if bank.empty:
            raise PoseshapeError(f"retrieval: {where} holds no models (an empty database)")
        if not bank.indexed:
            raise PoseshapeError(f"retrieval: {where} has no embeddings (its 'index' stage did not run)")
        if bank.fingerprint_hex != self.fingerprint:
            raise CheckpointError(
                f"retrieval: {where} was built with another embedding network (fingerprint "
                f"{bank.fingerprint_hex[:12]}..., this model's is {self.fingerprint[:12]}...); rebuild it "
                "with `poseshape retrieval index --checkpoint <this model>`"
            )
        self.bank = bank.to(self.device)
        self.index = ExactIndex(self.bank.embeddings)

    def use_database(self, path) -> dict:
        """Load a database file (``poseshape retrieval index``) and search it; returns its info."""
        bank, info = load_database(path)
        self.use_bank(bank, where=str(path))
        return info

    def intrinsics(self, batch: int) -> torch.Tensor:
        """``(B, 3, 3)`` pinhole intrinsics of the ``S x S`` input (``config.fov_deg``)."""
        K = intrinsics_from_fov(math.radians(self.config.fov_deg), self.image_size).float()
        return K.to(self.device).expand(batch, 3, 3).clone()

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ShapeError(f"images: expected shape (B, 3, S, S), got {tuple(getattr(images, 'shape', ()))}")
        if images.shape[-1] != images.shape[-2]:
            raise ShapeError(f"images: expected square crops (B, 3, S, S), got {tuple(images.shape)}")
        check_finite(images, "images")
        S = self.image_size
        x = images.to(self.device, torch.float32)
        if x.shape[-1] != S:
            x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return x

    @torch.no_grad()
    def embeddings(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The regression network's outputs for ``images`` (see :class:`.model.ImageRegressor`)."""
        return self.regressor(self._prepare(images))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        out = self.embeddings(images)
        B = out["shape"].shape[0]
        dist, idx = self.index.search(out["shape"], max(1, self.topk))
        heads_out = self.heads(out["shape"], out["pose"])
        q = self.heads.rotation(heads_out)
        R = quaternion_to_matrix(q.double()).float()
        # the best anchors' rotations (the first is R): refinement starts from each
        hyp = quaternion_to_matrix(self.heads.rotation_topk(heads_out, self.num_hypotheses).double()).float()
        t = self.regressor.translation(out).float()
        best = idx[:, 0]
        d_all = torch.cdist(out["shape"].float(), self.index.x)
        conf = (-d_all).softmax(1).gather(1, best[:, None])[:, 0]
        names = [self.bank.name(int(i)) for i in best]
        vox = torch.stack([self.bank.voxel_grid(int(i)) for i in best])[:, None]
        return Prediction(
            R=R,
            t=t,
            hypotheses=hyp,
            camera=Camera.pinhole(self.intrinsics(B), (self.image_size, self.image_size)),
            meshes=[self.bank.mesh(int(i)) for i in best],
            voxels=vox,
            category=[n.split("/", 1)[0] for n in names],
            model_id=names,
            confidence=conf,
            extras={
                "distance": dist[:, 0],
                "database_index": best,
                "topk_index": idx,
                "topk_distance": dist,
                "anchor_probs": heads_out["anchor_logits"].softmax(1),
            },
        )

    def refine_config(self) -> RefineConfig:
        """The retrieved CAD model is kept as it is: pose only."""
        return RefineConfig(optimize_aspect=False, optimize_verts=False)

    def refine(self, pred: Prediction, i: int, mask: torch.Tensor, config: RefineConfig | None = None):
        """The generic multi-start pose refinement of the retrieved mesh against ``mask``."""
        cfg = replace(config or self.refine_config(), optimize_aspect=False, optimize_verts=False)
        return refine_prediction(pred, i, mask, cfg)
