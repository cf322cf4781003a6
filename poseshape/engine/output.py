"""A prediction as files a user can open: mesh, pose, voxels and pictures (all or none).

:func:`write_prediction` writes, for item ``i`` of a :class:`~poseshape.engine.prediction.Prediction`
whose camera refers to the user's image (see :func:`poseshape.engine.reconstruct.reconstruct`):

==================  ==========================================================================
``mesh.obj``        the posed mesh in the *viewer frame* (x right, **y up**, z toward the
                    viewer: the OpenCV camera frame turned by ``diag(1, -1, -1)``), object
                    units; opens upright, seen as the input camera saw it
``mesh.glb``        the canonical mesh (object frame, +Y up) under a node whose matrix is the
                    pose in the viewer frame, ``diag(1, -1, -1) [R | t]``, and a perspective
                    camera that sees the input view (:func:`glb_camera`)
``pose.json``       :mod:`poseshape.engine.pose_record` (``R``, ``t``, the camera in input pixels,
                    viewpoint, category, model id, confidence, mask IoU, warnings)
``posed_voxels.npz`` ``aligned`` (canonical grid, when the method has one), ``posed`` (the
                    method's own posed grid, when it has one), ``R``, ``t``, ``K``, ``box``
``overlay.png``     the exact silhouette of the posed mesh through the recorded camera, over
                    the input, with the mask's outline
``views.png``       the canonical mesh from 4 viewpoints, the first the input view (its ``R``)
==================  ==========================================================================

Because the overlay and ``mask_iou`` come from :meth:`Prediction.render_silhouette` with the
camera written to ``pose.json``, anyone applying that camera's formula gets the same picture.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

from poseshape.core.checks import check_output_location
from poseshape.core.errors import ShapeError
from poseshape.core.io import atomic_write_files
from poseshape.engine.pose_record import pose_record
from poseshape.metrics import mask_iou
from poseshape.shapes.meshes import Mesh
from poseshape.viz import overlay_silhouette, png_bytes, render_views

__all__ = ["FILE_NAMES", "MADE_MASK_FILE", "VIEWER_FROM_CAMERA", "glb_camera", "write_prediction"]

#: Output files of :func:`write_prediction`, by key.
FILE_NAMES: dict[str, str] = {
    "voxels": "posed_voxels.npz",
    "obj": "mesh.obj",
    "glb": "mesh.glb",
    "pose": "pose.json",
    "overlay": "overlay.png",
    "views": "views.png",
}

#: Written as well when the mask was made by poseshape (``mask_source`` one of
#: :data:`MADE_MASK_SOURCES` in ``info``), so the user can check and edit it.
MADE_MASK_FILE = "mask.png"

#: ``mask_source`` values of masks that poseshape made itself: the learned segmenter or GrabCut.
MADE_MASK_SOURCES = ("segmenter-auto", "grabcut-auto", "grabcut-box")

#: OpenCV camera (y down, z forward) -> viewer / glTF / OpenGL camera frame (y up, z back).
VIEWER_FROM_CAMERA = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))


def _trimesh(verts: torch.Tensor, faces: torch.Tensor):
    return trimesh.Trimesh(verts.detach().cpu().double().numpy(), faces.cpu().numpy(), process=False)


def _small_extras(extras: Mapping[str, Any], limit: int = 32) -> dict[str, Any]:
    """Extras of a one-item prediction with at most ``limit`` numbers each, JSON-ready."""
    out: dict[str, Any] = {}
    for k, v in extras.items():
        if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == 1 and v[0].numel() <= limit:
            out[str(k)] = v[0].detach().cpu().double().tolist()
        elif isinstance(v, (int, float, str, bool)):
            out[str(k)] = v
    return out


#: Distance (object units) of the perspective camera that stands in for a weak-perspective one
#: in the GLB: far enough that its view differs from the orthographic one by < 5 % of the size.
WEAK_STANDIN_DISTANCE = 20.0


def glb_camera(camera) -> tuple[tuple[float, float], np.ndarray]:
    """The glTF perspective camera of a one-item :class:`Camera`: ``((fov_x, fov_y) degrees,
    4x4 camera-node matrix)`` in the viewer frame.

    Pinhole: at the origin, the fields of view of ``K`` (glTF cameras have a centred principal
    point, so an off-centre ``(cx, cy)`` shifts the view by ``(cx - W/2, cy - H/2)`` pixels).
    Weak perspective (no glTF equivalent): a narrow perspective camera at
    :data:`WEAK_STANDIN_DISTANCE` on the viewer's +z, shifted so that its axis passes through
    the principal point, with the field of view that keeps the scale at depth 0.
    """
    K = camera.K[0].detach().cpu().double()
    H, W = camera.image_size
    fx, fy, cx, cy = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
    node = np.eye(4)
    if camera.is_pinhole:
        fov = (2 * np.degrees(np.arctan(W / 2 / fx)), 2 * np.degrees(np.arctan(H / 2 / fy)))
    else:
        d = WEAK_STANDIN_DISTANCE
        fov = (2 * np.degrees(np.arctan(W / 2 / fx / d)), 2 * np.degrees(np.arctan(H / 2 / fy / d)))
        # the pixel (W/2, H/2) of the image sees X_cam = ((W/2 - cx)/fx, (H/2 - cy)/fy); viewer y = -y
        node[:3, 3] = [(W / 2 - cx) / fx, -(H / 2 - cy) / fy, d]
    return fov, node


def _glb(mesh: Mesh, R: torch.Tensor, t: torch.Tensor, camera) -> bytes:
    T = np.eye(4)
    T[:3, :3] = (VIEWER_FROM_CAMERA @ R.double()).numpy()
    T[:3, 3] = (VIEWER_FROM_CAMERA @ t.double()).numpy()
    if not mesh.num_faces:
        return _empty_glb()
    scene = trimesh.Scene()
    scene.add_geometry(_trimesh(mesh.verts, mesh.faces), node_name="object", geom_name="canonical_mesh", transform=T)
    fov, node = glb_camera(camera)
    H, W = camera.image_size
    scene.set_camera(fov=fov, resolution=(W, H))
    scene.camera_transform = node
    # glTF's aspectRatio is the viewport's tan(xfov/2) / tan(yfov/2); trimesh writes the ratio of
    # the angles themselves, which shows a wider view than K's
    aspect = float(np.tan(np.radians(fov[0]) / 2) / np.tan(np.radians(fov[1]) / 2))
    return _patch_glb_json(
        scene.export(file_type="glb"),
        lambda js: js["cameras"][0]["perspective"].update(aspectRatio=aspect, yfov=float(np.radians(fov[1]))),
    )


def _patch_glb_json(glb: bytes, edit) -> bytes:
    """Apply ``edit(json_dict)`` to a GLB's JSON chunk and rebuild the container."""
    n = int.from_bytes(glb[12:16], "little")
    if glb[:4] != b"glTF" or glb[16:20] != b"JSON":
        raise ValueError("not a GLB with a leading JSON chunk")
    js = json.loads(glb[20 : 20 + n])
    edit(js)
    return _glb_container(js, glb[20 + n :])


def _glb_container(js: dict, rest: bytes = b"") -> bytes:
    """A GLB file: its JSON chunk ``js`` (space-padded to 4 bytes) followed by ``rest`` (chunks)."""
    body = json.dumps(js, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 4)
    total = 12 + 8 + len(body) + len(rest)
    head = b"glTF" + (2).to_bytes(4, "little") + total.to_bytes(4, "little")
    return head + len(body).to_bytes(4, "little") + b"JSON" + body + rest


def _empty_glb() -> bytes:
    """A valid glTF 2.0 binary with one empty scene (trimesh refuses to export none)."""
    return _glb_container(
        {"asset": {"version": "2.0", "generator": "poseshape"}, "scene": 0, "scenes": [{"nodes": []}]}
    )


def write_prediction(
    pred,
    i: int,
    folder: str | os.PathLike,
    image=None,
    mask=None,
    *,
    method: str | None = None,
    info: Mapping[str, Any] | None = None,
    box=None,
    views_size: int = 256,
) -> dict[str, Path]:
    """Write item ``i`` of a prediction into ``folder`` (created): the files of :data:`FILE_NAMES`,
    all or none (a failure leaves earlier files of the same names as they were).

    Args:
        pred: a :class:`~poseshape.engine.prediction.Prediction` whose camera ``i`` refers to
            ``image``'s pixels.
        i: item index.
        folder: output folder.
        image: ``(3, H, W)`` in [0, 1] (default: ``pred.image[i]``); without one, the overlay is
            drawn on white at the camera's image size.
        mask: optional ``(1, H, W)`` mask (default ``pred.mask[i]``); gives ``mask_iou``.
        method: recorded in ``pose.json`` (default ``pred.extras.get("method", "")``).
        info: extra JSON-ready fields for ``pose.json``.
        box: the square ``(x0, y0, side)`` the predictor saw, recorded when given.

    Returns:
        ``{key: path}`` for the keys of :data:`FILE_NAMES`, and ``"mask"`` (:data:`MADE_MASK_FILE`)
        when the mask was made by GrabCut.

    Raises:
        ShapeError: the image's size is not the camera's.
        PoseshapeError: ``folder`` is inside the installed package.
    """
    check_output_location(folder, "output folder")
    i = pred._check_index(i)
    one = pred.item(i).to("cpu")
    cam = one.camera
    H, W = cam.image_size
    if image is None and one.image is not None:
        image = one.image[0]
    if mask is None and one.mask is not None:
        mask = one.mask[0]
    if image is None:
        img = torch.ones(3, H, W)
    else:
        img = torch.as_tensor(image).float()
        if img.dim() != 3 or img.shape[0] != 3 or tuple(img.shape[-2:]) != (H, W):
            raise ShapeError(f"image: expected shape (3, {H}, {W}) (the camera's image size), got {tuple(img.shape)}")
    m = None
    if mask is not None:
        m = torch.as_tensor(mask).float().reshape(1, *torch.as_tensor(mask).shape[-2:]) >= 0.5
        if tuple(m.shape[-2:]) != (H, W):
            raise ShapeError(f"mask: expected size ({H}, {W}) (the image's), got {tuple(m.shape[-2:])}")
    if info is None:
        info = one.extras.get("record")
    if box is None:
        box = one.extras.get("box")
    warnings: list[str] = list(one.extras.get("warnings", []) if isinstance(one.extras.get("warnings"), list) else [])

    mesh = one.canonical_mesh(0)
    if mesh.num_faces == 0:
        warnings.append("the predicted shape is empty (nothing occupied): mesh files are empty")
    R, t = one.R[0].detach().double(), one.t[0].detach().double()
    sil = one.render_silhouette(0)[0]

    fields: dict[str, Any] = {
        "method": method if method is not None else str(one.extras.get("method", "")),
        "category": one.category[0] if one.category else None,
        "model_id": one.model_id[0] if one.model_id else None,
        "confidence": float(one.confidence[0]) if one.confidence is not None else None,
    }
    record = pose_record(R, t, cam, **fields)
    record["image_size"] = {"height": int(H), "width": int(W)}
    if box is not None:
        record["box"] = {"x0": box[0], "y0": box[1], "side": box[2]}
    if "frame_extent" in one.extras:
        record["frame_extent"] = float(one.extras["frame_extent"])
    if m is not None:
        record["mask_iou"] = float(mask_iou(sil[None] >= 0.5, m[0][None])[0])
    extras = _small_extras(
        {k: v for k, v in one.extras.items() if k not in ("warnings", "frame_extent", "record", "box")}
    )
    if extras:
        record["extras"] = extras
    if info:
        record.update({str(k): v for k, v in info.items()})
    record["frames"] = {
        "camera": "OpenCV (x right, y down, z forward); X_cam = R X_obj + t in object units; pixels from "
        "'camera' (K in the input image's pixels)",
        "mesh.obj": "posed mesh in the viewer frame (x right, y up, z toward the viewer) = diag(1,-1,-1) X_cam",
        "mesh.glb": "canonical mesh (object frame: +Y up, front +Z) under node 'object' with matrix "
        "diag(1,-1,-1) [R | t]",
        "posed_voxels.npz": "aligned (Q,Q,Q) over the object frame's unit cube; posed (P,P,P) in the method's "
        "posed frame; (d,h,w) = (z,y,x)",
    }
    record["files"] = dict(FILE_NAMES)
    made_mask = m is not None and record.get("mask_source") in MADE_MASK_SOURCES
    if made_mask:
        record["files"]["mask"] = MADE_MASK_FILE
    if warnings:
        record["warnings"] = warnings

    arrays = {"R": R.numpy(), "t": t.numpy(), "K": cam.K[0].double().numpy(), "camera_kind": np.array(cam.kind)}
    if one.voxels is not None:
        arrays["aligned"] = one.voxels[0, 0].detach().float().numpy()
    if one.posed_voxels is not None:
        arrays["posed"] = one.posed_voxels[0, 0].detach().float().numpy()
    if "frame_extent" in one.extras:
        arrays["frame_extent"] = np.float64(one.extras["frame_extent"])
    if box is not None:
        arrays["box"] = np.asarray(box, np.float64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    posed_view = (mesh.verts.double() @ R.T + t) @ VIEWER_FROM_CAMERA.T
    obj = _trimesh(posed_view, mesh.faces).export(file_type="obj")
    payloads = {
        "voxels": buf.getvalue(),
        "obj": obj.encode() if isinstance(obj, str) else obj,
        "glb": _glb(mesh, R, t, cam),
        "pose": (json.dumps(record, indent=2) + "\n").encode(),
        "overlay": png_bytes(overlay_silhouette(img, sil, m[0].float() if m is not None else None)),
        "views": png_bytes(render_views(mesh, n=4, size=views_size, first=R)),
    }
    names = dict(FILE_NAMES)
    if made_mask:
        payloads["mask"] = png_bytes(m.float().expand(3, -1, -1))
        names["mask"] = MADE_MASK_FILE
    return atomic_write_files(folder, {names[k]: v for k, v in payloads.items()}, keys=list(payloads))
