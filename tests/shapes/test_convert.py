"""Tests for poseshape.shapes.convert: marching cubes placement, mesh <-> voxels round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from poseshape.core.errors import ShapeError
from poseshape.shapes.convert import mesh_to_voxels, voxels_to_mesh
from poseshape.shapes.meshes import Mesh, icosphere, load_mesh
from poseshape.shapes.voxels import voxelize


def as_trimesh(m: Mesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(m.verts.double().numpy(), m.faces.numpy(), process=False)


def test_voxelize_icosphere_volume():
    r = 0.42
    v = mesh_to_voxels(icosphere(3, radius=r), 32, surface=False)
    assert v.mean().item() == pytest.approx(4 / 3 * math.pi * r**3, rel=0.03)
    assert torch.equal(v, voxelize(icosphere(3, radius=r), 32, surface=False))


def test_full_grid_gives_unit_cube():
    m = voxels_to_mesh(torch.ones(6, 6, 6))
    tm = as_trimesh(m)
    # marching cubes bevels the 12 edges and 8 corners by half a voxel
    assert tm.is_watertight and tm.volume == pytest.approx(1.0, rel=0.05) and tm.volume < 1.0
    assert torch.allclose(m.verts.min(0).values, torch.full((3,), -0.5))
    assert torch.allclose(m.verts.max(0).values, torch.full((3,), 0.5))


def test_single_voxel_placement_and_axis_order():
    g = torch.zeros(1, 1, 4, 8, 16)  # D=4 (z), H=8 (y), W=16 (x)
    g[0, 0, 3, 0, 15] = 1.0  # z = last, y = first, x = last
    m = voxels_to_mesh(g)
    centre = m.verts.mean(0)
    expect = torch.tensor([(15.5) / 16 - 0.5, 0.5 / 8 - 0.5, 3.5 / 4 - 0.5])
    assert torch.allclose(centre, expect, atol=1e-6)
    lo, hi = m.verts.min(0).values, m.verts.max(0).values
    # the 0.5 level of a single set voxel lies on its faces
    assert torch.allclose(hi - lo, torch.tensor([1 / 16, 1 / 8, 1 / 4]), atol=1e-6)
    assert as_trimesh(m).volume > 0


def test_round_trip_bbox_and_watertight():
    # an off-centre ellipsoid touching nothing, and a box touching the cube faces
    s = icosphere(3, radius=0.5)
    ell = Mesh(s.verts * torch.tensor([0.6, 0.9, 0.4]) + torch.tensor([0.1, 0.0, -0.2]), s.faces)
    tmp = trimesh.creation.box(extents=(1.0, 0.5, 0.3))
    box = Mesh(torch.as_tensor(tmp.vertices, dtype=torch.float32), torch.as_tensor(tmp.faces))
    R = 32
    for mesh in (ell, box):
        m = voxels_to_mesh(voxelize(mesh, R))
        tm = as_trimesh(m)
        assert tm.is_watertight and tm.volume > 0
        lo, hi = m.verts.min(0).values, m.verts.max(0).values
        mlo, mhi = mesh.verts.min(0).values, mesh.verts.max(0).values
        assert ((lo - mlo).abs() <= 1.0 / R + 1e-6).all(), (lo, mlo)
        assert ((hi - mhi).abs() <= 1.0 / R + 1e-6).all(), (hi, mhi)
        # volume close to the mesh's without the (outward-biased) surface voxels
        solid = as_trimesh(voxels_to_mesh(voxelize(mesh, R, surface=False)))
        assert solid.volume == pytest.approx(as_trimesh(mesh).volume, rel=0.05)


def test_round_trip_real_cad(shared_data):
    m = load_mesh(shared_data / "pascal3d_cad" / "CAD" / "car" / "01.off", source="pascal3d", normalize=True)
    v = voxelize(m, 32)
    rec = voxels_to_mesh(v)
    tm = as_trimesh(rec)
    assert tm.is_watertight and tm.volume > 0
    used = m.verts[m.faces.unique()]
    assert ((rec.verts.min(0).values - used.min(0).values).abs() <= 1 / 32 + 1e-6).all()
    assert ((rec.verts.max(0).values - used.max(0).values).abs() <= 1 / 32 + 1e-6).all()
    # re-voxelising the marching-cubes mesh gives back (nearly) the same grid
    v2 = voxelize(rec, 32, surface=False)
    iou = ((v2 > 0) & (v > 0)).sum() / ((v2 > 0) | (v > 0)).sum()
    assert iou > 0.9


def test_threshold_and_empty_and_errors():
    g = torch.zeros(8, 8, 8, dtype=torch.float64)
    assert voxels_to_mesh(g).num_verts == 0
    c = (torch.arange(8, dtype=torch.float64) + 0.5) / 8 - 0.5
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    field = 1 - (x**2 + y**2 + z**2).sqrt() / 0.5  # 0.5 level at radius 0.25, 0.25 at 0.375
    small, big = voxels_to_mesh(field, 0.5), voxels_to_mesh(field, 0.25)
    assert small.verts.dtype == torch.float64
    assert np.allclose(small.verts.norm(dim=1).numpy(), 0.25, atol=0.03)
    assert as_trimesh(big).volume > as_trimesh(small).volume
    with pytest.raises(ShapeError):
        voxels_to_mesh(torch.zeros(2, 4, 4, 4))
