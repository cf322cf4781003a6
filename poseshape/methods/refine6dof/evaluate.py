"""Paper 003's Table 1 for a trained ``refine6dof`` model (``poseshape eval``).

Each *row* is one way of turning the encoder's prediction into a final pose, evaluated on
the same images:

==================  ===================================================================
``encoder``         the encoder alone (class + ``P = [R | t]``)
``online``          + paper §4.2: fine-tune a copy of the encoder weights online on the
                    silhouette misalignment (:func:`.online.online_refine`; the config's
                    ``online_*`` settings, i.e. the paper's 30 steps, batch 20, lr 1e-6,
                    eq. 5 renderer, unless overridden)
``refine``          + our direct multi-start pose refinement of the medoid
                    (:func:`poseshape.engine.refine.refine_pose`: 16 starts around the encoder's
                    pose, IoU + BCE, blur schedule; :class:`~poseshape.engine.refine.RefineConfig`)
``online+refine``   both, in that order
==================  ===================================================================

Metrics of a row (columns of :data:`COLUMNS`):

* ``accuracy``: class accuracy, the predicted cluster vs the model's cluster (the clusters
  of the checkpoint's run, :func:`.data.compute_clusters`);
* ``miou``: mean IoU of the exact (z-buffer) silhouette of the predicted cluster's medoid at
  the final pose vs the ground-truth mask, at the test set's own resolution (``S x S``,
  ``S = config.image_size``, unless it was rendered larger: ``data.test_image_size``);
* ``mve_deg``: MVE, the median geodesic rotation error in degrees; ``acc_pi6``: the
  fraction below 30 degrees;
* ``t_err``: median ``|t - t_gt|`` in object units (models fit the unit cube; the paper's
  are 6 units long, so multiply by 6 to compare);
* ``s_per_image``: wall seconds of the row's refinement per image (0 for the encoder).

Images whose refinement is refused (e.g. the shape projects outside the image at the
predicted pose) keep the encoder's pose and are counted in ``refine_failed``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from poseshape.core.config import ConfigError, apply_overrides
from poseshape.core.errors import PoseshapeError
from poseshape.engine.refine import RefineConfig, refine_pose
from poseshape.methods.refine6dof.data import PoseSamples, compute_clusters, prepare_renders
from poseshape.methods.refine6dof.online import hard_silhouettes, online_refine
from poseshape.metrics import mask_iou, rotation_error
from poseshape.shapes.meshes import Mesh

__all__ = ["COLUMNS", "ROWS", "evaluate", "evaluate_rows", "online_settings", "row_settings", "eval_samples"]

ROWS = ("encoder", "online", "refine", "online+refine")

#: Column order of the printed table: key, header, format (see :func:`poseshape.engine.report.format_table`).
COLUMNS: list[tuple[str, str, str]] = [
    ("n", "n", "{:d}"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("miou", "mIoU", "{:.3f}"),
    ("mve_deg", "MVE (deg)", "{:.2f}"),
    ("acc_pi6", "Acc pi/6", "{:.3f}"),
    ("t_err", "t error", "{:.3f}"),
    ("s_per_image", "s/image", "{:.2f}"),
]

_ONLINE_KEYS = {
    "steps": "online_steps",
    "batch": "online_batch",
    "lr": "online_lr",
    "render": "online_render",
    "sigma": "online_sigma",
    "loss": "online_loss",
    "render_size": "render_size",
}


def online_settings(cfg) -> dict[str, Any]:
    """The keyword arguments of :func:`.online.online_refine` from a config's ``online_*`` fields."""
    out = {k: getattr(cfg, f) for k, f in _ONLINE_KEYS.items()}
    out["render_size"] = int(out["render_size"] or 0) or None
    return out


def eval_samples(
    cfg,
    run_dir: str | os.PathLike | None,
    data: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> PoseSamples:
    """The evaluation set: ``data`` (a 6-DoF set of the run's models) or the run's test split.

    The test split is rendered into ``run_dir/data/`` (a temporary folder when ``run_dir`` is
    None) on first use; items carry the full-size masks (``full_size=True``) and the labels of
    the run's clusters (``run_dir/clusters.json``, recomputed when absent).

    Raises:
        PoseshapeError: no test split (all models went to training), or not a rendered set.
    """
    if data is None:
        _, paths = prepare_renders(cfg, run_dir, progress=progress, splits=("test",))
        if paths.get("test") is None:
            raise PoseshapeError(
                "evaluate: the run has no test split (all models went to training); give --data "
                "or train with more models (data.models_per_category)"
            )
        data = paths["test"]
    clusters, _ = compute_clusters(cfg, run_dir)
    return PoseSamples(data, cfg, clusters, limit=limit, what="test", full_size=True)


def row_settings(cfg, name: str, online: Sequence[str] = (), refine: Sequence[str] = ()) -> dict[str, Any]:
    """``{"online": kwargs | None, "refine": RefineConfig | None}`` of row ``name`` (:data:`ROWS`).

    ``online`` / ``refine``: ``KEY=VALUE`` overrides of :func:`online_settings` and of
    :class:`~poseshape.engine.refine.RefineConfig`.
    """

    if name not in ROWS:
        raise PoseshapeError(f"row {name!r}: expected one of {ROWS}")
    if online and "online" not in name or refine and "refine" not in name:
        raise PoseshapeError(
            f"row {name!r}: online options {list(online)} / refine options {list(refine)} "
            "given for a row without that step"
        )
    on = rf = None
    if "online" in name:  # short names -> the config's online_* fields, typed and checked by the config
        mapped = []
        for item in online:
            k, eq, v = item.partition("=")
            if not eq or k.strip() not in _ONLINE_KEYS:
                raise PoseshapeError(f"online: expected KEY=VALUE with KEY one of {sorted(_ONLINE_KEYS)}, got {item!r}")
            mapped.append(f"{_ONLINE_KEYS[k.strip()]}={v}")
        try:
            on = online_settings(apply_overrides(cfg, mapped))
        except ConfigError as e:
            raise PoseshapeError(f"online: {e}") from None
    if "refine" in name:
        try:
            rf = apply_overrides(RefineConfig(), list(refine))
        except ConfigError as e:
            raise PoseshapeError(f"refine: {e}") from None
    return {"online": on, "refine": rf}


def _refine_chunk(bank, labels, R, t, K, masks, config) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Multi-start refinement of each image's medoid; images it refuses keep ``(R, t)``.

    Runs on the CPU (its kernels are CPU ones); the results go back to ``R``'s device.
    """

    dev = R.device
    if dev.type != "cpu":
        R2, t2, nf = _refine_chunk(bank, labels.cpu(), R.cpu(), t.cpu(), K.cpu(), masks.cpu(), config)
        return R2.to(dev), t2.to(dev), nf

    meshes = {}
    for c in labels.unique().tolist():
        m = bank.mesh(int(c))
        meshes[int(c)] = m if m.verts.device.type == "cpu" else Mesh(m.verts.cpu(), m.faces.cpu())
    shapes = [meshes[int(c)] for c in labels]
    try:
        r = refine_pose(masks, shapes, R.double(), t.double(), K.double(), config=config)
        return r.R.to(R.dtype), r.t.to(t.dtype), 0
    except PoseshapeError:
        pass
    R2, t2, failed = R.clone(), t.clone(), 0
    for b in range(len(shapes)):  # one by one: keep every image that can be refined
        try:
            r = refine_pose(
                masks[b : b + 1],
                shapes[b],
                R[b : b + 1].double(),
                t[b : b + 1].double(),
                K[b : b + 1].double(),
                config=config,
            )
            R2[b], t2[b] = r.R[0].to(R.dtype), r.t[0].to(t.dtype)
        except PoseshapeError:
            failed += 1
    return R2, t2, failed


def evaluate_rows(
    encoder, bank, ds: PoseSamples, rows: Mapping[str, Mapping[str, Any]], *, chunk: int = 20, progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Metrics of every row on the whole set ``ds`` (the encoder runs once per chunk).

    Args:
        encoder: the trained :class:`~.model.PoseEncoder` (eval mode; never modified).
        bank: the :class:`~.model.MedoidBank`.
        ds: the test samples (:class:`.data.PoseSamples` with ``full_size=True``, e.g. from
            :func:`eval_samples`).
        rows: ``{label: {"online": online_refine kwargs | None, "refine": RefineConfig | None}}``.
        chunk: images per encoder pass (and per online fine-tuning chunk's upper bound).
        progress: show a tqdm bar.

    Returns:
        ``{label: {metric: value}}`` with the metrics of the module docstring (and, for a set
        of several categories, ``"per_category": {category: {metric: value}}``; and
        ``"class_correct"``: the same metrics over the images whose class is right, i.e. whose
        refinement aligned the right cluster's medoid).
    """
    from tqdm import tqdm

    if len(ds) == 0:
        raise PoseshapeError("evaluate: the test set is empty")
    acc = {k: {"acc": [], "rot": [], "t": [], "iou": [], "secs": 0.0, "failed": 0} for k in rows}
    cats: list[torch.Tensor] = []
    encoder.eval()
    dev = next(encoder.parameters()).device
    bar = tqdm(total=len(ds), desc="eval refine6dof", disable=not progress, dynamic_ncols=True)
    for lo in range(0, len(ds), chunk):
        items = [ds[i] for i in range(lo, min(len(ds), lo + chunk))]
        b = {
            k: torch.stack([it[k] for it in items]).to(dev)
            for k in ("input", "mask_full", "K_full", "R", "t", "K", "label", "category")
        }
        cats.append(b["category"].cpu())
        mask, Kf = b["mask_full"], b["K_full"]  # the set's own resolution (>= S)
        with torch.no_grad():
            out = encoder(b["input"])
        lab = out["logits"].argmax(1)
        for name, spec in rows.items():
            R, t = out["R"], out["t"]
            a = acc[name]
            t0 = time.perf_counter()
            if spec.get("online") is not None:
                res = online_refine(encoder, bank, b["input"], mask, b["K"], labels=lab, **spec["online"])
                R, t = res.R, res.t
            if spec.get("refine") is not None:
                R, t, nf = _refine_chunk(bank, lab, R, t, Kf, mask, spec["refine"])
                a["failed"] += nf
            if spec.get("online") is not None or spec.get("refine") is not None:
                a["secs"] += time.perf_counter() - t0
            a["acc"].append((lab == b["label"]).float().cpu())
            a["rot"].append(rotation_error(R.double(), b["R"].double()).cpu())
            a["t"].append((t - b["t"]).norm(dim=-1).cpu())
            a["iou"].append(mask_iou(hard_silhouettes(bank, lab, R, t, Kf, mask.shape[-1]), mask).cpu())
        bar.update(len(items))
    bar.close()
    cat = torch.cat(cats)
    names = list(ds.ds.categories)

    def summary(a: dict, sel: torch.Tensor) -> dict[str, Any]:
        r = torch.cat(a["rot"])[sel]
        n = int(r.numel())
        return {
            "n": n,
            "accuracy": float(torch.cat(a["acc"])[sel].mean()),
            "miou": float(torch.cat(a["iou"])[sel].mean()),
            "mve_deg": float(r.median()),
            "acc_pi6": float((r < 30).float().mean()),
            "t_err": float(torch.cat(a["t"])[sel].median()),
        }

    result = {}
    everything = torch.ones_like(cat, dtype=torch.bool)
    for name, a in acc.items():
        m = summary(a, everything)
        m.update(s_per_image=a["secs"] / m["n"], refine_failed=a["failed"])
        right = torch.cat(a["acc"]) > 0.5
        if bool(right.any()) and not bool(right.all()):  # the pose metrics where the medoid is the right one
            m["class_correct"] = summary(a, right)
        if len(set(cat.tolist())) > 1:  # a multi-category set: the rows per category too
            m["per_category"] = {names[c]: summary(a, cat == c) for c in sorted(set(cat.tolist()))}
        result[name] = m
    return result


def _run_dir(predictor) -> Path | None:
    """The training run folder of the predictor's checkpoint (None for a shipped model)."""
    p = getattr(predictor, "checkpoint_path", None)
    if not p or not (Path(p).parent / "clusters.json").is_file():
        return None  # e.g. poseshape/assets: render / cluster in a temporary folder instead
    return Path(p).parent


def evaluate(
    predictor,
    data: str | os.PathLike | None = None,
    *,
    rows: Sequence[str] = ("encoder", "online", "refine"),
    online: Sequence[str] = (),
    refine: Sequence[str] = (),
    limit: int | None = None,
    batch_size: int = 20,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Paper 003's Table 1 rows for a ``refine6dof`` predictor (``poseshape eval``).

    Args:
        predictor: a :class:`.predictor.Refine6DofPredictor`.
        data: a test set rendered with ``framing="6dof"`` from the run's models (their clusters
            give the class labels). ``None``: the run's own test split, rendered into
            ``run_dir/data/test`` if it is not there yet (held-out models of every cluster).
        rows: some of :data:`ROWS`.
        online, refine: ``KEY=VALUE`` overrides of the ``online`` / ``refine`` rows.
        limit: evaluate at most this many images (spread over all models).
        batch_size: images per chunk (the paper's online batch is 20).
        run_dir: the training run folder (default: the checkpoint's folder when it holds
            ``clusters.json``, else a temporary folder), where ``clusters.json`` and
            ``data/test`` live.
        progress: show a tqdm bar.

    Returns:
        ``{"rows": {row: metrics}, "columns": COLUMNS, "data": str, "samples": int,
        "models": int, "medoids": [names]}``.

    Raises:
        PoseshapeError: not a refine6dof predictor, unknown rows or options, no test split, a
            test set whose models were not clustered in this run.
    """
    if getattr(predictor, "method", "") != "refine6dof" or not hasattr(predictor, "bank"):
        raise PoseshapeError("evaluate: expected a refine6dof predictor")
    rows = list(rows)
    if not rows:
        raise PoseshapeError("evaluate: no rows to evaluate")
    if online and not any("online" in r for r in rows) or refine and not any("refine" in r for r in rows):
        raise PoseshapeError(f"evaluate: --online/--refine options given but the rows {rows} do not use them")
    settings = {
        r: row_settings(predictor.config, r, online if "online" in r else (), refine if "refine" in r else ())
        for r in rows
    }
    rd = Path(run_dir) if run_dir is not None else _run_dir(predictor)
    ds = eval_samples(predictor.config, rd, data, limit, progress)
    enc = predictor.encoder
    was_training = enc.training
    try:
        res = evaluate_rows(enc, predictor.bank, ds, settings, chunk=int(batch_size), progress=progress)
    finally:
        enc.train(was_training)
    return {
        "rows": res,
        "columns": COLUMNS,
        "data": str(ds.ds.root),
        "samples": len(ds),
        "models": len(ds.ds.meta["models"]),
        "medoids": [predictor.bank.name(i) for i in range(len(predictor.bank))],
        "settings": {
            r: {"online": s["online"], "refine": vars(s["refine"]) if s["refine"] else None}
            for r, s in settings.items()
        },
    }
