"""Configuration of ``retrieval`` (paper 004). Defaults are the paper's values where it gives one.

Where the paper is silent the default is ours and the comment says so. Override from the CLI
with ``--set key=value`` or a YAML file; :data:`CPU_PRESET` lists the overrides of the small
CPU run (``poseshape train retrieval --set ...``, see ``scripts/train_default_retrieval.sh``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poseshape.core.config import load_config

__all__ = ["CPU_PRESET", "PRESETS", "DataConfig", "RetrievalConfig", "cpu_config"]


@dataclass
class DataConfig:
    """Where the CAD models and the image renders come from.

    Attributes:
        meshes: ``"procedural"`` (the project's shapes) or a mesh folder any
            :class:`poseshape.data.collections.MeshCollection` layout reads (e.g.
            ``../shared/data/pascal3d_cad``). Every model is a retrieval target (the
            database); images are split by *view*, never by model, as in the paper.
        categories: categories to use (empty: all of the folder's; procedural: these).
        models_per_category: procedural models per category (ours).
        procedural_seed: seed of the procedural shapes.
        views: training renders per model (stage II; ours: the paper trains on PASCAL3D+
            photos); val_views / test_views: held-out renders per model (other seeds).
        appearances: the training views are split over this many render seeds, each with
            its own per-model appearance (ours; see :func:`.data.prepare_renders`).
        image_size: side of the rendered square images in pixels.
        domain: data-engine appearance (``"render"`` or ``"natural"``).
        seed: seed of the renders; the val and test renders use ``seed + 1`` / ``seed + 2``.
        train, val, test: folders of shards already rendered from the *same* model list
            (``poseshape data render --framing fixed``; several: comma-separated); empty:
            rendered into ``RUN/data``.
        workers: render worker processes.
    """

    meshes: str = "procedural"
    categories: list[str] = field(default_factory=lambda: ["car", "chair", "sofa", "aeroplane"])
    models_per_category: int = 4
    procedural_seed: int = 0
    views: int = 200
    appearances: int = 10
    val_views: int = 4
    test_views: int = 8
    image_size: int = 128
    domain: str = "render"
    seed: int = 0
    train: str = ""
    val: str = ""
    test: str = ""
    workers: int = 1


@dataclass
class RetrievalConfig:
    """Hyper-parameters of paper 004 (embedding network, regression network, anchors)."""

    # ---------------------------------------------------------------- stage I (§3.2, §3.4)
    voxel_res: int = 32  # paper: 32 x 32 x 32 occupancy grids
    embed_dim: int = 512  # paper: 512-d shape and 512-d pose embeddings
    #: Channels of VoxNet's two 3-D convolutions (VoxNet [28]: 32 filters each).
    voxnet_channels: int = 32
    #: ``True``: separate shape and pose embeddings (the paper); ``False``: one shared
    #: embedding for both heads (Table 2's "without disentangling").
    disentangle: bool = True
    #: Shape loss: ``"ce"`` (paper, classification over the CAD models) or ``"triplet"``
    #: (paper's option for large databases; margin ``triplet_margin``, ours 0.2).
    shape_loss: str = "ce"
    triplet_margin: float = 0.2
    #: Rotation anchors: ``"paper"`` (eq. 1 on an N^3 grid) or ``"superfib"`` (ours: the
    #: super-Fibonacci spiral with the same count).
    anchor_grid: str = "paper"
    anchor_n: int = 7  # paper: N = 7
    #: How the paper grid's duplicates are removed: ``"exact"`` gives the paper's 259 anchors.
    anchor_dedup: str = "exact"
    huber_delta: float = 1.0  # ours: torch's default (the paper names Huber without a delta)
    w_shape: float = 1.0  # ours: the paper sums the losses without weights
    w_anchor: float = 1.0
    w_residual: float = 1.0
    #: Database entry = mean shape embedding over this many super-Fibonacci rotations of
    #: the model (ours: the paper does not say how database entries are embedded).
    index_rotations: int = 32
    lr: float = 1e-4  # paper: Adam, 1e-4
    stage1_epochs: int = 100  # paper: 100 epochs
    stage1_samples: int = 10000  # paper: 10,000 samples per epoch
    batch_size: int = 32  # ours: the paper gives none
    # ---------------------------------------------------------------- stage II (§3.3, §3.4)
    #: Regression network: ``"resnet50"`` (paper; torchvision architecture, weights=None:
    #: no ImageNet weights here) or ``"resnet18"`` (ours, the CPU preset).
    backbone: str = "resnet50"
    #: Width of the backbone's first stage (64 = torchvision's ResNet; smaller for CPU runs).
    backbone_width: int = 64
    stage2_epochs: int = 16  # paper: 16 epochs
    stage2_batch_size: int = 32  # ours
    w_embed: float = 1.0  # L1 to the stage-I embeddings (paper: summed with the others)
    w_translation: float = 1.0
    #: Translation anchors: equal cells tiling ``[t_low, t_high]`` (object units, OpenCV
    #: camera) with ``t_counts`` cells per axis. The paper's box (x, y in [-0.25, 1.5], z in
    #: [0.5, 10]) is in its crop-relative units; ours is the range of our renders.
    t_low: tuple[float, float, float] = (-0.2, -0.2, 1.9)
    t_high: tuple[float, float, float] = (0.2, 0.2, 3.1)
    t_counts: tuple[int, int, int] = (4, 4, 6)
    #: Render camera (``framing="fixed"``): field of view in degrees, distance range and
    #: image-plane jitter in object units (ours).
    fov_deg: float = 30.0
    distance: tuple[float, float] = (2.0, 3.0)
    translation_jitter: float = 0.15
    val_every: int = 500
    #: A database file of ``poseshape retrieval index`` the predictor searches instead of the
    #: checkpoint's own models (empty: the checkpoint's). It must come from the same network.
    database: str = ""
    num_workers: int = 0
    data: DataConfig = field(default_factory=DataConfig)


#: The small CPU run (ours): 64-d embeddings, VoxNet with 16 filters, a ResNet-18 of width 16
#: on 64 px renders of 16 procedural models, Adam at 5e-4 (the networks start from scratch:
#: no pretrained ResNet), 40 x 2000 voxel samples and 30 epochs of 150 views per model, so
#: that the shipped checkpoint stays a few MB and trains in ~12 min on 2 cores.
CPU_PRESET: tuple[str, ...] = (
    "embed_dim=64",
    "voxnet_channels=16",
    "backbone=resnet18",
    "backbone_width=16",
    "lr=5e-4",
    "stage1_epochs=40",
    "stage1_samples=2000",
    "stage2_epochs=30",
    "data.views=150",
    "data.image_size=64",
    "val_every=500",
)


#: ``--set preset=NAME`` (``paper``: the defaults). ``cpu``: :data:`CPU_PRESET`; ``quick``: the
#: CPU networks for a few epochs on 20 views per model, a few minutes on a laptop (a smoke run).
PRESETS: dict[str, tuple[str, ...]] = {
    "cpu": CPU_PRESET,
    "quick": (
        *CPU_PRESET,
        "stage1_epochs=3",
        "stage1_samples=300",
        "stage2_epochs=2",
        "data.views=20",
        "val_every=100",
    ),
}


def cpu_config() -> RetrievalConfig:
    """:class:`RetrievalConfig` with :data:`CPU_PRESET` applied."""
    return load_config(RetrievalConfig, None, CPU_PRESET)
