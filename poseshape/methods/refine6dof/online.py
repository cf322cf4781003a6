"""Paper 003, §4.2: online refinement of the encoder by silhouette alignment, and renders.

For each test image the medoid of the predicted class is rendered at the predicted pose with
the differentiable rasteriser (:func:`poseshape.render.mesh_soft.render_silhouette`; mode
``"edge"`` is the paper's eq. 5, ``"softras"`` the SoftRas form) and the misalignment with the
observed mask is back-propagated *to the encoder weights*: "we can not only measure the
alignment error w.r.t. the input object mask, but also back-propagate it to the encoder
weights. Eventually, this allows us to fine-tune the encoder online optimizing just the
alignment error" (§3), "for 30 optimization steps" (§4.2), with "batch size ... decreased to
20 and learning rate to 1e-6" (training details).

:func:`online_refine` does this for a batch of images: they are processed in chunks of
``batch`` (20); every chunk starts from a fresh copy of the *original* weights (the caller's
encoder is never modified), is optimised with Adam for ``steps`` steps on the mean
silhouette loss of its images, and the refined pose is the fine-tuned encoder's output after
the last step. Choices of ours where the paper is silent: the class (hence the medoid) is
fixed to the original prediction (the class branch does not enter the loss); dropout is off
(``eval()``) so the 30 steps optimise a deterministic function; the loss is ``1 - soft IoU``
by default (``"mse"`` and ``"bce"`` are available).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.checks import check_finite
from poseshape.core.errors import ShapeError
from poseshape.engine.checkpoint import unwrap_module
from poseshape.losses import reprojection_bce, reprojection_iou
from poseshape.methods.refine6dof.model import MedoidBank
from poseshape.render.fastraster import rasterize
from poseshape.render.mesh_soft import render_silhouette

__all__ = [
    "LOSSES",
    "OnlineResult",
    "hard_silhouettes",
    "online_refine",
    "render_medoids",
    "scale_intrinsics",
    "silhouette_loss",
]

LOSSES = ("iou", "mse", "bce")


def silhouette_loss(sil: torch.Tensor, mask: torch.Tensor, kind: str = "iou") -> torch.Tensor:
    """Per-image misalignment ``(B,)`` of silhouettes and masks, both ``(B, 1, H, W)`` in [0, 1]."""
    if kind == "iou":
        return reprojection_iou(sil, mask, reduction="none")
    if kind == "bce":
        return reprojection_bce(sil, mask, reduction="none")
    if kind == "mse":
        if sil.shape != mask.shape:
            raise ShapeError(f"silhouette {tuple(sil.shape)} and mask {tuple(mask.shape)} must have the same shape")
        return ((sil - mask.to(sil.dtype)) ** 2).flatten(1).mean(1)
    raise ShapeError(f"online_loss: expected one of {LOSSES}, got {kind!r}")


def scale_intrinsics(K: torch.Tensor, factor: float) -> torch.Tensor:
    """``K`` of the same camera for an image resized by ``factor`` (pixel centres at +0.5)."""
    K = K.clone()
    K[..., :2, :] = K[..., :2, :] * factor
    return K


def _grouped(labels: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn(cluster, index)`` per cluster and put the ``(n, ...)`` results back in order."""
    outs, order = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).squeeze(1)
        outs.append(fn(int(c), idx))
        order.append(idx)
    order_t = torch.cat(order)
    return torch.cat(outs)[torch.argsort(order_t)]


def render_medoids(
    bank: MedoidBank,
    labels: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    image_size: int,
    mode: str = "edge",
    sigma: float = 1e-4,
) -> torch.Tensor:
    """Soft silhouettes ``(B, 1, S, S)`` of each item's medoid (``labels (B,)``) at ``(R, t)``.

    ``R (B, 3, 3)``, ``t (B, 3)`` object units, ``K (B, 3, 3)`` pixels of the ``S x S`` render.
    Differentiable w.r.t. ``R``, ``t`` and ``K``.
    """

    def one(c: int, idx: torch.Tensor) -> torch.Tensor:
        m = bank.mesh(c)
        return render_silhouette(
            m.verts.to(R.dtype), m.faces, R[idx], t[idx], K[idx], image_size=image_size, mode=mode, sigma=sigma
        )

    return _grouped(labels, one)


@torch.no_grad()
def hard_silhouettes(
    bank: MedoidBank, labels: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, image_size: int
) -> torch.Tensor:
    """Exact (z-buffer) silhouettes ``(B, 1, S, S)`` in {0, 1} of each item's medoid."""

    def one(c: int, idx: torch.Tensor) -> torch.Tensor:
        m = bank.mesh(c)
        v = m.verts.float().cpu()
        out = rasterize(
            v[None].expand(len(idx), -1, -1),
            m.faces.cpu(),
            R[idx].float().cpu(),
            t[idx].float().cpu(),
            K[idx].float().cpu(),
            (image_size, image_size),
        )
        mask = out.mask if hasattr(out, "mask") else out[3]
        return mask.reshape(len(idx), 1, image_size, image_size).float()

    return _grouped(labels.cpu(), one).to(R.device)


@dataclass
class OnlineResult:
    """What :func:`online_refine` returns for ``B`` images.

    Attributes:
        R, t: ``(B, 3, 3)``, ``(B, 3)`` refined pose (object units, ``X_cam = R X + t``).
        R0, t0: the encoder's pose before refinement.
        labels: ``(B,)`` cluster used (the original prediction); probs: ``(B, C)`` its softmax.
        losses: ``(steps + 1, B)`` silhouette loss of each image before each step; the last row
            is after the last step.
    """

    R: torch.Tensor
    t: torch.Tensor
    R0: torch.Tensor
    t0: torch.Tensor
    labels: torch.Tensor
    probs: torch.Tensor
    losses: torch.Tensor


def online_refine(
    encoder: nn.Module,
    bank: MedoidBank,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    K: torch.Tensor,
    *,
    steps: int = 30,
    batch: int = 20,
    lr: float = 1e-6,
    render: str = "edge",
    sigma: float = 1e-4,
    loss: str = "iou",
    render_size: int | None = None,
    labels: torch.Tensor | None = None,
) -> OnlineResult:
    """Fine-tune copies of ``encoder`` online on the silhouette misalignment (paper 003, §4.2).

    Args:
        encoder: the trained :class:`~.model.PoseEncoder` (left untouched).
        bank: the medoids.
        inputs: ``(B, C_in, S, S)`` encoder inputs.
        masks: ``(B, 1, H, W)`` observed masks in [0, 1] (resized to the render size by area).
        K: ``(B, 3, 3)`` or ``(3, 3)`` intrinsics in pixels of the ``S x S`` input.
        steps: optimisation steps per chunk (paper: 30); batch: images per chunk (paper: 20);
        lr: Adam learning rate (paper: 1e-6).
        render: ``"edge"`` (eq. 5) or ``"softras"``; sigma: SoftRas blur (squared NDC).
        loss: ``"iou"``, ``"mse"`` or ``"bce"``.
        render_size: side of the rendered silhouette (default ``S``).
        labels: ``(B,)`` clusters to render (default: the encoder's prediction).

    Returns:
        :class:`OnlineResult`.

    Raises:
        ShapeError: bad shapes, an empty mask, non-finite inputs.
    """
    enc0 = unwrap_module(encoder)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ShapeError(f"inputs: expected shape (B, C, S, S), got {getattr(inputs, 'shape', type(inputs).__name__)}")
    B, _, S, _ = inputs.shape
    if not isinstance(masks, torch.Tensor) or masks.dim() != 4 or masks.shape[0] != B or masks.shape[1] != 1:
        raise ShapeError(f"masks: expected shape ({B}, 1, H, W), got {getattr(masks, 'shape', type(masks).__name__)}")
    check_finite(inputs, "inputs")
    check_finite(masks, "masks")
    if (masks.flatten(1).amax(1) <= 0).any():
        raise ShapeError("masks: an image has an empty mask; the online refinement needs the object's silhouette")
    if steps < 0 or batch < 1:
        raise ShapeError(f"online refinement: steps must be >= 0 and batch >= 1, got {steps}, {batch}")
    dev = inputs.device
    K = torch.as_tensor(K, dtype=torch.float32, device=dev)
    if K.shape == (3, 3):
        K = K.expand(B, 3, 3)
    if K.shape != (B, 3, 3):
        raise ShapeError(f"K: expected shape (3, 3) or ({B}, 3, 3), got {tuple(K.shape)}")
    rs = int(render_size or S)
    Kr = scale_intrinsics(K, rs / S)
    m_r = (
        masks.float()
        if masks.shape[-1] == rs and masks.shape[-2] == rs
        else F.interpolate(masks.float(), size=(rs, rs), mode="area")
    )

    Rs, ts, R0s, t0s, labs, probs, curves = [], [], [], [], [], [], []
    for lo in range(0, B, batch):
        hi = min(B, lo + batch)
        x, m, k = inputs[lo:hi], m_r[lo:hi], Kr[lo:hi]
        enc = copy.deepcopy(enc0).to(dev)
        enc.eval()
        params = [p for p in enc.parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        with torch.no_grad():
            out0 = enc(x)
        lab = out0["logits"].argmax(1) if labels is None else labels[lo:hi].to(dev)
        curve = []
        with torch.enable_grad():
            for _ in range(steps):
                out = enc(x)
                sil = render_medoids(bank, lab, out["R"], out["t"], k, rs, render, sigma)
                per = silhouette_loss(sil, m, loss)
                curve.append(per.detach())
                opt.zero_grad(set_to_none=True)
                per.mean().backward()
                opt.step()
        with torch.no_grad():
            out = enc(x)
            sil = render_medoids(bank, lab, out["R"], out["t"], k, rs, render, sigma)
            curve.append(silhouette_loss(sil, m, loss))
        Rs.append(out["R"].detach()), ts.append(out["t"].detach())
        R0s.append(out0["R"]), t0s.append(out0["t"])
        labs.append(lab), probs.append(out0["logits"].softmax(1))
        curves.append(torch.stack(curve))
        del enc, opt
    return OnlineResult(
        R=torch.cat(Rs),
        t=torch.cat(ts),
        R0=torch.cat(R0s),
        t0=torch.cat(t0s),
        labels=torch.cat(labs),
        probs=torch.cat(probs),
        losses=torch.cat(curves, 1),
    )
