"""``poseshape scene``: one photo, several object masks -> one scene of posed medoids (paper 003, Fig. 7).

Examples::

    poseshape scene street.png --mask car1.png car2.png --checkpoint runs/r6/last.pt --out scene.glb
    poseshape scene street.png --labels street_labels.png --checkpoint runs/r6/last.pt --out scene.obj
    poseshape scene street.png --mask car1.png car2.png --method refine6dof --out scene.glb   # shipped model

Objects are given either as one mask file per object (``--mask``, each of the image's size,
read like ``poseshape reconstruct``'s masks), or as one label image (``--labels``) in which
every distinct non-zero value is one object, in increasing order of value: grey (8/16/32-bit)
and palette images by pixel value (a palette's index 255, VOC's "void" border, is background
when other values exist), RGB images by colour (black is background); at most 100 values
(``MAX_OBJECTS``; more means a lossy-compressed or non-label image). Masks may overlap.

Every object is predicted by ``refine6dof`` on the *whole* camera image, padded to a square
and resized to the model's ``S x S`` input (``full_frame``: the translation is predicted in
the uncropped image), with its own mask; all objects go to the predictor in one batch. With
masks the predictor refines each pose online against its mask (paper 003 §4.2; ``--no-online``:
the encoder's poses). Each object's medoid mesh is placed by its ``(R, t)`` in the one camera
frame (:func:`poseshape.methods.refine6dof.scene.scene_from_prediction`) and all are written
as one file (:func:`~poseshape.methods.refine6dof.scene.export_scene`): ``.glb`` in glTF axes
``(x, -y, -z)`` of the camera frame, ``.obj`` in the camera frame (OpenCV, object units); node
``i`` is named ``object_<i>_<medoid name>``.

Next to it, ``<name>_overlay.png`` (``scene.glb`` -> ``scene_overlay.png``) draws every object's
posed silhouette (filled and outlined, one colour per object) and its mask's outline (yellow)
over the photo; and the same name with ``.json`` (``scene.glb`` -> ``scene.json``) lists per object: ``mask`` (file), ``label_value`` (with
``--labels``), ``class`` (medoid name), ``class_index``, ``class_prob``, ``R`` (3x3),
``t_cam`` (object units, ``X_cam = R X_obj + t_cam``), ``mask_iou`` (the medoid's silhouette
at the final pose vs the mask, both at ``S x S``), ``online`` and, when refined online,
``online_loss`` (first and last value of the silhouette loss) and the encoder's own
``encoder_R`` / ``encoder_t_cam``; plus the image, ``K`` of the ``S x S`` input and the
square's ``box`` in input pixels.

Each object is processed independently (paper 003: "each object in the scene is processed
independently"): by default its image is the same full frame (same camera, so the translation
keeps its meaning) with every pixel outside that object's mask painted white. An ``input=rgb``
encoder (the paper's and the default) would otherwise see the same image for every object,
so their *encoder* poses and classes would be identical and only the online refinement against
each mask would separate their poses (little, at the paper's learning rate).
``--no-isolate`` feeds the unmasked photo to every object (a warning says so when an rgb
encoder gets several objects). Encoders trained with ``input=mask`` / ``rgbm`` see each
object's mask anyway.

Everything (output path, image, masks, checkpoint) is checked before anything is written;
errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from poseshape.cli.args import output_path
from poseshape.core.errors import PoseshapeError
from poseshape.engine.inputs import open_sized, read_image, read_mask, uncrop
from poseshape.engine.predictor import load_predictor
from poseshape.engine.reconstruct import predictor_square
from poseshape.methods.refine6dof.scene import export_scene, scene_from_prediction
from poseshape.metrics import mask_iou
from poseshape.viz import overlay_silhouettes, png_bytes, write_bytes_atomic

__all__ = [
    "MAX_OBJECTS",
    "SceneInput",
    "add_parser",
    "load_scene_input",
    "overlay_path",
    "read_label_masks",
    "run",
    "scene_overlay",
    "scene_paths",
]

#: Most objects one label image may hold.
MAX_OBJECTS = 100

_SCENE_SUFFIXES = (".glb", ".obj")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "scene",
        help="one image, several object masks -> one GLB/OBJ scene of posed medoids (refine6dof, paper 003 Fig. 7)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", help="the camera image, any size")
    p.add_argument(
        "--mask", nargs="+", default=None, metavar="M", help="one mask file per object, each of the image's size"
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="L",
        help="instead of --mask: one label image, each distinct non-zero value one object",
    )
    p.add_argument(
        "--out",
        type=output_path,
        required=True,
        metavar="FILE",
        help="scene file, .glb (glTF axes) or .obj (camera axes); the same name with .json is written next to it",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="C",
        help="refine6dof checkpoint (`poseshape train refine6dof`); default: the shipped refine6dof model",
    )
    p.add_argument("--method", default=None, help="refine6dof (the only method with medoids and pinhole poses)")
    p.add_argument(
        "--no-online", action="store_true", help="skip the online refinement against the masks (the encoder's poses)"
    )
    p.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give each object the full frame with everything outside its mask painted white "
        "(default; --no-isolate: the unmasked photo for every object, which an input=rgb "
        "encoder then cannot tell apart)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    return p


@dataclass
class SceneInput:
    """The validated inputs of one scene.

    Attributes:
        image: ``(3, H, W)`` float in [0, 1].
        masks: ``(N, 1, H, W)`` bool, one per object (bool: a large photo's many masks stay small).
        records: ``N`` JSON-ready dicts naming each object's source (``mask`` file, and
            ``label_value`` / ``label_color`` for a label image).
        image_path: the image file.
    """

    image: torch.Tensor
    masks: torch.Tensor
    records: list[dict]
    image_path: Path


def overlay_path(out: Path) -> Path:
    """The overlay picture written next to the scene file: ``scene.glb`` -> ``scene_overlay.png``."""
    return out.with_name(out.stem + "_overlay.png")


#: Silhouette colours of the objects in the overlay, in turn (RGB).
OBJECT_COLORS = ((0, 150, 255), (255, 60, 60), (60, 200, 80), (200, 80, 255), (255, 150, 0), (0, 200, 200))


def scene_overlay(pred, image: torch.Tensor, masks: list[torch.Tensor], box) -> np.ndarray:
    """Every object's posed silhouette (filled, outlined, one colour each) and its mask's outline
    over the photo.

    Args:
        pred: the scene's prediction (one item per object, cameras of the ``S x S`` square).
        image: ``(3, H, W)`` in [0, 1], the photo.
        masks: per object ``(1, H, W)`` masks of the photo.
        box: ``(x0, y0, side)`` of the square in photo pixels.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    H, W = (int(v) for v in image.shape[-2:])
    cam = [pred.camera[i].resize(int(box[2])) for i in range(len(masks))]  # the square at photo resolution
    sils = [uncrop(pred.render_silhouette(i, camera=cam[i]), box, (H, W)) for i in range(len(masks))]
    return overlay_silhouettes(image, sils, [m.float() for m in masks], OBJECT_COLORS)


def scene_paths(out) -> tuple[Path, Path]:
    """``(scene file, JSON file)`` for ``--out``: the JSON is the scene file with ``.json``.

    Raises:
        PoseshapeError: not ``.glb`` / ``.obj``, a folder, or a parent that is a file.
    """
    p = Path(out)
    if p.suffix.lower() not in _SCENE_SUFFIXES:
        raise PoseshapeError(f"--out {p}: the scene file must end in .glb or .obj (got {p.suffix or 'no extension'!r})")
    js = p.with_suffix(".json")
    for q in (p, js):
        if q.is_dir():
            raise PoseshapeError(f"--out {p}: {q} is a folder")
    parent = next((a for a in p.parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise PoseshapeError(f"--out {p}: {parent} is not a folder")
    return p, js


def read_label_masks(
    path, like_hw: tuple[int, int] | None = None, *, image_path=None
) -> list[tuple[int, str | None, torch.Tensor]]:
    """Read a label image: every distinct non-zero value is one object (module docstring).

    Args:
        path: the label image (lossless: PNG, BMP, TIFF).
        like_hw: ``(H, W)`` it must have (the image's size).
        image_path: the image it belongs to (only used in the size error message).

    Returns:
        ``[(value, color, mask (1, H, W) float32 {0, 1})]`` in increasing ``value``; for an
        RGB image ``value = 0xRRGGBB`` and ``color = "#rrggbb"``, else ``color`` is None.

    Raises:
        PoseshapeError: missing file, no object, more than :data:`MAX_OBJECTS` values,
            transparency or floating-point pixels.
        ShapeError: the size differs from ``like_hw``.
        FileFormatError: not an image, or a corrupt one.
    """

    p = Path(path)
    img = open_sized(p, "label image", like_hw, image_path)
    mode = img.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            raise PoseshapeError(
                f"{p}: the label image has transparency; save the labels as a grey, palette or RGB image without alpha"
            )
        img = img.convert("RGB" if mode in ("RGBA", "RGBa") else ("P" if mode == "PA" else "L"))
        mode = img.mode
    if mode == "F":
        raise PoseshapeError(f"{p}: the label image holds floating-point values; labels must be integers")
    colors = not (mode in ("1", "L", "P", "I") or mode.startswith("I;16"))
    if not colors:
        lab = np.asarray(img).astype(np.int64)
        if mode == "P" and (lab == 255).any() and ((lab != 0) & (lab != 255)).any():
            lab = np.where(lab == 255, 0, lab)  # VOC's "void" border
    else:
        try:
            rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        except (ValueError, OSError) as e:
            raise PoseshapeError(f"{p}: label image mode {mode!r} cannot be read ({e})") from None
        lab = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values = [int(v) for v in np.unique(lab) if v != 0]
    if not values:
        raise PoseshapeError(
            f"{p}: the label image is empty (every pixel is 0, the background); mark each "
            "object with its own non-zero value"
        )
    if len(values) > MAX_OBJECTS:
        raise PoseshapeError(
            f"{p}: {len(values)} distinct non-zero values, more than {MAX_OBJECTS} objects: not "
            "a label image (a JPEG's compression noise?); save the labels losslessly (PNG)"
        )
    return [(v, f"#{v:06x}" if colors else None, torch.from_numpy(lab == v).float()[None]) for v in values]


def load_scene_input(image_path, mask_paths=None, labels_path=None) -> SceneInput:
    """Read and check the image and its objects (exactly one of ``mask_paths`` / ``labels_path``).

    Raises:
        PoseshapeError (and subclasses): neither or both object sources, missing / unreadable
            files, a mask or label image of another size, an empty mask or label image.
    """

    if (not mask_paths) == (labels_path is None):
        raise PoseshapeError(
            "give the objects either as --mask M1 M2 ... (one file per object) or as "
            "--labels L (one label image), not " + ("both" if mask_paths else "neither")
        )
    ip = Path(image_path)
    image, _alpha = read_image(ip)  # an RGBA image's alpha is not an object here: the objects are the masks
    hw = tuple(image.shape[-2:])
    masks, records = [], []
    if mask_paths:
        for mp in map(Path, mask_paths):
            masks.append(read_mask(mp, hw, image_path=ip) >= 0.5)
            records.append({"mask": str(mp)})
    else:
        lp = Path(labels_path)
        for value, color, m in read_label_masks(lp, hw, image_path=ip):
            masks.append(m >= 0.5)
            records.append({"mask": str(lp), "label_value": value, **({"label_color": color} if color else {})})
    return SceneInput(image=image, masks=torch.stack(masks), records=records, image_path=ip)


def _load_refine6dof(args):

    if args.method not in (None, "refine6dof"):
        raise PoseshapeError(
            f"--method {args.method}: `poseshape scene` composes refine6dof predictions (cluster "
            "medoids placed by pinhole poses); use --method refine6dof or a refine6dof --checkpoint"
        )
    predictor = load_predictor(checkpoint=args.checkpoint, method="refine6dof", device=args.device)
    if not predictor.capabilities.full_frame:  # pragma: no cover - refine6dof's predictor is full-frame
        raise PoseshapeError(f"{args.checkpoint}: the predictor does not see the full frame")
    return predictor


def _record(pred, i: int, masks_s: torch.Tensor, source: dict) -> dict:
    """JSON-ready record of object ``i`` (see the module docstring)."""

    ex = pred.extras
    k = int(ex["label"][i])
    rec = dict(source)
    rec.update(
        {
            "class": ex["medoid_names"][i],
            "class_index": k,
            "class_prob": float(ex["class_probs"][i, k]),
            "R": pred.R[i].detach().cpu().double().tolist(),
            "t_cam": pred.t[i].detach().cpu().double().tolist(),
            "mask_iou": float(mask_iou(pred.silhouette[i : i + 1].detach().cpu() >= 0.5, masks_s[i : i + 1] >= 0.5)[0]),
            "online": "online_loss" in ex,
        }
    )
    if "online_loss" in ex:
        curve = ex["online_loss"][:, i].detach().cpu().double()
        rec["online_loss"] = {"first": float(curve[0]), "last": float(curve[-1]), "steps": int(curve.numel() - 1)}
        rec["encoder_R"] = ex["encoder_R"][i].detach().cpu().double().tolist()
        rec["encoder_t_cam"] = ex["encoder_t"][i].detach().cpu().double().tolist()
    return rec


def run(args) -> int:

    # Check everything before writing anything.
    out, out_json = scene_paths(args.out)
    inp = load_scene_input(args.image, args.mask, args.labels)
    predictor = _load_refine6dof(args)
    if args.no_online:
        predictor.online = False
    crops, masks_s, box = [], [], None
    for mb, rec in zip(inp.masks, inp.records):
        m = mb.float()  # (1, H, W)
        name = rec["mask"] + (f" (label {rec['label_value']})" if "label_value" in rec else "")
        image = inp.image * m + (1.0 - m) if args.isolate else inp.image  # (3, H, W): white outside the mask
        crop, cm, box = predictor_square(predictor, image, m, name)
        crops.append(crop)
        masks_s.append(cm)
    print(f"refine6dof: {args.checkpoint or 'shipped default model'}; {len(crops)} object(s)", file=sys.stderr)
    encoder_input = getattr(getattr(predictor, "config", None), "input", "rgb")
    if encoder_input == "rgb" and len(crops) > 1 and not args.isolate:
        print(
            "warning: this encoder's input is the RGB image alone, the same for every object: their encoder "
            "poses and classes are identical and only the online refinement separates them; drop --no-isolate "
            "to give each object its own image",
            file=sys.stderr,
        )

    masks_s = torch.stack(masks_s)
    with torch.no_grad():
        pred = predictor(torch.stack(crops), masks_s)
    objects = scene_from_prediction(pred)
    S = int(predictor.image_size)
    record = {
        "method": "refine6dof",
        "checkpoint": str(args.checkpoint) if args.checkpoint else "shipped default model",
        "image": str(inp.image_path),
        "image_size": {"height": int(inp.image.shape[-2]), "width": int(inp.image.shape[-1])},
        "scene": out.name,
        "input_size": S,
        "encoder_input": encoder_input,
        "isolate": bool(args.isolate),
        "box": {"x0": box[0], "y0": box[1], "side": box[2]},
        "K": pred.camera.K[0].detach().cpu().double().tolist(),
        "frames": {
            "camera": "OpenCV (x right, y down, z forward), object units: X_cam = R X_obj + t_cam; K in pixels of "
            "the S x S input, whose pixel (u, v) is input pixel (x0 + u side / S, y0 + v side / S)",
            "scene": "glTF axes (x, -y, -z) of the camera frame"
            if out.suffix.lower() == ".glb"
            else "the camera frame",
        },
        "objects": [_record(pred, i, masks_s.cpu(), rec) for i, rec in enumerate(inp.records)],
    }
    over = overlay_path(out)
    record["overlay"] = over.name
    overlay_png = png_bytes(scene_overlay(pred, inp.image, list(inp.masks), box))
    payload = (json.dumps(record, indent=2) + "\n").encode()

    created = [a for a in reversed(out.parents) if not a.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        export_scene(objects, out)
        write_bytes_atomic(over, overlay_png)
        write_bytes_atomic(out_json, payload)
    except BaseException:
        out.unlink(missing_ok=True)
        over.unlink(missing_ok=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                break
        raise
    for i, rec in enumerate(record["objects"]):
        print(
            f"  object {i}: {rec['mask']}"
            + (f" label {rec['label_value']}" if "label_value" in rec else "")
            + f" -> {rec['class']} (p {rec['class_prob']:.2f}, mask IoU {rec['mask_iou']:.2f})",
            file=sys.stderr,
        )
    print(out)
    print(over)
    print(out_json)
    return 0
