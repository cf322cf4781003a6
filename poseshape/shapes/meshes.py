"""Triangle meshes: a single ``Mesh`` and a batch of meshes of different sizes.

(Helper-extended: icosphere, Laplacian, sampling, IO via trimesh, normalisation.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_finite, check_shape
from ..errors import ShapeError


@dataclass
class Mesh:
    """One triangle mesh.

    Attributes:
        verts: ``(V, 3)`` float vertex positions (object frame unless stated otherwise).
        faces: ``(F, 3)`` int64 vertex indices, counter-clockwise seen from outside.
    """

    verts: torch.Tensor
    faces: torch.Tensor

    def __post_init__(self) -> None:
        self.verts = torch.as_tensor(self.verts)
        if not self.verts.is_floating_point():
            self.verts = self.verts.to(torch.get_default_dtype())
        self.faces = torch.as_tensor(self.faces).to(torch.int64)
        check_shape(self.verts, "Mesh.verts", (None, 3), batch=False)
        check_shape(self.faces, "Mesh.faces", (None, 3), batch=False)
        check_finite(self.verts, "Mesh.verts")
        if self.faces.numel() and (self.faces.min() < 0 or self.faces.max() >= self.verts.shape[0]):
            raise ShapeError(
                f"Mesh.faces: indices must lie in [0, {self.verts.shape[0]}), got range "
                f"[{int(self.faces.min())}, {int(self.faces.max())}]"
            )

    @property
    def num_verts(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def to(self, *args, **kwargs) -> "Mesh":
        """Move/cast the vertices (faces stay int64) like ``Tensor.to``."""
        return Mesh(self.verts.to(*args, **kwargs), self.faces.to(self.verts.to(*args, **kwargs).device))

    def clone(self) -> "Mesh":
        return Mesh(self.verts.clone(), self.faces.clone())
