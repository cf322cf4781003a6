"""The world training mix (issue 19): procedural + PASCAL3D+ + ObjectNet3D, held-out categories."""

from __future__ import annotations

import pytest

from poseshape.core.errors import PoseshapeError
from poseshape.data.world import (
    HELD_OUT_EVERY,
    WORLD_SPLIT,
    held_out_categories,
    objectnet3d_categories,
    world_collection,
)


def test_held_out_categories_are_every_fourth_and_never_in_the_training_mix(shared_data):
    cats = objectnet3d_categories(shared_data)
    held = held_out_categories(shared_data)
    assert held == cats[HELD_OUT_EVERY - 1 :: HELD_OUT_EVERY] and len(held) == len(cats) // HELD_OUT_EVERY
    mix = world_collection(shared_data, per_category=3)
    assert not set(held) & set(mix.categories)
    unseen = world_collection(shared_data, held_out=True)
    assert sorted(unseen.categories) == held
    # every model of the mix is procedural, PASCAL3D+ or a seen ObjectNet3D category
    sources = {("procedural" if r.path is None else r.path.parts[-4]) for r in mix.models}
    assert sources == {"procedural", "pascal3d_cad", "objectnet3d_cad"}
    n_pascal = sum(r.path is not None and "pascal3d_cad" in r.path.parts for r in mix.models)
    assert n_pascal == len(list((shared_data / "pascal3d_cad" / "CAD").glob("*/*.off")))


def test_world_split_is_model_level_and_keeps_a_test_model_in_small_categories(shared_data):
    mix = world_collection(shared_data, per_category=10)
    parts = {n: mix.split(n, WORLD_SPLIT) for n in ("train", "val", "test")}
    ids = {n: {(r.category, r.model_id) for r in p.models} for n, p in parts.items()}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"]) and not (ids["val"] & ids["test"])
    assert sum(len(v) for v in ids.values()) == len(mix)
    # the 5 PASCAL3D+ cars and 10 procedural ones: the test split has at least one car
    assert any(c == "car" for c, _ in ids["test"])


def test_missing_data_folder_is_named(tmp_path):
    with pytest.raises(PoseshapeError, match="not found"):
        world_collection(tmp_path / "nope")
    with pytest.raises(PoseshapeError, match="objectnet3d_cad"):
        held_out_categories(tmp_path)
