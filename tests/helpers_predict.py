"""Shared helpers of the product-layer tests (test_predict, test_cli_reconstruct, test_cli_refine).

:class:`OraclePredictor` knows the true shape and rotation of a rendered procedural car and
only registers its scale and translation on the crop it is given, so every misalignment in
the product layer (crop box, uncrop, mesh units, projection formulas) shows up as a low
reprojection IoU. The fixture ``oracle_checkpoint`` is imported by the test modules that use
it (``clean_registry`` is in ``tests/conftest.py``).

``refine6dof_run`` (test_cli_reconstruct, test_cli_scene) is a real ``refine6dof`` run trained
in about 3 s (:data:`R6_TINY_RUN`): untrained-quality poses, but a genuine checkpoint, medoid
bank and 6-DoF renders for the product layer's plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from poseshape.engine.checkpoint import save_checkpoint
from poseshape.engine.prediction import Prediction
from poseshape.engine.predictor import Capabilities, Predictor
from poseshape.engine.registry import MethodSpec, register_method
from poseshape.methods.reproject.frame import pose_to_rt, posed_voxels
from poseshape.methods.reproject.predictor import posed_frame_camera
from poseshape.metrics import mask_iou
from poseshape.render.mesh_hard import rasterize
from poseshape.render.shading import lambertian, pixel_normals
from poseshape.shapes.meshes import face_normals
from poseshape.shapes.procedural import generate
from poseshape.shapes.voxels import voxelize

__all__ = [
    "R6_TINY_RUN",
    "OracleConfig",
    "OraclePredictor",
    "make_scene",
    "mesh_reprojection_iou",
    "oracle_build",
    "oracle_checkpoint",
    "refine6dof_renders",
    "refine6dof_run",
    "scene_pose",
    "train_tiny_refine6dof",
]


@dataclass
class OracleConfig:
    """Config of the throwaway ``oracle`` method (also used by test_cli_reconstruct)."""

    category: str = "car"
    seed: int = 0
    w1: float = 0.25  # twist relative to CANONICAL_R (a 3/4 view from slightly above)
    w2: float = 0.6
    w3: float = 0.05
    image_size: int = 64
    voxel_res: int = 30


def scene_pose(cfg: OracleConfig) -> torch.Tensor:
    return torch.tensor([[cfg.w1, cfg.w2, cfg.w3, 0.0, 0.0]], dtype=torch.float64)


def make_scene(cfg: OracleConfig | None = None, hw=(181, 243), scale=90.0, centre=(130.0, 95.0)):
    """Render the config's shape under its pose (weak perspective, white background).

    Returns ``{"mesh", "R", "image" (3, H, W), "mask" (1, H, W)}``; ``scale`` is in pixels per
    object unit and ``centre`` the image position of the object origin.
    """
    cfg = cfg or OracleConfig()
    mesh, _ = generate(cfg.category, cfg.seed)
    R, _ = pose_to_rt(scene_pose(cfg))
    V = mesh.verts.double()
    t = torch.tensor([[centre[0], centre[1], 5.0]], dtype=torch.float64)
    frag = rasterize(V, mesh.faces, R, t, scale=scale, image_size=hw)
    n = pixel_normals(face_normals(V, mesh.faces), frag.face_idx, R)
    dirs = torch.tensor([[-0.3, -0.5, -0.81], [0.5, 0.2, -0.84]], dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    rgb = lambertian(
        n,
        torch.tensor([0.75, 0.3, 0.2], dtype=torch.float64),
        dirs,
        torch.tensor([[0.6] * 3, [0.3] * 3], dtype=torch.float64),
        torch.tensor([0.25] * 3, dtype=torch.float64),
    )
    fg = frag.face_idx[0] >= 0
    img = torch.ones(3, *hw, dtype=torch.float64)
    img[:, fg] = rgb[0][fg].T
    return {"mesh": mesh, "R": R[0], "image": img.float(), "mask": fg[None].float()}


class OraclePredictor(Predictor):
    """Knows the true shape and rotation; fits scale and translation to the crop's object.

    The foreground is the crop mask when given, else the non-white pixels. The aligned shape
    stays the unit-cube voxelisation (``sigma = 1``); the frame extent ``E`` is chosen so that
    the projected shape spans the foreground's bounding box, and ``(tx, ty)`` centres it.
    """

    capabilities = Capabilities(crop_margin=0.1, shape_kinds=("voxels",), camera="weak_perspective")

    def refine_config(self):
        from poseshape.engine.refine import RefineConfig

        return RefineConfig(optimize_aspect=True)

    def __init__(self, config: OracleConfig, models=None):
        self.config = config
        self.image_size = int(config.image_size)
        mesh, _ = generate(config.category, config.seed)
        self.aligned = voxelize(mesh.to(torch.float64), config.voxel_res)[None, None].float()
        self.pose = scene_pose(config)
        R, _ = pose_to_rt(self.pose)
        P = mesh.verts.double() @ R[0].T
        self.lo, self.hi = P.amin(0), P.amax(0)
        self.calls = []

    def predict(self, images, masks=None):
        assert images.dim() == 4 and images.shape[0] == 1 and images.shape[-1] == self.image_size
        self.calls.append((images.clone(), None if masks is None else masks.clone()))
        S = images.shape[-1]
        fg = masks[0, 0] > 0.5 if masks is not None else images[0].amin(0) < 0.95
        rows, cols = torch.nonzero(fg.any(1)).flatten(), torch.nonzero(fg.any(0)).flatten()
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        ext = self.hi - self.lo
        E = float(S * (ext[0] + ext[1]) / ((c1 - c0) + (r1 - r0)))  # u = (x / E + .5) S
        assert ext[2] <= E, "the shape's depth does not fit the posed cube; pick another view"
        mid = (self.hi + self.lo) / 2
        pose = self.pose.clone()
        pose[0, 3] = ((c0 + c1) / 2 / S - 0.5) * E - mid[0]
        pose[0, 4] = ((r0 + r1) / 2 / S - 0.5) * E - mid[1]
        posed = posed_voxels(self.aligned.double(), pose, E).float()
        R, t = pose_to_rt(pose)
        return Prediction(
            R=R.float(),
            t=t.float(),
            camera=posed_frame_camera(1, S, E),
            voxels=self.aligned,
            posed_voxels=posed,
            silhouette=posed.amax(2),
            extras={"pose": pose.float(), "frame_extent": E},
        )


def oracle_build(cfg):
    return {"dummy": nn.Linear(1, 1)}


@pytest.fixture
def oracle_checkpoint(tmp_path, clean_registry):
    """Register the ``t_oracle`` method and save a checkpoint of it; returns its path."""
    register_method(
        MethodSpec(name="t_oracle", config_cls=OracleConfig, build=oracle_build, stages=[], predictor=OraclePredictor)
    )
    cfg = OracleConfig()
    return save_checkpoint(tmp_path / "ckpt" / "oracle.pt", method="t_oracle", config=cfg, models=oracle_build(cfg))


def mesh_reprojection_iou(obj_path: Path, pose: dict, mask: torch.Tensor) -> float:
    """IoU of the written mesh, projected with the contract's formulas, vs the input mask.

    ``mesh.obj`` is in the viewer frame ``V = diag(1, -1, -1) X_cam``; ``pose.json``'s camera
    maps ``X_cam`` to input pixels: weak perspective ``u = fx x + cx`` (any depth), pinhole
    ``u = fx x / z + cx``.
    """
    import trimesh

    tm = trimesh.load(obj_path, force="mesh", process=False)
    V = torch.as_tensor(np.asarray(tm.vertices), dtype=torch.float64)
    Fc = torch.as_tensor(np.asarray(tm.faces), dtype=torch.int64)
    X = V * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)  # camera frame
    cam = pose["camera"]
    K = torch.tensor(cam["K"], dtype=torch.float64)
    H, W = mask.shape[-2:]
    eye = torch.eye(3, dtype=torch.float64)
    if cam["kind"] == "pinhole":
        frag = rasterize(X, Fc, eye, torch.zeros(3, dtype=torch.float64), K, image_size=(H, W))
    else:
        assert abs(K[0, 0] - K[1, 1]) < 1e-9
        t = torch.tensor([K[0, 2], K[1, 2], 10.0 + float(X[:, 2].abs().max())], dtype=torch.float64)
        frag = rasterize(X, Fc, eye, t, scale=float(K[0, 0]), image_size=(H, W))
    return float(mask_iou(frag.mask[0, 0][None], mask.reshape(1, H, W))[0])


# ============================================================================ refine6dof
#: A whole ``refine6dof`` run (clusters + encoder) in ~3 s on one thread: 6 procedural cars ->
#: 2 clusters, 2 renders each at 32 px, 2 encoder steps, 2 online steps at prediction time.
R6_TINY_RUN = [
    "width=0.25",
    "fc_hidden=32",
    "image_size=32",
    "num_clusters=2",
    "data.models_per_category=6",
    "data.views=2",
    "hog_size=32",
    "encoder_iters=2",
    "batch_size=4",
    "val_every=2",
    "online_steps=2",
    "voxel_res=16",
    "medoids_in_splits=true",
    "split_fractions=[1,0,0]",
]

_R6_RUNS: dict[str, Path] = {}  # one run per session, whichever test module asks first


def train_tiny_refine6dof(out_dir: Path) -> Path:
    """Train :data:`R6_TINY_RUN` into ``out_dir`` and return its ``last.pt``."""
    from poseshape.engine.registry import get_method
    from poseshape.engine.train import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = get_method("refine6dof")
        Trainer(spec, spec.make_config(None, R6_TINY_RUN), out_dir=out_dir, progress=False, tensorboard=False).fit()
    finally:
        torch.set_num_threads(threads)
    return Path(out_dir) / "last.pt"


@pytest.fixture(scope="session")
def refine6dof_run(tmp_path_factory) -> Path:
    """Folder of a tiny trained refine6dof run (``last.pt``, ``data/train`` renders); trained once."""
    if "run" not in _R6_RUNS:
        root = tmp_path_factory.mktemp("r6run")
        train_tiny_refine6dof(root)
        _R6_RUNS["run"] = root
    return _R6_RUNS["run"]


def refine6dof_renders(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's training renders: ``(images (N, 3, S, S) in [0, 1], masks (N, 1, S, S) {0, 1})``."""
    from poseshape.data.dataset import ShardDataset

    ds = ShardDataset(Path(run) / "data" / "train")
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items])
