// The plain LSTM recurrence (sigmoid gates, tanh, Keras' gate order i, f, g, o) as two TensorFlow CPU
// ops: a forward pass that can keep what its gradient needs, and that gradient.
//
// Why by hand: under XLA each step of the loop is about twenty kernels (each gate's nonlinearity, each
// product of the kept derivatives, each write), and the gating costs several times the step's matrix
// product. Here a step is one matrix product and one pass over the batch rows that does the gating,
// the mask's hold and every kept value while the row is in cache.
//
// One call runs on one core (the products are single-threaded); the caller cuts the batch into one part
// per core, as it does for the XLA loops. float32 only.
//
// The products: our own register-tiled product with the fixed operand packed once per call (`Panels`)
// where the target has AVX2 and FMA, Eigen's where it has not or FORECASTER_EIGEN_PRODUCTS is defined;
// `cpu_kernel.products()` chooses (ours on a CPU without AVX-512) and builds with the flags that say so
// (-march=native: the target is the building CPU). On a Zen 3 core Eigen ran these shapes (a part of 128 rows by 136 x 512 and
// 512 x 136) at 45-59 GFLOPS, ours at 65-94; with AVX-512 Eigen's ran ~140, more than AVX2 registers
// can give (docs/benchmarks.md).
//
// The math and the kept values are those of `fused_loop._plain_local_derivatives` and
// `fused_loop._backward_plain`, which the parity tests hold to Keras' LSTM.

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <initializer_list>

#if defined(__AVX2__) && defined(__FMA__) && !defined(FORECASTER_EIGEN_PRODUCTS)
#define FORECASTER_AVX2_PRODUCTS 1
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using Row = Eigen::Array<float, 1, Eigen::Dynamic>;
using RowMap = Eigen::Map<Eigen::Array<float, 1, Eigen::Dynamic>>;
using ConstRowMap = Eigen::Map<const Eigen::Array<float, 1, Eigen::Dynamic>>;

float* Data(Tensor* t) { return t->flat<float>().data(); }
const float* Data(const Tensor& t) { return t.flat<float>().data(); }

// [W; U]: the input and recurrent kernels stacked, so that [x_t, h] [W; U] is one product.
Matrix Stacked(const Tensor& kernel, const Tensor& recurrent) {
  const int64_t f = kernel.dim_size(0), u = recurrent.dim_size(0), g = kernel.dim_size(1);
  Matrix w(f + u, g);
  w.topRows(f) = ConstMatrixMap(Data(kernel), f, g);
  w.bottomRows(u) = ConstMatrixMap(Data(recurrent), u, g);
  return w;
}

#if FORECASTER_AVX2_PRODUCTS
// A product's right operand (K x N) in panels of 16 columns (two 8-float registers), each panel K rows
// of 16 floats, zero-padded past N: the tile below reads a panel's rows in order.
constexpr int64_t kPanel = 16;
// Rows of the left operand a tile takes: 6 x 2 accumulators, 2 registers of the panel and 1 broadcast
// of the 16 registers.
constexpr int64_t kTileRows = 6;
// Reduction a pass takes, so that a panel's part (256 x 16 floats, 16 KB) stays in the L1 cache.
constexpr int64_t kDepth = 256;

struct Panels {
  int64_t K = 0, N = 0;
  Eigen::VectorXf data;  // Eigen aligns it to 64 bytes, as the tile's aligned loads need

  // From `rows` (K x N, rows `stride` floats apart, columns contiguous).
  void FromRows(int64_t k_rows, int64_t n_cols, const float* rows, int64_t stride) {
    Resize(k_rows, n_cols);
    for (int64_t p = 0; p * kPanel < N; ++p) {
      const int64_t cols = std::min(kPanel, N - p * kPanel);
      float* out = data.data() + p * K * kPanel;
      for (int64_t k = 0; k < K; ++k, out += kPanel) {
        std::memcpy(out, rows + k * stride + p * kPanel, sizeof(float) * cols);
        std::fill(out + cols, out + kPanel, 0.f);
      }
    }
  }

  // From the transpose of `rows` (N x K, rows `stride` floats apart): once per call, so plainly.
  void FromColumns(int64_t k_rows, int64_t n_cols, const float* rows, int64_t stride) {
    Resize(k_rows, n_cols);
    data.setZero();
    for (int64_t j = 0; j < N; ++j) {
      float* out = data.data() + (j / kPanel) * K * kPanel + j % kPanel;
      for (int64_t k = 0; k < K; ++k) out[k * kPanel] = rows[j * stride + k];
    }
  }

 private:
  void Resize(int64_t k_rows, int64_t n_cols) {
    K = k_rows;
    N = n_cols;
    data.resize((N + kPanel - 1) / kPanel * kPanel * K);
  }
};

// One tile: rows [0, R) of C (+)= A's R rows (a[i * ars + k * acs]) times a panel's `depth` rows;
// `cols` of the panel's 16 columns are written.
template <int R>
inline void Tile(int64_t depth, const float* a, int64_t ars, int64_t acs, const float* panel, float* c,
                 int64_t ldc, int64_t cols, bool accumulate) {
  __m256 lo[R], hi[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < depth; ++k) {
    const __m256 b0 = _mm256_load_ps(panel + k * kPanel), b1 = _mm256_load_ps(panel + k * kPanel + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 a_rk = _mm256_broadcast_ss(a + r * ars + k * acs);
      lo[r] = _mm256_fmadd_ps(a_rk, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(a_rk, b1, hi[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    if (cols == kPanel) {
      if (accumulate) {
        lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(cr));
        hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(cr + 8));
      }
      _mm256_storeu_ps(cr, lo[r]);
      _mm256_storeu_ps(cr + 8, hi[r]);
    } else {
      alignas(32) float row[kPanel];
      _mm256_store_ps(row, lo[r]);
      _mm256_store_ps(row + 8, hi[r]);
      for (int64_t j = 0; j < cols; ++j) cr[j] = accumulate ? cr[j] + row[j] : row[j];
    }
  }
}

// C (M x b.N, rows ldc apart) = A b, or += when `accumulate`; A is M x b.K, read as a[i * ars + k * acs].
void Multiply(int64_t M, const float* a, int64_t ars, int64_t acs, const Panels& b, float* c, int64_t ldc,
              bool accumulate) {
  for (int64_t k0 = 0; k0 < b.K; k0 += kDepth) {
    const int64_t depth = std::min(kDepth, b.K - k0);
    const bool add = accumulate || k0 > 0;
    const float* ak = a + k0 * acs;
    for (int64_t p = 0; p * kPanel < b.N; ++p) {
      const float* panel = b.data.data() + p * b.K * kPanel + k0 * kPanel;
      const int64_t cols = std::min(kPanel, b.N - p * kPanel);
      float* cp = c + p * kPanel;
      int64_t i = 0;
      for (; i + kTileRows <= M; i += kTileRows) {
        Tile<kTileRows>(depth, ak + i * ars, ars, acs, panel, cp + i * ldc, ldc, cols, add);
      }
      const float* ai = ak + i * ars;
      float* ci = cp + i * ldc;
      switch (M - i) {
        case 5: Tile<5>(depth, ai, ars, acs, panel, ci, ldc, cols, add); break;
        case 4: Tile<4>(depth, ai, ars, acs, panel, ci, ldc, cols, add); break;
        case 3: Tile<3>(depth, ai, ars, acs, panel, ci, ldc, cols, add); break;
        case 2: Tile<2>(depth, ai, ars, acs, panel, ci, ldc, cols, add); break;
        case 1: Tile<1>(depth, ai, ars, acs, panel, ci, ldc, cols, add); break;
        default: break;
      }
    }
  }
}
#endif

// The three products of a step, with [W; U] fixed for the call: z = [x_t, h] [W; U] (forward),
// d[x_t, h] = dz [W; U]^T and d[W; U] += [x_t, h]^T dz (backward).
class Products {
 public:
  Products(const Tensor& kernel, const Tensor& recurrent, bool forward)
      : in_(kernel.dim_size(0) + recurrent.dim_size(0)), gates_(kernel.dim_size(1)) {
    const Matrix w = Stacked(kernel, recurrent);
#if FORECASTER_AVX2_PRODUCTS
    if (forward) {
      w_.FromRows(in_, gates_, w.data(), gates_);
    } else {
      w_.FromColumns(gates_, in_, w.data(), gates_);
      d_weights_t_ = Matrix::Zero(gates_, in_);
    }
#else
    if (forward) {
      w_ = w;
    } else {
      w_ = w.transpose();
      d_weights_ = Matrix::Zero(in_, gates_);
    }
#endif
  }

  // z (B x 4u) = xh (B x (F + u)) [W; U].
  void Gates(const Matrix& xh, Matrix* z) const {
#if FORECASTER_AVX2_PRODUCTS
    Multiply(xh.rows(), xh.data(), in_, 1, w_, z->data(), gates_, false);
#else
    z->noalias() = xh * w_;
#endif
  }

  // d_xh (B x (F + u)) = dz (B x 4u) [W; U]^T.
  void IntoInputs(const Matrix& dz, Matrix* d_xh) const {
#if FORECASTER_AVX2_PRODUCTS
    Multiply(dz.rows(), dz.data(), gates_, 1, w_, d_xh->data(), in_, false);
#else
    // Eigen's blocking runs a reduction of 512 and more at about half its rate at these sizes
    // (measured: 128 x 512 by 512 x 136, 74 against 135 GFLOPS); in parts of 256 it does not.
    constexpr int64_t kReduction = 256;
    for (int64_t k = 0; k < gates_; k += kReduction) {
      const int64_t n = std::min(kReduction, gates_ - k);
      if (k == 0) {
        d_xh->noalias() = dz.leftCols(n) * w_.topRows(n);
      } else {
        d_xh->noalias() += dz.middleCols(k, n) * w_.middleRows(k, n);
      }
    }
#endif
  }

  // d[W; U] += xh^T dz.
  void AddToWeights(const Matrix& xh, const Matrix& dz) {
#if FORECASTER_AVX2_PRODUCTS
    // As d[W; U]^T += dz^T xh: the operand packed each step is xh, a quarter of dz's size.
    xh_.FromRows(xh.rows(), in_, xh.data(), in_);
    Multiply(gates_, dz.data(), 1, gates_, xh_, d_weights_t_.data(), in_, true);
#else
    d_weights_.noalias() += xh.transpose() * dz;
#endif
  }

  // d[W; U] ((F + u) x 4u).
  Matrix WeightGradient() const {
#if FORECASTER_AVX2_PRODUCTS
    return d_weights_t_.transpose();
#else
    return d_weights_;
#endif
  }

 private:
  const int64_t in_, gates_;
#if FORECASTER_AVX2_PRODUCTS
  Panels w_, xh_;
  Matrix d_weights_t_;
#else
  Matrix w_, d_weights_;
#endif
};

// The ops index raw buffers, so every shape is checked before any is read: steps (T, B, F), kernel
// (F, 4u), recurrent kernel (u, 4u), mask (T, B, 1) or empty, each state-shaped input (B, u).
Status CheckShapes(const Tensor& steps, const Tensor& kernel, const Tensor& recurrent, const Tensor& mask,
                   std::initializer_list<const Tensor*> states) {
  using tensorflow::errors::InvalidArgument;
  if (steps.dims() != 3 || kernel.dims() != 2 || recurrent.dims() != 2) {
    return InvalidArgument("steps must be (T, B, F) and the kernels matrices");
  }
  const int64_t T = steps.dim_size(0), B = steps.dim_size(1), F = steps.dim_size(2), u = recurrent.dim_size(0);
  if (kernel.shape() != TensorShape({F, 4 * u}) || recurrent.shape() != TensorShape({u, 4 * u})) {
    return InvalidArgument("kernels must be (F, 4 units) and (units, 4 units), got ", kernel.shape().DebugString(),
                           " and ", recurrent.shape().DebugString());
  }
  if (mask.NumElements() > 0 && mask.shape() != TensorShape({T, B, 1})) {
    return InvalidArgument("mask must be (T, B, 1) or empty, got ", mask.shape().DebugString());
  }
  for (const Tensor* state : states) {
    if (state->shape() != TensorShape({B, u})) {
      return InvalidArgument("states must be (B, units), got ", state->shape().DebugString());
    }
  }
  return Status();
}

Status ForwardShape(InferenceContext* c) {
  ShapeHandle steps, recurrent;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &steps));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 2, &recurrent));
  DimensionHandle t = c->Dim(steps, 0), b = c->Dim(steps, 1), u = c->Dim(recurrent, 0), u2, u4;
  TF_RETURN_IF_ERROR(c->Multiply(u, 2, &u2));
  TF_RETURN_IF_ERROR(c->Multiply(u, 4, &u4));
  bool keep, return_sequences;
  TF_RETURN_IF_ERROR(c->GetAttr("keep", &keep));
  TF_RETURN_IF_ERROR(c->GetAttr("return_sequences", &return_sequences));
  ShapeHandle state = c->Matrix(b, u);
  c->set_output(0, state);
  c->set_output(1, c->MakeShape({return_sequences ? t : c->MakeDim(1), b, u}));
  c->set_output(2, state);
  c->set_output(3, state);
  ShapeHandle empty = c->Vector(0);
  c->set_output(4, keep ? c->MakeShape({t, b, u4}) : empty);
  c->set_output(5, keep ? c->MakeShape({t, b, u2}) : empty);
  c->set_output(6, keep ? c->MakeShape({t, b, u}) : empty);
  return Status();
}

Status BackwardShape(InferenceContext* c) {
  c->set_output(0, c->input(0));  // d steps
  c->set_output(1, c->input(9));  // d h0, shaped as d h
  c->set_output(2, c->input(10));  // d c0
  c->set_output(3, c->input(2));  // d kernel
  c->set_output(4, c->input(3));  // d recurrent kernel
  ShapeHandle kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &kernel));
  bool has_bias;
  TF_RETURN_IF_ERROR(c->GetAttr("has_bias", &has_bias));
  c->set_output(5, has_bias ? c->Vector(c->Dim(kernel, 1)) : c->Vector(0));
  return Status();
}

}  // namespace

REGISTER_OP("ForecasterLstmForward")
    .Input("steps: float")             // (T, B, F), time-major
    .Input("h0: float")                // (B, u)
    .Input("c0: float")                // (B, u)
    .Input("kernel: float")            // (F, 4u)
    .Input("recurrent_kernel: float")  // (u, 4u)
    .Input("bias: float")              // (4u), or (0) for none
    .Input("mask: bool")               // (T, B, 1), or (0) for none
    .Attr("keep: bool")
    .Attr("return_sequences: bool")
    .Attr("zero_output_for_mask: bool")
    .Output("last_output: float")  // (B, u)
    .Output("outputs: float")      // (T, B, u), or (1, B, u) without return_sequences
    .Output("h: float")            // (B, u)
    .Output("c: float")            // (B, u)
    .Output("q: float")            // (T, B, 4u) when keep, else (0)
    .Output("f_p: float")          // (T, B, 2u) when keep
    .Output("h_prev: float")       // (T, B, u) when keep
    .SetShapeFn(ForwardShape);

REGISTER_OP("ForecasterLstmBackward")
    .Input("steps: float")
    .Input("mask: bool")
    .Input("kernel: float")
    .Input("recurrent_kernel: float")
    .Input("q: float")
    .Input("f_p: float")
    .Input("h_prev: float")
    .Input("d_last: float")     // (B, u)
    .Input("d_outputs: float")  // shaped as the forward's outputs
    .Input("d_h: float")        // (B, u)
    .Input("d_c: float")        // (B, u)
    .Attr("has_bias: bool")
    .Attr("return_sequences: bool")
    .Attr("zero_output_for_mask: bool")
    .Output("d_steps: float")
    .Output("d_h0: float")
    .Output("d_c0: float")
    .Output("d_kernel: float")
    .Output("d_recurrent_kernel: float")
    .Output("d_bias: float")
    .SetShapeFn(BackwardShape);

namespace {

class ForwardOp : public OpKernel {
 public:
  explicit ForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("keep", &keep_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("return_sequences", &return_sequences_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_output_for_mask", &zero_output_for_mask_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& steps = ctx->input(0);
    const Tensor& kernel = ctx->input(3);
    const Tensor& recurrent = ctx->input(4);
    const Tensor& bias = ctx->input(5);
    const Tensor& mask = ctx->input(6);
    const int64_t T = steps.dim_size(0), B = steps.dim_size(1), F = steps.dim_size(2);
    const int64_t u = recurrent.dim_size(0), u4 = 4 * u;
    const bool masked = mask.NumElements() > 0, has_bias = bias.NumElements() > 0;
    OP_REQUIRES_OK(ctx, CheckShapes(steps, kernel, recurrent, mask, {&ctx->input(1), &ctx->input(2)}));
    OP_REQUIRES(ctx, !has_bias || bias.shape() == TensorShape({u4}),
                tensorflow::errors::InvalidArgument("bias must be (4 units) or empty, got ", bias.shape().DebugString()));

    Tensor *last, *outputs, *h_out, *c_out, *q_out, *fp_out, *hp_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, u}), &last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({return_sequences_ ? T : 1, B, u}), &outputs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, u}), &h_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({B, u}), &c_out));
    auto kept_shape = [&](int64_t width) { return keep_ ? TensorShape({T, B, width}) : TensorShape({0}); };
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, kept_shape(u4), &q_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, kept_shape(2 * u), &fp_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(6, kept_shape(u), &hp_out));

    const Products products(kernel, recurrent, /*forward=*/true);
    Matrix xh(B, F + u), z(B, u4);
    MatrixMap h(Data(h_out), B, u), c(Data(c_out), B, u), out(Data(last), B, u);
    h = ConstMatrixMap(Data(ctx->input(1)), B, u);
    c = ConstMatrixMap(Data(ctx->input(2)), B, u);
    out.setZero();
    const float* x = Data(steps);
    const bool* m = masked ? mask.flat<bool>().data() : nullptr;
    Row i(u), f(u), g(u), o(u), c_new(u), tanh_c(u), h_new(u);

    for (int64_t t = 0; t < T; ++t) {
      xh.leftCols(F) = ConstMatrixMap(x + t * B * F, B, F);
      xh.rightCols(u) = h;
      products.Gates(xh, &z);
      if (has_bias) z.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(Data(bias), u4);
      for (int64_t b = 0; b < B; ++b) {
        const float* zb = z.data() + b * u4;
        RowMap hb(h.data() + b * u, u), cb(c.data() + b * u, u), ob(out.data() + b * u, u);
        i = ConstRowMap(zb, u).logistic();
        f = ConstRowMap(zb + u, u).logistic();
        g = ConstRowMap(zb + 2 * u, u).tanh();
        o = ConstRowMap(zb + 3 * u, u).logistic();
        c_new = f * cb + i * g;
        tanh_c = c_new.tanh();
        h_new = o * tanh_c;
        if (keep_) {
          const int64_t row = t * B + b;
          float* qb = Data(q_out) + row * u4;
          RowMap(qb, u) = g * i * (1 - i);
          RowMap(qb + u, u) = cb * f * (1 - f);
          RowMap(qb + 2 * u, u) = i * (1 - g * g);
          RowMap(qb + 3 * u, u) = tanh_c * o * (1 - o);
          float* fpb = Data(fp_out) + row * 2 * u;
          RowMap(fpb, u) = f;
          RowMap(fpb + u, u) = o * (1 - tanh_c * tanh_c);
          RowMap(Data(hp_out) + row * u, u) = hb;
        }
        if (m == nullptr || m[t * B + b]) {
          hb = h_new;
          cb = c_new;
          ob = h_new;
        } else if (zero_output_for_mask_) {
          ob.setZero();
        }
      }
      if (return_sequences_) std::memcpy(Data(outputs) + t * B * u, out.data(), sizeof(float) * B * u);
    }
    if (!return_sequences_) std::memcpy(Data(outputs), out.data(), sizeof(float) * B * u);
  }

 private:
  bool keep_, return_sequences_, zero_output_for_mask_;
};

class BackwardOp : public OpKernel {
 public:
  explicit BackwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("has_bias", &has_bias_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("return_sequences", &return_sequences_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_output_for_mask", &zero_output_for_mask_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& steps = ctx->input(0);
    const Tensor& mask = ctx->input(1);
    const Tensor& kernel = ctx->input(2);
    const Tensor& recurrent = ctx->input(3);
    const int64_t T = steps.dim_size(0), B = steps.dim_size(1), F = steps.dim_size(2);
    const int64_t u = recurrent.dim_size(0), u4 = 4 * u;
    const bool masked = mask.NumElements() > 0;
    OP_REQUIRES_OK(ctx, CheckShapes(steps, kernel, recurrent, mask,
                                    {&ctx->input(7), &ctx->input(9), &ctx->input(10)}));
    const TensorShape kept[] = {TensorShape({T, B, u4}), TensorShape({T, B, 2 * u}), TensorShape({T, B, u}),
                                TensorShape({return_sequences_ ? T : 1, B, u})};
    for (int k = 0; k < 4; ++k) {
      OP_REQUIRES(ctx, ctx->input(k < 3 ? 4 + k : 8).shape() == kept[k],
                  tensorflow::errors::InvalidArgument("input ", k < 3 ? 4 + k : 8, " must be ", kept[k].DebugString(),
                                                      ", got ", ctx->input(k < 3 ? 4 + k : 8).shape().DebugString()));
    }
    const float* q = Data(ctx->input(4));
    const float* fp = Data(ctx->input(5));
    const float* hp = Data(ctx->input(6));
    const float* d_outputs = Data(ctx->input(8));

    Tensor *d_steps, *dh0, *dc0, *dk, *dr, *db;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, steps.shape(), &d_steps));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, u}), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, u}), &dc0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, kernel.shape(), &dk));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, recurrent.shape(), &dr));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({has_bias_ ? u4 : 0}), &db));

    Products products(kernel, recurrent, /*forward=*/false);
    Matrix xh(B, F + u), dz(B, u4), d_xh(B, F + u);
    Row d_bias = Row::Zero(u4);
    MatrixMap dh(Data(dh0), B, u), dc(Data(dc0), B, u);
    dh = ConstMatrixMap(Data(ctx->input(9)), B, u);
    dc = ConstMatrixMap(Data(ctx->input(10)), B, u);
    Matrix dout = Matrix::Zero(B, u), dc_prev(B, u), dh_held(B, u);
    const float* x = Data(steps);
    const bool* m = masked ? mask.flat<bool>().data() : nullptr;
    Row dh_new(u), dc_new(u);

    for (int64_t t = T - 1; t >= 0; --t) {
      // The output of step t takes the loss gradient of outputs[t] (or of last_output at the end),
      // plus what step t+1 passed back through a masked hold of the previous output.
      if (return_sequences_) dout += ConstMatrixMap(d_outputs + t * B * u, B, u);
      if (t == T - 1) {
        dout += ConstMatrixMap(Data(ctx->input(7)), B, u);
        if (!return_sequences_) dout += ConstMatrixMap(d_outputs, B, u);
      }
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = t * B + b;
        const bool on = m == nullptr || m[row];
        RowMap dhb(dh.data() + b * u, u), dcb(dc.data() + b * u, u), doutb(dout.data() + b * u, u);
        RowMap dzb(dz.data() + b * u4, u4), dcpb(dc_prev.data() + b * u, u), heldb(dh_held.data() + b * u, u);
        if (on) {
          const float* qb = q + row * u4;
          const float* fpb = fp + row * 2 * u;
          dh_new = dhb + doutb;
          dc_new = dcb + dh_new * ConstRowMap(fpb + u, u);
          dzb.segment(0, u) = ConstRowMap(qb, u) * dc_new;
          dzb.segment(u, u) = ConstRowMap(qb + u, u) * dc_new;
          dzb.segment(2 * u, u) = ConstRowMap(qb + 2 * u, u) * dc_new;
          dzb.segment(3 * u, u) = ConstRowMap(qb + 3 * u, u) * dh_new;
          dcpb = dc_new * ConstRowMap(fpb, u);
          heldb.setZero();
          if (masked) doutb.setZero();  // the output was this step's h: its gradient went into dh_new
        } else {
          // A masked step held h, c and (unless zeroed) the output: their gradients pass straight back.
          dzb.setZero();
          dcpb = dcb;
          heldb = dhb;
          if (zero_output_for_mask_) doutb.setZero();
        }
      }
      if (!masked) dout.setZero();
      xh.leftCols(F) = ConstMatrixMap(x + t * B * F, B, F);
      xh.rightCols(u) = ConstMatrixMap(hp + t * B * u, B, u);
      products.AddToWeights(xh, dz);
      d_bias += dz.colwise().sum().array();
      products.IntoInputs(dz, &d_xh);
      MatrixMap(Data(d_steps) + t * B * F, B, F) = d_xh.leftCols(F);
      dh = d_xh.rightCols(u) + dh_held;
      dc = dc_prev;
    }
    const Matrix d_weights = products.WeightGradient();
    MatrixMap(Data(dk), F, u4) = d_weights.topRows(F);
    MatrixMap(Data(dr), u, u4) = d_weights.bottomRows(u);
    if (has_bias_) RowMap(Data(db), u4) = d_bias;
  }

 private:
  bool has_bias_, return_sequences_, zero_output_for_mask_;
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("ForecasterLstmForward").Device(DEVICE_CPU), ForwardOp);
REGISTER_KERNEL_BUILDER(Name("ForecasterLstmBackward").Device(DEVICE_CPU), BackwardOp);
