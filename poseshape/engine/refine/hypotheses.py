"""Pose hypotheses: a pose head's few most likely rotations, and refinement starts made of them.

Issue 19: refinement only finds the pose inside the basin of its starts, so a wrong (e.g.
front/back-flipped) prediction stays wrong. Every method's :class:`~poseshape.engine.prediction.Prediction`
therefore carries ``hypotheses (B, K, 3, 3)``, best first:

* a classification head (``retrieval``'s rotation anchors) gives its ``K`` best-scoring
  anchors, each with its residual;
* a regression head gives :func:`flip_hypotheses`: the regressed rotation and its turns by
  180 and +-90 degrees about the object's up axis (the confusions of near-symmetric objects:
  front/back and the two side views).

:func:`hypothesis_starts` turns them into the starts of the multi-start refinement
(:func:`poseshape.engine.refine.refine_prediction`), which keeps the best by silhouette IoU.
"""

from __future__ import annotations

import math

import torch

from poseshape.core.checks import check_shape
from poseshape.engine.refine.pose import start_rotations
from poseshape.geometry.rotations import so3_exp

__all__ = ["FLIP_TURNS_DEG", "flip_hypotheses", "hypothesis_starts"]

#: The turns about the object's up axis (+Y) of :func:`flip_hypotheses`, degrees, in order.
FLIP_TURNS_DEG = (0.0, 180.0, 90.0, -90.0)


def _turn_up(deg: float, dtype) -> torch.Tensor:
    return so3_exp(torch.tensor([0.0, math.radians(deg), 0.0], dtype=torch.float64)).to(dtype)


def flip_hypotheses(R: torch.Tensor) -> torch.Tensor:
    """Flip-aware hypotheses of a regressed rotation: ``R (B, 3, 3)`` -> ``(B, 4, 3, 3)``
    ``R Ry(a)`` for ``a`` in :data:`FLIP_TURNS_DEG` (the first is ``R`` itself)."""
    check_shape(R, "R", (None, 3, 3), batch=False)
    return torch.stack([R @ _turn_up(a, R.dtype).to(R.device) for a in FLIP_TURNS_DEG], 1)


def hypothesis_starts(R0: torch.Tensor, hypotheses: torch.Tensor, n: int, perturb_deg: float = 35.0) -> torch.Tensor:
    """Refinement starts from a pose head's hypotheses: ``R0 (B, 3, 3)``, ``hypotheses
    (B, K, 3, 3)`` (best first) -> ``(B, M, 3, 3)``, ``n <= M <= n + 2 (K - 1)``.

    The ``n`` :func:`~poseshape.engine.refine.pose.start_rotations` around ``R0`` come first (so
    ``R0`` stays the prior of ``select_margin``), then each further hypothesis ``H_k`` and its
    180-degree flip about the object's up axis ``H_k Ry(pi)``. A candidate within 1 degree of a
    start already in the list (for every item of the batch) is left out.
    """
    check_shape(R0, "R0", (None, 3, 3), batch=False)
    check_shape(hypotheses, "hypotheses", (R0.shape[0], None, 3, 3), batch=False)
    starts = list(start_rotations(R0, n, perturb_deg).unbind(1))
    flip = _turn_up(180.0, R0.dtype).to(R0.device)
    cos_tol = math.cos(math.radians(1.0))
    for k in range(1, hypotheses.shape[1]):
        H = hypotheses[:, k].to(R0.dtype)
        for cand in (H, H @ flip):
            have = torch.stack(starts, 1)  # (B, m, 3, 3)
            tr = (have.transpose(-1, -2) @ cand[:, None]).diagonal(dim1=-2, dim2=-1).sum(-1)
            if ((tr - 1) / 2 > cos_tol).any(1).all():
                continue
            starts.append(cand)
    return torch.stack(starts, 1)
