"""Render a contact sheet of procedural shapes (categories x seeds) to a PNG.

Pure matplotlib (Poly3DCollection with Lambert shading), no GPU or OpenGL:

    python scripts/contact_sheet_procedural.py                       # docs/img/procedural.png
    python scripts/contact_sheet_procedural.py --seeds 8 --categories chair car --out /tmp/x.png

Each row is a category, each column a seed (``generate(category, seed)``).  The view
looks at the object's front-right three-quarter side from slightly above (the object frame's
+Z front and +X right both face the viewer; +Y is up on the page).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from poseshape.shapes.procedural import CATEGORIES, generate

REPO = Path(__file__).resolve().parent.parent


def _to_mpl(v: np.ndarray) -> np.ndarray:
    """Object frame (x, y up, z front) -> matplotlib (X, Y, Z up), a proper rotation."""
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


def draw_mesh(ax, verts: np.ndarray, faces: np.ndarray, color=(0.55, 0.7, 0.9), elev=20.0, azim=-55.0) -> None:
    """Draw a triangle mesh ``verts (V, 3)``, ``faces (F, 3)`` (object frame) on a 3-D axis."""
    v = _to_mpl(np.asarray(verts, float))
    tri = v[np.asarray(faces)]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    light = np.array([0.4, -0.8, 0.6])
    light /= np.linalg.norm(light)
    # back-face culling (the meshes are closed and outward-oriented): matplotlib sorts
    # polygons by depth only roughly, so hidden back faces would otherwise bleed through
    e, a = np.radians(elev), np.radians(azim)
    eye = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    keep = n @ eye > 0
    tri, n = tri[keep], n[keep]
    shade = 0.35 + 0.65 * np.clip(n @ light, 0.0, 1.0)
    fc = np.clip(np.asarray(color)[None, :] * shade[:, None], 0, 1)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=fc, edgecolors="none", linewidths=0))
    ax.set_xlim(-0.5, 0.5)
    ax.set_ylim(-0.5, 0.5)
    ax.set_zlim(-0.5, 0.5)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()


def contact_sheet(categories, seeds: int, out: Path, dpi: int = 80) -> Path:
    """Render ``len(categories) x seeds`` shapes to ``out`` (PNG) and return the path."""
    rows, cols = len(categories), seeds
    fig = plt.figure(figsize=(1.9 * cols, 1.9 * rows))
    for r, cat in enumerate(categories):
        for c in range(cols):
            mesh, params = generate(cat, seed=c)
            ax = fig.add_subplot(rows, cols, r * cols + c + 1, projection="3d")
            draw_mesh(ax, mesh.verts.numpy(), mesh.faces.numpy())
            label = next(
                (str(params[k]) for k in ("body", "legs", "kind", "stand", "arm_style") if k in params),
                "",
            )
            ax.set_title(f"{cat} {c} {label}", fontsize=7, pad=-4)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.98, wspace=0, hspace=0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", nargs="+", default=list(CATEGORIES))
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--dpi", type=int, default=80)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "procedural.png")
    args = ap.parse_args(argv)
    print(contact_sheet(args.categories, args.seeds, args.out, args.dpi))


if __name__ == "__main__":
    main()
