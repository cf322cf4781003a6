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

// Per-ray sample positions in grid index space (grid_sample's unnormalised coordinates,
// align_corners=False): i(c) = a + c * s, with a = (base + 0.5) * size - 0.5, s = step * size.
template <typename T>
struct IndexRay {
  T ax, ay, az, sx, sy, sz;
  IndexRay(const T* b, const T* s, const Dims& g)
      : ax((b[0] + T(0.5)) * T(g.W) - T(0.5)),
        ay((b[1] + T(0.5)) * T(g.H) - T(0.5)),
        az((b[2] + T(0.5)) * T(g.D) - T(0.5)),
        sx(s[0] * T(g.W)),
        sy(s[1] * T(g.H)),
        sz(s[2] * T(g.D)) {}
};

// The trilinear footprint of one sample: lower corner, its flat offset and the fractions.
template <typename T>
struct Corner {
  int64_t off;
  int x0, y0, z0;
  T fx, fy, fz;
  bool inside;  // all 8 corners in the grid
};

// Locate the sample at index coordinates (ix, iy, iz). Only samples of the clip range are
// located, so every coordinate is > -2 and floor(v) = int(v + 2) - 2 (no libm floor call).
template <typename T>
inline void locate(const Dims& g, T ix, T iy, T iz, Corner<T>& k) {
  k.x0 = int(ix + T(2)) - 2;
  k.y0 = int(iy + T(2)) - 2;
  k.z0 = int(iz + T(2)) - 2;
  k.fx = ix - T(k.x0);
  k.fy = iy - T(k.y0);
  k.fz = iz - T(k.z0);
  k.off = (int64_t(k.z0) * g.H + k.y0) * g.W + k.x0;
  k.inside = k.x0 >= 0 && k.y0 >= 0 && k.z0 >= 0 && k.x0 + 1 < g.W && k.y0 + 1 < g.H && k.z0 + 1 < g.D;
}

template <typename T>
inline void locate(const Dims& g, const IndexRay<T>& q, T c, Corner<T>& k) {
  locate(g, q.ax + c * q.sx, q.ay + c * q.sy, q.az + c * q.sz, k);
}

// Trilinear read with zero padding (grid_sample, align_corners=False).
template <typename T>
inline T read(const T* v, const Dims& g, const Corner<T>& k) {
  const T fx = k.fx, fy = k.fy, fz = k.fz;
  if (k.inside) {
    // seven lerps, no bounds checks
    const int64_t W = g.W, HW = g.H * g.W;
    const T* p = v + k.off;
    const T c00 = p[0] + fx * (p[1] - p[0]);
    const T c01 = p[W] + fx * (p[W + 1] - p[W]);
    const T c10 = p[HW] + fx * (p[HW + 1] - p[HW]);
    const T c11 = p[HW + W] + fx * (p[HW + W + 1] - p[HW + W]);
    const T c0 = c00 + fy * (c01 - c00);
    const T c1 = c10 + fy * (c11 - c10);
    return c0 + fz * (c1 - c0);
  }
  const T wxs[2] = {T(1) - fx, fx}, wys[2] = {T(1) - fy, fy}, wzs[2] = {T(1) - fz, fz};
  T val = 0;
  for (int dz = 0; dz < 2; ++dz) {
    const int64_t zz = k.z0 + dz;
    if (zz < 0 || zz >= g.D) continue;
    for (int dy = 0; dy < 2; ++dy) {
      const int64_t yy = k.y0 + dy;
      if (yy < 0 || yy >= g.H) continue;
      const T* row = v + (zz * g.H + yy) * g.W;
      for (int dx = 0; dx < 2; ++dx) {
        const int64_t xx = k.x0 + dx;
        if (xx < 0 || xx >= g.W) continue;
        val += wxs[dx] * wys[dy] * wzs[dz] * row[xx];
      }
    }
  }
  return val;
}

template <typename T>
inline void read_backward(const T* v, T* gv, const Dims& g, const Corner<T>& k, T gval, T* dpos);

// Adds gval * w_k to the 8 corners k of the read in gv.
template <typename T>
inline void scatter_voxels(T* gv, const Dims& g, const Corner<T>& k, T gval) {
  const T fx = k.fx, fy = k.fy, fz = k.fz;
  const T gx0 = T(1) - fx, gy0 = T(1) - fy, gz0 = T(1) - fz;
  if (k.inside) {
    const int64_t W = g.W, HW = g.H * g.W;
    T* q = gv + k.off;
    const T a00 = gval * gy0 * gz0, a10 = gval * fy * gz0, a01 = gval * gy0 * fz, a11 = gval * fy * fz;
    q[0] += a00 * gx0;
    q[1] += a00 * fx;
    q[W] += a10 * gx0;
    q[W + 1] += a10 * fx;
    q[HW] += a01 * gx0;
    q[HW + 1] += a01 * fx;
    q[HW + W] += a11 * gx0;
    q[HW + W + 1] += a11 * fx;
    return;
  }
  read_backward((const T*)nullptr, gv, g, k, gval, (T*)nullptr);
}

// Adds gval * w_k to the 8 corners k of the read in gv (if non-null) and, with dpos, writes
// d value / d (x, y, z) (object units) to dpos.
template <typename T>
inline void read_backward(const T* v, T* gv, const Dims& g, const Corner<T>& k, T gval, T* dpos) {
  const T fx = k.fx, fy = k.fy, fz = k.fz;
  const T gx0 = T(1) - fx, gy0 = T(1) - fy, gz0 = T(1) - fz;
  if (k.inside) {
    const int64_t W = g.W, HW = g.H * g.W;
    if (gv) scatter_voxels(gv, g, k, gval);
    if (dpos) {
      const T* p = v + k.off;
      // differences along x, and x-lerps, for the four (y, z) rows
      const T d00 = p[1] - p[0], d10 = p[W + 1] - p[W], d01 = p[HW + 1] - p[HW], d11 = p[HW + W + 1] - p[HW + W];
      const T e00 = p[0] + fx * d00, e10 = p[W] + fx * d10, e01 = p[HW] + fx * d01, e11 = p[HW + W] + fx * d11;
      const T dfx = gz0 * (gy0 * d00 + fy * d10) + fz * (gy0 * d01 + fy * d11);
      const T dfy = gz0 * (e10 - e00) + fz * (e11 - e01);
      const T dfz = (e01 + fy * (e11 - e01)) - (e00 + fy * (e10 - e00));
      dpos[0] = dfx * T(g.W);
      dpos[1] = dfy * T(g.H);
      dpos[2] = dfz * T(g.D);
    }
    return;
  }
  const T wxs[2] = {gx0, fx}, wys[2] = {gy0, fy}, wzs[2] = {gz0, fz};
  T gx = 0, gy = 0, gz = 0;
  for (int dz = 0; dz < 2; ++dz) {
    const int64_t zz = k.z0 + dz;
    if (zz < 0 || zz >= g.D) continue;
    const T wz = wzs[dz];
    for (int dy = 0; dy < 2; ++dy) {
      const int64_t yy = k.y0 + dy;
      if (yy < 0 || yy >= g.H) continue;
      const T wy = wys[dy];
      const int64_t row = (zz * g.H + yy) * g.W;
      for (int dx = 0; dx < 2; ++dx) {
        const int64_t xx = k.x0 + dx;
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

// The read and its gradient d value / d (x, y, z) (object units) into dpos, in one pass
// over the 8 corners.
template <typename T>
inline T read_grad(const T* v, const Dims& g, const Corner<T>& k, T* dpos) {
  const T fx = k.fx, fy = k.fy, fz = k.fz;
  const T gx0 = T(1) - fx, gy0 = T(1) - fy, gz0 = T(1) - fz;
  if (k.inside) {
    const int64_t W = g.W, HW = g.H * g.W;
    const T* p = v + k.off;
    const T d00 = p[1] - p[0], d10 = p[W + 1] - p[W], d01 = p[HW + 1] - p[HW], d11 = p[HW + W + 1] - p[HW + W];
    const T e00 = p[0] + fx * d00, e10 = p[W] + fx * d10, e01 = p[HW] + fx * d01, e11 = p[HW + W] + fx * d11;
    const T c0 = e00 + fy * (e10 - e00), c1 = e01 + fy * (e11 - e01);
    dpos[0] = (gz0 * (gy0 * d00 + fy * d10) + fz * (gy0 * d01 + fy * d11)) * T(g.W);
    dpos[1] = (gz0 * (e10 - e00) + fz * (e11 - e01)) * T(g.H);
    dpos[2] = (c1 - c0) * T(g.D);
    return c0 + fz * (c1 - c0);
  }
  read_backward(v, (T*)nullptr, g, k, T(0), dpos);
  return read(v, g, k);
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

// {(B, P) reduction of every ray (module comment), argmax}. For mode 0, argmax (B, P) int32
// holds the sample index of a unique maximum, or -1 where the maximum is tied (the backward
// then recomputes that ray); for mode 1 it is an empty tensor.
std::vector<torch::Tensor> march_forward(torch::Tensor vox, torch::Tensor base, torch::Tensor step,
                                         torch::Tensor coeffs, torch::Tensor cmin, int64_t mode) {
  check_inputs(vox, base, step, coeffs, cmin);
  const int64_t B = base.size(0), P = base.size(1), N = coeffs.size(0), Bv = vox.size(0);
  const Dims g{vox.size(1), vox.size(2), vox.size(3)};
  auto out = torch::empty({B, P}, base.options());
  auto arg = mode == 0 ? torch::empty({B, P}, base.options().dtype(torch::kInt32))
                       : torch::empty({0}, base.options().dtype(torch::kInt32));
  AT_DISPATCH_FLOATING_TYPES(vox.scalar_type(), "march_forward", [&] {
    const scalar_t* V = vox.data_ptr<scalar_t>();
    const scalar_t* bp = base.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    const scalar_t* c = coeffs.data_ptr<scalar_t>();
    const scalar_t* cm = cmin.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    int32_t* am = mode == 0 ? arg.data_ptr<int32_t>() : nullptr;
    const int64_t vstride = g.D * g.H * g.W;
    at::parallel_for(0, B * P, 256, [&](int64_t r0, int64_t r1) {
      Corner<scalar_t> k;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / P;
        const scalar_t* v = V + (Bv == 1 ? 0 : b) * vstride;
        const scalar_t* bb = bp + 3 * r;
        const scalar_t* ss = sp + 3 * r;
        int64_t i0, i1;
        clip_range(bb, ss, c, N, cm[r], g, i0, i1);
        const IndexRay<scalar_t> q(bb, ss, g);
        scalar_t y;
        if (mode == 0) {
          // samples outside [i0, i1) read 0: they tie with a zero maximum
          int64_t count = N - (i1 - i0), best = -1;
          y = count > 0 ? scalar_t(0) : -std::numeric_limits<scalar_t>::infinity();
          for (int64_t i = i0; i < i1; ++i) {
            locate(g, q, c[i], k);
            const scalar_t x = read(v, g, k);
            if (x > y) {
              y = x;
              best = i;
              count = 1;
            } else if (x == y) {
              ++count;
            }
          }
          am[r] = (count == 1 && best >= 0) ? int32_t(best) : -1;
        } else {
          y = 1;
          for (int64_t i = i0; i < i1 && y != 0; ++i) {
            locate(g, q, c[i], k);
            y *= scalar_t(1) - read(v, g, k);
          }
        }
        o[r] = y;
      }
    });
  });
  return {out, arg};
}

// Gradients of sum(grad_out * y) w.r.t. voxels (Bv, D, H, W), base (B, P, 3), step (B, P, 3);
// an undefined tensor where not requested. argmax: march_forward's second output (mode 0), or
// an empty tensor (every ray is recomputed).
std::vector<torch::Tensor> march_backward(torch::Tensor vox, torch::Tensor base, torch::Tensor step,
                                          torch::Tensor coeffs, torch::Tensor cmin, torch::Tensor grad_out,
                                          torch::Tensor argmax, int64_t mode, bool need_vox, bool need_pos) {
  check_inputs(vox, base, step, coeffs, cmin);
  TORCH_CHECK(grad_out.sizes() == cmin.sizes() && grad_out.is_contiguous(), "grad_out: expected (B, P)");
  const bool have_arg = argmax.numel() > 0;
  TORCH_CHECK(!have_arg || (argmax.sizes() == cmin.sizes() && argmax.scalar_type() == torch::kInt32 &&
                            argmax.is_contiguous()),
              "argmax: expected (B, P) int32 or empty");
  const int64_t B = base.size(0), P = base.size(1), N = coeffs.size(0), Bv = vox.size(0);
  const Dims g{vox.size(1), vox.size(2), vox.size(3)};
  const int64_t vstride = g.D * g.H * g.W;
  const int nt = std::max(1, at::get_num_threads());
  // Voxel gradients: one image per task when every ray batch has its own grid and there are
  // enough images (each task zeroes its own slice: no serial fill of the whole tensor);
  // otherwise per-thread buffers summed at the end.
  const bool by_image = need_vox && Bv == B && B >= nt;
  torch::Tensor gvox, gbase, gstep;
  if (need_vox) gvox = by_image ? torch::empty_like(vox) : torch::zeros_like(vox);
  if (need_pos) {
    // every ray writes its own 3 + 3 entries (do_ray)
    gbase = torch::empty_like(base);
    gstep = torch::empty_like(step);
  }
  if (!need_vox && !need_pos) return {gvox, gbase, gstep};
  AT_DISPATCH_FLOATING_TYPES(vox.scalar_type(), "march_backward", [&] {
    const scalar_t* V = vox.data_ptr<scalar_t>();
    const scalar_t* bp = base.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    const scalar_t* c = coeffs.data_ptr<scalar_t>();
    const scalar_t* cm = cmin.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    const int32_t* am = have_arg ? argmax.data_ptr<int32_t>() : nullptr;
    scalar_t* gv_all = need_vox ? gvox.data_ptr<scalar_t>() : nullptr;
    scalar_t* gb = need_pos ? gbase.data_ptr<scalar_t>() : nullptr;
    scalar_t* gs = need_pos ? gstep.data_ptr<scalar_t>() : nullptr;
    std::vector<scalar_t> buffers;
    if (need_vox && !by_image) buffers.assign(size_t(nt) * size_t(Bv * vstride), scalar_t(0));

    // per-thread scratch of one ray: the located samples, their values, d y / d x_i
    struct Scratch {
      std::vector<Corner<scalar_t>> ks;
      std::vector<scalar_t> xs, gx, ds;
      explicit Scratch(int64_t n) : ks(n), xs(n), gx(n), ds(3 * n) {}
    };

    auto do_ray = [&](int64_t r, scalar_t* gv_grid, Scratch& sc) {
      if (need_pos) {
        for (int a = 0; a < 3; ++a) gb[3 * r + a] = gs[3 * r + a] = 0;
      }
      const scalar_t gr = go[r];
      if (gr == 0) return;
      const int64_t b = r / P;
      const scalar_t* v = V + (Bv == 1 ? 0 : b) * vstride;
      const scalar_t* bb = bp + 3 * r;
      const scalar_t* ss = sp + 3 * r;
      const IndexRay<scalar_t> q(bb, ss, g);
      scalar_t gbr[3] = {0, 0, 0}, gsr[3] = {0, 0, 0};
      auto scatter = [&](const Corner<scalar_t>& k, scalar_t gi, scalar_t ci) {
        scalar_t d[3];
        read_backward(v, gv_grid, g, k, gi, need_pos ? d : (scalar_t*)nullptr);
        if (need_pos) {
          for (int a = 0; a < 3; ++a) {
            gbr[a] += gi * d[a];
            gsr[a] += gi * ci * d[a];
          }
        }
      };
      auto store = [&]() {
        if (need_pos) {
          for (int a = 0; a < 3; ++a) {
            gb[3 * r + a] = gbr[a];
            gs[3 * r + a] = gsr[a];
          }
        }
      };
      if (am && am[r] >= 0) {
        // unique maximum (recorded by the forward): the whole gradient goes to one sample
        const int64_t i = am[r];
        Corner<scalar_t> k;
        locate(g, q, c[i], k);
        scatter(k, gr, c[i]);
        store();
        return;
      }
      int64_t i0, i1;
      clip_range(bb, ss, c, N, cm[r], g, i0, i1);
      const int64_t n = i1 - i0;
      if (n <= 0) return;
      Corner<scalar_t>* ks = sc.ks.data();
      scalar_t* xs = sc.xs.data();
      scalar_t* gx = sc.gx.data();
      if (mode == 0) {
        // tied maximum: recompute the ray, split the gradient over the ties (torch.amax)
        for (int64_t i = 0; i < n; ++i) {
          locate(g, q, c[i0 + i], ks[i]);
          xs[i] = read(v, g, ks[i]);
        }
        scalar_t mx = (n < N) ? scalar_t(0) : -std::numeric_limits<scalar_t>::infinity();
        for (int64_t i = 0; i < n; ++i) mx = std::max(mx, xs[i]);
        int64_t count = (mx == 0) ? (N - n) : 0;
        for (int64_t i = 0; i < n; ++i) count += (xs[i] == mx);
        const scalar_t share = gr / scalar_t(count);
        for (int64_t i = 0; i < n; ++i) {
          if (xs[i] == mx) scatter(ks[i], share, c[i0 + i]);
        }
        store();
        return;
      }
      // d prod(1 - x) / d x_i = -prod_{j<i} (1 - x_j) prod_{j>i} (1 - x_j). Pass 1 stores the
      // samples up to the first one after which the prefix product is exactly 0 (m samples):
      // later samples have a zero prefix, so a zero gradient, and enter only through the
      // product of their (1 - x) (tail), read without storing until it is 0 itself.
      scalar_t* ds = sc.ds.data();
      scalar_t prefix = 1;
      int64_t m = n;
      for (int64_t i = 0; i < n; ++i) {
        locate(g, q, c[i0 + i], ks[i]);
        xs[i] = need_pos ? read_grad(v, g, ks[i], ds + 3 * i) : read(v, g, ks[i]);
        gx[i] = prefix;
        prefix *= scalar_t(1) - xs[i];
        if (prefix == 0) {
          m = i + 1;
          break;
        }
      }
      scalar_t tail = 1;
      Corner<scalar_t> k;
      for (int64_t i = m; i < n && tail != 0; ++i) {
        locate(g, q, c[i0 + i], k);
        tail *= scalar_t(1) - read(v, g, k);
      }
      scalar_t suffix = -gr * tail;
      for (int64_t i = m - 1; i >= 0 && suffix != 0; --i) {
        const scalar_t gi = gx[i] * suffix;
        suffix *= scalar_t(1) - xs[i];
        if (gi == 0) continue;
        if (gv_grid) scatter_voxels(gv_grid, g, ks[i], gi);
        if (need_pos) {
          const scalar_t ci = c[i0 + i];
          for (int a = 0; a < 3; ++a) {
            gbr[a] += gi * ds[3 * i + a];
            gsr[a] += gi * ci * ds[3 * i + a];
          }
        }
      }
      store();
    };

    if (by_image) {
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        Scratch sc(N);
        for (int64_t b = b0; b < b1; ++b) {
          scalar_t* gvg = need_vox ? gv_all + b * vstride : nullptr;
          if (gvg) std::fill(gvg, gvg + vstride, scalar_t(0));
          for (int64_t p = 0; p < P; ++p) do_ray(b * P + p, gvg, sc);
        }
      });
    } else {
      at::parallel_for(0, B * P, 256, [&](int64_t r0, int64_t r1) {
        Scratch sc(N);
        const int tid = at::get_thread_num();
        scalar_t* buf = need_vox ? buffers.data() + size_t(tid) * size_t(Bv * vstride) : nullptr;
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t b = r / P;
          do_ray(r, buf ? buf + (Bv == 1 ? 0 : b) * vstride : nullptr, sc);
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
