"""Same-run side by side with PyTorch3D 0.7.9 on the CPU (issue 18).

In one process, on the same meshes and the same OpenCV cameras (ours directly; PyTorch3D's
through ``pytorch3d.utils.cameras_from_opencv_projection``), with ``torch.set_num_threads(2)``:

* **soft silhouette**, forward and forward + backward (gradients w.r.t. the vertices):
  ours :func:`poseshape.render.render_silhouette` (SoftRas, ``sigma = 1e-4`` NDC^2, C++ kernel)
  against PyTorch3D's ``MeshRasterizer`` + ``SoftSilhouetteShader`` with its silhouette
  tutorial's settings (``sigma = gamma = 1e-4``, ``blur_radius = log(1 / 1e-4 - 1) * sigma``,
  ``faces_per_pixel = 100``);
* **hard silhouette**: ours :func:`poseshape.render.rasterize` (z-buffer) against PyTorch3D's
  ``MeshRasterizer`` with ``blur_radius = 0, faces_per_pixel = 1`` (mask = ``pix_to_face >= 0``);
  the masks' IoU between the two libraries is printed as a check that the cameras agree;
* **30-step pose fit**: Adam (lr 0.01) on an axis-angle residual and the translation, from a
  pose 10 degrees and (0.05, -0.03, 0.1) off, loss 1 - soft IoU against the soft silhouette at
  the true pose, 128 x 128, batch 1 (``bench/render_mesh.pose_optimisation``'s protocol),
  each library rendering with its own soft silhouette above.

Meshes: icosphere level 3 (1,280 faces) and, when ``../shared/data`` is there
(``POSESHAPE_DATA``), the PASCAL3D+ car 01 (28,937 faces). PyTorch3D's CPU rasteriser tests
every face against every pixel (no binning on CPU), so its slow cases run fewer repeats (one after the warm-up on the car),
and its pose fit on the car runs ``--p3d-car-steps`` steps and is scaled to 30 (said in the
row).

PyTorch3D is never a dependency of poseshape. Build it once (CPU-only, from its public
source; ~20-40 min on 2 cores) with ``bash bench/build_pytorch3d.sh``; this script finds it
in ``$POSESHAPE_PYTORCH3D`` or the build script's cache directory.

    python bench/vs_pytorch3d.py [--quick] [--out bench/results_frag/vs_pytorch3d.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_mesh import time_fn

from poseshape.core.paths import shared_data_status
from poseshape.geometry.rotations import axis_angle_to_matrix
from poseshape.render import rasterize, render_silhouette
from poseshape.shapes.meshes import icosphere, load_mesh

SIGMA = 1e-4
FACES_PER_PIXEL = 100


def find_pytorch3d():
    """Import PyTorch3D from ``$POSESHAPE_PYTORCH3D`` or the build script's cache, or exit 2."""
    tv = torch.__version__.split("+")[0]
    cache = Path(os.environ.get("POSESHAPE_CACHE", Path.home() / ".cache" / "poseshape"))
    where = os.environ.get("POSESHAPE_PYTORCH3D") or str(cache / f"pytorch3d-0.7.9-torch{tv}")
    if Path(where).is_dir() and where not in sys.path:
        sys.path.append(where)  # after the venv: only what the venv lacks comes from there
    try:
        import pytorch3d
        import pytorch3d._C  # noqa: F401 - the compiled part
    except ImportError as exc:
        raise SystemExit(
            f"PyTorch3D is not importable ({exc}); looked in {where}. Build it with "
            "`bash bench/build_pytorch3d.sh` (CPU-only, ~20-40 min) or set POSESHAPE_PYTORCH3D."
        ) from None
    return pytorch3d


def scene(H: int, dist: float = 2.5):
    """OpenCV camera: K (1, 3, 3) with focal 2.2 H, a fixed rotation, t = (0, 0, dist)."""
    K = torch.tensor([[[2.2 * H, 0, H / 2], [0, 2.2 * H, H / 2], [0, 0, 1.0]]])
    R = axis_angle_to_matrix(torch.tensor([0.3, 0.8, 0.1]))[None].float()
    t = torch.tensor([[0.0, 0.0, dist]])
    return R, t, K


class P3D:
    """PyTorch3D renderers on OpenCV cameras (``X_cam = R X + t``, K in pixels)."""

    def __init__(self):
        from pytorch3d.renderer import (
            BlendParams,
            MeshRasterizer,
            RasterizationSettings,
            SoftSilhouetteShader,
        )
        from pytorch3d.structures import Meshes
        from pytorch3d.utils import cameras_from_opencv_projection

        self.Meshes, self.cams = Meshes, cameras_from_opencv_projection
        self.MeshRasterizer, self.RasterizationSettings = MeshRasterizer, RasterizationSettings
        self.blend = BlendParams(sigma=SIGMA, gamma=SIGMA)
        self.shader = SoftSilhouetteShader(blend_params=self.blend)

    def _cameras(self, R, t, K, H):
        size = torch.tensor([[H, H]]).expand(R.shape[0], 2)
        return self.cams(R, t, K.expand(R.shape[0], 3, 3), size)

    def soft(self, verts, faces, R, t, K, H):
        B = R.shape[0]
        cams = self._cameras(R, t, K, H)
        settings = self.RasterizationSettings(
            image_size=H,
            blur_radius=math.log(1.0 / SIGMA - 1.0) * SIGMA,
            faces_per_pixel=FACES_PER_PIXEL,
            bin_size=0,
        )
        mesh = self.Meshes(verts=list(verts.expand(B, -1, -1).unbind(0)), faces=[faces] * B)
        frags = self.MeshRasterizer(cameras=cams, raster_settings=settings)(mesh)
        return self.shader(frags, mesh, cameras=cams)[..., 3]  # (B, H, W) alpha

    def hard(self, verts, faces, R, t, K, H):
        B = R.shape[0]
        cams = self._cameras(R, t, K, H)
        settings = self.RasterizationSettings(image_size=H, blur_radius=0.0, faces_per_pixel=1, bin_size=0)
        mesh = self.Meshes(verts=list(verts.expand(B, -1, -1).unbind(0)), faces=[faces] * B)
        frags = self.MeshRasterizer(cameras=cams, raster_settings=settings)(mesh)
        return (frags.pix_to_face[..., 0] >= 0).float()


def ours_soft(verts, faces, R, t, K, H):
    return render_silhouette(verts, faces, R, t, K, image_size=H, sigma=SIGMA)[:, 0]


def ours_hard(verts, faces, R, t, K, H):
    B = R.shape[0]
    return rasterize(verts.expand(B, -1, -1), faces, R, t, K.expand(B, 3, 3), (H, H)).mask[:, 0]


def pose_fit(render, verts, faces, H: int, steps: int) -> tuple[float, float]:
    """Seconds for ``steps`` Adam steps of the pose fit, and the final loss."""
    R_gt, t_gt, K = scene(H)
    with torch.no_grad():
        target = render(verts, faces, R_gt, t_gt, K, H)
    R0 = axis_angle_to_matrix(torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2) * math.radians(10))[None] @ R_gt
    w = torch.full((1, 3), 1e-6, requires_grad=True)
    tt = (t_gt + torch.tensor([[0.05, -0.03, 0.1]])).requires_grad_(True)
    opt = torch.optim.Adam([w, tt], lr=0.01)
    t0 = time.perf_counter()
    for _ in range(steps):
        sil = render(verts, faces, axis_angle_to_matrix(w) @ R0, tt, K, H)
        loss = 1 - (sil * target).sum() / (sil + target - sil * target).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, float(loss.detach())


def _render_case(render, verts, faces, H, B, backward):
    R, t, K = scene(H)
    R, t = R.expand(B, 3, 3).contiguous(), t.expand(B, 3).contiguous()

    def step():
        with torch.set_grad_enabled(backward):
            v = verts.clone().requires_grad_(backward)
            out = render(v, faces, R, t, K, H)
            if backward:
                out.sum().backward()

    return step


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64^2 only, icosphere only, 1 repeat for PyTorch3D")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of our (fast) cases")
    ap.add_argument("--p3d-repeats", type=int, default=2, help="repeats of PyTorch3D's cases")
    ap.add_argument("--p3d-car-steps", type=int, default=2, help="steps of PyTorch3D's pose fit on the car")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    p3d_mod = find_pytorch3d()
    p3d = P3D()
    t_start = time.perf_counter()
    meshes = [("icosphere L3", icosphere(3, radius=0.5, dtype=torch.float32))]
    root, reason = shared_data_status()
    if not args.quick and reason is None:
        car = load_mesh(root / "pascal3d_cad" / "CAD" / "car" / "01.off", source="pascal3d", normalize=True)
        meshes.append(("PASCAL3D+ car 01", car))
    elif reason is not None:
        print(f"(car rows skipped: {reason})")
    reps_p3d = 1 if args.quick else args.p3d_repeats
    rows = []

    def add(case, mesh_name, F, ours_s, p3d_s, n_img, note=""):
        rows.append((case, mesh_name, F, n_img / ours_s, n_img / p3d_s, p3d_s / ours_s, note))
        print(
            f"  {case:34s} {mesh_name:18s} ours {ours_s * 1e3:9.1f} ms  PyTorch3D {p3d_s * 1e3:10.1f} ms  "
            f"ratio {p3d_s / ours_s:7.1f}x {note}",
            flush=True,
        )

    for name, m in meshes:
        verts, faces = m.verts.float().contiguous(), m.faces.long().contiguous()
        F = faces.shape[0]
        sizes = [64] if args.quick else [64, 128]
        for H in sizes:
            # PyTorch3D's CPU rasteriser is O(F * H * W): batch 8 on the icosphere, 1 on the car
            B = 8 if F < 5000 else 1
            R, t, K = scene(H)
            hard_o = ours_hard(verts, faces, R, t, K, H)
            hard_p = p3d.hard(verts, faces, R, t, K, H)
            iou = float((hard_o * hard_p).sum() / ((hard_o + hard_p) > 0).sum().clamp(min=1))
            with torch.no_grad():
                soft_diff = float(
                    (ours_soft(verts, faces, R, t, K, H) - p3d.soft(verts, faces, R, t, K, H)).abs().max()
                )
            reps = reps_p3d if F < 5000 else 1
            for label, fo, fp, bwd in (
                (f"soft fwd {H}^2 B{B}", ours_soft, p3d.soft, False),
                (f"soft fwd+bwd {H}^2 B{B}", ours_soft, p3d.soft, True),
                (f"hard fwd {H}^2 B{B}", ours_hard, p3d.hard, False),
            ):
                so, _ = time_fn(_render_case(fo, verts, faces, H, B, bwd), args.repeats)
                sp, _ = time_fn(_render_case(fp, verts, faces, H, B, bwd), reps)
                if "hard" in label:
                    note = f"hard masks: IoU ours vs PyTorch3D {iou:.3f}"
                else:
                    note = f"soft silhouettes: max abs difference {soft_diff:.3f}"
                add(label, name, F, so, sp, B, note)
        H = 128 if not args.quick else 64
        so = statistics.median(pose_fit(ours_soft, verts, faces, H, 30)[0] for _ in range(3))
        steps = 30 if F < 5000 else max(1, args.p3d_car_steps)
        reps = reps_p3d if F < 5000 else 1
        sp = statistics.median(pose_fit(p3d.soft, verts, faces, H, steps)[0] for _ in range(reps)) * 30 / steps
        note = "" if steps == 30 else f"(PyTorch3D: {steps} steps timed, scaled to 30)"
        add(f"30-step pose fit {H}^2 B1 (s)", name, F, so, sp, 1, note)

    lines = [
        f"Machine: {platform.machine()} {os.cpu_count()} logical cores, torch {torch.__version__}, "
        f"PyTorch3D {p3d_mod.__version__} (CPU build, bench/build_pytorch3d.sh), 2 threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average at end "
        f"{os.getloadavg()[0]:.2f}; run time {time.perf_counter() - t_start:.0f} s.",
        "",
        "| case | mesh | faces | ours img/s | PyTorch3D img/s | ours / PyTorch3D | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for case, mesh_name, F, a, b, r, note in rows:
        if case.startswith("30-step"):
            lines.append(f"| {case} | {mesh_name} | {F} | {1 / a:.3f} s | {1 / b:.2f} s | {r:.0f}x faster | {note} |")
        else:
            lines.append(f"| {case} | {mesh_name} | {F} | {a:.2f} | {b:.3f} | {r:.0f}x | {note} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
