// biornn's compiled time loops: the hand-written BPTT of biornn.fast, with each
// step's elementwise work fused into one vectorised pass.
//
// biornn.fast's "bptt" route runs the recurrence and its BPTT as Python loops of
// torch operations (about 25 per step for the peephole LSTM, each paying Python's
// and the dispatcher's overhead).  This file is the same maths with the loop in
// C++: per step one recurrent matrix product (torch's BLAS, or oneDNN's matmul for
// the larger products) and one pass over the step's rows that computes every gate,
// the state and their gradients at once, with ATen's vectorised exp.
//
// Built on the user's machine by `biornn native build` (biornn/native.py), loaded
// as torch.ops.biornn_native.*.  The Python side (biornn.fast) keeps what is one
// large matrix product over all steps (input projection, weight gradients).
//
// Layout: time-major buffers (T, B, .), contiguous; with variable lengths the
// batch is sorted longest first and step t works on its first n_t = batch_sizes[t]
// rows (the rest of the step, the padding, is written as zeros).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>

using at::Tensor;
using c10::optional;
template <typename T>
using Vec = at::vec::Vectorized<T>;

namespace {

// ---- activations, vectorised -------------------------------------------------
// float: ATen's exp_u20 (about 2 ulp) and tanh from it; double: the exact Sleef
// functions (double is what the gradient checks use).

// exp_u20 clamps its argument with a min instruction that turns NaN into a number: NaN is put
// back, so that a NaN anywhere reaches the outputs as it does on every other route.
inline Vec<float> sigmoid_v(Vec<float> x) {
  const Vec<float> r = (Vec<float>(1.f) + x.neg().exp_u20()).reciprocal();
  return Vec<float>::blendv(r, x, x.isnan());
}
inline Vec<double> sigmoid_v(Vec<double> x) { return (Vec<double>(1.0) + x.neg().exp()).reciprocal(); }

// tanh: Cephes' odd polynomial for |x| < 0.625, 1 - 2 / (exp(2|x|) + 1) above, sign restored
inline Vec<float> tanh_v(Vec<float> x) {
  using V = Vec<float>;
  V ax = x.abs(), z = x * x;
  V p = at::vec::fmadd(V(-5.70498872745e-3f), z, V(2.06390887954e-2f));
  p = at::vec::fmadd(p, z, V(-5.37397155531e-2f));
  p = at::vec::fmadd(p, z, V(1.33314422036e-1f));
  p = at::vec::fmadd(p, z, V(-3.33332819422e-1f));
  V small = at::vec::fmadd(p * z, x, x);
  V big = V(1.f) - V(2.f) / ((ax + ax).exp_u20() + V(1.f));
  big = V::blendv(big, big.neg(), x < V(0.f));
  return V::blendv(V::blendv(big, small, ax < V(0.625f)), x, x.isnan());
}
inline Vec<double> tanh_v(Vec<double> x) { return x.tanh(); }

enum Act : int64_t { TANH = 0, SIGMOID = 1, RELU = 2, IDENTITY = 3 };

template <typename T>
inline Vec<T> act_v(int64_t act, Vec<T> x) {
  switch (act) {
    case TANH: return tanh_v(x);
    case SIGMOID: return sigmoid_v(x);
    case RELU: return at::vec::maximum(x, Vec<T>(T(0)));
    default: return x;
  }
}
// f'(a) * g, f' written in terms of the output y = f(a)
template <typename T>
inline Vec<T> act_grad_v(int64_t act, Vec<T> y, Vec<T> g) {
  const Vec<T> one(T(1));
  switch (act) {
    case TANH: return g * (one - y * y);
    case SIGMOID: return g * y * (one - y);
    case RELU: return Vec<T>::blendv(Vec<T>(T(0)), g, y > Vec<T>(T(0)));
    default: return g;
  }
}

// ---- the recurrent products ----------------------------------------------------
// out[:n] (+)= X[:n] @ W^T (+ bias) with W (N, K).  Small products go to torch's
// addmm (the BLAS); from kOneDnnMin multiply-adds on, float32 products go to oneDNN's
// matmul (mkldnn::_linear_pointwise, what torch.compile uses on CPU), which for these
// short-and-wide shapes is up to 2x faster than the BLAS on some CPUs.

using LinearFn = Tensor(const Tensor&, const Tensor&, const optional<Tensor>&, c10::string_view,
                        c10::List<optional<c10::Scalar>>, optional<c10::string_view>);
using LinearAddFn = Tensor(const Tensor&, const Tensor&, const Tensor&, const optional<Tensor>&, c10::string_view);

// torch's operator `name.overload` with the signature Fn, or none (absent, or another signature:
// the BLAS serves)
template <typename Fn>
optional<c10::TypedOperatorHandle<Fn>> find_op(const char* name, const char* overload) {
  auto op = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!op) return c10::nullopt;
  try {
    return op->template typed<Fn>();
  } catch (const c10::Error&) {
    return c10::nullopt;
  }
}
const optional<c10::TypedOperatorHandle<LinearFn>>& linear_op() {
  static const auto h = find_op<LinearFn>("mkldnn::_linear_pointwise", "");
  return h;
}
const optional<c10::TypedOperatorHandle<LinearAddFn>>& linear_add_op() {
  static const auto h = find_op<LinearAddFn>("mkldnn::_linear_pointwise", "binary");
  return h;
}
// the weight laid out once in oneDNN's blocked format for `rows`-row products (what torch.compile's
// freezing does for a linear layer); the per-step products then skip their reorder (about 10 %,
// 3-4 us a product at B = 64, H = 128), but laying it out costs about 80 us: from kPackMinSteps on
using ReorderFn = Tensor(const Tensor&, optional<int64_t>);
const optional<c10::TypedOperatorHandle<ReorderFn>>& reorder_op() {
  static const auto h = find_op<ReorderFn>("mkldnn::_reorder_linear_weight", "");
  return h;
}

std::atomic<int64_t> g_onednn_min{int64_t(1) << 21};  // set_onednn_min(): 0 = always, -1 = never
std::atomic<bool> g_pack{true};  // set_pack_weights(): oneDNN's blocked weight layout (for A/B runs)
constexpr int64_t kPackMinSteps = 32;

}  // namespace

// The BLAS that torch itself calls (MKL in the x86 wheels exports the Fortran
// interface).  Weak: where this torch's library does not export them, the pointers
// are null and the products go through torch's addmm instead.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

namespace {

// The BLAS routine of each dtype (null where this torch's library does not export it).
template <typename T>
using GemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const T*, const T*,
                        const int*, const T*, const int*, const T*, T*, const int*);
inline GemmFn<float> gemm_of(const float*) { return sgemm_; }
inline GemmFn<double> gemm_of(const double*) { return dgemm_; }

// out (n, N) = beta out + X (n, K) W^T, all row-major and contiguous; false without a BLAS.
// (Column-major BLAS sees out^T = W X^T: op(A) = W from the row-major (N, K) W, transposed.)
template <typename T>
inline bool blas_gemm(int64_t n, int64_t N, int64_t K, const T* W, const T* X, T beta, T* out) {
  const GemmFn<T> gemm = gemm_of(W);
  if (gemm == nullptr) return false;
  const int m_ = int(N), n_ = int(n), k_ = int(K);
  const T one = T(1);
  gemm("T", "N", &m_, &n_, &k_, &one, W, &k_, X, &k_, &beta, out, &m_);
  return true;
}

// A product with a fixed weight W (N, K) (and optional bias (N)), done at every step on raw
// pointers: no tensor views, no dispatcher, for the small products.  run() computes
// X W^T (+ bias) (+ out, when accumulating) for the n rows at X and returns where the
// result is: `out` itself (the BLAS writes in place), or a buffer of oneDNN's that this
// Product holds until its next call.
struct Product {
  Tensor W, bias;
  Tensor packed;  // oneDNN: W in its blocked layout (or W itself where torch cannot reorder it)
  int64_t N = 0, K = 0;
  bool onednn = false;
  mutable Tensor held;
  // steps: how many products this Product will run (whether laying out the weight pays)
  Product(const Tensor& w, int64_t rows, int64_t steps, const Tensor& b = Tensor())
      : W(w.contiguous()), bias(b.defined() ? b.contiguous() : b), N(W.size(0)), K(W.size(1)) {
    const int64_t min_macs = g_onednn_min.load();
    const bool big = min_macs >= 0 && rows * N * K >= min_macs;
    onednn = big && W.scalar_type() == at::kFloat && linear_op().has_value() && linear_add_op().has_value();
    if (onednn) {
      packed = W;
      if (g_pack.load() && steps >= kPackMinSteps && reorder_op().has_value() && rows > 0) {
        try {
          packed = reorder_op()->call(W, rows);
        } catch (const c10::Error&) {  // a build that cannot: the plain layout serves
        }
      }
    }
  }
  template <typename T>
  T* run(const T* x, int64_t n, T* out, bool accumulate) const {
    if (n == 0) return out;
    const auto opts = W.options();
    if (onednn) {
      const Tensor X = at::from_blob(const_cast<T*>(x), {n, K}, opts);
      if (accumulate) {
        held = linear_add_op()->call(X, at::from_blob(out, {n, N}, opts), packed, c10::nullopt, "add");
      } else {
        const optional<Tensor> b = bias.defined() ? optional<Tensor>(bias) : c10::nullopt;
        held = linear_op()->call(X, packed, b, "none", c10::List<optional<c10::Scalar>>(), c10::nullopt);
      }
      return held.data_ptr<T>();
    }
    T beta = accumulate ? T(1) : T(0);
    if (bias.defined() && !accumulate) {
      const T* b = bias.data_ptr<T>();
      for (int64_t r = 0; r < n; ++r) std::memcpy(out + r * N, b, sizeof(T) * N);
      beta = T(1);
    }
    if (!blas_gemm(n, N, K, W.data_ptr<T>(), x, beta, out)) {
      Tensor o = at::from_blob(out, {n, N}, opts);
      const Tensor X = at::from_blob(const_cast<T*>(x), {n, K}, opts);
      if (beta == T(0)) {
        at::mm_out(o, X, W.t());
      } else {
        o.addmm_(X, W.t());
      }
    }
    return out;
  }
};

// ---- helpers ---------------------------------------------------------------------

inline int64_t rows_at(at::IntArrayRef bs, int64_t B, int64_t t) { return bs.empty() ? B : bs[t]; }
inline bool cut_at(int64_t truncate, int64_t t) { return truncate > 0 && t > 0 && t % truncate == 0; }
// whether step t sends gradients back to step t-1 (t = 0: to the initial state, skipped -- the
// product and all -- where no initial state needs a gradient)
inline bool carries(int64_t truncate, int64_t t, bool need_state0) {
  return t > 0 ? !cut_at(truncate, t) : need_state0;
}

template <typename F>
inline void for_rows(int64_t n, int64_t width, const F& f) {
  // parallel over rows once a step has enough elements to pay for waking a thread
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, width));
  if (n > 0) at::parallel_for(0, n, grain, f);
}

// Rows [0, n) in at most K contiguous chunks, f(k, r0, r1) for chunk k < K (one chunk for a
// small step), the chunks in parallel: for sums kept per chunk, whatever thread runs a chunk.
template <typename F>
inline void for_row_chunks(int64_t n, int64_t width, int64_t K, const F& f) {
  if (n <= 0) return;
  const int64_t k = n * width >= 8192 ? std::min(n, K) : 1;
  at::parallel_for(0, k, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) f(c, c * n / k, (c + 1) * n / k);
  });
}

template <typename T>
inline T* ptr(const Tensor& t) { return t.data_ptr<T>(); }
template <typename T>
inline T* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }

// zero rows n: of a (B, F) step (the padding of finished sequences)
template <typename T>
inline void zero_tail(T* step, int64_t n, int64_t B, int64_t F) {
  if (n < B) std::memset(step + n * F, 0, sizeof(T) * (B - n) * F);
}

inline Tensor contig_or_undef(const optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}

// batch_sizes: empty, or T non-increasing counts in [0, B] (a packed batch, longest first)
void check_steps(at::IntArrayRef bs, int64_t T, int64_t B) {
  if (bs.empty()) return;
  TORCH_CHECK(int64_t(bs.size()) == T, "biornn_native: batch_sizes has ", bs.size(), " entries for ", T, " steps");
  for (int64_t t = 0; t < T; ++t) {
    TORCH_CHECK(bs[t] >= 0 && bs[t] <= B && (t == 0 || bs[t] <= bs[t - 1]),
                "biornn_native: batch_sizes must be non-increasing counts in [0, ", B, "]");
  }
}

void check_buffers(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    TORCH_CHECK(t->device().is_cpu(), "biornn_native: CPU tensors only");
    TORCH_CHECK(t->is_contiguous(), "biornn_native: buffers must be contiguous");
  }
}

// A gradient carried from step t+1 to step t: `rows` valid rows at p (the rest are zero).
template <typename T>
struct Carry {
  const T* p = nullptr;
  int64_t rows = 0;
  inline Vec<T> load(int64_t r, int64_t q, int64_t k) const {
    return r < rows ? Vec<T>::loadu(p + q, k) : Vec<T>(T(0));
  }
};


// The backward sweep of the LSTM families: for t = T-1 .. 0, pass(t, n, carry, dh, da) writes
// step t's gate deltas (n rows of G columns at da) from dh, the gradient step t+1 sent back to h_t,
// and carries what flows into c_{t-1} itself; then dh_{t-1} = da W_hh (none across a truncation
// cut).  Writes dh_0 into dh0.
template <typename T, typename Pass>
void lstm_sweep(int64_t T_, int64_t B, int64_t H, int64_t G, T* da0, const Product& prod, at::IntArrayRef bs,
                int64_t truncate, bool need_state0, T* dh_buf, T* dh0, const Pass& pass) {
  Carry<T> dh;
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const int64_t n = rows_at(bs, B, t);
    const bool carry = carries(truncate, t, need_state0);
    T* dap = da0 + t * B * G;
    pass(t, n, carry, dh, dap);
    zero_tail(dap, n, B, G);
    dh = carry && n > 0 ? Carry<T>{prod.run(dap, n, dh_buf, false), n} : Carry<T>{};
  }
  if (dh.rows > 0) std::memcpy(dh0, dh.p, sizeof(T) * dh.rows * H);
}

// ===================================================================================
// LSTM with a forget gate, optionally with peepholes (gate rows i, f, g, o as torch)
//   i, f = sigmoid(a_{i,f} + p_{i,f} c_{t-1}), g = tanh(a_g), c_t = f c_{t-1} + i g,
//   o = sigmoid(a_o + p_o c_t), h_t = o tanh(c_t)
// ===================================================================================

template <typename T>
void lstm_fwd_rows(int64_t r0, int64_t r1, int64_t H, const T* pre, T* a, const T* cp, T* c, T* tc, T* h,
                   const T* pi, const T* pf, const T* po) {
  using V = Vec<T>;
  const int64_t W = V::size();
  for (int64_t r = r0; r < r1; ++r) {
    const T* pr = pre + r * 4 * H;
    T* ar = a + r * 4 * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), q = r * H + j;
      V ai = V::loadu(pr + j, k), af = V::loadu(pr + H + j, k), ag = V::loadu(pr + 2 * H + j, k),
        ao = V::loadu(pr + 3 * H + j, k), vcp = V::loadu(cp + q, k);
      if (pi) {
        ai = at::vec::fmadd(V::loadu(pi + j, k), vcp, ai);
        af = at::vec::fmadd(V::loadu(pf + j, k), vcp, af);
      }
      V i = sigmoid_v(ai), f = sigmoid_v(af), g = tanh_v(ag);
      V vc = f * vcp + i * g;
      if (po) ao = at::vec::fmadd(V::loadu(po + j, k), vc, ao);
      V o = sigmoid_v(ao), vtc = tanh_v(vc);
      i.store(ar + j, k);
      f.store(ar + H + j, k);
      g.store(ar + 2 * H + j, k);
      o.store(ar + 3 * H + j, k);
      vc.store(c + q, k);
      if (tc) vtc.store(tc + q, k);
      (o * vtc).store(h + q, k);
    }
  }
}

// A (T, B, 4H): the input projection on entry, the gates i, f, g, o on return.
// Cs, TC, Hs (T, B, H): c_t, tanh(c_t), h_t; TC may be empty (the backward then recomputes tanh(c_t),
// which costs less than writing and reading it back where memory bandwidth is the limit).
void lstm_forward(Tensor A, Tensor Cs, Tensor TC, Tensor Hs, const Tensor& h0, const Tensor& c0,
                  const Tensor& w_hh, const optional<Tensor>& w_ci, const optional<Tensor>& w_cf,
                  const optional<Tensor>& w_co, at::IntArrayRef batch_sizes) {
  check_buffers({&A, &Cs, &TC, &Hs});
  const int64_t T = A.size(0), B = A.size(1), H = Hs.size(2);
  check_steps(batch_sizes, T, B);
  const Product prod(w_hh, B, T);
  const Tensor pi = contig_or_undef(w_ci), pf = contig_or_undef(w_cf), po = contig_or_undef(w_co);
  const Tensor h0c = h0.contiguous(), c0c = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm_forward", [&] {
    const scalar_t *wi = ptr_or_null<scalar_t>(pi), *wf = ptr_or_null<scalar_t>(pf), *wo = ptr_or_null<scalar_t>(po);
    scalar_t *a0 = ptr<scalar_t>(A), *c_0 = ptr<scalar_t>(Cs), *h_0 = ptr<scalar_t>(Hs);
    scalar_t* tc_0 = TC.numel() ? ptr<scalar_t>(TC) : nullptr;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = rows_at(batch_sizes, B, t);
      scalar_t *ap = a0 + t * B * 4 * H, *cn = c_0 + t * B * H, *hp = h_0 + t * B * H;
      scalar_t* tcp = tc_0 ? tc_0 + t * B * H : nullptr;
      if (n > 0) {
        const scalar_t* h = t == 0 ? ptr<scalar_t>(h0c) : h_0 + (t - 1) * B * H;
        const scalar_t* prp = prod.run(h, n, ap, true);
        const scalar_t* cp = t == 0 ? ptr<scalar_t>(c0c) : c_0 + (t - 1) * B * H;
        for_rows(n, 4 * H, [&](int64_t r0, int64_t r1) {
          lstm_fwd_rows<scalar_t>(r0, r1, H, prp, ap, cp, cn, tcp, hp, wi, wf, wo);
        });
      }
      zero_tail(hp, n, B, H);
      zero_tail(cn, n, B, H);
    }
  });
}

template <typename T>
void lstm_bwd_rows(int64_t r0, int64_t r1, int64_t H, const T* a, const T* cp, const T* c, const T* tc,
                   const T* gh, const T* gc, Carry<T> dh, T* dc, T* da, bool carry, const T* pi, const T* pf,
                   const T* po, T* acc) {
  using V = Vec<T>;
  const int64_t W = V::size();
  const V one(T(1));
  for (int64_t r = r0; r < r1; ++r) {
    const T* ar = a + r * 4 * H;
    T* dar = da + r * 4 * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), q = r * H + j;
      V i = V::loadu(ar + j, k), f = V::loadu(ar + H + j, k), g = V::loadu(ar + 2 * H + j, k),
        o = V::loadu(ar + 3 * H + j, k);
      V vcp = V::loadu(cp + q, k);
      V vtc = tc ? V::loadu(tc + q, k) : tanh_v(V::loadu(c + q, k));
      // gradients reaching h_t and c_t: from step t+1 (dh, dc) and from the loss (gh, gc)
      V vdh = dh.load(r, q, k), vdc = V::loadu(dc + q, k);
      if (gh) vdh = vdh + V::loadu(gh + q, k);
      if (gc) vdc = vdc + V::loadu(gc + q, k);
      V d_o = vdh * vtc * o * (one - o);
      vdc = vdc + vdh * o * (one - vtc * vtc);
      if (po) vdc = at::vec::fmadd(d_o, V::loadu(po + j, k), vdc);
      V d_i = vdc * g * i * (one - i);
      V d_f = vdc * vcp * f * (one - f);
      V d_g = vdc * i * (one - g * g);
      d_i.store(dar + j, k);
      d_f.store(dar + H + j, k);
      d_g.store(dar + 2 * H + j, k);
      d_o.store(dar + 3 * H + j, k);
      // what flows into c_{t-1} (the product into h_{t-1} follows the pass)
      V dcp = vdc * f;
      if (pi) {
        dcp = at::vec::fmadd(d_i, V::loadu(pi + j, k), dcp);
        dcp = at::vec::fmadd(d_f, V::loadu(pf + j, k), dcp);
        T* ar3 = acc;  // the peepholes' gradients, summed in this thread's (3H) row
        at::vec::fmadd(d_i, vcp, V::loadu(ar3 + j, k)).store(ar3 + j, k);
        at::vec::fmadd(d_f, vcp, V::loadu(ar3 + H + j, k)).store(ar3 + H + j, k);
        at::vec::fmadd(d_o, V::loadu(c + q, k), V::loadu(ar3 + 2 * H + j, k)).store(ar3 + 2 * H + j, k);
      }
      (carry ? dcp : V(T(0))).store(dc + q, k);
    }
  }
}

// dHs, dCs (T, B, H) or undefined: the loss's gradients w.r.t. h_t and c_t (read only).
// dA (T, B, 4H) receives the gate deltas (zeros in the padding).
// Returns dh0, dc0 (B, H) and, with peepholes, their gradients (3, H), else an empty tensor.
std::tuple<Tensor, Tensor, Tensor> lstm_backward(const Tensor& A, const Tensor& Cs, const Tensor& TC,
                                                 const Tensor& c0, const optional<Tensor>& dHs,
                                                 const optional<Tensor>& dCs, Tensor dA, const Tensor& w_hh,
                                                 const optional<Tensor>& w_ci, const optional<Tensor>& w_cf,
                                                 const optional<Tensor>& w_co, at::IntArrayRef batch_sizes,
                                                 int64_t truncate, bool need_state0) {
  check_buffers({&A, &Cs, &TC, &dA});
  const int64_t T = A.size(0), B = A.size(1), H = Cs.size(2);
  check_steps(batch_sizes, T, B);
  const Product prod(w_hh.t(), B, T);  // dh_{t-1} = dA_t @ W_hh
  const Tensor pi = contig_or_undef(w_ci), pf = contig_or_undef(w_cf), po = contig_or_undef(w_co);
  const Tensor gH = contig_or_undef(dHs), gC = contig_or_undef(dCs), c0c = c0.contiguous();
  Tensor dh_buf = at::empty({B, H}, A.options()), dc = at::zeros({B, H}, A.options());
  // one (3H) row of peephole-gradient sums per chunk of rows: small enough to stay in cache
  const int64_t chunks = std::max<int64_t>(1, at::get_num_threads());
  Tensor acc = pi.defined() ? at::zeros({chunks, 3 * H}, A.options()) : Tensor();
  Tensor dh0 = at::zeros({B, H}, A.options());
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm_backward", [&] {
    const scalar_t *wi = ptr_or_null<scalar_t>(pi), *wf = ptr_or_null<scalar_t>(pf), *wo = ptr_or_null<scalar_t>(po);
    scalar_t *dcp = ptr<scalar_t>(dc), *accp = ptr_or_null<scalar_t>(acc);
    const scalar_t *a0 = ptr<scalar_t>(A), *c_0 = ptr<scalar_t>(Cs);
    const scalar_t* tc_0 = TC.numel() ? ptr<scalar_t>(TC) : nullptr;
    const scalar_t *gh0 = ptr_or_null<scalar_t>(gH), *gc0 = ptr_or_null<scalar_t>(gC);
    lstm_sweep<scalar_t>(T, B, H, 4 * H, ptr<scalar_t>(dA), prod, batch_sizes, truncate, need_state0,
                         ptr<scalar_t>(dh_buf),
                         ptr<scalar_t>(dh0), [&](int64_t t, int64_t n, bool carry, Carry<scalar_t> dh, scalar_t* dap) {
      const int64_t o1 = t * B * H;
      const scalar_t* cp = t == 0 ? ptr<scalar_t>(c0c) : c_0 + o1 - B * H;
      for_row_chunks(n, 4 * H, chunks, [&](int64_t k, int64_t r0, int64_t r1) {
        scalar_t* acc_t = accp ? accp + k * 3 * H : nullptr;
        lstm_bwd_rows<scalar_t>(r0, r1, H, a0 + t * B * 4 * H, cp, c_0 + o1, tc_0 ? tc_0 + o1 : nullptr,
                                gh0 ? gh0 + o1 : nullptr, gc0 ? gc0 + o1 : nullptr, dh, dcp, dap, carry, wi, wf, wo,
                                acc_t);
      });
    });
  });
  Tensor dpeep = acc.defined() ? acc.sum(0).view({3, H}) : at::empty({0}, A.options());
  return {dh0, dc, dpeep};
}

// ===================================================================================
// The 1997 LSTM, one cell per block (rows i, z, o; no forget gate):
//   c_t = c_{t-1} + i g(a_z), h_t = o h(c_t); g = tanh or 2 tanh(x/2), h = tanh or tanh(x/2)
// ===================================================================================

template <typename T>
void lstm1997_fwd_rows(int64_t r0, int64_t r1, int64_t H, const T* pre, T* a, const T* cp, T* c, T* hc, T* h,
                       bool g_scaled, bool h_scaled) {
  using V = Vec<T>;
  const int64_t W = V::size();
  const V half(T(0.5)), two(T(2));
  for (int64_t r = r0; r < r1; ++r) {
    const T* pr = pre + r * 3 * H;
    T* ar = a + r * 3 * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), q = r * H + j;
      V i = sigmoid_v(V::loadu(pr + j, k));
      V az = V::loadu(pr + H + j, k);
      V z = g_scaled ? two * tanh_v(az * half) : tanh_v(az);
      V o = sigmoid_v(V::loadu(pr + 2 * H + j, k));
      V vc = at::vec::fmadd(i, z, V::loadu(cp + q, k));
      V vhc = h_scaled ? tanh_v(vc * half) : tanh_v(vc);
      i.store(ar + j, k);
      z.store(ar + H + j, k);
      o.store(ar + 2 * H + j, k);
      vc.store(c + q, k);
      vhc.store(hc + q, k);
      (o * vhc).store(h + q, k);
    }
  }
}

void lstm1997_forward(Tensor A, Tensor Cs, Tensor HC, Tensor Hs, const Tensor& h0, const Tensor& c0,
                      const Tensor& w_hh, bool g_scaled, bool h_scaled, at::IntArrayRef batch_sizes) {
  check_buffers({&A, &Cs, &HC, &Hs});
  const int64_t T = A.size(0), B = A.size(1), H = Hs.size(2);
  check_steps(batch_sizes, T, B);
  const Product prod(w_hh, B, T);
  const Tensor h0c = h0.contiguous(), c0c = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm1997_forward", [&] {
    scalar_t *a0 = ptr<scalar_t>(A), *c_0 = ptr<scalar_t>(Cs), *hc_0 = ptr<scalar_t>(HC), *h_0 = ptr<scalar_t>(Hs);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = rows_at(batch_sizes, B, t);
      scalar_t *ap = a0 + t * B * 3 * H, *cn = c_0 + t * B * H, *hcp = hc_0 + t * B * H, *hp = h_0 + t * B * H;
      if (n > 0) {
        const scalar_t* h = t == 0 ? ptr<scalar_t>(h0c) : h_0 + (t - 1) * B * H;
        const scalar_t* prp = prod.run(h, n, ap, true);
        const scalar_t* cp = t == 0 ? ptr<scalar_t>(c0c) : c_0 + (t - 1) * B * H;
        for_rows(n, 3 * H, [&](int64_t r0, int64_t r1) {
          lstm1997_fwd_rows<scalar_t>(r0, r1, H, prp, ap, cp, cn, hcp, hp, g_scaled, h_scaled);
        });
      }
      zero_tail(hp, n, B, H);
      zero_tail(cn, n, B, H);
    }
  });
}

template <typename T>
void lstm1997_bwd_rows(int64_t r0, int64_t r1, int64_t H, const T* a, const T* hc, const T* gh, const T* gc,
                       Carry<T> dh, T* dc, T* da, bool carry, bool g_scaled, bool h_scaled) {
  using V = Vec<T>;
  const int64_t W = V::size();
  const V one(T(1)), half(T(0.5)), quarter(T(0.25));
  for (int64_t r = r0; r < r1; ++r) {
    const T* ar = a + r * 3 * H;
    T* dar = da + r * 3 * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), q = r * H + j;
      V i = V::loadu(ar + j, k), z = V::loadu(ar + H + j, k), o = V::loadu(ar + 2 * H + j, k);
      V vhc = V::loadu(hc + q, k);
      V vdh = dh.load(r, q, k), vdc = V::loadu(dc + q, k);
      if (gh) vdh = vdh + V::loadu(gh + q, k);
      if (gc) vdc = vdc + V::loadu(gc + q, k);
      V d_o = vdh * vhc * o * (one - o);
      V dhc = vdh * o * (one - vhc * vhc);  // tanh'
      vdc = vdc + (h_scaled ? dhc * half : dhc);
      V d_i = vdc * z * i * (one - i);
      // g = tanh: 1 - g^2; g = 2 tanh(x/2): 1 - (g/2)^2
      V d_z = vdc * i * (g_scaled ? (one - z * z * quarter) : (one - z * z));
      d_i.store(dar + j, k);
      d_z.store(dar + H + j, k);
      d_o.store(dar + 2 * H + j, k);
      (carry ? vdc : V(T(0))).store(dc + q, k);  // the constant error carousel
    }
  }
}

std::tuple<Tensor, Tensor> lstm1997_backward(const Tensor& A, const Tensor& HC, const optional<Tensor>& dHs,
                                             const optional<Tensor>& dCs, Tensor dA, const Tensor& w_hh,
                                             bool g_scaled, bool h_scaled, at::IntArrayRef batch_sizes,
                                             int64_t truncate, bool need_state0) {
  check_buffers({&A, &HC, &dA});
  const int64_t T = A.size(0), B = A.size(1), H = HC.size(2);
  check_steps(batch_sizes, T, B);
  const Product prod(w_hh.t(), B, T);
  const Tensor gH = contig_or_undef(dHs), gC = contig_or_undef(dCs);
  Tensor dh_buf = at::empty({B, H}, A.options()), dc = at::zeros({B, H}, A.options());
  Tensor dh0 = at::zeros({B, H}, A.options());
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm1997_backward", [&] {
    scalar_t* dcp = ptr<scalar_t>(dc);
    const scalar_t *a0 = ptr<scalar_t>(A), *hc_0 = ptr<scalar_t>(HC);
    const scalar_t *gh0 = ptr_or_null<scalar_t>(gH), *gc0 = ptr_or_null<scalar_t>(gC);
    lstm_sweep<scalar_t>(T, B, H, 3 * H, ptr<scalar_t>(dA), prod, batch_sizes, truncate, need_state0,
                         ptr<scalar_t>(dh_buf),
                         ptr<scalar_t>(dh0), [&](int64_t t, int64_t n, bool carry, Carry<scalar_t> dh, scalar_t* dap) {
      const int64_t o1 = t * B * H;
      for_rows(n, 3 * H, [&](int64_t r0, int64_t r1) {
        lstm1997_bwd_rows<scalar_t>(r0, r1, H, a0 + t * B * 3 * H, hc_0 + o1, gh0 ? gh0 + o1 : nullptr,
                                    gc0 ? gc0 + o1 : nullptr, dh, dcp, dap, carry, g_scaled, h_scaled);
      });
    });
  });
  return {dh0, dc};
}

// ===================================================================================
// GRU (torch's form, reset after the recurrent product)
//   r, z = sigmoid(gx_{r,z} + gh_{r,z}), n = tanh(gx_n + r gh_n), h_t = n + z (h_{t-1} - n)
// ===================================================================================

template <typename T>
void gru_fwd_rows(int64_t r0, int64_t r1, int64_t H, T* a, const T* gh, const T* hp, T* h) {
  using V = Vec<T>;
  const int64_t W = V::size();
  for (int64_t r = r0; r < r1; ++r) {
    T* ar = a + r * 3 * H;
    const T* ghr = gh + r * 3 * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), q = r * H + j;
      V rg = sigmoid_v(V::loadu(ar + j, k) + V::loadu(ghr + j, k));
      V zg = sigmoid_v(V::loadu(ar + H + j, k) + V::loadu(ghr + H + j, k));
      V ng = tanh_v(at::vec::fmadd(rg, V::loadu(ghr + 2 * H + j, k), V::loadu(ar + 2 * H + j, k)));
      V vh = at::vec::fmadd(zg, V::loadu(hp + q, k) - ng, ng);
      rg.store(ar + j, k);
      zg.store(ar + H + j, k);
      ng.store(ar + 2 * H + j, k);
      vh.store(h + q, k);
    }
  }
}

// A (T, B, 3H): g^x on entry, r, z, n on return; GH (T, B, 3H): g^h = W_hh h + b_hh; Hs (T, B, H).
void gru_forward(Tensor A, Tensor GH, Tensor Hs, const Tensor& h0, const Tensor& w_hh, const optional<Tensor>& b_hh,
                 at::IntArrayRef batch_sizes) {
  check_buffers({&A, &GH, &Hs});
  const int64_t T = A.size(0), B = A.size(1), H = Hs.size(2);
  check_steps(batch_sizes, T, B);
  const Product prod(w_hh, B, T, contig_or_undef(b_hh));
  const Tensor h0c = h0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "gru_forward", [&] {
    scalar_t *a0 = ptr<scalar_t>(A), *gh_0 = ptr<scalar_t>(GH), *h_0 = ptr<scalar_t>(Hs);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = rows_at(batch_sizes, B, t);
      scalar_t *ghp = gh_0 + t * B * 3 * H, *hn = h_0 + t * B * H;
      if (n > 0) {
        const scalar_t* hp = t == 0 ? ptr<scalar_t>(h0c) : h_0 + (t - 1) * B * H;
        const scalar_t* gh = prod.run(hp, n, ghp, false);
        if (gh != ghp) std::memcpy(ghp, gh, sizeof(scalar_t) * n * 3 * H);  // kept for the backward
        scalar_t* ap = a0 + t * B * 3 * H;
        for_rows(n, 3 * H, [&](int64_t r0, int64_t r1) { gru_fwd_rows<scalar_t>(r0, r1, H, ap, ghp, hp, hn); });
      }
      zero_tail(hn, n, B, H);
      zero_tail(ghp, n, B, 3 * H);
    }
  });
}

template <typename T>
void gru_bwd_rows(int64_t r0, int64_t r1, int64_t H, const T* a, const T* gh, const T* hp, const T* g, Carry<T> dh,
                  T* dh_out, T* dgh, T* dn, bool carry) {
  using V = Vec<T>;
  const int64_t W = V::size();
  const V one(T(1));
  for (int64_t r = r0; r < r1; ++r) {
    const T* ar = a + r * 3 * H;
    const T* ghr = gh + r * 3 * H;
    T* dghr = dgh + r * 3 * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), q = r * H + j;
      V rg = V::loadu(ar + j, k), zg = V::loadu(ar + H + j, k), ng = V::loadu(ar + 2 * H + j, k);
      V vdh = dh.load(r, q, k);
      if (g) vdh = vdh + V::loadu(g + q, k);
      V d_n = vdh * (one - zg) * (one - ng * ng);
      V d_z = vdh * (V::loadu(hp + q, k) - ng) * zg * (one - zg);
      V d_r = d_n * V::loadu(ghr + 2 * H + j, k) * rg * (one - rg);
      d_r.store(dghr + j, k);
      d_z.store(dghr + H + j, k);
      (d_n * rg).store(dghr + 2 * H + j, k);
      d_n.store(dn + q, k);
      if (carry) (vdh * zg).store(dh_out + q, k);  // the direct path h_{t-1} -> h_t
    }
  }
}

// dGH (T, B, 3H): gradient reaching g^h; dN (T, B, H): reaching g^x_n. Returns dh0 (B, H).
Tensor gru_backward(const Tensor& A, const Tensor& GH, const Tensor& Hs, const Tensor& h0,
                    const optional<Tensor>& dHs, Tensor dGH, Tensor dN, const Tensor& w_hh,
                    at::IntArrayRef batch_sizes, int64_t truncate, bool need_state0) {
  check_buffers({&A, &GH, &Hs, &dGH, &dN});
  const int64_t T = A.size(0), B = A.size(1), H = Hs.size(2);
  check_steps(batch_sizes, T, B);
  const Product prod(w_hh.t(), B, T);
  const Tensor gH = contig_or_undef(dHs), h0c = h0.contiguous();
  // two buffers: step t reads the carry from one and writes the next into the other
  Tensor bufs[2] = {at::empty({B, H}, A.options()), at::empty({B, H}, A.options())};
  Tensor dh0 = at::zeros({B, H}, A.options());
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "gru_backward", [&] {
    const scalar_t *a0 = ptr<scalar_t>(A), *gh_0 = ptr<scalar_t>(GH), *h_0 = ptr<scalar_t>(Hs);
    const scalar_t* g0 = ptr_or_null<scalar_t>(gH);
    scalar_t *dgh0 = ptr<scalar_t>(dGH), *dn0 = ptr<scalar_t>(dN);
    Carry<scalar_t> dh;
    int which = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = rows_at(batch_sizes, B, t);
      const bool carry = carries(truncate, t, need_state0);
      const scalar_t* hp = t == 0 ? ptr<scalar_t>(h0c) : h_0 + (t - 1) * B * H;
      scalar_t *dghp = dgh0 + t * B * 3 * H, *dnp = dn0 + t * B * H;
      Tensor out = bufs[which];
      scalar_t* outp = ptr<scalar_t>(out);
      for_rows(n, 3 * H, [&](int64_t r0, int64_t r1) {
        gru_bwd_rows<scalar_t>(r0, r1, H, a0 + t * B * 3 * H, gh_0 + t * B * 3 * H, hp, g0 ? g0 + t * B * H : nullptr,
                               dh, outp, dghp, dnp, carry);
      });
      zero_tail(dghp, n, B, 3 * H);
      zero_tail(dnp, n, B, H);
      if (carry && n > 0) {
        dh = {prod.run(dghp, n, outp, true), n};
        which = 1 - which;
      } else {
        dh = {nullptr, 0};
      }
    }
    if (dh.rows > 0) std::memcpy(ptr<scalar_t>(dh0), dh.p, sizeof(scalar_t) * dh.rows * H);
  });
  return dh0;
}

// ===================================================================================
// Fully recurrent net: s_t = f_h(a_t + W_hh s_{t-1} + W_oh o_{t-1}), o_t = f_o(W_ho s_t + b_o)
// ===================================================================================

template <typename T>
void act_rows(int64_t r0, int64_t r1, int64_t F, const T* src, T* dst, int64_t act) {
  using V = Vec<T>;
  const int64_t W = V::size();
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t j = 0; j < F; j += W) {
      const int64_t k = std::min(W, F - j), q = r * F + j;
      act_v<T>(act, V::loadu(src + q, k)).store(dst + q, k);
    }
  }
}

// S (T, B, H): a_t on entry, s_t on return; O (T, B, O).
void fully_recurrent_forward(Tensor S, Tensor O, const Tensor& s0, const Tensor& o0, const Tensor& w_hh,
                             const Tensor& w_oh, const Tensor& w_ho, const optional<Tensor>& b_o, int64_t f_h,
                             int64_t f_o, at::IntArrayRef batch_sizes) {
  check_buffers({&S, &O});
  const int64_t T = S.size(0), B = S.size(1), H = S.size(2), Od = O.size(2);
  check_steps(batch_sizes, T, B);
  const Product p_hh(w_hh, B, T), p_oh(w_oh, B, T), p_ho(w_ho, B, T, contig_or_undef(b_o));
  const Tensor s0c = s0.contiguous(), o0c = o0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "fully_recurrent_forward", [&] {
    scalar_t *s_0 = ptr<scalar_t>(S), *o_0 = ptr<scalar_t>(O);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = rows_at(batch_sizes, B, t);
      scalar_t *sp = s_0 + t * B * H, *op = o_0 + t * B * Od;
      if (n > 0) {
        const scalar_t* s = t == 0 ? ptr<scalar_t>(s0c) : s_0 + (t - 1) * B * H;
        const scalar_t* o = t == 0 ? ptr<scalar_t>(o0c) : o_0 + (t - 1) * B * Od;
        const scalar_t* prp = p_oh.run(o, n, p_hh.run(s, n, sp, true), true);
        for_rows(n, H, [&](int64_t r0, int64_t r1) { act_rows<scalar_t>(r0, r1, H, prp, sp, f_h); });
        const scalar_t* pop = p_ho.run(sp, n, op, false);
        for_rows(n, Od, [&](int64_t r0, int64_t r1) { act_rows<scalar_t>(r0, r1, Od, pop, op, f_o); });
      }
      zero_tail(sp, n, B, H);
      zero_tail(op, n, B, Od);
    }
  });
}

template <typename T>
void grad_rows(int64_t r0, int64_t r1, int64_t F, const T* y, const T* g, const T* extra, Carry<T> carried, T* d,
               int64_t act) {
  // d = f'(y) * (g + extra + carried), each term optional
  using V = Vec<T>;
  const int64_t W = V::size();
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t j = 0; j < F; j += W) {
      const int64_t k = std::min(W, F - j), q = r * F + j;
      V v = carried.load(r, q, k);
      if (g) v = v + V::loadu(g + q, k);
      if (extra) v = v + V::loadu(extra + q, k);
      act_grad_v<T>(act, V::loadu(y + q, k), v).store(d + q, k);
    }
  }
}

// dS (T, B, H) receives delta_t, dO (T, B, O) epsilon_t. Returns ds0, do0.
std::tuple<Tensor, Tensor> fully_recurrent_backward(const Tensor& S, const Tensor& O, const optional<Tensor>& dSs,
                                                    const optional<Tensor>& dOs, Tensor dS, Tensor dO,
                                                    const Tensor& w_hh, const Tensor& w_oh, const Tensor& w_ho,
                                                    int64_t f_h, int64_t f_o, at::IntArrayRef batch_sizes,
                                                    int64_t truncate, bool need_state0) {
  check_buffers({&S, &O, &dS, &dO});
  const int64_t T = S.size(0), B = S.size(1), H = S.size(2), Od = O.size(2);
  check_steps(batch_sizes, T, B);
  const Product p_hh(w_hh.t(), B, T), p_oh(w_oh.t(), B, T), p_ho(w_ho.t(), B, T);
  const Tensor gS = contig_or_undef(dSs), gO = contig_or_undef(dOs);
  Tensor ds_buf = at::empty({B, H}, S.options()), do_buf = at::empty({B, Od}, S.options()),
         v_buf = at::empty({B, H}, S.options());
  Tensor ds0 = at::zeros({B, H}, S.options()), do0 = at::zeros({B, Od}, S.options());
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "fully_recurrent_backward", [&] {
    const scalar_t *s_0 = ptr<scalar_t>(S), *o_0 = ptr<scalar_t>(O);
    const scalar_t *gs0 = ptr_or_null<scalar_t>(gS), *go0 = ptr_or_null<scalar_t>(gO);
    scalar_t *dS0 = ptr<scalar_t>(dS), *dO0 = ptr<scalar_t>(dO);
    Carry<scalar_t> ds, dov;
    scalar_t *dsb = ptr<scalar_t>(ds_buf), *dob = ptr<scalar_t>(do_buf), *vb = ptr<scalar_t>(v_buf);
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = rows_at(batch_sizes, B, t);
      scalar_t *ep = dO0 + t * B * Od, *dp = dS0 + t * B * H;
      if (n > 0) {
        // epsilon_t = f_o'(o_t) (dL/do_t + what step t+1 sends back)
        for_rows(n, Od, [&](int64_t r0, int64_t r1) {
          grad_rows<scalar_t>(r0, r1, Od, o_0 + t * B * Od, go0 ? go0 + t * B * Od : nullptr, nullptr, dov, ep, f_o);
        });
        // delta_t = f_h'(s_t) (dL/ds_t + from step t+1 + V^T epsilon_t)
        const scalar_t* vp = p_ho.run(ep, n, vb, false);
        for_rows(n, H, [&](int64_t r0, int64_t r1) {
          grad_rows<scalar_t>(r0, r1, H, s_0 + t * B * H, gs0 ? gs0 + t * B * H : nullptr, vp, ds, dp, f_h);
        });
        if (carries(truncate, t, need_state0)) {
          ds = {p_hh.run(dp, n, dsb, false), n};
          dov = {p_oh.run(dp, n, dob, false), n};
        } else {
          ds = {nullptr, 0};
          dov = {nullptr, 0};
        }
      }
      zero_tail(ep, n, B, Od);
      zero_tail(dp, n, B, H);
    }
    if (ds.rows > 0) {
      std::memcpy(ptr<scalar_t>(ds0), ds.p, sizeof(scalar_t) * ds.rows * H);
      std::memcpy(ptr<scalar_t>(do0), dov.p, sizeof(scalar_t) * dov.rows * Od);
    }
  });
  return {ds0, do0};
}

}  // namespace

int64_t set_onednn_min(int64_t v) { return g_onednn_min.exchange(v); }
bool set_pack_weights(bool v) { return g_pack.exchange(v); }

int64_t abi_version() { return 2; }

TORCH_LIBRARY(biornn_native, m) {
  m.def("abi_version() -> int", &abi_version);
  m.def("set_onednn_min(int v) -> int", &set_onednn_min);
  m.def("set_pack_weights(bool v) -> bool", &set_pack_weights);
  m.def(
      "lstm_forward(Tensor(a!) A, Tensor(b!) Cs, Tensor(c!) TC, Tensor(d!) Hs, Tensor h0, Tensor c0, Tensor w_hh, "
      "Tensor? w_ci, Tensor? w_cf, Tensor? w_co, int[] batch_sizes) -> ()");
  m.def(
      "lstm_backward(Tensor A, Tensor Cs, Tensor TC, Tensor c0, Tensor? dHs, Tensor? dCs, Tensor(a!) dA, "
      "Tensor w_hh, Tensor? w_ci, Tensor? w_cf, Tensor? w_co, int[] batch_sizes, int truncate, "
      "bool need_state0=True) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "lstm1997_forward(Tensor(a!) A, Tensor(b!) Cs, Tensor(c!) HC, Tensor(d!) Hs, Tensor h0, Tensor c0, "
      "Tensor w_hh, bool g_scaled, bool h_scaled, int[] batch_sizes) -> ()");
  m.def(
      "lstm1997_backward(Tensor A, Tensor HC, Tensor? dHs, Tensor? dCs, Tensor(a!) dA, Tensor w_hh, "
      "bool g_scaled, bool h_scaled, int[] batch_sizes, int truncate, bool need_state0=True) -> (Tensor, Tensor)");
  m.def(
      "gru_forward(Tensor(a!) A, Tensor(b!) GH, Tensor(c!) Hs, Tensor h0, Tensor w_hh, Tensor? b_hh, "
      "int[] batch_sizes) -> ()");
  m.def(
      "gru_backward(Tensor A, Tensor GH, Tensor Hs, Tensor h0, Tensor? dHs, Tensor(a!) dGH, Tensor(b!) dN, "
      "Tensor w_hh, int[] batch_sizes, int truncate, bool need_state0=True) -> Tensor");
  m.def(
      "fully_recurrent_forward(Tensor(a!) S, Tensor(b!) O, Tensor s0, Tensor o0, Tensor w_hh, Tensor w_oh, "
      "Tensor w_ho, Tensor? b_o, int f_h, int f_o, int[] batch_sizes) -> ()");
  m.def(
      "fully_recurrent_backward(Tensor S, Tensor O, Tensor? dSs, Tensor? dOs, Tensor(a!) dS, Tensor(b!) dO, "
      "Tensor w_hh, Tensor w_oh, Tensor w_ho, int f_h, int f_o, int[] batch_sizes, int truncate, "
      "bool need_state0=True) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(biornn_native, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("lstm1997_forward", &lstm1997_forward);
  m.impl("lstm1997_backward", &lstm1997_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
  m.impl("fully_recurrent_forward", &fully_recurrent_forward);
  m.impl("fully_recurrent_backward", &fully_recurrent_backward);
}
