"""Fixtures of the refine6dof tests: a tiny procedural car set rendered once per session."""

from __future__ import annotations

import pytest
import torch

#: A CPU-sized configuration: 64 px, a quarter of the channels, 2 clusters of 8 procedural cars.
TINY = [
    "width=0.25",
    "fc_hidden=128",
    "image_size=64",
    "num_clusters=2",
    "data.models_per_category=8",
    "data.views=8",
    "hog_size=48",
]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``{"cfg", "spec", "clusters", "paths", "buffers", "root", "overrides"}`` of a tiny run (all models in train)."""
    from poseshape.engine.registry import get_method
    from poseshape.methods.refine6dof.data import prepare_renders
    from poseshape.methods.refine6dof.train import medoid_buffers

    spec = get_method("refine6dof")
    overrides = [*TINY, "dropout=0.0", "medoids_in_splits=true", "split_fractions=[1,0,0]"]
    cfg = spec.make_config(None, overrides)
    root = tmp_path_factory.mktemp("r6tiny")
    clusters, paths = prepare_renders(cfg, root)
    return {
        "cfg": cfg,
        "spec": spec,
        "clusters": clusters,
        "paths": paths,
        "root": root,
        "overrides": overrides,
        "buffers": medoid_buffers(cfg, root),
    }


@pytest.fixture(scope="session")
def batch16(tiny) -> dict:
    """16 training samples, 8 of each cluster, collated."""
    from torch.utils.data import default_collate

    from poseshape.methods.refine6dof.data import PoseSamples

    ds = PoseSamples(tiny["paths"]["train"], tiny["cfg"], tiny["clusters"])
    items = [ds[i] for i in range(len(ds))]
    sel = [it for it in items if it["label"] == 0][:8] + [it for it in items if it["label"] == 1][:8]
    assert len(sel) == 16
    return default_collate(sel)


@pytest.fixture(scope="session")
def trained(tiny, batch16):
    """``(models, batch)``: an encoder fitted for 120 Adam steps (lr 1e-3) on 16 images, and them."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from poseshape.methods.refine6dof.train import encoder_losses

    batch = batch16
    models = tiny["spec"].build_models(tiny["cfg"])
    models["medoids"].set(**tiny["buffers"])
    enc = models["encoder"]
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    for _ in range(120):
        parts = encoder_losses(enc(batch["input"]), batch, tiny["cfg"])
        opt.zero_grad()
        (parts["pose"] + parts["class"]).backward()
        opt.step()
    enc.eval()
    torch.set_num_threads(2)
    return models, batch
