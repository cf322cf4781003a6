"""poseshape.testing.refine_trials: seeded perturbed-pose trials, checked with scipy and trimesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from poseshape.shapes.procedural import generate
from poseshape.testing.refine_trials import perturbed_pose_trials


def test_trials_are_seeded_and_perturbed_as_documented():
    mesh, _ = generate("car", 0)
    a = perturbed_pose_trials(mesh, 6, seed=3, size=64, max_deg=25.0)
    b = perturbed_pose_trials(mesh, 6, seed=3, size=64, max_deg=25.0)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.R0, b.R0) and torch.equal(a.t0, b.t0)
    assert a.masks.shape == (6, 1, 64, 64) and a.K.shape == (3, 3) and a.R.dtype == torch.float64
    # the start is the true rotation turned by `angle` (scipy's geodesic distance)
    for i in range(6):
        d = (Rotation.from_matrix(a.R0[i].numpy()) * Rotation.from_matrix(a.R[i].numpy()).inv()).magnitude()
        assert d == pytest.approx(float(a.angle[i]), abs=1e-9)
    assert (np.degrees(a.angle.numpy()) >= 10).all() and (np.degrees(a.angle.numpy()) <= 25).all()
    # every mask shows the object, inside the frame, at a depth of 2.6 units
    assert (a.masks.flatten(1).sum(1) > 20).all() and (a.t.norm(dim=1) - 2.6).abs().max() < 1e-9
    assert a.masks[..., 0, :].sum() == 0 and a.masks[..., -1].sum() == 0
    with pytest.raises(ValueError, match="max_deg >= 10"):
        perturbed_pose_trials(mesh, 2, seed=0, max_deg=5.0)
