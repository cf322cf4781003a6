"""Networks of ``retrieval`` (paper 004): the voxel embedding network, its heads and the
image regression network; rotation encode/decode with quaternion anchors.

Shapes: voxel grids ``(B, 1, 32, 32, 32)`` over the unit cube (``(d, h, w) = (z, y, x)``),
images ``(B, 3, S, S)`` in [0, 1], embeddings ``(B, E)`` (``E = 512``), quaternions
``(w, x, y, z)`` of the object-to-camera rotation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from poseshape.core.checks import check_shape
from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry.anchors import (
    TranslationAnchors,
    apply_quaternion_residual,
    nearest_anchor,
    quaternion_anchors,
    quaternion_residual,
    super_fibonacci_anchors,
)
from poseshape.geometry.rotations import quaternion_to_matrix
from poseshape.shapes.voxels import warp_voxels

__all__ = [
    "BACKBONES",
    "EmbeddingHeads",
    "ImageRegressor",
    "VoxelEmbeddingNet",
    "decode_rotation",
    "decode_rotation_topk",
    "encode_rotation",
    "make_anchors",
    "rotate_grids",
]

BACKBONES = ("resnet50", "resnet18")


def make_anchors(grid: str, n: int, dedup: str = "exact") -> torch.Tensor:
    """Rotation anchors ``(A, 4)`` float32: ``"paper"`` (eq. 1, ``n^3`` grid, ``dedup``) or
    ``"superfib"`` (super-Fibonacci with the paper grid's count for the same ``n``)."""
    paper = quaternion_anchors(int(n), dedup=dedup)
    if grid == "paper":
        return paper.float()
    if grid == "superfib":
        return super_fibonacci_anchors(int(paper.shape[0])).float()
    raise PoseshapeError(f"retrieval: anchor_grid must be 'paper' or 'superfib', got {grid!r}")


def encode_rotation(q: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor label and residual of rotations: ``q (B, 4)`` -> ``(index (B,), q_d (B, 4))``.

    ``index`` is the nearest anchor (eq. 3), ``q_d = q * q_a^-1`` (eq. 2, ``w >= 0``).
    """
    idx = nearest_anchor(q, anchors.to(q.dtype))
    return idx, quaternion_residual(q, anchors.to(q.dtype)[idx])


def decode_rotation(logits: torch.Tensor, residuals: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Rotation from the heads: ``logits (B, A)``, ``residuals (B, A, 4)`` or ``(B, 4)`` ->
    ``q (B, 4)`` = residual of the best anchor times that anchor (``w >= 0``)."""
    return decode_rotation_topk(logits, residuals, anchors, 1)[:, 0]


def decode_rotation_topk(logits: torch.Tensor, residuals: torch.Tensor, anchors: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` most probable rotations of the heads, best first: ``q (B, k, 4)``, each the
    residual of one of the ``k`` highest-scoring anchors times that anchor (``k`` is capped
    at the anchor count). ``logits (B, A)``, ``residuals (B, A, 4)`` (per anchor) or ``(B, 4)``
    (one residual for every anchor); an all-zero residual stands for the anchor itself."""
    check_shape(logits, "logits", (None, None), batch=False)
    k = max(1, min(int(k), logits.shape[1]))
    idx = logits.topk(k, dim=1).indices  # (B, k)
    if residuals.dim() == 3:
        res = residuals.gather(1, idx[..., None].expand(-1, -1, residuals.shape[-1]))
    else:
        res = residuals[:, None].expand(-1, k, -1)
    # a zero residual (no information) decodes to the anchor itself
    ident = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=res.dtype, device=res.device)
    res = torch.where(torch.linalg.vector_norm(res, dim=-1, keepdim=True) > 1e-12, res, ident)
    anc = anchors.to(res.dtype)[idx]  # (B, k, 4)
    return apply_quaternion_residual(res.reshape(-1, 4), anc.reshape(-1, 4)).reshape(-1, k, 4)


def rotate_grids(voxels: torch.Tensor, q: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Rotate occupancy grids about the cube centre: ``out(x) = in(R(q)^T x)``.

    ``voxels (B, 1, D, D, D)``, ``q (B, 4)`` -> ``(B, 1, D, D, D)`` (the stage-I online
    augmentation: the object turns like points ``x -> R x``).
    """
    check_shape(voxels, "voxels", (None, 1, None, None, None), batch=False)
    check_shape(q, "q", (voxels.shape[0], 4), batch=False)
    R = quaternion_to_matrix(q.to(voxels.dtype))
    return warp_voxels(voxels, R, R.new_zeros(R.shape[0], 3), mode=mode)


class VoxelEmbeddingNet(nn.Module):
    """Stage I embedding network, VoxNet-like (Maturana & Scherer 2015): two 3-D convolutions
    and one fully connected layer.

    ``(B, 1, 32, 32, 32)`` -> conv 5^3 stride 2 (``C`` channels, 14^3) -> LeakyReLU(0.1) ->
    conv 3^3 (12^3) -> LeakyReLU -> max-pool 2 (6^3) -> FC to ``2 E`` (disentangled: shape
    ``[:E]`` and pose ``[E:]``) or ``E`` (shared, Table 2's ablation). Returns
    ``{"shape": (B, E), "pose": (B, E)}`` (the same tensor twice when shared).
    """

    def __init__(self, embed_dim: int = 512, channels: int = 32, voxel_res: int = 32, disentangle: bool = True):
        super().__init__()
        if voxel_res != 32:
            raise PoseshapeError(f"retrieval: the VoxNet embedding takes 32^3 grids, got voxel_res={voxel_res}")
        self.embed_dim = int(embed_dim)
        self.disentangle = bool(disentangle)
        self.conv1 = nn.Conv3d(1, channels, 5, stride=2)
        self.conv2 = nn.Conv3d(channels, channels, 3)
        self.fc = nn.Linear(channels * 6**3, self.embed_dim * (2 if disentangle else 1))

    def forward(self, voxels: torch.Tensor) -> dict[str, torch.Tensor]:
        check_shape(voxels, "voxels", (None, 1, 32, 32, 32), batch=False)
        x = F.leaky_relu(self.conv1(voxels), 0.1)
        x = F.max_pool3d(F.leaky_relu(self.conv2(x), 0.1), 2)
        z = self.fc(x.flatten(1))
        if self.disentangle:
            return {"shape": z[:, : self.embed_dim], "pose": z[:, self.embed_dim :]}
        return {"shape": z, "pose": z}


class EmbeddingHeads(nn.Module):
    """The heads on the embeddings, shared by stage I and stage II.

    * shape: ``Linear(E, M)`` logits over the ``M`` training CAD models (CE);
    * anchor: ``Linear(E, A)`` logits over the rotation anchors (CE);
    * residual: ``Linear(E, 4 A)`` -> ``(B, A, 4)`` quaternion residual per anchor, L2-normalised
      (the paper's activation enforcing ``|q| = 1``), Huber loss on the true anchor's.

    Buffer ``anchors (A, 4)``: the rotation anchors (saved in the checkpoint).
    """

    def __init__(self, embed_dim: int, num_models: int, anchors: torch.Tensor):
        super().__init__()
        check_shape(anchors, "anchors", (None, 4), batch=False)
        if num_models < 1:
            raise PoseshapeError(f"retrieval: num_models must be >= 1, got {num_models}")
        self.register_buffer("anchors", anchors.float().clone())
        A = int(anchors.shape[0])
        self.shape = nn.Linear(embed_dim, num_models)
        self.anchor = nn.Linear(embed_dim, A)
        self.residual = nn.Linear(embed_dim, 4 * A)
        with torch.no_grad():  # start every residual at the identity rotation
            self.residual.weight.mul_(0.01)
            self.residual.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(A))

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    def forward(self, shape_emb: torch.Tensor, pose_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        B = pose_emb.shape[0]
        res = self.residual(pose_emb).view(B, self.num_anchors, 4)
        return {
            "shape_logits": self.shape(shape_emb),
            "anchor_logits": self.anchor(pose_emb),
            "residual": F.normalize(res, dim=-1),
        }

    def rotation(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded quaternion ``(B, 4)`` of :meth:`forward`'s output."""
        return decode_rotation(out["anchor_logits"], out["residual"], self.anchors)

    def rotation_topk(self, out: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        """The ``k`` best decoded quaternions ``(B, k, 4)`` of :meth:`forward`'s output."""
        return decode_rotation_topk(out["anchor_logits"], out["residual"], self.anchors, k)


class ImageRegressor(nn.Module):
    """Stage II regression network: a torchvision ResNet (no pretrained weights) from the
    image to both embeddings and the translation anchors.

    ``images (B, 3, S, S)`` in [0, 1] (ImageNet-normalised inside) -> ResNet body (global
    average pool, ``F`` features) -> ``{"shape": (B, E), "pose": (B, E), "t_logits": (B, T),
    "t_residual": (B, T, 3)}`` (the residual in cell units, trained towards [0, 1]).
    ``width``: channels of the first stage (64 is torchvision's network).
    """

    def __init__(
        self,
        embed_dim: int,
        t_anchors: TranslationAnchors,
        backbone: str = "resnet50",
        width: int = 64,
        disentangle: bool = True,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise PoseshapeError(f"retrieval: backbone must be one of {BACKBONES}, got {backbone!r}")
        if width < 8 or width % 8:
            raise PoseshapeError(f"retrieval: backbone_width must be a positive multiple of 8, got {width}")
        block, layers = (Bottleneck, [3, 4, 6, 3]) if backbone == "resnet50" else (BasicBlock, [2, 2, 2, 2])
        # torchvision's ResNet (width 64), or the same network with narrower stages
        net = ResNet(block, layers, num_classes=1) if width == 64 else _NarrowResNet(block, layers, width)
        feat = net.fc.in_features
        net.fc = nn.Identity()
        self.body = net
        self.embed_dim = int(embed_dim)
        self.disentangle = bool(disentangle)
        self.embed = nn.Linear(feat, self.embed_dim * (2 if disentangle else 1))
        T = t_anchors.num_anchors
        self.t_logits = nn.Linear(feat, T)
        self.t_residual = nn.Linear(feat, 3 * T)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("t_low", torch.tensor(t_anchors.low, dtype=torch.float32))
        self.register_buffer("t_high", torch.tensor(t_anchors.high, dtype=torch.float32))
        self.register_buffer("t_counts", torch.tensor(t_anchors.counts, dtype=torch.int64))

    @property
    def t_anchors(self) -> TranslationAnchors:
        return TranslationAnchors(
            tuple(float(x) for x in self.t_low),
            tuple(float(x) for x in self.t_high),
            tuple(int(c) for c in self.t_counts),
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ShapeError(f"images: expected shape (B, 3, S, S), got {tuple(images.shape)}")
        f = self.body((images - self.mean) / self.std)
        z = self.embed(f)
        B = f.shape[0]
        if self.disentangle:
            shape, pose = z[:, : self.embed_dim], z[:, self.embed_dim :]
        else:
            shape = pose = z
        return {
            "shape": shape,
            "pose": pose,
            "t_logits": self.t_logits(f),
            "t_residual": self.t_residual(f).view(B, -1, 3),
        }

    def translation(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded translation ``(B, 3)``: the best cell's residual in it."""
        idx = out["t_logits"].argmax(1)
        res = out["t_residual"][torch.arange(len(idx), device=idx.device), idx]
        return self.t_anchors.decode(idx, res.float()).to(res.dtype)


class _NarrowResNet(ResNet):
    """torchvision's ResNet with ``width`` channels in the stem and ``width * 2^k`` in stage ``k``."""

    def __init__(self, block, layers, width: int):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
