"""poseshape: pose-aware 3-D shape and 6-DoF pose from a single image.

::

    import poseshape
    model = poseshape.load("reproject")                          # shipped default, or a checkpoint path
    result = model.reconstruct("car.png", mask="car_mask.png")   # -> Prediction
    result.mesh, result.pose, result.camera; result.save("out/car")

The names below are imported on first use (PEP 562), so ``import poseshape`` and the
``poseshape`` command start quickly.
"""

from poseshape.core.version import __version__

#: public name -> module that defines it
_EXPORTS = {
    "load": "poseshape.api",
    "Prediction": "poseshape.engine.prediction",
    "Predictor": "poseshape.engine.predictor",
    "Capabilities": "poseshape.engine.predictor",
    "Camera": "poseshape.geometry.camera",
    "Mesh": "poseshape.shapes.meshes",
    "RefineConfig": "poseshape.engine.refine",
    "PoseshapeError": "poseshape.core.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'poseshape' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
