//! onnxruntime's `com.microsoft` `DynamicQuantizeLSTM`: an LSTM whose W and R are 8-bit
//! integers, with the float operands of each product quantized at run time, computed the way
//! onnxruntime's CPU kernel computes it.
//!
//! # The operator
//!
//! Inputs `X, W, R, B, sequence_lens, initial_h, initial_c, P, W_scale, W_zero_point, R_scale,
//! R_zero_point`; outputs `Y, Y_h, Y_c`; the attributes of ONNX `LSTM`-7 (`activation_alpha`,
//! `activation_beta`, `activations`, `clip`, `direction`, `hidden_size`, `input_forget`), no
//! `layout`. Everything float is float32; W and R are both int8 or both uint8 (with zero
//! points of the same type), sequence_lens int32. Unlike ONNX `LSTM`, W is
//! `[num_directions, input_size, 4·hidden]` and R `[num_directions, hidden, 4·hidden]`: already
//! the transposed, column-per-gate-unit layout, gates i, o, f, c along the last axis. A scale
//! (and its zero point) is `[num_directions]` (per tensor) or `[num_directions, 4·hidden]`
//! (per column).
//!
//! # What onnxruntime computes (1.32, CPU)
//!
//! `contrib_ops/cpu/quantization/dynamic_quantize_lstm.cc` hands the weights to the float
//! LSTM (`providers/cpu/rnn/lstm_base.cc`, `uni_directional_lstm.cc`), whose two products go
//! through the quantized `ComputeGemm` of `providers/cpu/rnn/rnn_helpers.cc`:
//!
//! 1. **A is quantized to uint8 per call.** `GetQuantizationParameter` (`core/util/qmath.h`)
//!    takes the min and max over *all* of A, widened to include 0, then
//!    `scale = (max − min) / 255` (1 when max = min) and
//!    `zero_point = round_half_even(clamp(0 − min / scale, 0, 255))`, all in float32.
//!    `MlasQuantizeLinear` then maps each element to
//!    `clamp(round_half_even(a / scale) + zero_point, 0, 255)` (a true division).
//! 2. **The product is exact in int32**: `Σ (a_q − a_zp)(w_q − w_zp)` by MLAS, on a CPU with
//!    VNNI such as the one the references come from. (onnxruntime's quantization guide warns
//!    that its u8×s8 kernels for AVX2/AVX-512 without VNNI use `VPMADDUBSW`, which saturates
//!    pairs of products to int16, so onnxruntime itself can be off there for int8 weights.)
//!    rnn-run computes the sum in wrapping int32, the same number whenever MLAS's is exact.
//! 3. **Rescaling**: `float(sum) · (a_scale · w_scale[col])`, the multiplier formed first in
//!    float32 (`w_scale[col]` one per column, or the tensor's one). The input product writes
//!    it; each step's recurrent product is *added* to the input projection of that step.
//! 4. **Which A**: the input projection quantizes X of the first `max(sequence_lens)` steps of
//!    the whole batch as one matrix (a reverse direction reverses each entry within its own
//!    length first, which changes the rows' order, not their values). The recurrent product
//!    quantizes, every step, the `[batch, hidden]` hidden state of the whole batch as one
//!    matrix: with one intra-op thread. (With more threads onnxruntime splits the batch into
//!    `ceil(batch / threads)` rows per thread when `batch > 4` or `batch ≥ 2` and
//!    `hidden ≤ 256`, each split quantized on its own, so its own results then depend on the
//!    thread count: 2e-3 apart on a small case. rnn-run reproduces the one-thread result,
//!    which is what the references here use.)
//! 5. **Finished entries** (`sequence_lens`): an entry past its length takes no new state,
//!    but its row still enters the next step's quantization range. When the node has a Y
//!    output, onnxruntime reads the previous hidden state from Y, where such rows are zero;
//!    without Y it reads them from Y_h, where they keep the entry's last state. So Y_h of the
//!    *other* entries depends on whether Y is an output (5.6e-4 apart on a small case);
//!    rnn-run follows both. An entry of length 0 in a node without Y leaves onnxruntime
//!    reading a buffer it never wrote; rnn-run takes zeros there.
//! 6. **Gates**, gate order i, o, f, c as ONNX `LSTM`: per gate, peephole (`P`, `[i, o, f]`),
//!    then `Wb + Rb` (summed once) and `clip`, then the activation; `f = 1 − i` with
//!    `input_forget`; `C = C₋₁·f + i·g`; the output gate's peephole uses the new C;
//!    `H = h(C)·o`.
//!
//! rnn-run follows every step above with its own code (the int8 products and the per-step
//! quantization do not fit the float cells), reusing the crate's attribute parsing
//! ([`NodeSpec`](crate::attrs::NodeSpec)), clip and activation functions
//! ([`Act`](crate::cells::activation::Act), [`Clip`](crate::cells::activation::Clip)) and
//! layout helpers;
//! `Sigmoid` and `Tanh` gates use onnxruntime's own approximations ([`mlas`]), bit for bit.
//! Integer arithmetic is exact and the float operations are done in onnxruntime's order, so
//! the outputs match onnxruntime's bit for bit on the fixtures (ddddocr's node and the
//! synthetic ones); an activation other than Sigmoid, Tanh or Relu may differ by an ulp,
//! which can move one hidden-state element across a rounding boundary of its quantization.
//!
//! # Refused
//!
//! A node outside the `com.microsoft` domain; attributes other than the seven above, a
//! missing `hidden_size`; fewer or more than 12 inputs, a missing W/R/scale/zero point;
//! float16/float64 X or any non-float32 float input; W and R of different types or not
//! int8/uint8; a zero point of another type than its weights; per-column zero points that are
//! not all 0 (int8) or not all equal (uint8), as onnxruntime refuses them; a per-tensor zero
//! point with per-column scales in a bidirectional node (onnxruntime reads past the zero
//! point's end there); `Affine`, `ScaledTanh` or `ThresholdedRelu` activations whose alpha or
//! beta is left to its default (onnxruntime's default is 0, the ONNX spec's is not); wrongly
//! shaped tensors.

pub mod dynamic_quantize;
pub(crate) mod int_gemm;
mod kernels;
pub mod mlas;
mod op;
mod parse;
#[cfg(test)]
mod tests;
mod weights;

pub use kernels::{quantization_params, quantize};
pub use op::QuantizedLstm;
pub(crate) use parse::register;
pub use parse::QuantSpec;

/// The domain the operator belongs to.
pub const DOMAIN: &str = "com.microsoft";

/// The operator as messages name it.
pub const OP_NAME: &str = "com.microsoft DynamicQuantizeLSTM";

/// The operator's type in its domain.
pub const OP_TYPE: &str = "DynamicQuantizeLSTM";
