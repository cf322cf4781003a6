"""Fixtures of the retrieval tests: a tiny, untrained but indexed model."""

from __future__ import annotations

import pytest

from poseshape.core.config import apply_overrides
from poseshape.methods.retrieval import SPEC
from poseshape.methods.retrieval.config import RetrievalConfig
from poseshape.methods.retrieval.data import config_collection
from poseshape.methods.retrieval.database import collection_buffers, embed_models, network_fingerprint
from poseshape.methods.retrieval.train import index_rotations

TINY = (
    "embed_dim=32",
    "voxnet_channels=8",
    "backbone=resnet18",
    "backbone_width=8",
    "data.categories=[car,sofa]",
    "data.models_per_category=2",
    "data.image_size=64",
    "index_rotations=4",
)


def tiny_config(*more: str) -> RetrievalConfig:
    return apply_overrides(RetrievalConfig(), [*TINY, *more])


def tiny_models(cfg: RetrievalConfig):
    """Built models with the bank filled and indexed (random weights)."""
    models = SPEC.build_models(cfg)
    buffers, _ = collection_buffers(config_collection(cfg))
    bank = models["bank"]
    bank.set(**buffers)
    bank.set_embeddings(
        embed_models(models["embed"], bank.voxels, index_rotations(cfg)), network_fingerprint(models["embed"])
    )
    return models


@pytest.fixture(scope="module")
def tiny():
    cfg = tiny_config()
    return cfg, tiny_models(cfg)


@pytest.fixture(scope="module")
def make_tiny():
    """``(tiny_config, tiny_models)``: build more tiny models in a test."""
    return tiny_config, tiny_models
