"""Networks of paper 001 (section 2.1, Fig. 1).

* :class:`ImageEncoder` ``E``: residual blocks, ``(B, 3, 64, 64)`` -> shape code ``mu_s,
  logvar_s (B, 512)`` (CVAE) and pose code ``z_p (B, 16)``, plus its feature maps (the
  U-Net skips of the mask decoder).
* :class:`PoseHead`: one FC layer ``z_p -> (cos az, sin az, raw el)`` -> ``(azimuth,
  elevation)`` in radians (paper), or azimuth bins + residuals (ours, ``bins > 0``).
* :class:`VoxelTubeDecoder` ``D_v``: the "voxel tube" decoder of its ref. [10]: 2-D
  deconvolutions whose 32 output channels are the 32 depth slices, ``(B, 512) -> (B, 1, 32,
  32, 32)`` occupancy in (0, 1) over the unit cube, ``(d, h, w) = (z, y, x)``.
* :class:`MaskDecoder` ``D_m``: U-Net-style decoder from ``(mu_s, z_p)`` with skips from the
  encoder, ``-> (B, 1, 48, 48)`` mask probabilities.

Channel counts are ours (the paper gives none), scaled by ``width``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.errors import ShapeError
from poseshape.methods.selfconsistency.pose_search import binned_azimuth

__all__ = ["ImageEncoder", "MaskDecoder", "PoseHead", "ResBlock", "VoxelTubeDecoder"]


def _c(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


class ResBlock(nn.Module):
    """Pre-activation-free residual block: ``relu(bn(conv(relu(bn(conv x)))) + skip(x))``,
    stride 2 halves the side. ``(B, Cin, H, W) -> (B, Cout, H / s, W / s)``."""

    def __init__(self, cin: int, cout: int, stride: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ImageEncoder(nn.Module):
    """``E``: ``(B, 3, S, S)`` RGB in [0, 1] (``S = image_size``, a multiple of 16) ->
    ``(mu_s (B, Ls), logvar_s (B, Ls), z_p (B, Lp), skips)`` with ``skips`` the feature maps
    at sides ``S/2, S/4, S/8`` (coarse last)."""

    def __init__(self, image_size: int = 64, shape_code: int = 512, pose_code: int = 16, width: float = 1.0):
        super().__init__()
        if image_size % 16:
            raise ShapeError(f"image_size: expected a multiple of 16, got {image_size}")
        self.image_size = image_size
        ch = [_c(32, width), _c(64, width), _c(128, width), _c(256, width), _c(256, width)]
        self.stem = nn.Sequential(nn.Conv2d(3, ch[0], 3, 1, 1, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(True))
        self.blocks = nn.ModuleList([ResBlock(ch[i], ch[i + 1]) for i in range(4)])
        self.skip_channels = ch[1:4]
        feat = ch[4] * (image_size // 16) ** 2
        hidden = _c(1024, width)
        self.fc = nn.Sequential(nn.Linear(feat, hidden), nn.ReLU(True))
        self.mu = nn.Linear(hidden, shape_code)
        self.logvar = nn.Linear(hidden, shape_code)
        self.pose = nn.Linear(hidden, pose_code)

    def forward(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.image_size, self.image_size):
            raise ShapeError(
                f"images: expected shape (B, 3, {self.image_size}, {self.image_size}), got {tuple(x.shape)}"
            )
        h = self.stem(x)
        skips = []
        for blk in self.blocks:
            h = blk(h)
            skips.append(h)
        f = self.fc(h.flatten(1))
        return self.mu(f), self.logvar(f), self.pose(f), skips[:3]


class PoseHead(nn.Module):
    """One FC layer ``z_p (B, Lp) -> (azimuth, elevation) (B, 2)`` radians.

    ``bins = 0`` (paper): the layer's three outputs are ``(c, s, e)``: ``azimuth = atan2(s,
    c)`` in (-pi, pi] (no wrap-around discontinuity for the loss to fight) and ``elevation =
    el_max tanh(e)``.

    ``bins = K > 0`` (ours, :mod:`.pose_search`): the layer gives ``K`` azimuth-bin logits, ``K``
    residuals and ``e``; the azimuth is the centre of the most likely bin (``2 pi k / K``) plus
    that bin's residual ``(pi / K) tanh(r_k)``, wrapped to (-pi, pi].  :meth:`parts` returns
    the pieces the training loss needs.
    """

    def __init__(self, pose_code: int = 16, elevation_max: float = 1.5707963267948966, bins: int = 0):
        super().__init__()
        if int(bins) < 0 or int(bins) == 1:
            raise ShapeError(f"bins: expected 0 (direct regression) or >= 2 azimuth bins, got {bins}")
        self.bins = int(bins)
        self.fc = nn.Linear(pose_code, 3 if self.bins == 0 else 2 * self.bins + 1)
        self.elevation_max = float(elevation_max)

    def parts(self, z_p: torch.Tensor) -> dict[str, torch.Tensor]:
        """``bins > 0`` only: ``logits (B, K)``, ``residual (B, K)`` radians in (-pi/K, pi/K) and
        ``elevation (B,)`` radians."""
        if self.bins == 0:
            raise ShapeError("PoseHead.parts: only for a binned head (bins > 0)")
        o = self.fc(z_p)
        K = self.bins
        return {
            "logits": o[:, :K],
            "residual": (math.pi / K) * torch.tanh(o[:, K : 2 * K]),
            "elevation": self.elevation_max * torch.tanh(o[:, 2 * K]),
        }

    def pose_from_parts(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, 2)`` (azimuth, elevation) of :meth:`parts`' output: the best bin plus its residual."""
        k = p["logits"].argmax(1)
        az = binned_azimuth(k, p["residual"].gather(1, k[:, None])[:, 0], self.bins)
        return torch.stack([az, p["elevation"]], -1)

    def forward(self, z_p: torch.Tensor) -> torch.Tensor:
        if self.bins:
            return self.pose_from_parts(self.parts(z_p))
        o = self.fc(z_p)
        az = torch.atan2(o[:, 1], o[:, 0])
        el = self.elevation_max * torch.tanh(o[:, 2])
        return torch.stack([az, el], -1)


class VoxelTubeDecoder(nn.Module):
    """``D_v``: ``z_s (B, Ls) -> (B, 1, R, R, R)`` occupancy, ``R = res`` (32).

    FC to a ``(C, 4, 4)`` map, then stride-2 2-D transposed convolutions to ``R x R``; the
    final convolution has ``R`` channels, channel ``d`` being depth slice ``d`` (z) of the
    grid, rows y and columns x (voxel tube).
    """

    def __init__(self, shape_code: int = 512, res: int = 32, width: float = 1.0):
        super().__init__()
        if res < 8 or res & (res - 1):
            raise ShapeError(f"voxel res: expected a power of two >= 8, got {res}")
        self.res = res
        n_up = (res // 4).bit_length() - 1
        ch = [_c(256, width)] + [_c(max(64, 256 >> (i + 1)), width) for i in range(n_up)]
        self.c0 = ch[0]
        self.fc = nn.Sequential(nn.Linear(shape_code, ch[0] * 16), nn.ReLU(True))
        ups = []
        for i in range(n_up):
            ups += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(ch[i + 1]), nn.ReLU(True)]
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(ch[-1], res, 3, 1, 1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid occupancy ``(B, 1, R, R, R)``."""
        h = self.fc(z).view(-1, self.c0, 4, 4)
        return self.out(self.ups(h)).unsqueeze(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


class MaskDecoder(nn.Module):
    """``D_m``: ``(mu_s (B, Ls), z_p (B, Lp), skips) -> (B, 1, M, M)`` mask probabilities.

    FC to ``(C, M/8, M/8)``, then three up-sampling blocks (x2 each); before each block the
    encoder feature map of the matching depth is resized to the current side and
    concatenated (U-Net skips; ``skips=None`` or ``use_skips=False`` decodes from the codes
    alone).
    """

    def __init__(
        self,
        shape_code: int = 512,
        pose_code: int = 16,
        res: int = 48,
        skip_channels=(64, 128, 256),
        width: float = 1.0,
        use_skips: bool = True,
    ):
        super().__init__()
        if res % 8:
            raise ShapeError(f"mask res: expected a multiple of 8, got {res}")
        self.res, self.use_skips = res, use_skips
        ch = [_c(128, width), _c(128, width), _c(64, width), _c(32, width)]
        self.c0 = ch[0]
        self.fc = nn.Sequential(nn.Linear(shape_code + pose_code, ch[0] * (res // 8) ** 2), nn.ReLU(True))
        sk = list(skip_channels)[::-1] if use_skips else [0, 0, 0]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(ch[i] + sk[i], ch[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch[i + 1]),
                nn.ReLU(True),
                nn.Conv2d(ch[i + 1], ch[i + 1], 3, 1, 1, bias=False),
                nn.BatchNorm2d(ch[i + 1]),
                nn.ReLU(True),
            )
            for i in range(3)
        )
        self.out = nn.Conv2d(ch[3], 1, 3, 1, 1)

    def logits(self, mu_s: torch.Tensor, z_p: torch.Tensor, skips=None) -> torch.Tensor:
        """Pre-sigmoid mask ``(B, 1, M, M)``."""
        side = self.res // 8
        h = self.fc(torch.cat([mu_s, z_p], -1)).view(-1, self.c0, side, side)
        for i, blk in enumerate(self.blocks):
            if self.use_skips:
                if skips is None:
                    raise ShapeError("MaskDecoder: built with U-Net skips, give the encoder's feature maps")
                s = skips[2 - i]
                h = torch.cat([h, F.interpolate(s, size=h.shape[-2:], mode="bilinear", align_corners=False)], 1)
            h = blk(h)
        return self.out(h)

    def forward(self, mu_s, z_p, skips=None) -> torch.Tensor:
        return torch.sigmoid(self.logits(mu_s, z_p, skips))
