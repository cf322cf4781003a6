"""A C++ loop version of :func:`poseshape.render.mesh_hard.rasterize` for the data engine.

:func:`rasterize` gives **bit-identical** :class:`~poseshape.render.mesh_hard.Fragments`
(``face_idx``, ``depth``, ``bary``, ``mask``) to ``mesh_hard.rasterize`` -- the project's
exact z-buffer rasteriser -- for the same inputs; the tests compare the two on real CAD
meshes, procedural shapes and pixel-aligned edge cases. It is only faster: ``mesh_hard``
vectorises over face/pixel pairs in PyTorch (two passes, ~200 ns per pair on one core),
while here a compiled loop walks each face's pixel window once (a few ns per pair).

How it stays identical:

* The projection is ``mesh_hard``'s own: :func:`poseshape.render.raster_common.prepare_inputs`
  and :func:`~poseshape.render.raster_common.project_faces` run in PyTorch; only the per-pair
  work moves to C++.
* Each face's pixel window is computed with the same float operations as
  :func:`~poseshape.render.raster_common.plan_pairs` (radius 0), and the per-pair
  barycentrics, inclusion test and depth use the same formulas, in the same order, as
  ``mesh_hard._screen_bary`` / ``_depth`` (``torch.sum`` over 3 values is ``(a + b) + c``),
  compiled with ``-ffp-contract=off`` so no fused multiply-add changes a rounding.
* Faces are visited in index order and a pixel takes a face only on a strictly smaller depth:
  the minimum depth, ties to the smallest face index -- ``mesh_hard``'s rule.

The extension is built on first use with ``torch.utils.cpp_extension.load_inline`` (g++,
about a minute, cached by torch under ``~/.cache/torch_extensions``). When it cannot be
built, or ``POSESHAPE_NO_CPP=1`` is set, :func:`rasterize` calls ``mesh_hard.rasterize``
itself, so callers never see a difference except in speed. Only CPU tensors use the loop.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

from poseshape.core.cpp import cpp_extension
from poseshape.render import mesh_hard
from poseshape.render.raster_common import parse_image_size, prepare_inputs, project_faces

__all__ = ["available", "rasterize"]

_CPP = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <limits>
#include <vector>

template <typename T>
static void raster_kernel(const T* xy, const T* z, const bool* valid, int64_t B, int64_t F,
                          int64_t H, int64_t W, bool persp, int64_t* fidx, T* zbuf, T* bary) {
  const T inf = std::numeric_limits<T>::infinity();
  const T zero = T(0), half = T(0.5);
  const T wlo = T(-1.0), whi = T(W + 1.0), wlo1 = T(-2.0);
  const T hlo = T(-1.0), hhi = T(H + 1.0), hlo1 = T(-2.0);
  // images are independent: split the batch over torch's intra-op threads (one thread in the
  // data engine's workers); each image's loop is the same, so the result does not change
  at::parallel_for(0, B, 1, [&](int64_t b_begin, int64_t b_end) {
  for (int64_t b = b_begin; b < b_end; ++b) {
    T* zb = zbuf + b * H * W;
    int64_t* fb = fidx + b * H * W;
    for (int64_t p = 0; p < H * W; ++p) { zb[p] = inf; fb[p] = -1; }
    for (int64_t f = 0; f < F; ++f) {
      const int64_t bf = b * F + f;
      if (!valid[bf]) continue;
      const T* v = xy + bf * 6;
      const T* zz = z + bf * 3;
      const T x0 = v[0], y0 = v[1], x1 = v[2], y1 = v[3], x2 = v[4], y2 = v[5];
      // the window of plan_pairs(radius=0): same float ops, then integer clamps
      const T xmin = std::min(std::min(x0, x1), x2), xmax = std::max(std::max(x0, x1), x2);
      const T ymin = std::min(std::min(y0, y1), y2), ymax = std::max(std::max(y0, y1), y2);
      T a;
      a = (xmin - zero) - half; a = a < wlo ? wlo : (a > whi ? whi : a);
      int64_t j0 = (int64_t)std::ceil(a); if (j0 < 0) j0 = 0;
      a = (xmax + zero) - half; a = a < wlo1 ? wlo1 : (a > whi ? whi : a);
      int64_t j1 = (int64_t)std::floor(a); if (j1 > W - 1) j1 = W - 1;
      a = (ymin - zero) - half; a = a < hlo ? hlo : (a > hhi ? hhi : a);
      int64_t i0 = (int64_t)std::ceil(a); if (i0 < 0) i0 = 0;
      a = (ymax + zero) - half; a = a < hlo1 ? hlo1 : (a > hhi ? hhi : a);
      int64_t i1 = (int64_t)std::floor(a); if (i1 > H - 1) i1 = H - 1;
      if (j1 < j0 || i1 < i0) continue;
      // edges e_k = v_{k+1} - v_k and twice the signed area, as mesh_hard._screen_bary
      const T e0x = x1 - x0, e0y = y1 - y0, e1x = x2 - x1, e1y = y2 - y1, e2x = x0 - x2, e2y = y0 - y2;
      const T area2 = e0x * (y2 - y0) - e0y * (x2 - x0);
      if (!(area2 != zero)) continue;
      for (int64_t i = i0; i <= i1; ++i) {
        const T py = T(i) + half;
        for (int64_t j = j0; j <= j1; ++j) {
          const T px = T(j) + half;
          const T c0 = e0x * (py - y0) - e0y * (px - x0);
          const T c1 = e1x * (py - y1) - e1y * (px - x1);
          const T c2 = e2x * (py - y2) - e2y * (px - x2);
          const T l0 = c1 / area2, l1 = c2 / area2, l2 = c0 / area2;  // roll(-1)
          if (!(l0 >= zero && l1 >= zero && l2 >= zero)) continue;
          T d;
          if (persp) {
            const T s = (l0 / zz[0] + l1 / zz[1]) + l2 / zz[2];
            d = T(1) / s;
          } else {
            d = (l0 * zz[0] + l1 * zz[1]) + l2 * zz[2];
          }
          const int64_t q = i * W + j;
          if (d < zb[q]) { zb[q] = d; fb[q] = f; }
        }
      }
    }
    // barycentrics of the winning face at each covered pixel centre
    for (int64_t q = 0; q < H * W; ++q) {
      const int64_t f = fb[q];
      T* out = bary + (b * H * W + q) * 3;
      if (f < 0) { out[0] = out[1] = out[2] = zero; continue; }
      const T* v = xy + (b * F + f) * 6;
      const T* zz = z + (b * F + f) * 3;
      const T x0 = v[0], y0 = v[1], x1 = v[2], y1 = v[3], x2 = v[4], y2 = v[5];
      const T e0x = x1 - x0, e0y = y1 - y0, e1x = x2 - x1, e1y = y2 - y1, e2x = x0 - x2, e2y = y0 - y2;
      const T area2 = e0x * (y2 - y0) - e0y * (x2 - x0);
      const T px = T(q % W) + half, py = T(q / W) + half;
      const T c0 = e0x * (py - y0) - e0y * (px - x0);
      const T c1 = e1x * (py - y1) - e1y * (px - x1);
      const T c2 = e2x * (py - y2) - e2y * (px - x2);
      T l0 = c1 / area2, l1 = c2 / area2, l2 = c0 / area2;
      if (persp) {
        const T w0 = l0 / zz[0], w1 = l1 / zz[1], w2 = l2 / zz[2];
        const T s = (w0 + w1) + w2;
        l0 = w0 / s; l1 = w1 / s; l2 = w2 / s;
      }
      out[0] = l0; out[1] = l1; out[2] = l2;
    }
  }
  });
}

std::vector<torch::Tensor> hard_raster(torch::Tensor xy, torch::Tensor z, torch::Tensor valid,
                                       int64_t H, int64_t W, bool persp) {
  TORCH_CHECK(xy.dim() == 4 && xy.size(2) == 3 && xy.size(3) == 2, "xy must be (B, F, 3, 2)");
  xy = xy.contiguous(); z = z.contiguous(); valid = valid.to(torch::kBool).contiguous();
  const int64_t B = xy.size(0), F = xy.size(1);
  auto fidx = torch::empty({B, H, W}, xy.options().dtype(torch::kInt64));
  auto zbuf = torch::empty({B, H, W}, xy.options());
  auto bary = torch::empty({B, H, W, 3}, xy.options());
  AT_DISPATCH_FLOATING_TYPES(xy.scalar_type(), "hard_raster", [&] {
    raster_kernel<scalar_t>(xy.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), valid.data_ptr<bool>(),
                            B, F, H, W, persp, fidx.data_ptr<int64_t>(), zbuf.data_ptr<scalar_t>(),
                            bary.data_ptr<scalar_t>());
  });
  return {fidx, zbuf, bary};
}
"""


def _disabled() -> bool:
    return os.environ.get("POSESHAPE_NO_CPP", "") not in ("", "0")


def _ext():
    """The compiled module, or ``None`` (disabled by ``POSESHAPE_NO_CPP=1``, read at each call,
    or not buildable)."""
    return None if _disabled() else _build()


@functools.cache
def _build():
    try:
        load_inline = cpp_extension().load_inline
        return load_inline(
            name="poseshape_data_hard_raster_v2",
            cpp_sources=[_CPP],
            functions=["hard_raster"],
            extra_cflags=["-O3", "-ffp-contract=off", "-fno-fast-math", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # noqa: BLE001 - any build problem means: use mesh_hard itself
        warnings.warn(
            f"poseshape.data: C++ hard rasteriser unavailable, using poseshape.render.mesh_hard ({str(exc)[:300]})",
            stacklevel=3,
        )
        return None


def available() -> bool:
    """Whether the compiled loop is in use (``False``: :func:`rasterize` is ``mesh_hard``'s)."""
    return _ext() is not None


@torch.no_grad()
def rasterize(verts, faces, R, t, K=None, image_size=128, *, scale=None, znear: float = 1e-3):
    """Same arguments and result as :func:`poseshape.render.mesh_hard.rasterize` (which see):
    ``Fragments(face_idx (B, H, W) int64, depth (B, H, W), bary (B, H, W, 3), mask (B, 1, H, W))``."""
    ext = _ext()
    dev = verts.device if isinstance(verts, torch.Tensor) else torch.device("cpu")
    if ext is None or dev.type != "cpu":
        return mesh_hard.rasterize(verts, faces, R, t, K, image_size, scale=scale, znear=znear)
    H, W = parse_image_size(image_size)
    verts, faces, cam = prepare_inputs(verts, faces, R, t, K, scale)
    xy, z, valid = project_faces(verts, faces, cam, znear)
    fidx, zbuf, bary = ext.hard_raster(xy, z, valid, H, W, bool(cam.perspective))
    mask = (fidx >= 0).to(verts.dtype).view(-1, 1, H, W)
    return mesh_hard.Fragments(face_idx=fidx, depth=zbuf, bary=bary, mask=mask)
