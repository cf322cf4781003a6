"""Configuration of ``posefree`` (paper 002). Defaults are the paper's values where it gives one.

Where the paper is silent the default is ours and the comment says so. Override with
``--set key=value``; ``--set preset=cpu`` / ``preset=quick`` choose the small runs
(:data:`PRESETS`; ``presets/cpu.yaml`` holds the same overrides as a YAML file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poseshape.core.config import load_config

__all__ = ["PRESETS", "VIEW_SUBSETS", "DataConfig", "PosefreeConfig", "cpu_config"]

#: Fig. 5's sparse training-pose subsets: indices of the 24 ring views (15 degree steps).
VIEW_SUBSETS: dict[str, tuple[int, ...]] = {
    "first": (0, 2, 4, 6, 8, 12, 14, 16, 18, 20, 22),
    "second": (0, 6, 12, 18),
    "third": (0, 4, 5, 6, 12, 18),
    "fourth": (0, 6, 10, 11, 12, 18),
}


@dataclass
class DataConfig:
    """Where the single-view training images come from.

    The paper trains on the NMR renders of ShapeNet (24 azimuths at elevation 30 deg, distance
    2.732, 64 x 64); ours are the data engine's ``ring24`` renders of the same geometry.

    Attributes:
        meshes: ``"procedural"`` or a mesh folder (e.g. ``../shared/data/pascal3d_cad``).
        categories: categories to use (one category per model, as in the paper; several are
            pooled into one manifold).
        models_per_category: procedural models per category (ours).
        procedural_seed: seed of the procedural shapes.
        test_models: held-out models per category for the test split (procedural: rendered
            from ``procedural_seed + 1``; ours).
        image_size: side of the rendered images (paper: 64).
        seed: seed of the renders.
        train, test: folders already rendered with ``poseshape data render --pose ring24
            --framing fixed --voxels 32`` (empty: rendered into ``RUN/data``).
        view_subset: Fig. 5: keep only these ring views for training (a name of
            :data:`VIEW_SUBSETS`; empty: all 24).
        workers: render worker processes.
    """

    meshes: str = "procedural"
    categories: list[str] = field(default_factory=lambda: ["chair"])
    models_per_category: int = 64
    procedural_seed: int = 0
    test_models: int = 8
    image_size: int = 64
    seed: int = 0
    train: str = ""
    test: str = ""
    view_subset: str = ""
    workers: int = 1


@dataclass
class PosefreeConfig:
    """Hyper-parameters of paper 002 (shape manifold GAN, pseudo pose regressor, reconstructor)."""

    # ---------------------------------------------------------------- shapes and camera
    icosphere_level: int = 3  # paper: 642 vertices (level-3 icosphere)
    sphere_radius: float = 0.5  # ours: the sphere fits the unit cube of our object frame
    elevation_deg: float = 30.0  # paper: fixed elevation 30 deg
    distance: float = 2.732  # NMR camera distance
    fov_deg: float = 30.0  # NMR field of view
    sigma: float = 1e-4  # SoftRas blur (NDC^2), SoftRas' default
    # ---------------------------------------------------------------- networks (ours where noted)
    latent_dim: int = 512  # ours: the paper gives no code size
    hidden: tuple[int, int] = (1024, 2048)  # ours: widths of G's first two FC layers (paper: 3 FC)
    offset_scale: float = 0.5  # ours: tanh-bounded offsets, so the mesh stays in the unit cube
    critic_channels: int = 64  # ours: width of the first of D's five convolutions (doubling)
    pose_channels: int = 32  # ours: width of Rpose's first conv
    pose_hidden: int = 256  # ours: Rpose's FC width
    #: Image encoder of R: torchvision resnet18 (weights=None: no ImageNet weights here).
    backbone_width: int = 64  # 64 = torchvision's ResNet-18; smaller for CPU runs
    # ---------------------------------------------------------------- losses
    lambda_gp: float = 10.0  # paper: WGAN-GP lambda = 10 (D1 and D2)
    lambda_dis: float = 5e-4  # paper: weight of R's view-discrimination loss (eq. 8 lambda)
    mu_lap: float = 5e-3  # paper: weight of the Laplacian loss (eq. 8 mu)
    n_critic: int = 5  # ours (WGAN-GP's default): critic steps per generator step
    min_unobserved_deg: float = 15.0  # ours: an unobserved view differs from the pseudo pose by >= this
    # ---------------------------------------------------------------- optimisation
    batch_size: int = 32  # paper
    lr: float = 1e-4  # paper
    betas: tuple[float, float] = (0.5, 0.9)  # ours (WGAN-GP's Adam betas)
    manifold_iters: int = 20000  # ours: critic steps of stage 1
    pose_iters: int = 10000  # ours
    recon_epochs: int = 50  # ours
    #: A critic score above this (in magnitude) is taken as a blow-up and stops training.
    critic_blowup: float = 1e5
    val_every: int = 1000
    # ---------------------------------------------------------------- variants (Tables 1-3)
    #: ``"pseudo"`` (the method), ``"gt"`` (B/Ls: the true azimuth), ``"pseudo_nodis"``
    #: (B/Lu: pseudo pose, no D2).
    pose_source: str = "pseudo"
    #: ``"pid"`` (paper: D2 sees silhouettes only) or ``"pad"`` (Table 3: D2 also sees the view).
    discriminator: str = "pid"
    #: ``"learned"`` (R's own decoder, paper) or ``"manifold"`` (Table 2: G's decoder, frozen).
    decoder: str = "learned"
    num_workers: int = 0
    data: DataConfig = field(default_factory=DataConfig)


#: Small runs (ours). ``cpu``: the shipped model (~40 min on 2 cores): 32 procedural chairs (24 views each), a
#: ResNet-18 of width 16, smaller G / D, lr 2e-4. ``quick``: a smoke run of a few minutes.
PRESETS: dict[str, tuple[str, ...]] = {
    "cpu": (
        "data.models_per_category=32",
        "data.test_models=8",
        "latent_dim=128",
        "hidden=[512,1024]",
        "critic_channels=16",
        "pose_channels=16",
        "pose_hidden=128",
        "backbone_width=16",
        "lr=2e-4",
        "batch_size=32",
        "n_critic=2",
        "manifold_iters=1200",
        "pose_iters=800",
        "recon_epochs=6",
        "val_every=500",
    ),
    "quick": (
        "data.models_per_category=4",
        "data.test_models=2",
        "latent_dim=32",
        "hidden=[64,128]",
        "critic_channels=8",
        "pose_channels=8",
        "pose_hidden=32",
        "backbone_width=8",
        "batch_size=8",
        "n_critic=1",
        "manifold_iters=20",
        "pose_iters=10",
        "recon_epochs=1",
        "val_every=1000",
    ),
}


def cpu_config() -> PosefreeConfig:
    """:class:`PosefreeConfig` with the ``cpu`` preset applied."""
    return load_config(PosefreeConfig, None, PRESETS["cpu"])
