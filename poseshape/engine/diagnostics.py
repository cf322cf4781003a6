"""Warnings about doubtful inputs and results, each with its fix (``pose.json["warnings"]``).

:func:`mask_warnings` looks at the input mask before anything is predicted (none, inverted,
tiny, cut by the border); :func:`result_warnings` at the result (a low silhouette IoU after
refinement, an uncertain category, a category the model was not trained on).
:func:`confidence_terms` gathers the numbers the confidence is made of. The reconstruct path
(:mod:`poseshape.engine.reconstruct`) records them and emits each warning as a
:class:`~poseshape.core.errors.PoseshapeWarning` (the CLI prints them on stderr).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from poseshape.core.checks import check_finite
from poseshape.geometry.rotations import geodesic_distance

__all__ = [
    "CUT_FRACTION",
    "LOW_IOU",
    "LOW_PROBABILITY",
    "TINY_FRACTION",
    "FRAGMENTS",
    "FULL_FRACTION",
    "SOFT_FRACTION",
    "TINY_IMAGE",
    "RIVAL_IOU_GAP",
    "basin_uniqueness",
    "confidence_terms",
    "pose_agreement",
    "image_warnings",
    "mask_warnings",
    "result_warnings",
    "soft_mask_warning",
]

#: A mask covering less than this fraction of the image is "tiny".
TINY_FRACTION = 0.005
#: A mask whose pixels on one image side exceed this fraction of that side is "cut".
CUT_FRACTION = 0.02
#: A mask covering more than this fraction of the image marks the background too.
FULL_FRACTION = 0.95
#: A mask in more than this many separate pieces, the largest holding < 90 % of it, is "noisy".
FRAGMENTS = 10
#: A mask file whose foreground is grey (neither black nor white) for more than this fraction is "soft".
SOFT_FRACTION = 0.25
#: An image whose shorter side is below this many pixels is "tiny".
TINY_IMAGE = 32
#: Silhouette IoU below which a result is doubtful.
LOW_IOU = 0.7
#: Category probability below which the category is doubtful.
LOW_PROBABILITY = 0.5
#: :func:`basin_uniqueness`: a refinement start whose final IoU is this far below the chosen
#: one's no longer counts as a rival (chosen on validation renders, ``bench/confidence.py``).
RIVAL_IOU_GAP = 0.05


def pose_agreement(R_predicted: torch.Tensor, R_refined: torch.Tensor) -> float:
    """How far refinement had to turn the network's rotation: ``(1 + cos angle) / 2`` in [0, 1]
    (1: refinement kept it; 0: it turned it by 180 degrees). ``(3, 3)`` each.

    A large turn means the network and the silhouette disagree, so at least one is wrong.
    """
    return float((1 + torch.cos(geodesic_distance(R_predicted.double(), R_refined.double()))) / 2)


def basin_uniqueness(final_R: torch.Tensor, start_iou: torch.Tensor, chosen: int, gap: float = RIVAL_IOU_GAP) -> float:
    """Whether the silhouette singles out one rotation: 1 minus the strongest rival's weight.

    A rival is another surviving refinement start; its weight is ``w (1 - cos a) / 2`` with
    ``a`` its angle from the chosen start's rotation and ``w = 1 - max(0, IoU gap) / gap``
    (0 once it fits ``gap`` worse). Two starts that fit equally well but point 180 degrees
    apart (a car and its flip) give 0: the pose is a coin toss.

    Args:
        final_R: ``(M, 3, 3)`` each start's refined rotation, NaN for starts pruned early
            (:attr:`poseshape.engine.refine.RefineResult.final_R`).
        start_iou: ``(M,)`` their final IoUs (NaN when pruned).
        chosen: the chosen start's index.
        gap: see above.

    Returns:
        A float in [0, 1]; 1 when no other start survived.
    """
    alive = ~torch.isnan(start_iou)
    alive[chosen] = False
    if not bool(alive.any()):
        return 1.0
    a = torch.cos(geodesic_distance(final_R[alive].double(), final_R[chosen].double().expand(int(alive.sum()), 3, 3)))
    w = (1 - (start_iou[chosen] - start_iou[alive]).clamp(min=0).double() / gap).clamp(min=0)
    return float(1 - (w * (1 - a) / 2).max())


def mask_warnings(mask: torch.Tensor | None, refinable: bool = True) -> list[str]:
    """Warnings about an input mask ``(1, H, W)`` or ``(H, W)`` in {0, 1} (or ``None``).

    * none: the object is not cropped to and the pose is not refined;
    * full: more than :data:`FULL_FRACTION` of the image is foreground (nothing else is said);
    * inverted: more than half of the image border is foreground;
    * tiny: less than :data:`TINY_FRACTION` of the image;
    * cut: on some side, more than :data:`CUT_FRACTION` of the border pixels are foreground
      (but not an inverted mask);
    * noisy: more than :data:`FRAGMENTS` separate pieces (8-connected), the largest holding
      less than 90 % of the foreground.
    """
    if mask is None:
        fix = "give --mask M (white object on black), an RGBA image, or draw a box in `poseshape serve`"
        what = "the whole image is used and the pose is not refined" if refinable else "the whole image is used"
        return [f"no mask: {what}; {fix}"]
    m = mask.reshape(mask.shape[-2:]).float()
    check_finite(m, "mask")
    m = m >= 0.5
    H, W = m.shape
    out = []
    frac = float(m.float().mean())
    if frac > FULL_FRACTION:
        return [
            f"the mask covers {100 * frac:.1f}% of the image: it marks the background too (or an alpha channel "
            "is almost all opaque); give a mask of the object only (white object on black)"
        ]
    sides = {"top": m[0], "bottom": m[-1], "left": m[:, 0], "right": m[:, -1]}
    border = torch.cat(list(sides.values()))
    if float(border.float().mean()) > 0.5:
        out.append(
            f"the mask looks inverted: {100 * float(border.float().mean()):.0f}% of the image border is "
            "foreground; the object must be white (1) on black (0): invert the mask"
        )
        return out
    if frac < TINY_FRACTION:
        out.append(
            f"the mask is tiny: it covers {100 * frac:.2f}% of the image ({int(m.sum())} pixels); check that it "
            "marks the object, or crop the photo closer to the object"
        )
    cut = [name for name, px in sides.items() if float(px.float().mean()) > CUT_FRACTION]
    if cut:
        out.append(
            f"the object is cut by the image border ({', '.join(cut)}): the hidden part's shape is a guess and "
            "the pose is less reliable; use a photo that shows the whole object"
        )
    labels, n = ndimage.label(m.cpu().numpy(), structure=np.ones((3, 3), bool))
    if n > FRAGMENTS:
        largest = float(np.bincount(labels.ravel())[1:].max()) / float(m.sum())
        if largest < 0.9:
            out.append(
                f"the mask is noisy: {n} separate pieces, the largest holding {100 * largest:.0f}% of its pixels; "
                "clean it (keep the object's piece, fill its holes) or draw a box in `poseshape serve`"
            )
    return out


def soft_mask_warning(values) -> str | None:
    """A warning when a mask's values ``(H, W)`` in [0, 1] (before thresholding at 0.5) are grey
    rather than black and white: more than :data:`SOFT_FRACTION` of the pixels above 0.02 lie
    in (0.1, 0.9), as in a photo, a depth map or a soft matte (anti-aliased edges are fine)."""
    v = np.asarray(values, dtype=np.float32)
    lit = v > 0.02
    if not lit.any():
        return None
    soft = float(((v > 0.1) & (v < 0.9) & lit).sum()) / float(lit.sum())
    if soft <= SOFT_FRACTION:
        return None
    return (
        f"the mask is not black and white: {100 * soft:.0f}% of its non-black pixels are grey; it was "
        "thresholded at half brightness: check that it is a mask (white object on black), not a photo or a soft matte"
    )


def image_warnings(image: torch.Tensor) -> list[str]:
    """Warnings about an input image ``(3, H, W)``: tiny (shorter side below :data:`TINY_IMAGE` px)."""
    H, W = image.shape[-2:]
    if min(H, W) < TINY_IMAGE:
        return [
            f"the image is tiny ({W}x{H} pixels): it is upscaled for the model, so the shape and pose are "
            "guesses; use a photo in which the object spans at least a few dozen pixels"
        ]
    return []


def confidence_terms(
    mask_iou: float | None,
    category_probability: float | None,
    margin: float | None = None,
    agreement: float | None = None,
    uniqueness: float | None = None,
) -> dict[str, float | None]:
    """The numbers a result's confidence is made of, and the confidence itself.

    After refinement (``agreement`` and ``uniqueness`` given): ``confidence`` = pose agreement
    (:func:`pose_agreement`) x basin uniqueness (:func:`basin_uniqueness`) x category
    probability. The silhouette IoU is left out of it: on validation renders a close fit did
    not mean a right rotation (symmetric and compact objects fit well in any pose; AUROC of
    "rotation error > 30 deg" 0.39 with the IoU, 0.66 with these terms, ``bench/confidence.py``).
    Without refinement: silhouette IoU x category probability. Each term is left out when
    unknown; ``None`` when all are. ``margin`` (best minus second-best refinement start's IoU)
    is reported beside it.
    """
    if agreement is not None or uniqueness is not None:
        parts = (agreement, uniqueness, category_probability)
    else:
        parts = (mask_iou, category_probability)
    terms = [v for v in parts if v is not None]
    conf = None
    if terms:
        conf = 1.0
        for v in terms:
            conf *= float(v)
    return {
        "confidence": conf,
        "mask_iou": mask_iou,
        "category_probability": category_probability,
        "hypothesis_margin": margin,
        "pose_agreement": agreement,
        "basin_uniqueness": uniqueness,
    }


def result_warnings(
    mask_iou: float | None,
    refined: bool,
    category: str | None = None,
    category_probability: float | None = None,
    expected_category: str | None = None,
    trained_categories: Sequence[str] | None = None,
) -> list[str]:
    """Warnings about a result: low silhouette IoU, uncertain or untrained category."""
    out = []
    if mask_iou is not None and mask_iou < LOW_IOU:
        fix = (
            "check the mask, try more starts (--refine-starts 32) or another --method"
            if refined
            else "turn refinement on (drop --no-refine) or check the mask"
        )
        out.append(
            f"low confidence: the posed shape's silhouette matches the mask with IoU {mask_iou:.2f} "
            f"(< {LOW_IOU}){' after refinement' if refined else ''}; {fix}"
        )
    if category_probability is not None and category_probability < LOW_PROBABILITY:
        out.append(
            f"uncertain category: {category!r} with probability {category_probability:.2f}; the object may be of "
            "a category the model was not trained on"
        )
    known = list(trained_categories) if trained_categories else []
    if expected_category and known and expected_category not in known:
        out.append(
            f"category {expected_category!r} was not in the model's training set ({', '.join(known)}): expect a "
            "rough shape and pose; train a model on it (`poseshape train`) or use a method that knows it"
        )
    return out
