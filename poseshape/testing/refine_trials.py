"""Seeded pose-refinement trials: a mesh's masks at random views and perturbed starting poses.

The common ground of ``tests/test_refine.py`` and ``bench/refine.py`` (and of any user
benchmark of :func:`poseshape.engine.refine.refine_pose`): for trial ``i``

* the true pose looks at the object from azimuth ``U(0, 2 pi)``, elevation ``U(5, 35)`` deg
  and distance 2.6 units (:func:`poseshape.geometry.camera.viewpoint_to_pose`);
* the mask is the exact silhouette at that pose, ``size x size``, pinhole focal
  ``1.7 * size`` pixels, principal point at the centre;
* the start is the true rotation turned by ``U(10, max_deg)`` degrees about a uniformly
  random axis, and the true translation plus N(0, (0.03, 0.03, 0.1)) units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from poseshape.engine.refine import hard_silhouettes
from poseshape.geometry.camera import viewpoint_to_pose
from poseshape.geometry.rotations import so3_exp
from poseshape.shapes.meshes import Mesh

__all__ = ["PoseTrials", "perturbed_pose_trials"]


@dataclass
class PoseTrials:
    """``n`` trials (float64 poses).

    Attributes:
        masks: ``(n, 1, size, size)`` float {0, 1}; K: ``(3, 3)`` pixels.
        R, t: ``(n, 3, 3)``, ``(n, 3)`` true pose (``X_cam = R X + t``).
        R0, t0: the perturbed starts; angle: ``(n,)`` rotation perturbation in radians.
    """

    masks: torch.Tensor
    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    R0: torch.Tensor
    t0: torch.Tensor
    angle: torch.Tensor


def perturbed_pose_trials(mesh: Mesh, n: int, seed: int, *, size: int = 256, max_deg: float = 40.0) -> PoseTrials:
    """``n`` seeded trials of ``mesh`` (see the module docstring); ``max_deg >= 10``."""
    if n < 1 or max_deg < 10:
        raise ValueError(f"perturbed_pose_trials: need n >= 1 and max_deg >= 10, got {n}, {max_deg}")
    f64 = torch.float64
    g = torch.Generator().manual_seed(int(seed))
    az = torch.rand(n, generator=g, dtype=f64) * 2 * math.pi
    el = torch.deg2rad(torch.rand(n, generator=g, dtype=f64) * 30 + 5)
    R, t = viewpoint_to_pose(az, el, torch.zeros(n, dtype=f64), torch.full((n,), 2.6, dtype=f64))
    fpx = 1.7 * size
    K = torch.tensor([[fpx, 0, size / 2], [0, fpx, size / 2], [0, 0, 1]], dtype=f64)
    masks = hard_silhouettes(mesh.verts.double().expand(n, -1, -1), mesh.faces, R, t, K, None, size).float()
    axis = torch.randn(n, 3, generator=g, dtype=f64)
    axis = axis / axis.norm(dim=1, keepdim=True)
    ang = torch.deg2rad(10 + torch.rand(n, generator=g, dtype=f64) * (max_deg - 10))
    R0 = so3_exp(axis * ang[:, None]) @ R
    t0 = t + torch.randn(n, 3, generator=g, dtype=f64) * torch.tensor([0.03, 0.03, 0.1], dtype=f64)
    return PoseTrials(masks=masks, K=K, R=R, t=t, R0=R0, t0=t0, angle=ang)
