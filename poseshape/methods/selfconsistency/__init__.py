"""Method ``selfconsistency``: paper 001, pose-aware shape from one image, pose learned from
2D-3D self-consistency between GT masks and GT voxels (no GT pose).

Data flow, image -> posed shape::

    image (B,3,64,64) --E (residual)--> mu_s, logvar_s (B,512), z_p (B,16)
        z_s --D_v (2-D deconv voxel tube)--> aligned voxels (B,1,32,32,32)
        (mu_s, z_p) --D_m (U-Net)--> mask (B,1,48,48)
        z_p --FC--> (azimuth, elevation) -> R; t = (0, 0, distance) fixed, K known
            (cpu preset: azimuth bins + residual, pose_search.py)
    aligned --eq. 7 (pose_voxels, t = 0)--> pose-aware voxels (B,1,48,48,48)

Files: ``config.py`` (paper defaults, ``cpu`` preset), ``frame.py`` (camera frame),
``model.py`` (networks), ``losses.py`` (eq. 9, eq. 12), ``pose_search.py`` (our azimuth-bin
search, the ``cpu`` preset's), ``data.py``, ``train.py``,
``predictor.py``, ``evaluate.py`` (Tables 1-4 and the flip share). See docs/selfconsistency.md.
"""

from poseshape.engine.registry import MethodSpec, register_method
from poseshape.methods.selfconsistency.config import PRESETS, SelfConsistencyConfig
from poseshape.methods.selfconsistency.evaluate import evaluate
from poseshape.methods.selfconsistency.predictor import SelfConsistencyPredictor
from poseshape.methods.selfconsistency.train import build, stages

SPEC = register_method(
    MethodSpec(
        name="selfconsistency",
        config_cls=SelfConsistencyConfig,
        build=build,
        stages=stages,
        predictor=SelfConsistencyPredictor,
        evaluate=evaluate,
        presets=PRESETS,
        description="paper 001: pose-aware voxels, pose from 2D-3D self-consistency (no GT pose)",
    ),
    replace=True,
)

__all__ = ["SPEC", "SelfConsistencyConfig", "SelfConsistencyPredictor"]
