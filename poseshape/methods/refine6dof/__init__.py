"""Method ``refine6dof``: paper 003 (Palazzi et al.), 6-DoF pose by an encoder + online refinement.

Data flow, image -> posed medoid mesh::

    camera image (B,3,S,S) --encoder (5 convs + 2 dense branches)--> cluster logits (B,C)
                                                                  \\-> ZYX Euler (cos,sin) + t -> P = [R | t]
    medoid of the argmax cluster --soft rasteriser (eq. 5) at (R, t, K)--> silhouette
    silhouette vs observed mask --30 Adam steps on a copy of the encoder weights--> refined (R, t)
    medoid mesh placed by (R, t) in the camera frame (scene.py: several objects -> one GLB/OBJ)

Files: ``config.py`` (paper defaults), ``model.py`` (encoder, medoid bank), ``clusters.py``
(HOG / voxel-IoU distances, k-medoids, medoids), ``data.py`` (collection, 6-DoF renders,
labels), ``train.py`` (stages ``clusters``, ``encoder``), ``online.py`` (§4.2),
``predictor.py``, ``evaluate.py`` (Table 1 rows for ``poseshape eval``), ``scene.py``. Train
with ``poseshape train refine6dof --out runs/r6``
(procedural cars) or ``--set data.meshes=../shared/data/pascal3d_cad``; see
``docs/refine6dof.md``.
"""

from poseshape.engine.registry import MethodSpec, register_method
from poseshape.methods.refine6dof import (
    evaluate as _table,  # the module (the function would shadow it as an attribute)
)
from poseshape.methods.refine6dof.config import PRESETS, DataConfig, Refine6DofConfig
from poseshape.methods.refine6dof.predictor import Refine6DofPredictor
from poseshape.methods.refine6dof.train import build, stages

SPEC = register_method(
    MethodSpec(
        name="refine6dof",
        config_cls=Refine6DofConfig,
        build=build,
        stages=stages,
        predictor=Refine6DofPredictor,
        evaluate=_table.evaluate,
        description="paper 003: class + 6-DoF pose encoder, cluster medoids, online silhouette refinement",
        presets=PRESETS,
    ),
    replace=True,
)

__all__ = ["SPEC", "DataConfig", "Refine6DofConfig", "Refine6DofPredictor"]
