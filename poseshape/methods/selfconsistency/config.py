"""Configuration of ``selfconsistency`` (paper 001). Defaults are the paper's values where it
gives one; where it is silent the default is ours and the comment says so.

Two presets:

* ``paper`` (the dataclass defaults): full-width networks, batch 32, Adam 2e-4, 48^2 masks,
  N = 64 ray samples, lambda_p = 3, lambda_ray = 10, lambda_proj = 0.25, lambda_KL = 0.02.
* ``cpu`` (:data:`CPU_PRESET`, ``presets/cpu.yaml``): the same losses and weights with
  quarter-width networks and fewer iterations, plus our azimuth-bin search
  (:mod:`.pose_search`: 16 bins, a 15 deg elevation step; no GT pose either), so that a 2-core
  CPU learns a real model (shape and pose) in minutes: ``poseshape train selfconsistency --config
  poseshape/methods/selfconsistency/presets/cpu.yaml --set data.train=DIR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["CPU_PRESET", "PRESETS", "DataPaths", "SelfConsistencyConfig"]


@dataclass
class DataPaths:
    """Folders written by ``poseshape data render`` (pinhole ``--framing fixed``, 32^3 voxels).

    Attributes:
        train: rendered image / mask / voxel shards (the pose is never read for training).
        val: held-out rendered set for validation (optional; its pose is used only to report).
    """

    train: str = ""
    val: str = ""


@dataclass
class SelfConsistencyConfig:
    """Hyper-parameters of paper 001 (section 2 and 3)."""

    image_size: int = 64  # paper: 64 x 64 x 3 input
    voxel_res: int = 32  # paper: 32^3 aligned voxels
    posed_res: int = 48  # paper: 48^3 pose-aware voxels
    mask_res: int = 48  # paper: 48^2 masks (decoder output and the GT masks of L_sc)
    shape_code: int = 512  # paper: z_s, 512 (mu and log sigma^2)
    pose_code: int = 16  # paper: z_p, 16
    #: Channel multiplier of every hidden layer (1.0 = ours at the paper's code sizes; the
    #: paper gives no channel counts).
    width: float = 1.0
    #: Mask decoder skip connections from the encoder (U-Net style; ours: the paper names
    #: U-Net without giving its wiring).
    mask_skips: bool = True
    lambda_p: float = 3.0  # paper: positive weight of the voxel BCE (eq. 8)
    lambda_ray: float = 10.0  # paper (eq. 6)
    lambda_proj: float = 0.25  # paper (eq. 6)
    lambda_kl: float = 0.02  # paper (eq. 12)
    n_samples: int = 64  # paper: N = 64 ray samples
    #: Ray samples: "paper" (d_i = i / N) or "sphere" (bounding-sphere chord); see
    #: :mod:`poseshape.losses.consistency`.
    ray_sampling: str = "paper"
    #: Eqs. 5 and 9 as printed (``+ P m`` in the denominator) instead of the soft IoU (ours).
    literal_iou: bool = False
    lr: float = 2e-4  # paper: Adam 2e-4
    batch_size: int = 32  # ours (the paper gives none)
    iterations: int = 60000  # ours
    #: Camera of the data (ours: the data engine's ring24 setting): distance (object units)
    #: and the horizontal field of view of the ``fixed`` framing; translation is fixed and K
    #: known, as in the paper.
    distance: float = 2.732
    fov_deg: float = 30.0
    #: Elevation output range (degrees): ``el = el_max * tanh(raw)`` (ours).
    elevation_max_deg: float = 90.0
    #: Azimuth bins found by self-consistency search (ours, :mod:`.pose_search`): 0 = the
    #: paper's direct regression; K > 0 = K bin logits trained on the bin whose centre
    #: azimuth gives the GT voxels the lowest L_sc with the GT mask, plus a residual that
    #: eq. 6 refines.  No GT pose either way.
    pose_bins: int = 0
    #: Weight of the bin cross-entropy (ours).
    lambda_bin: float = 1.0
    #: Mask side and ray samples of the (gradient-free) bin search (ours).
    search_res: int = 24
    search_samples: int = 32
    #: Elevation step of the search (degrees, ours): > 0 also tries the head's elevation
    #: +- this step and regresses the elevation to the best of the three (a trust-region
    #: step per iteration); 0 searches at the head's elevation only.
    search_elevation_step_deg: float = 0.0
    val_every: int = 1000
    val_samples: int = 256
    grad_clip: float | None = 10.0  # ours
    num_workers: int = 0
    data: DataPaths = field(default_factory=DataPaths)

    @property
    def elevation_max(self) -> float:
        """``elevation_max_deg`` in radians."""
        return math.radians(self.elevation_max_deg)


#: The ``cpu`` preset as ``--set`` overrides (same as ``presets/cpu.yaml``).
CPU_PRESET: dict[str, object] = {
    "width": 0.25,
    "batch_size": 16,
    "iterations": 2500,
    "val_every": 500,
    "val_samples": 96,
    "pose_bins": 16,
    "search_elevation_step_deg": 15.0,
}

#: Named ``--set preset=NAME`` overrides: ``cpu`` (the shipped run, :data:`CPU_PRESET`) and
#: ``quick`` (a few minutes on a laptop CPU, to check that a setup trains at all).
PRESETS: dict[str, tuple[str, ...]] = {
    "cpu": tuple(f"{k}={v}" for k, v in CPU_PRESET.items()),
    "quick": ("width=0.25", "batch_size=16", "iterations=200", "val_every=100", "val_samples=32"),
}
