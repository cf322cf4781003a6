"""The test-time side of a method: the :class:`Predictor` protocol and how one is loaded.

A method registers a :class:`Predictor` subclass (``MethodSpec.predictor``). It declares what
it needs and gives in :class:`Capabilities` -- callers read these, they never probe -- and
implements :meth:`Predictor.predict` (square crops -> :class:`Prediction`). Refinement against
a mask (:meth:`Predictor.refine`) defaults to the engine's generic
:func:`poseshape.engine.refine.refine_prediction`; a method overrides it to keep its own
frames consistent. :meth:`Predictor.reconstruct` runs the whole user path on any image input
(:func:`poseshape.engine.reconstruct.reconstruct`).
"""

from __future__ import annotations

import abc
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from poseshape.core.errors import CheckpointError, PoseshapeError
from poseshape.core.paths import PACKAGE_ROOT
from poseshape.engine import reconstruct as _reconstruct
from poseshape.engine.prediction import SHAPE_KINDS, Prediction
from poseshape.engine.refine import RefineConfig, RefineResult, refine_prediction
from poseshape.engine.registry import list_methods
from poseshape.engine.train import load_trained
from poseshape.geometry.camera import CAMERA_KINDS

__all__ = ["Capabilities", "Predictor", "default_checkpoint", "load_predictor", "resolve_device"]


@dataclass(frozen=True)
class Capabilities:
    """What a predictor needs and produces (declared by each method, read by callers).

    Attributes:
        needs_mask: it cannot predict without an object mask.
        uses_mask: it uses a mask when one is given (e.g. online refinement).
        full_frame: it sees the whole (padded) camera image, not a crop around the mask
            (its translation is predicted in that frame).
        crop_margin: margin (fraction of the mask box's longer side, each side) of the crop
            around a mask, the framing the method was trained on (unused with ``full_frame``).
        refinable: :meth:`Predictor.refine` gives a meaningful pose refinement.
        shape_kinds: canonical shape forms of its predictions (subset of ``("mesh", "voxels")``).
        camera: the camera kind of its predictions (``"pinhole"`` or ``"weak_perspective"``).
    """

    needs_mask: bool = False
    uses_mask: bool = False
    full_frame: bool = False
    crop_margin: float = 0.1
    refinable: bool = True
    shape_kinds: tuple[str, ...] = ("voxels",)
    camera: str = "weak_perspective"

    def __post_init__(self) -> None:
        if not set(self.shape_kinds) <= set(SHAPE_KINDS) or not self.shape_kinds:
            raise PoseshapeError(
                f"Capabilities.shape_kinds: expected a subset of {SHAPE_KINDS}, got {self.shape_kinds}"
            )
        if self.camera not in CAMERA_KINDS:
            raise PoseshapeError(f"Capabilities.camera: expected one of {CAMERA_KINDS}, got {self.camera!r}")
        if not self.crop_margin >= 0:
            raise PoseshapeError(f"Capabilities.crop_margin: expected >= 0, got {self.crop_margin!r}")


class Predictor(abc.ABC):
    """Base class of a method's test-time model (registered as ``MethodSpec.predictor``).

    Constructed as ``cls(config, models)`` by :func:`load_predictor` (``models`` in ``eval()``
    mode on the target device).

    Attributes:
        image_size: ``S``, side of the square crops the networks expect (pixels).
        method: registered method name (set by :func:`load_predictor` when empty).
        capabilities: the method's :class:`Capabilities` (a class attribute).
        checkpoint_path: the file it was loaded from (set by :func:`load_predictor`).
    """

    image_size: int = 0
    method: str = ""
    capabilities: Capabilities = Capabilities()
    checkpoint_path: Path | None = None

    @abc.abstractmethod
    def predict(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        """Predict shape and pose for square crops.

        Args:
            images: ``(B, 3, S, S)`` float RGB crops in [0, 1].
            masks: optional ``(B, 1, S, S)`` {0, 1} object masks of the crops.

        Returns:
            A :class:`Prediction` of ``B`` items whose camera refers to the ``S x S`` crop.
        """

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Prediction:
        return self.predict(images, masks)

    def refine_config(self) -> RefineConfig:
        """The default settings of :meth:`refine` for this method."""
        return RefineConfig()

    def refine(
        self, pred: Prediction, i: int, mask: torch.Tensor, config: RefineConfig | None = None
    ) -> tuple[Prediction, RefineResult]:
        """Align item ``i``'s pose to ``mask`` (``(1, H, H)``: the mask of the square the
        prediction's camera sees, any resolution). Default: the engine's generic
        :func:`poseshape.engine.refine.refine_prediction`."""
        return refine_prediction(pred, i, mask, config or self.refine_config())

    def reconstruct(self, image, mask=None, *, refine=None):
        """Image(s) -> :class:`Prediction` whose camera is in the input image's pixels.

        ``image``: a path, PIL image, numpy array or ``(3, H, W)`` tensor, or a list of them
        (then a list of predictions); ``mask`` likewise (or ``None``: an RGBA image's alpha is
        used when it has one). ``refine``: ``True``/``False``/a :class:`RefineConfig`; default
        ``None`` refines when a mask is available and the method is refinable. See
        :func:`poseshape.engine.reconstruct.reconstruct`.
        """
        return _reconstruct.reconstruct(self, image, mask, refine=refine)


# =============================================================================== checkpoints
def resolve_device(device: str | torch.device | None) -> torch.device:
    """A usable torch device: ``None`` -> CUDA when available, else CPU.

    Raises:
        PoseshapeError: not a device name, or a device this machine does not have (the message
            lists the ones it has).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise PoseshapeError(f"device {device!r}: not a device name (use cpu, cuda or cuda:N)") from None
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    have = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(n)])
    if dev.type == "cuda" and (dev.index or 0) >= n:
        raise PoseshapeError(f"device {device!r} is not available on this machine; devices: {have}")
    if dev.type not in ("cpu", "cuda"):
        raise PoseshapeError(f"device {device!r} is not supported; devices: {have}")
    return dev


_METHOD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def default_checkpoint(method: str) -> Path:
    """``poseshape/assets/<method>.pt`` inside the installed package (may not exist).

    Raises:
        PoseshapeError: ``method`` is not a plain name.
    """
    if not isinstance(method, str) or not _METHOD_NAME.match(method):
        raise PoseshapeError(f"method: expected a method name such as 'reproject', got {method!r}")
    return PACKAGE_ROOT / "assets" / f"{method}.pt"


def load_predictor(
    checkpoint: str | os.PathLike | None = None, method: str | None = None, device: str | torch.device | None = None
) -> Predictor:
    """Build a trained method's :class:`Predictor`.

    Args:
        checkpoint: a checkpoint file written by ``poseshape train`` (read safely with
            ``torch.load(weights_only=True)``). ``None``: the shipped default of ``method``
            (:func:`default_checkpoint`).
        method: expected method name; a checkpoint of another method is refused.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available, else CPU.

    Returns:
        ``spec.predictor(config, models)`` of the checkpoint's registered method, its
        ``method`` attribute set.

    Raises:
        CheckpointError: missing/corrupt checkpoint, another method's checkpoint, another
            conventions version, no default model for ``method``.
        PoseshapeError: neither argument given; the method registers no predictor.
    """
    if checkpoint is None:
        if method is None:
            raise PoseshapeError("load_predictor: give a checkpoint file or a method name")
        if method not in list_methods():
            raise PoseshapeError(f"unknown method {method!r}; the methods are {', '.join(list_methods())}")
        path = default_checkpoint(method)
        if not path.is_file():
            raise CheckpointError(
                f"no default model for method {method!r}: {path} does not exist. Train one with "
                f"`poseshape train {method} --out runs/{method} --set data.train=...` and pass "
                f"`--checkpoint runs/{method}/last.pt`, or run `poseshape demo --train`"
            )
    else:
        path = Path(checkpoint)
    device = resolve_device(device)
    spec, config, models = load_trained(path, method=method, device=device)
    if spec.predictor is None:
        raise PoseshapeError(f"{path}: method {spec.name!r} registers no predictor, so it cannot reconstruct")
    predictor = spec.predictor(config, models)
    if not isinstance(predictor, Predictor):
        raise PoseshapeError(f"{path}: method {spec.name!r}'s predictor is not a poseshape Predictor")
    if not predictor.method:
        predictor.method = spec.name
    predictor.checkpoint_path = path
    S = predictor.image_size
    if not isinstance(S, int) or isinstance(S, bool) or S < 1:
        raise PoseshapeError(f"{path}: the {spec.name!r} predictor has no valid image_size (got {S!r})")
    return predictor
