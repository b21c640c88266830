// Element-wise ops: activations and broadcasting binary arithmetic.
//
// Pure functions on pointers and sizes (no N-API); inputs were validated by
// the binding layer. Each picks its kernel path from runtime::active_isa()
// and spreads large inputs over the runtime thread pool. `x` and `y` may
// alias (in place) unless stated otherwise.
#pragma once

#include <cstdint>

namespace attnode::kernels {

void relu(const float* x, float* y, int64_t n);
// Exact erf form (PyTorch default) or the tanh approximation (approximate='tanh').
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);

// Element-wise maps with one input (values match UnaryOp in lib/backend/backend.ts).
// Silu: x / (1 + exp(-x)) (PyTorch's formula); Sigmoid: 1 / (1 + exp(-x));
// Tanh: the hyperbolic tangent.
enum class UnaryOp : int { Silu = 0, Sigmoid = 1, Tanh = 2 };
void unary(UnaryOp op, const float* x, float* y, int64_t n);
// SwiGLU's gated product y = silu(gate) * up, silu rounded to float32 before
// the product (as F.silu(gate) * up). y may alias gate or up.
void silu_mul(const float* gate, const float* up, float* y, int64_t n);

// Gradients of the activations (values match ActivationGrad in lib/backend/backend.ts):
// dx = dy * f'(.), with `x` the forward's input for Relu, Gelu (exact erf form), GeluTanh and Silu, and the
// forward's output for Sigmoid and Tanh (whose derivatives are cheapest from it). PyTorch's formulas: relu passes
// dy where x > 0 (threshold_backward), gelu's tanh form is GeluBackward's, silu's is s * (1 + x * (1 - s)).
// dx may alias x or dy exactly.
enum class ActivationGrad : int { Relu = 0, Gelu = 1, GeluTanh = 2, Silu = 3, Sigmoid = 4, Tanh = 5 };
void activation_backward(ActivationGrad op, const float* x, const float* dy, float* dx, int64_t n);

// Dropout's keep-mask: out[i] = 0 when (hash(key0, key1, i) >> 8) < ceil(p * 2^24) (probability p), else
// float(1 / (1 - p)); the hash is lib/backend/js/random.ts's dropoutHash, so every path, thread count and the JS
// backend give the same mask. 0 <= p < 1, n < 2^32. With x (length n, may be out itself): out[i] = x[i] * mask[i]
// (dropout and its backward in one pass, the mask never stored).
void dropout_mask(float* out, int64_t n, double p, uint32_t key0, uint32_t key1, const float* x = nullptr);

enum class BinaryOp : int { Add = 0, Sub = 1, Mul = 2, Div = 3 };
// y[i] = a[i] op b[i] over an `ndim`-dimensional index space `shape`
// (ndim <= 8). Strides are in elements; a stride of 0 broadcasts. y is
// contiguous with that shape. y must not alias a broadcast operand.
void binary_op(BinaryOp op, const float* a, const int64_t* a_strides, const float* b, const int64_t* b_strides,
               float* y, const int64_t* shape, int ndim);

}  // namespace attnode::kernels
