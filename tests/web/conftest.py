"""Shared inputs of the web demo's tests."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """``(folder, mask)``: a 160 x 120 red box on a light noisy background, saved as
    ``photo.png``, its ``mask.png`` and ``photo_rgba.png`` (the mask as alpha); ``mask`` is the
    ``(120, 160)`` bool array."""
    d = tmp_path_factory.mktemp("web_in")
    rng = np.random.default_rng(0)
    img = (rng.random((120, 160, 3)) * 40 + 200).astype(np.uint8)
    m = np.zeros((120, 160), bool)
    m[35:90, 30:130] = True
    img[m] = (rng.random((int(m.sum()), 3)) * 30 + [150, 30, 30]).astype(np.uint8)
    Image.fromarray(img).save(d / "photo.png")
    Image.fromarray(m.astype(np.uint8) * 255).save(d / "mask.png")
    Image.fromarray(np.dstack([img, m.astype(np.uint8) * 255])).save(d / "photo_rgba.png")
    return d, m
