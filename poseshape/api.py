"""The public Python API: ``poseshape.load(name_or_checkpoint) -> Predictor``.

::

    import poseshape
    model = poseshape.load("reproject")                          # shipped default, or a checkpoint path
    result = model.reconstruct("car.png", mask="car_mask.png")   # -> Prediction
    result.mesh, result.pose, result.camera; result.save("out/car")

``model.reconstruct`` runs the same steps as ``poseshape reconstruct``
(:mod:`poseshape.engine.reconstruct`) on a path, a PIL image, a numpy array or a tensor (or
a list of them), and returns a :class:`~poseshape.engine.prediction.Prediction` whose camera
is in the input image's pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from poseshape.core.errors import PoseshapeError
from poseshape.engine.predictor import Predictor, load_predictor, resolve_device
from poseshape.engine.registry import list_methods

__all__ = ["load"]


def load(
    name_or_checkpoint: str | os.PathLike = "reproject",
    *,
    method: str | None = None,
    device: str | torch.device | None = None,
) -> Predictor:
    """A trained model, ready to :meth:`~poseshape.engine.predictor.Predictor.reconstruct`.

    Args:
        name_or_checkpoint: a registered method name (its shipped default model in
            ``poseshape/assets/``) or the path of a checkpoint written by ``poseshape train``.
        method: with a checkpoint path, the method it must belong to.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CUDA when available, else CPU.

    Raises:
        CheckpointError: a missing or corrupt checkpoint, or no shipped model for the method.
        PoseshapeError: an unknown method name or device.
    """
    dev = resolve_device(device)
    s = os.fspath(name_or_checkpoint)
    looks_like_path = Path(s).suffix in (".pt", ".pth") or os.sep in s or Path(s).exists()
    if not looks_like_path:
        if s not in list_methods():
            raise PoseshapeError(f"{s!r} is neither a method ({', '.join(list_methods())}) nor a checkpoint file")
        return load_predictor(None, method=s, device=dev)
    return load_predictor(s, method=method, device=dev)
