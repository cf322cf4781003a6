"""The user path: an image (+ mask) -> a :class:`Prediction` in the image's pixels -> files.

Steps (the CLI's ``poseshape reconstruct`` and the API's ``model.reconstruct`` both run them):

1. :func:`load_input` -- any image input (path, PIL, numpy, tensor) and its mask (or the
   image's alpha; or ``"auto"`` / ``"box:x0,y0,x1,y1"``: a mask made by GrabCut,
   :mod:`poseshape.engine.grabcut`) -> :class:`InputItem`; a method that needs a mask and
   gets none is given the automatic one, with a warning (:func:`fill_mask`);
2. :func:`predictor_square` -- the ``S x S`` square the predictor sees: a crop around the
   mask's box (``capabilities.crop_margin``), or the whole image padded to a square
   (``capabilities.full_frame``, or no mask);
3. ``predictor.predict(crop, crop_mask)`` -> a prediction whose camera sees the crop;
4. ``predictor.refine(...)`` against the mask of the same square: by default whenever there
   is a mask and the method is refinable (``refine=False`` turns it off);
5. the camera is moved into the input image's pixels (:meth:`Camera.uncrop`) and the input
   image and mask are attached, so :meth:`Prediction.save` writes files that line up;
6. :mod:`poseshape.engine.diagnostics` checks the mask and the result; the confidence
   (refined: pose agreement x basin uniqueness x category probability; otherwise silhouette
   IoU x category probability, :func:`~poseshape.engine.diagnostics.confidence_terms`) and each warning (with its fix) go into the
   record (``pose.json``), and each warning is also emitted as a ``PoseshapeWarning``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from poseshape.core.errors import PoseshapeError, PoseshapeWarning
from poseshape.engine.diagnostics import (
    basin_uniqueness,
    confidence_terms,
    image_warnings,
    mask_warnings,
    pose_agreement,
    result_warnings,
)
from poseshape.engine.grabcut import auto_mask, box_from_points, grabcut_mask, parse_box_spec
from poseshape.engine.inputs import as_image, as_mask, crop_to_square, read_image, read_mask
from poseshape.engine.output import write_prediction
from poseshape.engine.prediction import Prediction
from poseshape.engine.refine import RefineConfig
from poseshape.engine.segmenter import learned_mask, segmenter_available

__all__ = [
    "AUTO",
    "InputItem",
    "auto_mask_source",
    "automatic_mask",
    "fill_mask",
    "is_mask_spec",
    "load_input",
    "mask_from_spec",
    "predictor_square",
    "reconstruct",
    "reconstruct_image",
]


@dataclass
class InputItem:
    """One validated input.

    Attributes:
        image: ``(3, H, W)`` float in [0, 1]; mask: ``(1, H, W)`` {0, 1} or None.
        mask_source: ``"file"``, ``"array"``, ``"alpha"`` (the image's alpha channel),
            ``"segmenter-auto"`` (made by the learned segmenter), ``"grabcut-auto"`` /
            ``"grabcut-box"`` (made by GrabCut) or None.
        image_path, mask_path: the files, when the inputs were files.
        notes: doubtful findings made while reading (e.g. a grey mask), as warning texts.
    """

    image: torch.Tensor
    mask: torch.Tensor | None
    mask_source: str | None
    image_path: Path | None
    mask_path: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.mask_path or self.image_path or "mask")


#: The mask spec that asks for an automatic mask (:func:`auto_mask_source`).
AUTO = "auto"


def auto_mask_source() -> str:
    """What ``--mask auto`` uses now: ``"segmenter-auto"`` (the learned segmenter,
    :func:`poseshape.engine.segmenter.learned_mask`) when its weights are installed, else
    ``"grabcut-auto"`` (GrabCut on the whole frame, :func:`poseshape.engine.grabcut.auto_mask`).
    ``POSESHAPE_AUTO_MASK=grabcut`` forces GrabCut."""
    if os.environ.get("POSESHAPE_AUTO_MASK", "").strip().lower() == "grabcut" or not segmenter_available():
        return "grabcut-auto"
    return "segmenter-auto"


def automatic_mask(image: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``--mask auto``'s mask of ``image (3, H, W)`` in [0, 1] and its ``mask_source``
    (:func:`auto_mask_source`). The learned mask is snapped to the image's edges by GrabCut seeded
    with its probability (chosen on validation renders: bench/RESULTS.md, "Without a mask").

    Returns:
        ``((1, H, W)`` float {0, 1}, source``).

    Raises:
        ShapeError: a bad image; PoseshapeError: no object is found.
    """
    source = auto_mask_source()
    rgb = _rgb_uint8(image)
    m = learned_mask(rgb, grabcut=True) if source == "segmenter-auto" else auto_mask(rgb)
    return torch.from_numpy(m).float()[None], source


def _rgb_uint8(image: torch.Tensor):
    return (image.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255 + 0.5).astype("uint8")


def is_mask_spec(mask) -> bool:
    """Whether ``mask`` asks for a GrabCut mask: ``"auto"`` or ``"box:..."``."""
    return isinstance(mask, str) and (mask == AUTO or mask.startswith("box:"))


def mask_from_spec(image: torch.Tensor, spec: str) -> torch.Tensor:
    """The mask poseshape makes for ``image (3, H, W)`` in [0, 1] from ``spec``: ``"auto"``
    (:func:`auto_mask_source`: the learned segmenter, or GrabCut on the whole frame less a thin
    border) or ``"box:x0,y0,x1,y1"`` (GrabCut in that box, pixels of the image).

    Returns:
        ``(1, H, W)`` float {0, 1}.

    Raises:
        ShapeError: a malformed spec or box; PoseshapeError: GrabCut finds no object.
    """
    if spec == AUTO:
        return automatic_mask(image)[0]
    rgb = _rgb_uint8(image)
    m = grabcut_mask(rgb, box_from_points(parse_box_spec(spec), rgb.shape[:2]))
    return torch.from_numpy(m).float()[None]


def load_input(image, mask=None) -> InputItem:
    """Read and check an image and its optional mask (paths, PIL images, arrays or tensors;
    see :func:`poseshape.engine.inputs.as_image`). ``mask`` may also be ``"auto"`` or
    ``"box:x0,y0,x1,y1"``: the mask is then made by GrabCut (:func:`mask_from_spec`); a file
    literally named ``auto`` is given as ``./auto``.

    Raises:
        PoseshapeError (and subclasses): unreadable / corrupt files, a mask of another size,
            an empty mask, a malformed box, GrabCut finding no object.
    """
    is_path = isinstance(image, (str, os.PathLike))
    ip = Path(image) if is_path else None
    img, alpha = read_image(ip) if is_path else as_image(image)
    notes: list[str] = []
    if is_mask_spec(mask):
        m, source = automatic_mask(img) if mask == AUTO else (mask_from_spec(img, mask), "grabcut-box")
        return InputItem(img, m, source, ip, None, notes)
    if mask is not None:
        if isinstance(mask, (str, os.PathLike)):
            mp = Path(mask)
            m = read_mask(mp, tuple(img.shape[-2:]), image_path=ip, notes=notes)
            return InputItem(img, m, "file", ip, mp, notes)
        return InputItem(img, as_mask(mask, tuple(img.shape[-2:]), notes=notes), "array", ip, None, notes)
    return InputItem(img, alpha, "alpha" if alpha is not None else None, ip, None, notes)


def fill_mask(predictor, item: InputItem) -> InputItem:
    """``item`` itself, or, when it has no mask and ``predictor`` needs one
    (``capabilities.needs_mask``), ``item`` with the automatic GrabCut mask and a note saying so.

    Raises:
        PoseshapeError: GrabCut finds no object (the message says how to give a mask).
    """
    if item.mask is not None or not predictor.capabilities.needs_mask:
        return item
    try:
        m, source = automatic_mask(item.image)
    except PoseshapeError as exc:
        raise PoseshapeError(f"{item.name}: method {predictor.method!r} needs an object mask and {exc}") from None
    how = "the learned segmenter" if source == "segmenter-auto" else "GrabCut on the whole frame"
    note = (
        f"no mask given and method {predictor.method!r} needs one: made one automatically ({how}, written as "
        "mask.png); check it, or give --mask M or --mask box:x0,y0,x1,y1"
    )
    return replace(item, mask=m, mask_source=source, notes=list(item.notes) + [note])


def predictor_square(
    predictor, image: torch.Tensor, mask: torch.Tensor | None, name: str = "mask"
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
    """The ``S x S`` square ``predictor`` sees (``S = predictor.image_size``), and its box.

    A ``full_frame`` predictor (``refine6dof``: the translation is predicted in the uncropped
    camera image) gets the whole image padded to a square, with the mask cut from that same
    square; any other gets :func:`poseshape.engine.inputs.crop_to_square`'s crop around the
    mask's box (``capabilities.crop_margin``), or the whole image without a mask.

    Returns:
        ``(crop (3, S, S), crop_mask (1, S, S) or None, box (x0, y0, side))``.

    Raises:
        PoseshapeError: the method needs a mask and none is given; the object vanishes at the
            full frame's ``S x S`` resolution; and the errors of ``crop_to_square``.
    """
    caps = predictor.capabilities
    if caps.needs_mask and mask is None:
        raise PoseshapeError(
            f"{name}: method {predictor.method!r} needs an object mask (--mask, or an RGBA image's alpha)"
        )
    S = int(predictor.image_size)
    crop, crop_mask, box = crop_to_square(image, mask, size=S, margin=caps.crop_margin, full_frame=caps.full_frame)
    if caps.full_frame and crop_mask is not None and not bool(crop_mask.any()):
        raise PoseshapeError(
            f"{name}: the object is too small for the model: its mask keeps no pixel when the "
            f"whole {box[2]}x{box[2]} frame is resized to the model's {S}x{S} input"
        )
    return crop, crop_mask, box


def _refine_settings(predictor, refine) -> RefineConfig | None:
    """``None`` (auto): the method's defaults when it is refinable (used only with a mask)."""
    if refine is None:
        return predictor.refine_config() if predictor.capabilities.refinable else None
    if refine is False:
        return None
    if isinstance(refine, RefineConfig):
        return refine
    if refine is True:
        return predictor.refine_config()
    raise PoseshapeError(f"refine: expected True, False, None or a RefineConfig, got {type(refine).__name__}")


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a >= 0.5, b >= 0.5
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0


def _one(
    predictor, item: InputItem, cfg: RefineConfig | None, auto: bool = False, category: str | None = None
) -> Prediction:
    item = fill_mask(predictor, item)
    if auto and item.mask is None:
        cfg = None  # refine by default only when there is a mask to refine against
    if cfg is not None and item.mask is None:
        raise PoseshapeError(
            f"{item.image_path or 'image'}: refinement needs an object mask (--mask, or an RGBA image's alpha)"
        )
    if cfg is not None and not predictor.capabilities.refinable:
        raise PoseshapeError(f"method {predictor.method!r} cannot refine its predictions; drop --refine")
    caps = predictor.capabilities
    notes = list(item.notes) + image_warnings(item.image) + mask_warnings(item.mask, caps.refinable)
    where = item.image_path or "image"
    for msg in notes:  # before predicting: a bad mask may make the prediction fail
        warnings.warn(f"{where}: {msg}", PoseshapeWarning, stacklevel=4)
    crop, crop_mask, box = predictor_square(predictor, item.image, item.mask, item.name)
    with torch.no_grad():
        pred = predictor.predict(crop[None], crop_mask[None] if crop_mask is not None else None)
    info = {
        "image": str(item.image_path) if item.image_path else None,
        "mask": str(item.mask_path) if item.mask_path else None,
        "mask_source": item.mask_source,
        "crop_size": int(predictor.image_size),
    }
    if caps.full_frame:
        info["full_frame"] = True  # the box is the whole image padded to a square
    category_probability = float(pred.confidence[0]) if pred.confidence is not None else None
    iou, margin, agreement, uniqueness = None, None, None, None
    if cfg is not None:
        # the same square at the refinement's resolution (full frame: at its own, capped,
        # since the object is small in it); refine_pose crops around the mask itself
        size = max(cfg.render_size, min(int(box[2]), 512)) if caps.full_frame else cfg.render_size
        _, rmask, rbox = crop_to_square(
            item.image, item.mask, size=size, margin=caps.crop_margin, full_frame=caps.full_frame
        )
        assert tuple(rbox) == tuple(box)
        R_predicted = pred.R[0].detach().cpu()
        pred, res = predictor.refine(pred, 0, rmask, cfg)
        agreement = pose_agreement(R_predicted, pred.R[0].detach().cpu())
        if getattr(res, "final_R", None) is not None:
            uniqueness = basin_uniqueness(res.final_R[0], res.start_iou[0], int(res.start[0]))
        info["refine"] = {
            "iou_before": float(res.iou_init[0]),
            "iou": float(res.iou[0]),
            "start": int(res.start[0]),
            "starts": int(res.starts_R.shape[1]),
            "steps": cfg.steps,
            "iou_frame": "refinement crop of the mask square (hard raster)",
        }
        if "refine_scale" in pred.extras:
            info["refine"]["scale_factor"] = float(pred.extras["refine_scale"])
        if "refine_aspect" in pred.extras:
            info["refine"]["shape_scale_xyz"] = list(pred.extras["refine_aspect"])
        iou = float(res.iou[0])
        scores = res.start_iou[0][~torch.isnan(res.start_iou[0])].sort(descending=True).values
        if scores.numel() > 1:
            margin = float(scores[0] - scores[1])
    elif crop_mask is not None:
        iou = _mask_iou(pred.render_silhouette(0), crop_mask)
    info["refined"] = cfg is not None
    predicted_category = pred.category[0] if pred.category else None
    late = result_warnings(
        iou,
        cfg is not None,
        predicted_category,
        category_probability,
        expected_category=category,
        trained_categories=getattr(predictor, "categories", None),
    )
    info["confidence_terms"] = confidence_terms(iou, category_probability, margin, agreement, uniqueness)
    for msg in late:
        warnings.warn(f"{where}: {msg}", PoseshapeWarning, stacklevel=4)
    notes += late
    H, W = item.image.shape[-2:]
    extras = dict(pred.extras)
    extras["record"] = info
    extras["box"] = tuple(box)
    extras["warnings"] = list(extras.get("warnings", [])) + notes
    conf = info["confidence_terms"]["confidence"]
    return pred.replace(
        camera=pred.camera.uncrop(box, (H, W)),
        silhouette=None,
        image=[item.image],
        mask=[item.mask],
        extras=extras,
        confidence=torch.tensor([conf]) if conf is not None else None,
    )


def reconstruct(predictor, image, mask=None, *, refine=None, category: str | None = None):
    """Reconstruct one image (or a list): see the module docstring.

    Args:
        predictor: a :class:`~poseshape.engine.predictor.Predictor`.
        image: a path, PIL image, numpy array or ``(3, H, W)`` tensor; or a list / a
            ``(B, 3, H, W)`` tensor of them.
        mask: the same kinds (one per image), or ``None``.
        refine: ``None`` (default: refine with the method's settings when there is a mask
            and the method is refinable), ``False`` (off), ``True`` (on; needs a mask) or a
            :class:`RefineConfig` (on, with these settings).
        category: the category the user knows the object to be (only to warn when the model
            was not trained on it).

    Returns:
        A one-item :class:`Prediction` (camera in the input's pixels, ``image``/``mask``
        attached, ``extras["record"]`` the facts written to ``pose.json``), or a list of them.
    """
    cfg = _refine_settings(predictor, refine)
    auto = refine is None
    batched = isinstance(image, (list, tuple)) or (isinstance(image, torch.Tensor) and image.dim() == 4)
    if not batched:
        return _one(predictor, load_input(image, mask), cfg, auto, category)
    images = list(image)
    masks = list(mask) if mask is not None else [None] * len(images)
    if len(masks) != len(images):
        raise PoseshapeError(f"mask: got {len(masks)} mask(s) for {len(images)} image(s)")
    return [_one(predictor, load_input(im, m), cfg, auto, category) for im, m in zip(images, masks)]


def reconstruct_image(
    predictor,
    image_path,
    mask_path,
    out_dir,
    *,
    item: InputItem | None = None,
    refine=None,
    category: str | None = None,
) -> dict:
    """Reconstruct one image file and write its files into ``out_dir``
    (:func:`reconstruct` then :func:`poseshape.engine.output.write_prediction`); ``refine``
    and ``category`` as in :func:`reconstruct`.

    Returns:
        ``{"voxels", "obj", "glb", "pose", "overlay", "views"} -> Path``.
    """
    item = item or load_input(image_path, mask_path)
    pred = _one(predictor, item, _refine_settings(predictor, refine), refine is None, category)
    return write_prediction(pred, 0, out_dir, method=predictor.method)
