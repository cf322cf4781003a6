// Optional CPU kernels for poseshape.render.mesh_soft (face/pixel pair loops).
// Built on first use with torch.utils.cpp_extension.load; the pure-PyTorch path in
// mesh_soft.py computes the same quantities and is used whenever this fails to build.
//
// Inputs follow raster_common.PairPlan: for plan entry r, face `face[r]` (flat b*F+f) owns
// the pixel window rows i0[r]..i0[r]+h[r]-1, columns j0[r]..j0[r]+w[r]-1.
// mode 0 = softras term softplus(delta d^2 / sigma); mode 1 = paper-003 edge term
// tanh(27 l0 l1 l2). Gradients are analytic (see mesh_soft.py for the formulas).
// cutoff2 (pixels^2, mode 0): outside pairs at d^2 >= cutoff2 are dropped (see pair_term).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

template <typename T>
inline T softplus(T x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

template <typename T>
inline T sigmoid(T x) {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}

// Per-face constants, computed once per plan entry instead of once per pixel.
template <typename T>
struct FaceConst {
  T vx[3], vy[3], ex[3], ey[3];
  T inv_ee[3];   // 1 / |e_k|^2 (0 for a zero-length edge)
  T inv_len[3];  // 1 / |e_k| (0 for a zero-length edge)
  T len[3];      // |e_k|
  T A2;          // twice the signed area
  T sgn;         // sign(A2): +1, -1 or 0

  explicit FaceConst(const T* v) {
    for (int k = 0; k < 3; ++k) {
      const int n = (k + 1) % 3;
      vx[k] = v[2 * k];
      vy[k] = v[2 * k + 1];
      ex[k] = v[2 * n] - v[2 * k];
      ey[k] = v[2 * n + 1] - v[2 * k + 1];
      const T ee = ex[k] * ex[k] + ey[k] * ey[k];
      inv_ee[k] = ee > 0 ? T(1) / ee : T(0);
      len[k] = std::sqrt(ee);
      inv_len[k] = ee > 0 ? T(1) / len[k] : T(0);
    }
    A2 = ex[0] * (v[5] - v[1]) - ey[0] * (v[4] - v[0]);
    sgn = A2 > 0 ? T(1) : (A2 < 0 ? T(-1) : T(0));
  }
};

// The columns [lo, hi) of window row `py` (pixel centres j + 0.5, j in [j0, j1)) that can hold a
// pair within distance r of the triangle: the pixels inside all three edge half-planes grown by
// r + 1 pixels. The extra pixel of slack keeps every pixel the exact per-pixel tests in
// pair_term would keep (rounding is far below a pixel), so the result does not change; the
// windows of long thin triangles, mostly empty, then cost a few operations per row.
template <typename T>
inline void row_span(const FaceConst<T>& f, T py, T r, int64_t j0, int64_t j1, int64_t& lo, int64_t& hi) {
  lo = j0;
  hi = j1;
  if (f.sgn == 0) return;  // degenerate: no orientation, keep the row
  T xlo = T(j0), xhi = T(j1);
  for (int k = 0; k < 3; ++k) {
    // sgn * c_k(px) = a + b px must exceed lim.
    const T b = -f.ey[k] * f.sgn;
    const T a = f.sgn * (f.ex[k] * (py - f.vy[k]) + f.ey[k] * f.vx[k]);
    const T lim = -(r + T(1)) * f.len[k];
    if (b > 0) {
      xlo = std::max(xlo, (lim - a) / b);
    } else if (b < 0) {
      xhi = std::min(xhi, (lim - a) / b);
    } else if (!(a > lim)) {
      hi = lo;
      return;
    }
  }
  if (!(xlo <= xhi)) {
    hi = lo;
    return;
  }
  lo = std::max(j0, (int64_t)std::floor(xlo - T(0.5)));
  hi = std::min(j1, (int64_t)std::ceil(xhi - T(0.5)) + 1);
  if (hi < lo) hi = lo;
}

// softplus / sigmoid with their saturated ends taken exactly (|x| > 40: the dropped part is
// below 4e-18, under float64's resolution of x itself).
template <typename T>
inline T softplus_fast(T x) {
  if (x > T(40)) return x;
  if (x < T(-40)) return std::exp(x);
  return softplus(x);
}

template <typename T>
inline T sigmoid_fast(T x) {
  if (x > T(40)) return T(1);
  if (x < T(-40)) return std::exp(x);
  return sigmoid(x);
}

// Returns the pair term; when grad != nullptr adds g * d(term)/d(v) to grad[0..5].
// mode 0 drops (returns 0 for) outside pixels with d^2 >= cutoff2: their term is below the
// renderer's culling eps (the plan's windows are the bounding boxes grown by sqrt(cutoff2),
// so their corners hold such pixels). The PyTorch path in mesh_soft.pair_terms does the same.
template <typename T>
inline T pair_term(const FaceConst<T>& f, T px, T py, int mode, T sigma, T cutoff2, T g, T* grad) {
  T c[3];
  for (int k = 0; k < 3; ++k) c[k] = f.ex[k] * (py - f.vy[k]) - f.ey[k] * (px - f.vx[k]);
  const T A2 = f.A2;
  if (mode == 1) {
    if (A2 == 0) return T(0);
    T lam[3];
    for (int k = 0; k < 3; ++k) lam[(k + 2) % 3] = c[k] / A2;
    if (lam[0] <= 0 || lam[1] <= 0 || lam[2] <= 0) return T(0);
    const T s = std::tanh(T(27) * lam[0] * lam[1] * lam[2]);
    if (grad != nullptr) {
      const T G = g * (T(1) - s * s) * T(27);
      const T dA[6] = {f.vy[1] - f.vy[2], f.vx[2] - f.vx[1], f.vy[2] - f.vy[0],
                       f.vx[0] - f.vx[2], f.vy[0] - f.vy[1], f.vx[1] - f.vx[0]};
      for (int k = 0; k < 3; ++k) {
        const int m = (k + 2) % 3, a = k, b = (k + 1) % 3;
        const T coef = G * lam[(m + 1) % 3] * lam[(m + 2) % 3] / A2;
        grad[2 * a] += coef * (f.vy[b] - py);
        grad[2 * a + 1] += coef * (px - f.vx[b]);
        grad[2 * b] += coef * (py - f.vy[a]);
        grad[2 * b + 1] -= coef * (px - f.vx[a]);
        for (int i = 0; i < 6; ++i) grad[i] -= coef * lam[m] * dA[i];
      }
    }
    return s;
  }
  const bool inside = A2 != 0 && c[0] * A2 > 0 && c[1] * A2 > 0 && c[2] * A2 > 0;
  if (!inside && f.sgn != 0) {
    // Distance to the line of an edge the pixel lies outside of bounds d from below.
    for (int k = 0; k < 3; ++k) {
      const T out = -c[k] * f.sgn * f.inv_len[k];
      if (out > 0 && out * out >= cutoff2) return T(0);
    }
  }
  T best = std::numeric_limits<T>::infinity(), tb = 0, qxb = 0, qyb = 0;
  int kb = 0;
  for (int k = 0; k < 3; ++k) {
    const T wx = px - f.vx[k], wy = py - f.vy[k];
    T tt = (wx * f.ex[k] + wy * f.ey[k]) * f.inv_ee[k];
    tt = tt < 0 ? T(0) : (tt > 1 ? T(1) : tt);
    const T qx = wx - tt * f.ex[k], qy = wy - tt * f.ey[k];
    const T d2 = qx * qx + qy * qy;
    if (d2 < best) { best = d2; kb = k; tb = tt; qxb = qx; qyb = qy; }
  }
  if (!inside && best >= cutoff2) return T(0);
  const T x = (inside ? best : -best) / sigma;
  if (grad != nullptr) {
    const T coef = g * sigmoid_fast(x) * (inside ? T(1) : T(-1)) / sigma;
    const int a = kb, b = (kb + 1) % 3;
    grad[2 * a] += coef * T(-2) * (T(1) - tb) * qxb;
    grad[2 * a + 1] += coef * T(-2) * (T(1) - tb) * qyb;
    grad[2 * b] += coef * T(-2) * tb * qxb;
    grad[2 * b + 1] += coef * T(-2) * tb * qyb;
  }
  return softplus_fast(x);
}

void check(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), name, " must be a contiguous CPU tensor");
}

}  // namespace

// xy (BF, 3, 2); plan tensors (M,) int64. Returns S (B*H*W) = sum of pair terms per pixel.
torch::Tensor soft_forward(torch::Tensor xy, torch::Tensor face, torch::Tensor i0, torch::Tensor j0,
                           torch::Tensor w, torch::Tensor h, int64_t B, int64_t H, int64_t W,
                           int64_t F, int64_t mode, double sigma, double cutoff2) {
  for (auto* p : {&xy, &face, &i0, &j0, &w, &h}) check(*p, "input");
  const int64_t M = face.numel(), npix = B * H * W;
  const int nthreads = at::get_num_threads();
  auto buf = torch::zeros({nthreads, npix}, xy.options());
  AT_DISPATCH_FLOATING_TYPES(xy.scalar_type(), "soft_forward", [&] {
    const scalar_t* V = xy.data_ptr<scalar_t>();
    const int64_t *fa = face.data_ptr<int64_t>(), *I0 = i0.data_ptr<int64_t>(),
                  *J0 = j0.data_ptr<int64_t>(), *Wd = w.data_ptr<int64_t>(), *Hd = h.data_ptr<int64_t>();
    scalar_t* S = buf.data_ptr<scalar_t>();
    const scalar_t sg = (scalar_t)sigma, c2 = (scalar_t)cutoff2;
    const scalar_t rad = mode == 0 ? (scalar_t)std::sqrt(cutoff2) : scalar_t(0);  // inf: keep all
    at::parallel_for(0, M, 64, [&](int64_t r0, int64_t r1) {
      scalar_t* out = S + (int64_t)at::get_thread_num() * npix;
      for (int64_t r = r0; r < r1; ++r) {
        const FaceConst<scalar_t> fc(V + fa[r] * 6);
        const int64_t base = (fa[r] / F) * H * W;
        for (int64_t i = I0[r]; i < I0[r] + Hd[r]; ++i) {
          const scalar_t py = scalar_t(i) + scalar_t(0.5);
          scalar_t* row = out + base + i * W;
          int64_t lo, hi;
          row_span<scalar_t>(fc, py, rad, J0[r], J0[r] + Wd[r], lo, hi);
          for (int64_t j = lo; j < hi; ++j) {
            row[j] += pair_term<scalar_t>(fc, scalar_t(j) + scalar_t(0.5), py, (int)mode, sg, c2, 0, nullptr);
          }
        }
      }
    });
  });
  return nthreads == 1 ? buf[0] : buf.sum(0);
}

// gS (B*H*W): dL/dS. Returns dL/dxy (BF, 3, 2).
torch::Tensor soft_backward(torch::Tensor xy, torch::Tensor face, torch::Tensor i0, torch::Tensor j0,
                            torch::Tensor w, torch::Tensor h, torch::Tensor gS, int64_t B, int64_t H,
                            int64_t W, int64_t F, int64_t mode, double sigma, double cutoff2) {
  for (auto* p : {&xy, &face, &i0, &j0, &w, &h, &gS}) check(*p, "input");
  const int64_t M = face.numel();
  auto grad = torch::zeros_like(xy);
  AT_DISPATCH_FLOATING_TYPES(xy.scalar_type(), "soft_backward", [&] {
    const scalar_t* V = xy.data_ptr<scalar_t>();
    const scalar_t* G = gS.data_ptr<scalar_t>();
    const int64_t *fa = face.data_ptr<int64_t>(), *I0 = i0.data_ptr<int64_t>(),
                  *J0 = j0.data_ptr<int64_t>(), *Wd = w.data_ptr<int64_t>(), *Hd = h.data_ptr<int64_t>();
    scalar_t* out = grad.data_ptr<scalar_t>();
    const scalar_t sg = (scalar_t)sigma, c2 = (scalar_t)cutoff2;
    const scalar_t rad = mode == 0 ? (scalar_t)std::sqrt(cutoff2) : scalar_t(0);  // inf: keep all
    at::parallel_for(0, M, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const FaceConst<scalar_t> fc(V + fa[r] * 6);
        scalar_t acc[6] = {0, 0, 0, 0, 0, 0};
        const int64_t base = (fa[r] / F) * H * W;
        for (int64_t i = I0[r]; i < I0[r] + Hd[r]; ++i) {
          const scalar_t py = scalar_t(i) + scalar_t(0.5);
          int64_t lo, hi;
          row_span<scalar_t>(fc, py, rad, J0[r], J0[r] + Wd[r], lo, hi);
          for (int64_t j = lo; j < hi; ++j) {
            const scalar_t g = G[base + i * W + j];
            if (g == 0) continue;
            pair_term<scalar_t>(fc, scalar_t(j) + scalar_t(0.5), py, (int)mode, sg, c2, g, acc);
          }
        }
        for (int k = 0; k < 6; ++k) out[fa[r] * 6 + k] += acc[k];
      }
    });
  });
  return grad;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("soft_forward", &soft_forward, "soft silhouette pair accumulation (CPU)");
  m.def("soft_backward", &soft_backward, "soft silhouette pair gradients (CPU)");
}
