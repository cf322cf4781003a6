"""Method ``retrieval``: paper 004, joint CAD retrieval and 6-DoF pose from disentangled
shape / pose embeddings with quaternion anchors.

Data flow, image -> posed retrieved CAD mesh::

    CAD model --voxelise 32^3--> grid --random rotation q (online)--> VoxNet (2 conv3D + FC)
        --> shape embedding (512) -> CE over the models        \\  stage I
        --> pose embedding (512)  -> anchor CE + residual Huber /
    image (B,3,S,S) --ResNet--> shape / pose embeddings (L1 to stage I's) + translation cells
        --> nearest database model (exact L2) + anchor/residual rotation + cell/residual t
    -> the retrieved mesh posed by (R, t) under a pinhole camera (K from fov_deg)

Files: ``config.py`` (paper defaults, CPU preset), ``model.py`` (networks, anchor
encode/decode, voxel rotation), ``database.py`` (model bank, database files, exact index),
``data.py`` (collection, stage-I samples, stage-II renders), ``train.py`` (stages
``database``, ``embedding``, ``index``, ``regression``), ``predictor.py``, ``evaluate.py``.
See ``docs/retrieval.md``.
"""

from poseshape.engine.registry import MethodSpec, register_method
from poseshape.methods.retrieval import evaluate as _table  # the module, not the function
from poseshape.methods.retrieval.config import CPU_PRESET, PRESETS, DataConfig, RetrievalConfig
from poseshape.methods.retrieval.predictor import RetrievalPredictor
from poseshape.methods.retrieval.train import build, stages

SPEC = register_method(
    MethodSpec(
        name="retrieval",
        config_cls=RetrievalConfig,
        build=build,
        stages=stages,
        predictor=RetrievalPredictor,
        evaluate=_table.evaluate,
        description="paper 004: CAD retrieval + 6-DoF pose from disentangled voxel embeddings and quaternion anchors",
        presets=PRESETS,
    ),
    replace=True,
)

__all__ = ["CPU_PRESET", "SPEC", "DataConfig", "RetrievalConfig", "RetrievalPredictor"]
