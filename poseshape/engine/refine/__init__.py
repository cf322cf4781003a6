"""Test-time pose (and optionally shape) refinement against an object mask, for any method.

* :mod:`.pose` -- :func:`refine_pose`, the batched multi-start silhouette alignment, and its
  :class:`RefineConfig` / :class:`RefineResult`;
* :mod:`.hypotheses` -- a pose head's rotation hypotheses (:func:`flip_hypotheses`) and the
  refinement starts made of them (:func:`hypothesis_starts`);
* :mod:`.prediction` -- :func:`refine_prediction`, the same for any
  :class:`~poseshape.engine.prediction.Prediction` (its mesh, pose and camera);
* :mod:`.animation` -- GIF / frame strips of a refinement.
"""

from poseshape.engine.refine.hypotheses import flip_hypotheses, hypothesis_starts
from poseshape.engine.refine.pose import (
    RefineConfig,
    RefineResult,
    hard_silhouettes,
    overlay_frames,
    refine_pose,
    save_animation,
    simplify_mesh,
    start_rotations,
)
from poseshape.engine.refine.prediction import refine_prediction

__all__ = [
    "RefineConfig",
    "RefineResult",
    "flip_hypotheses",
    "hard_silhouettes",
    "hypothesis_starts",
    "overlay_frames",
    "refine_pose",
    "refine_prediction",
    "save_animation",
    "simplify_mesh",
    "start_rotations",
]
