"""Method ``reproject``: paper 000's p-TL and p-3D-VAE-GAN (pose-aware shape reconstruction).

Data flow, image -> posed mesh::

    image (B,3,S,S) --style regressor--> s (B,200) --decoder--> aligned voxels (B,1,30,30,30)
          \\--pose regressor--> p = (w, tx, ty) (B,5) --R = exp(w) R0, t = (tx, ty, 0)
    aligned --rigid inverse warp W^-1(p) (frame.posed_voxels)--> posed voxels (camera axes)
    posed --max over depth (eq. 3)--> silhouette over the image crop; marching cubes -> mesh

Files: ``config.py`` (paper defaults), ``frame.py`` (the weak-perspective posed frame and the
targets), ``model.py`` (networks of Appendix I.a), ``data.py`` (rendered / silhouette-only sets),
``train.py`` (the three stages), ``predictor.py`` (inference and its refinement adapter),
``evaluate.py`` (Tables 3 and 4). Train with
``poseshape train reproject --set data.train=... --set data.natural=... --out runs/rp``.
"""

from poseshape.engine.registry import MethodSpec, register_method
from poseshape.methods.reproject.config import PRESETS, ReprojectConfig
from poseshape.methods.reproject.evaluate import evaluate
from poseshape.methods.reproject.predictor import ReprojectPredictor
from poseshape.methods.reproject.train import build, stages

SPEC = register_method(
    MethodSpec(
        name="reproject",
        config_cls=ReprojectConfig,
        build=build,
        stages=stages,
        predictor=ReprojectPredictor,
        evaluate=evaluate,
        description="paper 000: p-TL / p-3D-VAE-GAN, pose-aware voxels, reprojection fine-tuning",
        presets=PRESETS,
    ),
    replace=True,
)

__all__ = ["SPEC", "ReprojectConfig", "ReprojectPredictor"]
