// Optional CPU kernels for poseshape.render.mesh_soft (face/pixel pair loops).
// Built on first use with torch.utils.cpp_extension.load; the pure-PyTorch path in
// mesh_soft.py computes the same quantities and is used whenever this fails to build.
//
// Inputs follow raster_common.PairPlan: for plan entry r, face `face[r]` (flat b*F+f) owns
// the pixel window rows i0[r]..i0[r]+h[r]-1, columns j0[r]..j0[r]+w[r]-1.
// mode 0 = softras term softplus(delta d^2 / sigma); mode 1 = paper-003 edge term
// tanh(27 l0 l1 l2). Gradients are analytic (see mesh_soft.py for the formulas).
#include <torch/extension.h>
#include <ATen/Parallel.h>

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

// Returns the pair term; when grad != nullptr adds g * d(term)/d(v) to grad[0..5].
template <typename T>
inline T pair_term(const T* v, T px, T py, int mode, T sigma, T g, T* grad) {
  T ex[3], ey[3], c[3];
  for (int k = 0; k < 3; ++k) {
    const int n = (k + 1) % 3;
    ex[k] = v[2 * n] - v[2 * k];
    ey[k] = v[2 * n + 1] - v[2 * k + 1];
    c[k] = ex[k] * (py - v[2 * k + 1]) - ey[k] * (px - v[2 * k]);
  }
  const T A2 = ex[0] * (v[5] - v[1]) - ey[0] * (v[4] - v[0]);
  if (mode == 1) {
    if (A2 == 0) return T(0);
    T lam[3];
    for (int k = 0; k < 3; ++k) lam[(k + 2) % 3] = c[k] / A2;
    if (lam[0] <= 0 || lam[1] <= 0 || lam[2] <= 0) return T(0);
    const T s = std::tanh(T(27) * lam[0] * lam[1] * lam[2]);
    if (grad != nullptr) {
      const T G = g * (T(1) - s * s) * T(27);
      const T dA[6] = {v[3] - v[5], v[4] - v[2], v[5] - v[1], v[0] - v[4], v[1] - v[3], v[2] - v[0]};
      for (int k = 0; k < 3; ++k) {
        const int m = (k + 2) % 3, a = k, b = (k + 1) % 3;
        const T coef = G * lam[(m + 1) % 3] * lam[(m + 2) % 3] / A2;
        grad[2 * a] += coef * (v[2 * b + 1] - py);
        grad[2 * a + 1] += coef * (px - v[2 * b]);
        grad[2 * b] += coef * (py - v[2 * a + 1]);
        grad[2 * b + 1] -= coef * (px - v[2 * a]);
        for (int i = 0; i < 6; ++i) grad[i] -= coef * lam[m] * dA[i];
      }
    }
    return s;
  }
  T best = std::numeric_limits<T>::infinity(), tb = 0, qxb = 0, qyb = 0;
  int kb = 0;
  for (int k = 0; k < 3; ++k) {
    const T wx = px - v[2 * k], wy = py - v[2 * k + 1];
    const T ee = ex[k] * ex[k] + ey[k] * ey[k];
    T tt = ee > 0 ? (wx * ex[k] + wy * ey[k]) / ee : T(0);
    tt = tt < 0 ? T(0) : (tt > 1 ? T(1) : tt);
    const T qx = wx - tt * ex[k], qy = wy - tt * ey[k];
    const T d2 = qx * qx + qy * qy;
    if (d2 < best) { best = d2; kb = k; tb = tt; qxb = qx; qyb = qy; }
  }
  const bool inside = A2 != 0 && c[0] * A2 > 0 && c[1] * A2 > 0 && c[2] * A2 > 0;
  const T x = (inside ? best : -best) / sigma;
  if (grad != nullptr) {
    const T coef = g * sigmoid(x) * (inside ? T(1) : T(-1)) / sigma;
    const int a = kb, b = (kb + 1) % 3;
    grad[2 * a] += coef * T(-2) * (T(1) - tb) * qxb;
    grad[2 * a + 1] += coef * T(-2) * (T(1) - tb) * qyb;
    grad[2 * b] += coef * T(-2) * tb * qxb;
    grad[2 * b + 1] += coef * T(-2) * tb * qyb;
  }
  return softplus(x);
}

void check(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), name, " must be a contiguous CPU tensor");
}

}  // namespace

// xy (BF, 3, 2); plan tensors (M,) int64. Returns S (B*H*W) = sum of pair terms per pixel.
torch::Tensor soft_forward(torch::Tensor xy, torch::Tensor face, torch::Tensor i0, torch::Tensor j0,
                           torch::Tensor w, torch::Tensor h, int64_t B, int64_t H, int64_t W,
                           int64_t F, int64_t mode, double sigma) {
  for (auto* p : {&xy, &face, &i0, &j0, &w, &h}) check(*p, "input");
  const int64_t M = face.numel(), npix = B * H * W;
  const int nthreads = at::get_num_threads();
  auto buf = torch::zeros({nthreads, npix}, xy.options());
  AT_DISPATCH_FLOATING_TYPES(xy.scalar_type(), "soft_forward", [&] {
    const scalar_t* V = xy.data_ptr<scalar_t>();
    const int64_t *fa = face.data_ptr<int64_t>(), *I0 = i0.data_ptr<int64_t>(),
                  *J0 = j0.data_ptr<int64_t>(), *Wd = w.data_ptr<int64_t>(), *Hd = h.data_ptr<int64_t>();
    scalar_t* S = buf.data_ptr<scalar_t>();
    at::parallel_for(0, M, 64, [&](int64_t r0, int64_t r1) {
      scalar_t* out = S + (int64_t)at::get_thread_num() * npix;
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* v = V + fa[r] * 6;
        const int64_t base = (fa[r] / F) * H * W;
        for (int64_t i = I0[r]; i < I0[r] + Hd[r]; ++i) {
          const scalar_t py = scalar_t(i) + scalar_t(0.5);
          for (int64_t j = J0[r]; j < J0[r] + Wd[r]; ++j) {
            out[base + i * W + j] += pair_term<scalar_t>(v, scalar_t(j) + scalar_t(0.5), py, (int)mode,
                                                          (scalar_t)sigma, 0, nullptr);
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
                            int64_t W, int64_t F, int64_t mode, double sigma) {
  for (auto* p : {&xy, &face, &i0, &j0, &w, &h, &gS}) check(*p, "input");
  const int64_t M = face.numel();
  auto grad = torch::zeros_like(xy);
  AT_DISPATCH_FLOATING_TYPES(xy.scalar_type(), "soft_backward", [&] {
    const scalar_t* V = xy.data_ptr<scalar_t>();
    const scalar_t* G = gS.data_ptr<scalar_t>();
    const int64_t *fa = face.data_ptr<int64_t>(), *I0 = i0.data_ptr<int64_t>(),
                  *J0 = j0.data_ptr<int64_t>(), *Wd = w.data_ptr<int64_t>(), *Hd = h.data_ptr<int64_t>();
    scalar_t* out = grad.data_ptr<scalar_t>();
    at::parallel_for(0, M, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* v = V + fa[r] * 6;
        scalar_t acc[6] = {0, 0, 0, 0, 0, 0};
        const int64_t base = (fa[r] / F) * H * W;
        for (int64_t i = I0[r]; i < I0[r] + Hd[r]; ++i) {
          const scalar_t py = scalar_t(i) + scalar_t(0.5);
          for (int64_t j = J0[r]; j < J0[r] + Wd[r]; ++j) {
            const scalar_t g = G[base + i * W + j];
            if (g == 0) continue;
            pair_term<scalar_t>(v, scalar_t(j) + scalar_t(0.5), py, (int)mode, (scalar_t)sigma, g, acc);
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
