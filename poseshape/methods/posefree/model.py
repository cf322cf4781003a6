"""Networks of ``posefree`` (paper 002) and its camera.

* :class:`MeshGenerator` G: code ``z (B, L)`` --3 FC--> offsets ``(B, 642, 3)`` of a level-3
  icosphere (the paper's ``M = (V_e + dV_e, F)``); R's decoder is the same network.
* :class:`SilhouetteCritic` D1 / D2: five 2-D convolutions with ReLU + a linear score (WGAN
  critic, no sigmoid, no batch norm). With ``view_conditioned=True`` (Table 3's PAD) the
  azimuth is appended as two constant channels ``(cos, sin)``; the PID critic's forward takes
  the silhouette *only*, so its score cannot depend on the view by construction.
* :class:`PoseRegressor` Rpose: five convolutions + two FC, sigmoid -> azimuth ``2 pi s``.
* :class:`Reconstructor` R: torchvision ResNet-18 encoder (``weights=None``) -> code -> decoder.
* :func:`render`: ``Proj(M, v)``: SoftRas silhouettes ``(B, 1, S, S)`` of meshes seen from
  azimuths ``v (B,)`` at the fixed elevation and distance (NMR camera, pinhole).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from poseshape.core.checks import check_shape
from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry.camera import intrinsics_from_fov, viewpoint_to_pose
from poseshape.methods.retrieval.model import _NarrowResNet
from poseshape.render.mesh_soft import render_silhouette
from poseshape.shapes.meshes import icosphere

__all__ = [
    "MeshGenerator",
    "PoseRegressor",
    "Reconstructor",
    "SilhouetteCritic",
    "azimuth_pose",
    "camera_intrinsics",
    "render",
]


def camera_intrinsics(fov_deg: float, image_size: int) -> torch.Tensor:
    """``(3, 3)`` pinhole ``K`` of the NMR camera for ``S x S`` images."""
    return intrinsics_from_fov(math.radians(fov_deg), int(image_size)).float()


def azimuth_pose(azimuth: torch.Tensor, elevation_deg: float, distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R (B, 3, 3), t (B, 3))`` object-to-camera of azimuths ``(B,)`` radians at a fixed elevation."""
    az = azimuth.float()
    el = torch.full_like(az, math.radians(elevation_deg))
    return viewpoint_to_pose(az, el, torch.zeros_like(az), torch.full_like(az, float(distance)))


def render(
    verts: torch.Tensor,
    faces: torch.Tensor,
    azimuth: torch.Tensor,
    *,
    elevation_deg: float,
    distance: float,
    fov_deg: float,
    image_size: int,
    sigma: float = 1e-4,
) -> torch.Tensor:
    """``Proj(M, v)``: soft silhouettes ``(B, 1, S, S)`` in [0, 1] of ``verts (B, V, 3)`` seen
    from ``azimuth (B,)`` (radians), differentiable in the vertices and the azimuth."""
    check_shape(verts, "verts", (None, 3))
    if azimuth.dim() != 1 or azimuth.shape[0] != verts.shape[0]:
        raise ShapeError(f"azimuth: expected ({verts.shape[0]},), got {tuple(azimuth.shape)}")
    R, t = azimuth_pose(azimuth, elevation_deg, distance)
    K = camera_intrinsics(fov_deg, image_size).to(verts.device)
    return render_silhouette(verts.float(), faces, R, t, K, image_size=int(image_size), sigma=sigma)


class MeshGenerator(nn.Module):
    """G (and R's decoder): ``z (B, L)`` -> vertices ``(B, V, 3)`` of the deformed icosphere.

    Three FC layers (ReLU between) give ``V x 3`` offsets, bounded by ``offset_scale *
    tanh``; ``faces (F, 3)`` is the icosphere's (buffer). Level 3: ``V = 642``, ``F = 1280``.
    """

    def __init__(
        self,
        latent_dim: int = 512,
        hidden: tuple[int, int] = (1024, 2048),
        level: int = 3,
        radius: float = 0.5,
        offset_scale: float = 0.5,
    ):
        super().__init__()
        if latent_dim < 1 or len(hidden) != 2 or min(hidden) < 1:
            raise PoseshapeError(f"posefree: latent_dim >= 1 and two hidden widths are required, got {hidden}")
        sphere = icosphere(level, radius, dtype=torch.float32)
        self.register_buffer("base", sphere.verts.clone())
        self.register_buffer("faces", sphere.faces.long().clone())
        self.latent_dim = int(latent_dim)
        self.offset_scale = float(offset_scale)
        V = sphere.verts.shape[0]
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden[0]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[1], V * 3),
        )
        nn.init.zeros_(self.net[-1].bias)
        self.net[-1].weight.data.mul_(0.1)  # start near the sphere

    @property
    def num_verts(self) -> int:
        return int(self.base.shape[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ShapeError(f"z: expected (B, {self.latent_dim}), got {tuple(z.shape)}")
        off = self.net(z).view(z.shape[0], -1, 3)
        return self.base + self.offset_scale * torch.tanh(off)


def _conv_stack(in_ch: int, width: int, n: int = 5) -> tuple[nn.Sequential, int]:
    layers, c = [], in_ch
    for k in range(n):
        out = width * 2 ** min(k, 3)
        layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        c = out
    return nn.Sequential(*layers), c


class SilhouetteCritic(nn.Module):
    """WGAN critic on silhouettes ``(B, 1, S, S)`` -> scores ``(B,)``; ``S`` a multiple of 32.

    ``view_conditioned=False`` (PID, paper): ``forward(sil)``. ``True`` (PAD, Table 3):
    ``forward(sil, azimuth (B,))`` with ``(cos, sin)`` of the azimuth as extra channels.
    """

    def __init__(self, image_size: int = 64, width: int = 64, view_conditioned: bool = False):
        super().__init__()
        if image_size % 32:
            raise PoseshapeError(f"posefree: image_size must be a multiple of 32, got {image_size}")
        self.view_conditioned = bool(view_conditioned)
        self.image_size = int(image_size)
        self.convs, c = _conv_stack(3 if view_conditioned else 1, width)
        self.head = nn.Linear(c * (image_size // 32) ** 2, 1)

    def forward(self, sil: torch.Tensor, azimuth: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(sil, "silhouette", (1, self.image_size, self.image_size))
        x = sil
        if self.view_conditioned:
            if azimuth is None or azimuth.shape != sil.shape[:1]:
                raise ShapeError("a pose-aware critic needs azimuth (B,) with its silhouettes")
            a = azimuth.to(sil.dtype)[:, None, None, None].expand_as(sil)
            x = torch.cat([sil, torch.cos(a), torch.sin(a)], 1)
        elif azimuth is not None:
            raise PoseshapeError("the pose-independent critic takes no azimuth (it sees silhouettes only)")
        return self.head(self.convs(x).flatten(1))[:, 0]


class PoseRegressor(nn.Module):
    """Rpose: silhouettes ``(B, 1, S, S)`` -> azimuth ``(B,)`` in ``[0, 2 pi)`` radians.

    Five convolutions and two FC layers with ReLU between and a sigmoid at the end (paper).
    """

    def __init__(self, image_size: int = 64, width: int = 32, hidden: int = 256):
        super().__init__()
        if image_size % 32:
            raise PoseshapeError(f"posefree: image_size must be a multiple of 32, got {image_size}")
        self.image_size = int(image_size)
        self.convs, c = _conv_stack(1, width)
        self.fc = nn.Sequential(
            nn.Linear(c * (image_size // 32) ** 2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)
        )

    def forward(self, sil: torch.Tensor) -> torch.Tensor:
        check_shape(sil, "silhouette", (1, self.image_size, self.image_size))
        return 2 * math.pi * torch.sigmoid(self.fc(self.convs(sil).flatten(1))[:, 0])


class Reconstructor(nn.Module):
    """R: images ``(B, 3, S, S)`` in [0, 1] -> vertices ``(B, V, 3)`` (ResNet-18 encoder + G-like decoder).

    The encoder is torchvision's ResNet-18 (``weights=None``; ``width`` < 64: the same network
    with narrower stages) whose last layer gives the ``latent_dim`` code.
    """

    def __init__(self, decoder: MeshGenerator, width: int = 64):
        super().__init__()
        if width < 8 or width % 8:
            raise PoseshapeError(f"posefree: backbone_width must be a positive multiple of 8, got {width}")
        enc = (
            ResNet(BasicBlock, [2, 2, 2, 2], num_classes=1)
            if width == 64
            else _NarrowResNet(BasicBlock, [2, 2, 2, 2], width)
        )
        enc.fc = nn.Linear(width * 8, decoder.latent_dim)
        self.encoder = enc
        self.decoder = decoder
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        check_shape(images, "images", (3, None, None))
        return self.encoder((images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(images))
