"""Method ``posefree``: paper 002, single-view mesh reconstruction without pose labels.

Data flow::

    stage 1  z ~ N(0, I) --G (3 FC)--> 642 x 3 offsets of a level-3 icosphere --Proj(., v)-->
             silhouette; D1 (WGAN-GP) tells it from training silhouettes (v ~ U azimuth, el 30)
    stage 2  Proj(G(z), v) --Rpose (5 conv + 2 FC, sigmoid)--> v'   (angle loss, eq. 4)
    stage 3  image --R (ResNet-18 + G-like decoder)--> mesh; soft IoU of Proj(mesh, Rpose(y))
             with y, D2 on Proj(mesh, v != Rpose(y)) (eqs. 6-7), Laplacian
    test     image + mask -> R's mesh posed at Rpose(mask) under the NMR camera

Files: ``config.py`` (paper defaults, presets), ``model.py``, ``data.py``, ``train.py``,
``predictor.py``, ``evaluate.py``. See ``docs/posefree.md``.
"""

from poseshape.engine.registry import MethodSpec, register_method
from poseshape.methods.posefree import evaluate as _table
from poseshape.methods.posefree.config import PRESETS, DataConfig, PosefreeConfig
from poseshape.methods.posefree.predictor import PosefreePredictor
from poseshape.methods.posefree.train import build, stages

SPEC = register_method(
    MethodSpec(
        name="posefree",
        config_cls=PosefreeConfig,
        build=build,
        stages=stages,
        predictor=PosefreePredictor,
        evaluate=_table.evaluate,
        description="paper 002: mesh GAN shape manifold + pseudo pose regressor + view-critic reconstructor (no pose labels)",
        presets=PRESETS,
    ),
    replace=True,
)

__all__ = ["PRESETS", "SPEC", "DataConfig", "PosefreeConfig", "PosefreePredictor"]
