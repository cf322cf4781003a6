"""Voxel grids and triangle meshes: IO, conversion, sampling and the procedural generator."""

from poseshape.shapes.convert import mesh_to_voxels, voxels_to_mesh
from poseshape.shapes.meshes import Mesh, Meshes, MeshTransform, apply_transform, edges, face_areas, face_normals, icosphere, laplacian, laplacian_smoothing_loss, load_mesh, normalize_mesh, sample_points, save_mesh, uniform_laplacian, vertex_normals
from poseshape.shapes.voxels import BinvoxHeader, load_voxel_npz, read_binvox, voxel_centers, voxelize, warp_voxels, write_binvox

__all__ = [
    "BinvoxHeader",
    "Mesh",
    "MeshTransform",
    "Meshes",
    "apply_transform",
    "edges",
    "face_areas",
    "face_normals",
    "icosphere",
    "laplacian",
    "laplacian_smoothing_loss",
    "load_mesh",
    "load_voxel_npz",
    "mesh_to_voxels",
    "normalize_mesh",
    "read_binvox",
    "sample_points",
    "save_mesh",
    "uniform_laplacian",
    "vertex_normals",
    "voxel_centers",
    "voxelize",
    "voxels_to_mesh",
    "warp_voxels",
    "write_binvox",
]
