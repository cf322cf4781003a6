"""Refine any :class:`~poseshape.engine.prediction.Prediction` against a mask: its canonical
mesh, its pose and its camera, whatever the method.

The camera of the prediction sees an ``S x S`` square; the mask is that square at any
resolution ``Sr`` (the camera is resized to it). :func:`poseshape.engine.refine.refine_pose`
then aligns the mesh:

* pinhole: ``R, t`` (``t`` in object units, depth via its log-scale parameter), ``K`` fixed;
* weak perspective (``u = s (R X + t)[:2] + c``): ``R``, the in-plane ``t`` and the scale
  ``s``, which becomes the refined camera's scale (``c`` fixed).

With ``optimize_aspect`` the per-axis scale of the shape is refined too and applied to the
canonical mesh and voxels (a method that treats scale as shape, like ``reproject``, moves
the camera scale into its shape in its own adapter).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.engine.refine.hypotheses import hypothesis_starts
from poseshape.engine.refine.pose import RefineConfig, refine_pose
from poseshape.geometry.camera import Camera
from poseshape.shapes.meshes import Mesh
from poseshape.shapes.voxels import warp_voxels

__all__ = ["refine_prediction"]


def refine_prediction(pred, i: int, mask: torch.Tensor, config: RefineConfig | None = None, **overrides) -> tuple:
    """Refine item ``i`` of ``pred`` against ``mask`` and return the refined prediction.

    Args:
        pred: a prediction whose camera sees a square image.
        i: item index.
        mask: ``(1, Sr, Sr)`` or ``(1, 1, Sr, Sr)`` mask of that square, any ``Sr``.
        config, overrides: :class:`RefineConfig` (defaults: :func:`refine_pose`'s).

    Returns:
        ``(Prediction of 1 item, RefineResult)``; the new prediction has the refined ``R``,
        ``t`` and camera (same image size as before), the shape scaled per axis when
        ``optimize_aspect``; its ``posed_voxels`` and ``silhouette`` are dropped (they showed
        the old pose), and ``extras`` gain ``refine_iou_before``, ``refine_iou``,
        ``refine_start`` and ``refine_aspect`` and keep the old pose as ``prerefine_R`` /
        ``prerefine_t``.

    Raises:
        ShapeError: a bad mask or a non-square camera image.
        PoseshapeError: the shape is empty, and the errors of :func:`refine_pose`.
    """
    one = pred.item(i).to("cpu")
    m = mask if mask.dim() == 4 else mask[None]
    if m.dim() != 4 or m.shape[:2] != (1, 1) or m.shape[-1] != m.shape[-2]:
        raise ShapeError(f"mask: expected a square (1, Sr, Sr) mask, got {tuple(mask.shape)}")
    H, W = one.camera.image_size
    if H != W:
        raise ShapeError(f"refine_prediction: the prediction's camera sees a {W}x{H} image; expected a square")
    Sr = int(m.shape[-1])
    cam = one.camera.to("cpu", torch.float64).resize(Sr)
    mesh = one.canonical_mesh(0)
    if mesh.num_faces == 0:
        raise PoseshapeError("refine: the predicted shape is empty (nothing occupied), nothing to align")
    R0 = one.R.detach().double()
    t_obj = one.t.detach().double()
    R_start, expand = R0, (lambda t: t)
    cfg = replace(config or RefineConfig(), **overrides)
    if cfg.use_hypotheses and one.hypotheses is not None and one.hypotheses.shape[1] > 1:
        # the pose head's further hypotheses join the starts around R0 (hypothesis_starts)
        R_start = hypothesis_starts(R0, one.hypotheses.detach().double(), cfg.starts, cfg.perturb_deg)
        M = R_start.shape[1]

        def expand(t):
            return t[:, None].expand(1, M, 3).contiguous()

    if cam.is_pinhole:
        res = refine_pose(
            m.float(),
            Mesh(mesh.verts.float(), mesh.faces),
            R_start,
            expand(t_obj),
            cam.K[0],
            config=config,
            **overrides,
        )
        t_new = res.t.double()
        cam_new = cam
    else:
        s0 = cam.scale
        c = cam.principal
        t0 = t_obj.clone()
        t0[:, :2] = s0[:, None] * t_obj[:, :2] + c
        res = refine_pose(
            m.float(), Mesh(mesh.verts.float(), mesh.faces), R_start, expand(t0), scale=s0, config=config, **overrides
        )
        s1 = res.scale.double().reshape(1)
        t_new = t_obj.clone()
        t_new[:, :2] = (res.t[:, :2].double() - c) / s1[:, None]
        cam_new = Camera.weak_perspective(s1, c, (Sr, Sr))
    cam_new = cam_new.resize((H, W)).to(dtype=one.camera.K.dtype)
    factors = res.aspect[0].float() if res.aspect is not None else torch.ones(3)
    meshes, voxels = one.meshes, one.voxels
    if (factors - 1).abs().max() > 1e-6:
        if meshes is not None:
            meshes = [Mesh(meshes[0].verts * factors.to(meshes[0].verts.dtype), meshes[0].faces)]
        if voxels is not None:
            voxels = warp_voxels(voxels.float(), torch.diag(1.0 / factors)[None], torch.zeros(1, 3))
    extras = dict(one.extras)
    extras.update(
        prerefine_R=one.R,
        prerefine_t=one.t,
        refine_iou_before=float(res.iou_init[0]),
        refine_iou=float(res.iou[0]),
        refine_start=int(res.start[0]),
        refine_aspect=factors.tolist(),
    )
    out = one.replace(
        R=res.R.to(one.R.dtype),
        t=t_new.to(one.t.dtype),
        camera=cam_new,
        meshes=meshes,
        voxels=voxels,
        posed_voxels=None,
        silhouette=None,
        extras=extras,
    )
    return out, res
