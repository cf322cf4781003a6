"""Networks of paper 003: the two-branch encoder (Fig. 2) and the bank of cluster medoids.

:class:`PoseEncoder` (Fig. 2, §3.1)
    Five convolutions, all with stride 2: three 5x5 then two 3x3, each followed by
    LeakyReLU(0.2) ("same" padding, so 128 -> 64 -> 32 -> 16 -> 8 -> 4). Channels
    32, 64, 128, 256, 512 times ``width`` (ours: Fig. 2 does not print them). The flattened
    features feed two independent fully connected branches, ``fc(h) -> fc(h) -> fc(out)``
    with LeakyReLU(0.2) and dropout 0.5 after each hidden dense layer ("all layers but the
    last are followed by leaky ReLU"; ``h = fc_hidden``, ours):

    * class branch: logits over the shape clusters, ``(B, C)``;
    * pose branch: the rotation as ZYX Euler angles plus the translation, composed into
      ``P = [R | t]`` (eq. 1) with ``R = Rz(a) Ry(b) Rx(c)`` (intrinsic ZYX, scipy's
      ``Rotation.from_euler("ZYX", [a, b, c])``; :func:`poseshape.geometry.rotations.
      euler_angles_to_matrix`), so ``R`` is always a proper rotation.

**The sign of the angles.** The paper regresses "the cosine of the Euler rotation angle"
for each axis. A cosine fixes an angle only up to its sign (``cos a = cos(-a)``), so the
literal form (``pose_repr="cos"``: ``a = arccos(c)``, ``a`` in [0, pi]) reaches only the
rotations whose three ZYX angles are all non-negative -- one eighth of the parametrisation
box -- and maps e.g. azimuth +40 deg and -40 deg to the same output. Our default
(``pose_repr="cossin"``) regresses a *pair* ``(c, s)`` per angle, normalises it onto the unit
circle and takes ``a = atan2(s, c)``: every angle in (-pi, pi] is reachable, the map is
continuous (no wrap at +-pi: the pair moves smoothly through (-1, 0)), and its gradient
never vanishes. A separate sign-classification head was rejected: it puts a hard decision at
``a = 0`` and ``a = pi``, exactly where ``d cos(a) / da = -sin(a) = 0`` gives the cosine
regressor no gradient, so errors there are both likely and uncorrectable. The loss is still
the paper's eq. 2 on the composed ``P``, which does not care that ZYX angles have two
solutions for one ``R``. The pose branch outputs 9 numbers (3 pairs + ``t``) instead of the
paper's 6.

:class:`MedoidBank`
    The medoid meshes of the shape clusters (vertices, faces, voxels, names) stored as
    buffers, so that a checkpoint holds them and loads with ``torch.load(weights_only=True)``.
    Buffers are resized on load (the number of clusters and the mesh sizes are only known
    after clustering).
"""

from __future__ import annotations

import torch
from torch import nn

from poseshape.core.errors import ShapeError
from poseshape.geometry.rotations import euler_angles_to_matrix
from poseshape.shapes.meshes import Mesh

__all__ = ["POSE_REPRS", "MedoidBank", "PoseEncoder", "compose_pose", "decode_pose", "pose_dim"]

POSE_REPRS = ("cossin", "cos")
INPUT_CHANNELS = {"rgb": 3, "mask": 1, "rgbm": 4}
_CHANNELS = (32, 64, 128, 256, 512)
_KERNELS = (5, 5, 5, 3, 3)


def _c(n: int, width: float) -> int:
    return max(1, round(n * width))


def pose_dim(pose_repr: str) -> int:
    """Raw outputs of the pose branch: 3 pairs + t (``"cossin"``) or 3 cosines + t (``"cos"``)."""
    if pose_repr not in POSE_REPRS:
        raise ShapeError(f"pose_repr: expected one of {POSE_REPRS}, got {pose_repr!r}")
    return 9 if pose_repr == "cossin" else 6


def decode_pose(raw: torch.Tensor, pose_repr: str = "cossin") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw pose outputs -> ``(R (B, 3, 3), t (B, 3), angles (B, 3))``.

    Args:
        raw: ``(B, 9)`` for ``"cossin"`` (``(c_a, s_a, c_b, s_b, c_c, s_c, tx, ty, tz)``) or
            ``(B, 6)`` for ``"cos"`` (``(c_a, c_b, c_c, tx, ty, tz)``; the cosines pass
            through ``tanh`` to stay in (-1, 1)).
        pose_repr: see the module docstring.

    Returns:
        ``R = Rz(a) Ry(b) Rx(c)`` object-to-camera (OpenCV), ``t`` in object units (camera
        frame, ``X_cam = R X + t``), and the ZYX angles ``(a, b, c)`` in radians.
    """
    d = pose_dim(pose_repr)
    if not isinstance(raw, torch.Tensor) or raw.dim() != 2 or raw.shape[1] != d:
        raise ShapeError(
            f"raw pose: expected shape (B, {d}) for pose_repr={pose_repr!r}, "
            f"got {tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__}"
        )
    if pose_repr == "cossin":
        cs = raw[:, :6].reshape(-1, 3, 2)
        cs = cs / cs.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        angles = torch.atan2(cs[..., 1], cs[..., 0])
    else:
        c = torch.tanh(raw[:, :3]) * (1 - 1e-6)
        angles = torch.arccos(c)
    R = euler_angles_to_matrix(angles, "ZYX")
    return R, raw[:, -3:], angles


def compose_pose(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``P = [R | t]``: ``(B, 3, 3)``, ``(B, 3)`` -> ``(B, 3, 4)`` (eq. 1)."""
    return torch.cat([R, t.unsqueeze(-1)], -1)


class PoseEncoder(nn.Module):
    """Image ``(B, C_in, S, S)`` in [0, 1] -> ``{"logits": (B, K), "raw_pose": (B, 9|6),
    "R": (B, 3, 3), "t": (B, 3), "P": (B, 3, 4)}`` (see the module docstring).

    Args:
        num_classes: ``K``, number of shape clusters.
        image_size: ``S`` (>= 32, any size; the dense layers follow from it).
        in_channels: 3 (RGB), 1 (mask) or 4 (RGB + mask).
        width: channel multiplier of the convolutions.
        fc_hidden: width of the hidden dense layers.
        dropout: dropout probability after each hidden dense layer.
        slope: LeakyReLU negative slope.
        pose_repr: ``"cossin"`` or ``"cos"``.
        depth_init: initial bias of the ``t_z`` output (object units).
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 128,
        in_channels: int = 3,
        width: float = 1.0,
        fc_hidden: int = 1024,
        dropout: float = 0.5,
        slope: float = 0.2,
        pose_repr: str = "cossin",
        depth_init: float = 1.3,
    ):
        super().__init__()
        if num_classes < 1:
            raise ShapeError(f"PoseEncoder: num_classes must be >= 1, got {num_classes}")
        if image_size < 32:
            raise ShapeError(f"PoseEncoder: image_size must be >= 32, got {image_size}")
        self.image_size, self.in_channels, self.pose_repr = int(image_size), int(in_channels), pose_repr
        self.num_classes = int(num_classes)
        layers: list[nn.Module] = []
        cin, n = in_channels, image_size
        for c, k in zip(_CHANNELS, _KERNELS):
            cout = _c(c, width)
            layers += [nn.Conv2d(cin, cout, k, 2, k // 2), nn.LeakyReLU(slope)]
            cin, n = cout, (n + 2 * (k // 2) - k) // 2 + 1
        self.features = nn.Sequential(*layers)
        self.feature_dim = cin * n * n

        def branch(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(self.feature_dim, fc_hidden),
                nn.LeakyReLU(slope),
                nn.Dropout(dropout),
                nn.Linear(fc_hidden, fc_hidden),
                nn.LeakyReLU(slope),
                nn.Dropout(dropout),
                nn.Linear(fc_hidden, out),
            )

        self.classifier = branch(num_classes)
        self.pose = branch(pose_dim(pose_repr))
        with torch.no_grad():
            # Angle outputs keep the default (input-dependent, random) init: a common start
            # such as all angles 0 sits at a saddle of eq. 2 for targets near angle pi (the
            # 6-DoF renders have the x angle near pi), which stalls training. The translation
            # starts small around (0, 0, depth_init).
            last = self.pose[-1]
            last.bias.zero_()
            last.weight[-3:].mul_(0.1)
            last.bias[-1] = float(depth_init)

    def feature_parameters(self) -> list[nn.Parameter]:
        """The convolution weights (the paper's "L2 weight decay over feature extraction")."""
        return [m.weight for m in self.features if isinstance(m, nn.Conv2d)]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        S, C = self.image_size, self.in_channels
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (C, S, S):
            raise ShapeError(
                f"images: expected shape (B, {C}, {S}, {S}), got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
            )
        h = self.features(images * 2.0 - 1.0).flatten(1)
        raw = self.pose(h)
        R, t, angles = decode_pose(raw, self.pose_repr)
        return {
            "logits": self.classifier(h),
            "raw_pose": raw,
            "R": R,
            "t": t,
            "angles": angles,
            "P": compose_pose(R, t),
        }


class MedoidBank(nn.Module):
    """The ``C`` cluster medoids, as buffers (saved in checkpoints, ``weights_only``-safe).

    Buffers: ``verts (C, Vmax, 3)`` float32 object-frame vertices (unit cube, zero-padded),
    ``faces (C, Fmax, 3)`` int64, ``num_verts (C,)``, ``num_faces (C,)``, ``voxels
    (C, Q, Q, Q)`` uint8 occupancy ``(d, h, w) = (z, y, x)``, ``sizes (C,)`` models per
    cluster, ``names (C, L)`` uint8 UTF-8 ``"category/model_id"`` (zero-padded). Empty
    (``C = 0``) until :meth:`set` is called (the ``clusters`` training stage does).
    """

    _BUFFERS = ("verts", "faces", "num_verts", "num_faces", "voxels", "sizes", "names")

    def __init__(self):
        super().__init__()
        self.register_buffer("verts", torch.zeros(0, 0, 3))
        self.register_buffer("faces", torch.zeros(0, 0, 3, dtype=torch.int64))
        self.register_buffer("num_verts", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("num_faces", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("voxels", torch.zeros(0, 0, 0, 0, dtype=torch.uint8))
        self.register_buffer("sizes", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("names", torch.zeros(0, 0, dtype=torch.uint8))
        self._cache: dict = {}

    def __len__(self) -> int:
        return int(self.num_verts.shape[0])

    @property
    def empty(self) -> bool:
        return len(self) == 0

    @staticmethod
    def pack(meshes: list[Mesh], voxels: torch.Tensor, names: list[str], sizes: list[int]) -> dict[str, torch.Tensor]:
        """The buffers for ``meshes`` (``C`` of them), ``voxels (C, Q, Q, Q)``, names and sizes."""
        C = len(meshes)
        if not (C == len(names) == len(sizes) == voxels.shape[0]):
            raise ShapeError(
                f"MedoidBank.pack: {C} meshes, {len(names)} names, {len(sizes)} sizes and "
                f"{voxels.shape[0]} voxel grids must agree"
            )
        V = max((m.verts.shape[0] for m in meshes), default=0)
        F = max((m.faces.shape[0] for m in meshes), default=0)
        verts = torch.zeros(C, V, 3)
        faces = torch.zeros(C, F, 3, dtype=torch.int64)
        for i, m in enumerate(meshes):
            verts[i, : m.verts.shape[0]] = m.verts.detach().float().cpu()
            faces[i, : m.faces.shape[0]] = m.faces.cpu()
        raw = [n.encode("utf-8") for n in names]
        L = max((len(b) for b in raw), default=0)
        nm = torch.zeros(C, L, dtype=torch.uint8)
        for i, b in enumerate(raw):
            nm[i, : len(b)] = torch.tensor(list(b), dtype=torch.uint8)
        return {
            "verts": verts,
            "faces": faces,
            "num_verts": torch.tensor([m.verts.shape[0] for m in meshes], dtype=torch.int64),
            "num_faces": torch.tensor([m.faces.shape[0] for m in meshes], dtype=torch.int64),
            "voxels": (voxels > 0.5).to(torch.uint8).cpu(),
            "sizes": torch.as_tensor(list(sizes), dtype=torch.int64),
            "names": nm,
        }

    @torch.no_grad()
    def set(self, **buffers: torch.Tensor) -> None:
        """Replace every buffer (the output of :meth:`pack`)."""
        missing = [b for b in self._BUFFERS if b not in buffers]
        if missing:
            raise ShapeError(f"MedoidBank.set: missing buffers {missing}")
        dev = self.verts.device
        for name in self._BUFFERS:
            setattr(self, name, buffers[name].to(dev).clone())
        self._cache = {}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Resize the buffers to the stored shapes before the copy (their sizes are data-dependent).
        for name in self._BUFFERS:
            src = state_dict.get(prefix + name)
            if isinstance(src, torch.Tensor):
                cur = getattr(self, name)
                setattr(self, name, torch.empty(src.shape, dtype=cur.dtype, device=cur.device))
        self._cache = {}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check(self, c: int) -> int:
        if self.empty:
            raise ShapeError("MedoidBank is empty: the 'clusters' training stage has not run")
        if not 0 <= int(c) < len(self):
            raise IndexError(f"cluster {c} out of range for {len(self)} medoids")
        return int(c)

    def mesh(self, c: int) -> Mesh:
        """Medoid of cluster ``c``: ``verts (V, 3)`` object frame (unit cube), ``faces (F, 3)``."""
        c = self._check(c)
        key = ("mesh", c, self.verts.device, self.verts.dtype)
        if key not in self._cache:
            v = self.verts[c, : int(self.num_verts[c])]
            f = self.faces[c, : int(self.num_faces[c])]
            self._cache[key] = Mesh(v, f)
        return self._cache[key]

    def voxel_grid(self, c: int) -> torch.Tensor:
        """``(Q, Q, Q)`` float occupancy of medoid ``c``."""
        return self.voxels[self._check(c)].float()

    def name(self, c: int) -> str:
        """``"category/model_id"`` of medoid ``c``."""
        b = bytes(self.names[self._check(c)].tolist()).rstrip(b"\x00")
        return b.decode("utf-8")

    def forward(self, c: int) -> Mesh:  # pragma: no cover - convenience
        return self.mesh(c)
