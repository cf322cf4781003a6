"""Networks of paper 000 (Appendix I.a), with a channel ``width`` multiplier.

Notation of the paper: ``conv3D(k, s, c)`` / ``conv2D(k, s, c)`` = kernel ``k``, stride ``s``,
``c`` channels; ``deconv3D(k, c, s)``; ``fc(d)``.

* :class:`ShapeEncoder3D` (VAE encoder): ``(B, 1, 30, 30, 30)`` -> conv3D(4, 2, 32),
  conv3D(4, 2, 64), conv3D(4, 2, 64) -> fc(200) for ``mu`` and fc(200) for ``log sigma^2``.
  Padding 1 gives 30 -> 15 -> 7 -> 3.
* :class:`ShapeDecoder3D`: ``(B, 200)`` -> fc(8192) = 4x4x4x128 -> deconv3D(4, 64, 2),
  deconv3D(4, 32, 2), deconv3D(4, 1, 2) -> ``(B, 1, 30, 30, 30)``. The paper does not say how
  4 -> 30 is reached; with padding 1 the first two give 4 -> 8 -> 16 and the last one uses
  padding 2, ``(16 - 1) * 2 - 2 * 2 + 4 = 30``, so the grid lands on 30^3 with no cropping.
  Other resolutions ``res`` use the same rule (``res`` must be even and in [20, 34]).
* :class:`ImageRegressor` (style and pose regressors): conv2D(11, 4, 64), conv2D(5, 2, 128),
  conv2D(5, 2, 256), conv2D(5, 2, 512), conv2D(3, 1, 200) -> fc(out) (200 for the style,
  5 for the pose). The first conv has no padding (227 -> 55, as AlexNet), the others
  "same" padding; the fc input size follows from ``image_size``.
* :class:`Discriminator3D` (p-3D-VAE-GAN): the encoder's conv stack (conv3D(4, 2, 32),
  conv3D(4, 2, 64), conv3D(4, 2, 64)) followed by fc(1). It returns ``(logit, features)``
  where ``features`` are the last conv layer's activations, the space of the VAE-GAN's
  reconstruction loss (Appendix I.b). The paper follows 3D-VAE-GAN [4] without giving the
  layers at 30^3; mirroring the encoder is our choice.

Batch norm follows every layer except the first convolution and the last (transpose)
convolution; the rectifier is LeakyReLU (slope 0.2, ours: the paper gives none). The
paper's decoder output is ``tanh``; occupancy here lives in [0, 1], so the output is a
``sigmoid`` (``(tanh(x / 2) + 1) / 2``, the same curve rescaled).

``width`` scales every hidden channel count (1.0 = the paper); the demo and the shipped
CPU model use a narrower network.
"""

from __future__ import annotations

import torch
from torch import nn

from poseshape.core.checks import check_shape
from poseshape.core.errors import ShapeError

__all__ = ["Discriminator3D", "ImageRegressor", "ShapeDecoder3D", "ShapeEncoder3D"]

SLOPE = 0.2


def _c(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def _conv3d_stack(width: float) -> nn.Sequential:
    c1, c2, c3 = _c(32, width), _c(64, width), _c(64, width)
    return nn.Sequential(
        nn.Conv3d(1, c1, 4, 2, 1),
        nn.LeakyReLU(SLOPE, inplace=True),
        nn.Conv3d(c1, c2, 4, 2, 1),
        nn.BatchNorm3d(c2),
        nn.LeakyReLU(SLOPE, inplace=True),
        nn.Conv3d(c2, c3, 4, 2, 1),
        nn.BatchNorm3d(c3),
        nn.LeakyReLU(SLOPE, inplace=True),
    )


def _conv_out(n: int, k: int = 4, s: int = 2, p: int = 1) -> int:
    return (n + 2 * p - k) // s + 1


def _check_grid(x: torch.Tensor, res: int, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or tuple(x.shape[1:]) != (1, res, res, res):
        raise ShapeError(f"{name}: expected shape (B, 1, {res}, {res}, {res}), got {tuple(x.shape)}")


class ShapeEncoder3D(nn.Module):
    """VAE encoder: voxels ``(B, 1, R, R, R)`` in [0, 1] -> ``(mu, logvar)``, each ``(B, latent)``."""

    def __init__(self, latent: int = 200, res: int = 30, width: float = 1.0):
        super().__init__()
        self.res = res
        self.convs = _conv3d_stack(width)
        n = _conv_out(_conv_out(_conv_out(res)))
        feat = _c(64, width) * n**3
        self.fc_mu = nn.Linear(feat, latent)
        self.fc_logvar = nn.Linear(feat, latent)

    def forward(self, voxels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_grid(voxels, self.res, "voxels")
        h = self.convs(voxels).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)


class ShapeDecoder3D(nn.Module):
    """Generator: code ``(B, latent)`` -> occupancy ``(B, 1, R, R, R)`` in [0, 1] (default R = 30)."""

    def __init__(self, latent: int = 200, res: int = 30, width: float = 1.0):
        super().__init__()
        if res % 2 or not 20 <= res <= 34:
            raise ShapeError(f"ShapeDecoder3D: res must be even and in [20, 34], got {res}")
        self.res, self.latent = res, latent
        self.c0 = _c(128, width)
        c1, c2 = _c(64, width), _c(32, width)
        self.fc = nn.Linear(latent, self.c0 * 4**3)
        self.bn0 = nn.BatchNorm3d(self.c0)
        # 4 -> 8 -> 16 -> res: (16 - 1) * 2 - 2 p + 4 = res  =>  p = (34 - res) / 2
        self.deconvs = nn.Sequential(
            nn.ConvTranspose3d(self.c0, c1, 4, 2, 1),
            nn.BatchNorm3d(c1),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.ConvTranspose3d(c1, c2, 4, 2, 1),
            nn.BatchNorm3d(c2),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.ConvTranspose3d(c2, 1, 4, 2, (34 - res) // 2),
        )

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        check_shape(code, "code", (self.latent,))
        if code.dim() != 2:
            raise ShapeError(f"code: expected shape (B, {self.latent}), got {tuple(code.shape)}")
        h = self.fc(code).view(-1, self.c0, 4, 4, 4)
        h = nn.functional.leaky_relu(self.bn0(h), SLOPE)
        return torch.sigmoid(self.deconvs(h))


class ImageRegressor(nn.Module):
    """Image ``(B, 3, S, S)`` in [0, 1] -> ``(B, out)`` (style code or raw pose), Appendix I.a.

    The input is normalised per channel with ImageNet's mean and std before the first conv.
    """

    def __init__(self, out: int, image_size: int = 227, width: float = 1.0):
        super().__init__()
        if image_size < 32:
            raise ShapeError(f"ImageRegressor: image_size must be >= 32, got {image_size}")
        self.image_size = image_size
        c = [_c(64, width), _c(128, width), _c(256, width), _c(512, width), 200]
        self.convs = nn.Sequential(
            nn.Conv2d(3, c[0], 11, 4, 0),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(c[0], c[1], 5, 2, 2),
            nn.BatchNorm2d(c[1]),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(c[1], c[2], 5, 2, 2),
            nn.BatchNorm2d(c[2]),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(c[2], c[3], 5, 2, 2),
            nn.BatchNorm2d(c[3]),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(c[3], c[4], 3, 1, 1),
            nn.BatchNorm2d(c[4]),
            nn.LeakyReLU(SLOPE, inplace=True),
        )
        n = _conv_out(image_size, 11, 4, 0)
        for _ in range(3):
            n = _conv_out(n, 5, 2, 2)
        self.fc = nn.Linear(200 * n * n, out)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        S = self.image_size
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (3, S, S):
            raise ShapeError(f"images: expected shape (B, 3, {S}, {S}), got {tuple(images.shape)}")
        h = self.convs((images - self.mean) / self.std)
        return self.fc(h.flatten(1))


class Discriminator3D(nn.Module):
    """Voxels ``(B, 1, R, R, R)`` -> ``(logit (B, 1), features (B, C, r, r, r))``."""

    def __init__(self, res: int = 30, width: float = 1.0):
        super().__init__()
        self.res = res
        self.convs = _conv3d_stack(width)
        n = _conv_out(_conv_out(_conv_out(res)))
        self.fc = nn.Linear(_c(64, width) * n**3, 1)

    def forward(self, voxels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_grid(voxels, self.res, "voxels")
        feat = self.convs(voxels)
        return self.fc(feat.flatten(1)), feat
