"""How much of the true silhouette paper 003's eq. 5 renderer fills, against SoftRas (issue 6).

Eq. 5 gives each face ``tanh(27 l0 l1 l2)`` (barycentric coordinates ``l``): 1 near the centroid,
0 along the face's edges, *including the edges it shares with its neighbours*. Where only the
front and back layers of a closed surface cover a pixel, the sum stays below 0.5 in a band
along every edge. This script measures that on a procedural car (one closed surface) and its
1x / 2x midpoint subdivisions (trimesh ``subdivide``) (the band is a fixed fraction of each face, so finer meshes do not
close it), and on the PASCAL3D+ car 01 when ``../shared/data`` is there (many overlapping
surfaces). Columns: IoU of the render (> 0.5) with the exact z-buffer silhouette; mean value
of the render inside that silhouette; fraction of its pixels below 0.5.

    python bench/edge_coverage.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poseshape.core.paths import shared_data_status
from poseshape.engine.refine import hard_silhouettes
from poseshape.geometry.camera import viewpoint_to_pose
from poseshape.metrics import mask_iou
from poseshape.render.mesh_soft import render_silhouette
from poseshape.shapes.meshes import load_mesh
from poseshape.shapes.procedural import generate


def main() -> None:
    import trimesh

    torch.set_num_threads(2)
    S = 128
    f = 2.2 * S
    K = torch.tensor([[[f, 0, S / 2], [0, f, S / 2], [0, 0, 1.0]]])
    R, t = viewpoint_to_pose(torch.tensor([0.6]), torch.tensor([0.4]), torch.zeros(1), torch.tensor([2.5]))
    car, _ = generate("car", 0)
    shapes = []
    for level in range(3):
        tm = trimesh.Trimesh(car.verts.numpy(), car.faces.numpy(), process=False)
        for _ in range(level):
            tm = tm.subdivide()
        shapes.append(
            (
                f"procedural car, {level}x subdivided",
                torch.tensor(tm.vertices, dtype=torch.float32),
                torch.tensor(tm.faces, dtype=torch.int64),
            )
        )
    root, reason = shared_data_status()
    if reason is None:
        m = load_mesh(root / "pascal3d_cad" / "CAD" / "car" / "01.off", source="pascal3d", normalize=True)
        shapes.append(("PASCAL3D+ car 01", m.verts.float(), m.faces))
    print(f"{S} x {S}, azimuth 0.6 rad, elevation 0.4 rad, distance 2.5, focal {f:.0f} px; SoftRas sigma 1e-5")
    print("| mesh | faces | renderer | IoU | mean inside | inside < 0.5 |")
    print("|---|---|---|---|---|---|")
    for name, v, fa in shapes:
        hard = hard_silhouettes(v.double()[None], fa, R.double(), t.double(), K[0].double(), None, S).float()
        inside = hard > 0.5
        for mode in ("edge", "softras"):
            sil = render_silhouette(v[None], fa, R.float(), t.float(), K, image_size=S, mode=mode, sigma=1e-5)
            print(
                f"| {name} | {fa.shape[0]} | {'eq. 5' if mode == 'edge' else 'SoftRas'} | "
                f"{float(mask_iou(sil, hard)[0]):.3f} | {float(sil[inside].mean()):.3f} | "
                f"{float((sil[inside] < 0.5).float().mean()):.3f} |"
            )


if __name__ == "__main__":
    main()
