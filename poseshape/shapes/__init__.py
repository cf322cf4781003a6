"""Voxel grids and triangle meshes: IO, conversion, sampling and the procedural generator."""

from .convert import mesh_to_voxels, voxels_to_mesh
from .meshes import (
    Mesh,
    Meshes,
    MeshTransform,
    apply_transform,
    edges,
    face_areas,
    face_normals,
    icosphere,
    laplacian,
    laplacian_smoothing_loss,
    load_mesh,
    normalize_mesh,
    sample_points,
    save_mesh,
    uniform_laplacian,
    vertex_normals,
)
from .voxels import (
    BinvoxHeader,
    load_voxel_npz,
    read_binvox,
    voxel_centers,
    voxelize,
    warp_voxels,
    write_binvox,
)

__all__ = [n for n in dir() if not n.startswith("_")]
