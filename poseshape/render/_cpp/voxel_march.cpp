// CPU kernels for poseshape.render.voxel_march: rays marched through an aligned voxel grid.
// Built on first use with torch.utils.cpp_extension.load; the pure-PyTorch reference in
// voxel_march.py (grid_sample over all samples) computes the same quantities and is used
// whenever this fails to build or POSESHAPE_NO_CPP=1 is set.
//
// Ray r = (b, p) has sample points X_i = base[b, p] + c_i * step[b, p] (object frame, the
// grid spans the unit cube [-0.5, 0.5]^3 with (d, h, w) = (z, y, x)), i = 0..N-1, c ascending.
// Sample i is *valid* when c_i > cmin[b, p]; an invalid sample reads 0 (behind the camera).
// Each valid sample reads the grid by trilinear interpolation with zero padding, exactly as
// torch.nn.functional.grid_sample(align_corners=False, padding_mode="zeros") at 2 X_i.
//
// Reductions over a ray's N values x_i:
//   mode 0 (max):  y = max_i x_i (backward: the gradient split evenly over ties, as torch.amax)
//   mode 1 (pen):  y = prod_i (1 - x_i)  (DRC / paper 001 penetration probability)
// Only samples whose trilinear footprint can touch the grid are visited (an analytic ray/box
// clip per ray), and nothing of size (rays x samples) is ever stored: memory is O(rays).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

struct Dims {
  int64_t D, H, W;
};

// Index range [i0, i1) of the samples that can read a non-zero value.
template <typename T>
inline void clip_range(const T* b, const T* s, const T* c, int64_t N, T cmin, const Dims& g, int64_t& i0,
                       int64_t& i1) {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  const int64_t size[3] = {g.W, g.H, g.D};
  for (int a = 0; a < 3; ++a) {
    // x reads non-zero only if -1 < (x + 0.5) * n - 0.5 < n, i.e. |x| < 0.5 + 0.5 / n;
    // a small margin keeps boundary samples (they are bounds-checked in trilinear anyway)
    const double half = 0.5 + 0.5 / double(size[a]) + 1e-6;
    const double ba = double(b[a]), sa = double(s[a]);
    if (sa == 0.0) {
      if (std::fabs(ba) >= half) {
        i0 = i1 = 0;
        return;
      }
      continue;
    }
    double t0 = (-half - ba) / sa, t1 = (half - ba) / sa;
    if (t0 > t1) std::swap(t0, t1);
    lo = std::max(lo, t0);
    hi = std::min(hi, t1);
  }
  if (!(lo <= hi)) {
    i0 = i1 = 0;
    return;
  }
  const T* first = std::lower_bound(c, c + N, T(lo));
  const T* valid = std::upper_bound(c, c + N, cmin);  // first c_i > cmin
  const T* last = std::upper_bound(c, c + N, T(hi));
  i0 = std::max(first, valid) - c;
  i1 = last - c;
  if (i1 < i0) i1 = i0;
}

// Trilinear read at object point (x, y, z) with zero padding (grid_sample, align_corners=False).
template <typename T>
inline T trilinear(const T* v, const Dims& g, T x, T y, T z) {
  const T ix = (x + T(0.5)) * T(g.W) - T(0.5);
  const T iy = (y + T(0.5)) * T(g.H) - T(0.5);
  const T iz = (z + T(0.5)) * T(g.D) - T(0.5);
  const T fx0 = std::floor(ix), fy0 = std::floor(iy), fz0 = std::floor(iz);
  const int64_t x0 = int64_t(fx0), y0 = int64_t(fy0), z0 = int64_t(fz0);
  const T fx = ix - fx0, fy = iy - fy0, fz = iz - fz0;
  const int64_t HW = g.H * g.W;
  if (x0 >= 0 && y0 >= 0 && z0 >= 0 && x0 + 1 < g.W && y0 + 1 < g.H && z0 + 1 < g.D) {
    // all 8 corners in the grid: seven lerps, no bounds checks
    const T* p = v + (z0 * g.H + y0) * g.W + x0;
    const T c00 = p[0] + fx * (p[1] - p[0]);
    const T c01 = p[g.W] + fx * (p[g.W + 1] - p[g.W]);
    const T c10 = p[HW] + fx * (p[HW + 1] - p[HW]);
    const T c11 = p[HW + g.W] + fx * (p[HW + g.W + 1] - p[HW + g.W]);
    const T c0 = c00 + fy * (c01 - c00);
    const T c1 = c10 + fy * (c11 - c10);
    return c0 + fz * (c1 - c0);
  }
  const T wxs[2] = {T(1) - fx, fx}, wys[2] = {T(1) - fy, fy}, wzs[2] = {T(1) - fz, fz};
  T val = 0;
  for (int dz = 0; dz < 2; ++dz) {
    const int64_t zz = z0 + dz;
    if (zz < 0 || zz >= g.D) continue;
    for (int dy = 0; dy < 2; ++dy) {
      const int64_t yy = y0 + dy;
      if (yy < 0 || yy >= g.H) continue;
      const T* row = v + (zz * g.H + yy) * g.W;
      for (int dx = 0; dx < 2; ++dx) {
        const int64_t xx = x0 + dx;
        if (xx < 0 || xx >= g.W) continue;
        val += wxs[dx] * wys[dy] * wzs[dz] * row[xx];
      }
    }
  }
  return val;
}

// Adds gval * w_k to the 8 corners k of the trilinear read at (x, y, z) in gv (if non-null)
// and, with dpos != nullptr, writes d value / d (x, y, z) to dpos: one index computation.
template <typename T>
inline void trilinear_backward(const T* v, T* gv, const Dims& g, T x, T y, T z, T gval, T* dpos) {
  const T ix = (x + T(0.5)) * T(g.W) - T(0.5);
  const T iy = (y + T(0.5)) * T(g.H) - T(0.5);
  const T iz = (z + T(0.5)) * T(g.D) - T(0.5);
  const T fx0 = std::floor(ix), fy0 = std::floor(iy), fz0 = std::floor(iz);
  const int64_t x0 = int64_t(fx0), y0 = int64_t(fy0), z0 = int64_t(fz0);
  const T fx = ix - fx0, fy = iy - fy0, fz = iz - fz0;
  const T wxs[2] = {T(1) - fx, fx}, wys[2] = {T(1) - fy, fy}, wzs[2] = {T(1) - fz, fz};
  T gx = 0, gy = 0, gz = 0;
  for (int dz = 0; dz < 2; ++dz) {
    const int64_t zz = z0 + dz;
    if (zz < 0 || zz >= g.D) continue;
    const T wz = wzs[dz];
    for (int dy = 0; dy < 2; ++dy) {
      const int64_t yy = y0 + dy;
      if (yy < 0 || yy >= g.H) continue;
      const T wy = wys[dy];
      const int64_t row = (zz * g.H + yy) * g.W;
      for (int dx = 0; dx < 2; ++dx) {
        const int64_t xx = x0 + dx;
        if (xx < 0 || xx >= g.W) continue;
        const T wx = wxs[dx];
        if (gv) gv[row + xx] += gval * wx * wy * wz;
        if (dpos) {
          const T q = v[row + xx];
          gx += (dx ? T(1) : T(-1)) * wy * wz * q;
          gy += (dy ? T(1) : T(-1)) * wx * wz * q;
          gz += (dz ? T(1) : T(-1)) * wx * wy * q;
        }
      }
    }
  }
  if (dpos) {
    dpos[0] = gx * T(g.W);
    dpos[1] = gy * T(g.H);
    dpos[2] = gz * T(g.D);
  }
}

void check_inputs(const torch::Tensor& vox, const torch::Tensor& base, const torch::Tensor& step,
                  const torch::Tensor& coeffs, const torch::Tensor& cmin) {
  TORCH_CHECK(vox.dim() == 4, "voxels: expected (Bv, D, H, W)");
  TORCH_CHECK(base.dim() == 3 && base.size(2) == 3, "base: expected (B, P, 3)");
  TORCH_CHECK(step.sizes() == base.sizes(), "step: expected the shape of base");
  TORCH_CHECK(cmin.dim() == 2 && cmin.size(0) == base.size(0) && cmin.size(1) == base.size(1),
              "cmin: expected (B, P)");
  TORCH_CHECK(coeffs.dim() == 1 && coeffs.size(0) >= 1, "coeffs: expected (N,)");
  TORCH_CHECK(vox.size(0) == 1 || vox.size(0) == base.size(0), "voxels: batch must be 1 or B");
  for (const auto* t : {&vox, &base, &step, &coeffs, &cmin}) {
    TORCH_CHECK(t->is_contiguous() && t->device().is_cpu() && t->scalar_type() == vox.scalar_type(),
                "expected contiguous CPU tensors of one dtype");
  }
}

}  // namespace

// (B, P) reduction of every ray (module comment).
torch::Tensor march_forward(torch::Tensor vox, torch::Tensor base, torch::Tensor step, torch::Tensor coeffs,
                            torch::Tensor cmin, int64_t mode) {
  check_inputs(vox, base, step, coeffs, cmin);
  const int64_t B = base.size(0), P = base.size(1), N = coeffs.size(0), Bv = vox.size(0);
  const Dims g{vox.size(1), vox.size(2), vox.size(3)};
  auto out = torch::empty({B, P}, base.options());
  AT_DISPATCH_FLOATING_TYPES(vox.scalar_type(), "march_forward", [&] {
    const scalar_t* V = vox.data_ptr<scalar_t>();
    const scalar_t* bp = base.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    const scalar_t* c = coeffs.data_ptr<scalar_t>();
    const scalar_t* cm = cmin.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t vstride = g.D * g.H * g.W;
    at::parallel_for(0, B * P, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / P;
        const scalar_t* v = V + (Bv == 1 ? 0 : b) * vstride;
        const scalar_t* bb = bp + 3 * r;
        const scalar_t* ss = sp + 3 * r;
        int64_t i0, i1;
        clip_range(bb, ss, c, N, cm[r], g, i0, i1);
        scalar_t y;
        if (mode == 0) {
          y = (i1 - i0 < N) ? scalar_t(0) : -std::numeric_limits<scalar_t>::infinity();
          for (int64_t i = i0; i < i1; ++i) {
            const scalar_t x = trilinear(v, g, bb[0] + c[i] * ss[0], bb[1] + c[i] * ss[1], bb[2] + c[i] * ss[2]);
            y = std::max(y, x);
          }
        } else {
          y = 1;
          for (int64_t i = i0; i < i1 && y != 0; ++i) {
            y *= scalar_t(1) - trilinear(v, g, bb[0] + c[i] * ss[0], bb[1] + c[i] * ss[1], bb[2] + c[i] * ss[2]);
          }
        }
        o[r] = y;
      }
    });
  });
  return out;
}

// Gradients of sum(grad_out * y) w.r.t. voxels (Bv, D, H, W), base (B, P, 3), step (B, P, 3);
// an undefined tensor where not requested.
std::vector<torch::Tensor> march_backward(torch::Tensor vox, torch::Tensor base, torch::Tensor step,
                                          torch::Tensor coeffs, torch::Tensor cmin, torch::Tensor grad_out,
                                          int64_t mode, bool need_vox, bool need_pos) {
  check_inputs(vox, base, step, coeffs, cmin);
  TORCH_CHECK(grad_out.sizes() == cmin.sizes() && grad_out.is_contiguous(), "grad_out: expected (B, P)");
  const int64_t B = base.size(0), P = base.size(1), N = coeffs.size(0), Bv = vox.size(0);
  const Dims g{vox.size(1), vox.size(2), vox.size(3)};
  const int64_t vstride = g.D * g.H * g.W;
  torch::Tensor gvox, gbase, gstep;
  if (need_vox) gvox = torch::zeros_like(vox);
  if (need_pos) {
    gbase = torch::zeros_like(base);
    gstep = torch::zeros_like(step);
  }
  if (!need_vox && !need_pos) return {gvox, gbase, gstep};
  const int nt = std::max(1, at::get_num_threads());
  // Voxel gradients: one image per task when every ray batch has its own grid and there are
  // enough images; otherwise per-thread buffers summed at the end.
  const bool by_image = need_vox && Bv == B && B >= nt;
  AT_DISPATCH_FLOATING_TYPES(vox.scalar_type(), "march_backward", [&] {
    const scalar_t* V = vox.data_ptr<scalar_t>();
    const scalar_t* bp = base.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    const scalar_t* c = coeffs.data_ptr<scalar_t>();
    const scalar_t* cm = cmin.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* gv_all = need_vox ? gvox.data_ptr<scalar_t>() : nullptr;
    scalar_t* gb = need_pos ? gbase.data_ptr<scalar_t>() : nullptr;
    scalar_t* gs = need_pos ? gstep.data_ptr<scalar_t>() : nullptr;
    std::vector<scalar_t> buffers;
    if (need_vox && !by_image) buffers.assign(size_t(nt) * size_t(Bv * vstride), scalar_t(0));

    auto do_ray = [&](int64_t r, scalar_t* gv_grid, std::vector<scalar_t>& xs, std::vector<scalar_t>& gx) {
      const scalar_t gr = go[r];
      if (gr == 0) return;
      const int64_t b = r / P;
      const scalar_t* v = V + (Bv == 1 ? 0 : b) * vstride;
      const scalar_t* bb = bp + 3 * r;
      const scalar_t* ss = sp + 3 * r;
      int64_t i0, i1;
      clip_range(bb, ss, c, N, cm[r], g, i0, i1);
      const int64_t n = i1 - i0;
      if (n <= 0) return;
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t ci = c[i0 + i];
        xs[i] = trilinear(v, g, bb[0] + ci * ss[0], bb[1] + ci * ss[1], bb[2] + ci * ss[2]);
      }
      // d y / d x_i into gx
      if (mode == 0) {
        scalar_t mx = (n < N) ? scalar_t(0) : -std::numeric_limits<scalar_t>::infinity();
        for (int64_t i = 0; i < n; ++i) mx = std::max(mx, xs[i]);
        int64_t count = (mx == 0) ? (N - n) : 0;
        for (int64_t i = 0; i < n; ++i) count += (xs[i] == mx);
        const scalar_t share = gr / scalar_t(count);
        for (int64_t i = 0; i < n; ++i) gx[i] = (xs[i] == mx) ? share : scalar_t(0);
      } else {
        // d prod(1 - x) / d x_i = -prod_{j<i} (1 - x_j) prod_{j>i} (1 - x_j)
        scalar_t suffix = 1;
        for (int64_t i = n - 1; i >= 0; --i) {
          gx[i] = suffix;
          suffix *= scalar_t(1) - xs[i];
        }
        scalar_t prefix = 1;
        for (int64_t i = 0; i < n; ++i) {
          gx[i] = -gr * prefix * gx[i];
          prefix *= scalar_t(1) - xs[i];
        }
      }
      scalar_t gbr[3] = {0, 0, 0}, gsr[3] = {0, 0, 0};
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t gi = gx[i];
        if (gi == 0) continue;
        const scalar_t ci = c[i0 + i];
        const scalar_t x = bb[0] + ci * ss[0], y = bb[1] + ci * ss[1], z = bb[2] + ci * ss[2];
        scalar_t d[3];
        trilinear_backward(v, gv_grid, g, x, y, z, gi, need_pos ? d : (scalar_t*)nullptr);
        if (need_pos) {
          for (int a = 0; a < 3; ++a) {
            gbr[a] += gi * d[a];
            gsr[a] += gi * ci * d[a];
          }
        }
      }
      if (need_pos) {
        for (int a = 0; a < 3; ++a) {
          gb[3 * r + a] = gbr[a];
          gs[3 * r + a] = gsr[a];
        }
      }
    };

    if (by_image) {
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<scalar_t> xs(N), gx(N);
        for (int64_t b = b0; b < b1; ++b) {
          scalar_t* gvg = need_vox ? gv_all + b * vstride : nullptr;
          for (int64_t p = 0; p < P; ++p) do_ray(b * P + p, gvg, xs, gx);
        }
      });
    } else {
      at::parallel_for(0, B * P, 256, [&](int64_t r0, int64_t r1) {
        std::vector<scalar_t> xs(N), gx(N);
        const int tid = at::get_thread_num();
        scalar_t* buf = need_vox ? buffers.data() + size_t(tid) * size_t(Bv * vstride) : nullptr;
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t b = r / P;
          do_ray(r, buf ? buf + (Bv == 1 ? 0 : b) * vstride : nullptr, xs, gx);
        }
      });
      if (!need_vox) return;
      const int64_t total = Bv * vstride;
      at::parallel_for(0, total, 4096, [&](int64_t e0, int64_t e1) {
        for (int k = 0; k < nt; ++k) {
          const scalar_t* buf = buffers.data() + size_t(k) * size_t(total);
          for (int64_t e = e0; e < e1; ++e) gv_all[e] += buf[e];
        }
      });
    }
  });
  return {gvox, gbase, gstep};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("march_forward", &march_forward, "ray-march reductions through a voxel grid (CPU)");
  m.def("march_backward", &march_backward, "ray-march reduction gradients (CPU)");
}
