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
//! ([`NodeSpec`]), clip and activation functions ([`Act`], [`Clip`]) and layout helpers;
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
mod int_gemm;
pub mod mlas;

use std::sync::Arc;

use ndarray::{s, Array2, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Ix3, Ix4};
use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;

use crate::attrs::{Activation, Layout, NodeSpec};
use crate::cells::activation::{Act, Clip};
use crate::error::{shape_string, NodeError};
use crate::gates::{state_direction, state_direction_mut, y_directions_as_seq_major};
use crate::layer::MAX_TENSOR_BYTES;
use crate::shared::{SharedBuilds, Tensors};
use int_gemm::{int_product, IntMatrix};

/// The domain the operator belongs to.
pub const DOMAIN: &str = "com.microsoft";

/// The operator as messages name it.
pub const OP_NAME: &str = "com.microsoft DynamicQuantizeLSTM";

/// The operator's type in its domain.
pub const OP_TYPE: &str = "DynamicQuantizeLSTM";

const INPUT_NAMES: [&str; 12] = [
    "X",
    "W",
    "R",
    "B",
    "sequence_lens",
    "initial_h",
    "initial_c",
    "P",
    "W_scale",
    "W_zero_point",
    "R_scale",
    "R_zero_point",
];

const ATTRIBUTES: [&str; 7] = [
    "activation_alpha",
    "activation_beta",
    "activations",
    "clip",
    "direction",
    "hidden_size",
    "input_forget",
];

/// Registers the parser for `DynamicQuantizeLSTM` (tract keys parsers by op type alone; the
/// parser checks the domain).
pub(crate) fn register(onnx: &mut Onnx) {
    onnx.op_register.insert(OP_TYPE, parse_node);
    onnx.op_register
        .insert("DynamicQuantizeLinear", dynamic_quantize::parse);
    mlas::register(onnx);
}

fn parse_node(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let spec = QuantSpec::from_node(node)?;
    Ok((
        expand(QuantExpansion {
            spec: Arc::new(spec),
        }),
        vec![],
    ))
}

/// One `DynamicQuantizeLSTM` node, described and checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuantSpec {
    /// The LSTM part: attributes, and the positions of X … P and of the outputs among the
    /// node's present inputs and outputs.
    pub lstm: NodeSpec,
    /// The `hidden_size` attribute (required).
    pub hidden: usize,
    /// Positions of W_scale, W_zero_point, R_scale and R_zero_point among the present inputs.
    pub quant_slots: [usize; 4],
}

impl QuantSpec {
    /// Reads and checks a node (domain, attributes, inputs), refusing what rnn-run does not
    /// reproduce.
    pub fn from_node(node: &NodeProto) -> Result<QuantSpec, NodeError> {
        let name = if node.name.is_empty() {
            node.output
                .iter()
                .find(|o| !o.is_empty())
                .map(|o| format!("(producing {o})"))
                .unwrap_or_else(|| "(unnamed)".into())
        } else {
            node.name.clone()
        };
        let domain = if node.domain.is_empty() || node.domain == "ai.onnx" {
            "ai.onnx"
        } else {
            node.domain.as_str()
        };
        let err = |message: String| NodeError {
            node: name.clone(),
            op: format!("{domain} {}", node.op_type),
            message,
        };
        if node.domain != DOMAIN {
            return Err(err(format!(
                "{OP_TYPE} is onnxruntime's operator of the '{DOMAIN}' domain, found it in \
                 domain '{domain}'"
            )));
        }
        for a in &node.attribute {
            if !ATTRIBUTES.contains(&a.name.as_str()) {
                return Err(err(format!(
                    "attribute '{}' is not defined for {OP_TYPE} (it takes {})",
                    a.name,
                    ATTRIBUTES.join(", ")
                )));
            }
        }
        if !node.attribute.iter().any(|a| a.name == "hidden_size") {
            return Err(err(
                "attribute 'hidden_size' is required (onnxruntime refuses the node without it)"
                    .into(),
            ));
        }
        if node.input.len() != INPUT_NAMES.len() {
            return Err(err(format!(
                "expected {} inputs ({}; empty names for the absent optional ones), found {}",
                INPUT_NAMES.len(),
                INPUT_NAMES.join(", "),
                node.input.len()
            )));
        }
        for i in [0, 1, 2, 8, 9, 10, 11] {
            if node.input[i].is_empty() {
                return Err(err(format!(
                    "input {i} ({}) is required but missing",
                    INPUT_NAMES[i]
                )));
            }
        }
        check_activation_defaults(node, &err)?;
        // The LSTM attributes and slots, read by the LSTM parser: the same attributes as
        // LSTM-7, and the same first 8 inputs.
        let mut as_lstm = node.clone();
        as_lstm.op_type = "LSTM".into();
        as_lstm.domain.clear();
        as_lstm.input.truncate(8);
        let lstm = NodeSpec::from_node(&as_lstm, 7).map_err(|e| NodeError {
            op: OP_NAME.into(),
            ..e
        })?;
        if lstm.slots.output_count() == 0 {
            return Err(err("the node has no outputs".into()));
        }
        let hidden = lstm
            .hidden_size
            .ok_or_else(|| err("attribute 'hidden_size' is required".into()))?;
        let present = |i: usize| node.input[..i].iter().filter(|s| !s.is_empty()).count();
        Ok(QuantSpec {
            lstm,
            hidden,
            quant_slots: [present(8), present(9), present(10), present(11)],
        })
    }

    /// An error about this node.
    pub fn error(&self, message: impl Into<String>) -> NodeError {
        NodeError {
            node: self.lstm.name.clone(),
            op: OP_NAME.into(),
            message: message.into(),
        }
    }

    /// Number of present inputs.
    fn input_count(&self) -> usize {
        self.lstm.slots.input_count() + 4
    }

    fn dirs(&self) -> usize {
        self.lstm.direction.num_directions()
    }
}

/// Refuses `Affine`, `ScaledTanh` and `ThresholdedRelu` whose parameters run out of the
/// alpha/beta lists: onnxruntime falls back to 0 for them, the ONNX spec (and rnn-run's LSTM)
/// to 1.
fn check_activation_defaults(
    node: &NodeProto,
    err: &impl Fn(String) -> NodeError,
) -> Result<(), NodeError> {
    let attr = |n: &str| node.attribute.iter().find(|a| a.name == n);
    let Some(names) = attr("activations") else {
        return Ok(());
    };
    let alphas = attr("activation_alpha").map_or(0, |a| a.floats.len());
    let betas = attr("activation_beta").map_or(0, |a| a.floats.len());
    let (mut a, mut b) = (0, 0);
    for name in &names.strings {
        let name = String::from_utf8_lossy(name).to_string();
        let lower = name.to_ascii_lowercase();
        let (takes_alpha, takes_beta) = match lower.as_str() {
            "affine" | "scaledtanh" | "hardsigmoid" => (true, true),
            "leakyrelu" | "thresholdedrelu" | "elu" => (true, false),
            _ => (false, false),
        };
        let defaulted = (takes_alpha && a >= alphas) || (takes_beta && b >= betas);
        a += takes_alpha as usize;
        b += takes_beta as usize;
        if defaulted && matches!(lower.as_str(), "affine" | "scaledtanh" | "thresholdedrelu") {
            return Err(err(format!(
                "attribute 'activations': {name} takes its alpha{} from activation_alpha{}, \
                 which run out before it; onnxruntime then uses 0 where the ONNX spec says 1, \
                 so give the values explicitly",
                if takes_beta { " and beta" } else { "" },
                if takes_beta { "/activation_beta" } else { "" },
            )));
        }
    }
    Ok(())
}

/// The inference-time face of the node: shape rules, then the typed op.
#[derive(Debug, Clone)]
struct QuantExpansion {
    spec: Arc<QuantSpec>,
}

impl Expansion for QuantExpansion {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.spec.lstm.slots.output_count())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let spec = &self.spec;
        let slots = &spec.lstm.slots;
        check_input_arity(inputs, spec.input_count())?;
        check_output_arity(outputs, slots.output_count())?;
        let dirs = spec.dirs() as i64;
        let hidden = spec.hidden as i64;
        for o in outputs {
            s.equals(&o.datum_type, &inputs[0].datum_type)?;
        }
        s.equals(&inputs[0].rank, 3)?;
        if let Some(y) = slots.y {
            let y = &outputs[y];
            s.equals(&y.rank, 4)?;
            s.equals(&y.shape[0], &inputs[0].shape[0])?;
            s.equals(&y.shape[1], dirs.to_dim())?;
            s.equals(&y.shape[2], &inputs[0].shape[1])?;
            s.equals(&y.shape[3], hidden.to_dim())?;
        }
        for slot in [slots.y_h, slots.y_c].into_iter().flatten() {
            let o = &outputs[slot];
            s.equals(&o.rank, 3)?;
            s.equals(&o.shape[0], dirs.to_dim())?;
            s.equals(&o.shape[1], &inputs[0].shape[1])?;
            s.equals(&o.shape[2], hidden.to_dim())?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let spec = &self.spec;
        let slots = &spec.lstm.slots;
        let [ws, wz, rs, rz] = spec.quant_slots;
        let dt = |slot: usize| -> TractResult<DatumType> {
            Ok(model.outlet_fact(inputs[slot])?.datum_type)
        };
        let floats = [
            ("X", Some(0)),
            ("B", slots.b),
            ("initial_h", slots.initial_h),
            ("initial_c", slots.initial_c),
            ("P", slots.p),
            ("W_scale", Some(ws)),
            ("R_scale", Some(rs)),
        ];
        for (name, slot) in floats {
            let Some(slot) = slot else { continue };
            let found = dt(slot)?;
            if found != DatumType::F32 {
                return Err(spec
                    .error(format!(
                        "input {name}: expected float32 (onnxruntime's kernel takes float32 \
                         only), found {found:?}"
                    ))
                    .into());
            }
        }
        let (w_dt, r_dt) = (dt(1)?, dt(2)?);
        if !matches!(w_dt, DatumType::I8 | DatumType::U8) || w_dt != r_dt {
            return Err(spec
                .error(format!(
                    "inputs W and R: expected both int8 or both uint8, found {w_dt:?} and {r_dt:?}"
                ))
                .into());
        }
        for (name, slot, want) in [("W_zero_point", wz, w_dt), ("R_zero_point", rz, r_dt)] {
            let found = dt(slot)?;
            if found != want {
                return Err(spec
                    .error(format!(
                        "input {name}: expected {want:?} like its weights, found {found:?}"
                    ))
                    .into());
            }
        }
        if let Some(slot) = slots.sequence_lens {
            let found = dt(slot)?;
            if found != DatumType::I32 {
                return Err(spec
                    .error(format!(
                        "input sequence_lens: expected int32, found {found:?}"
                    ))
                    .into());
            }
        }
        let op = QuantizedLstm {
            spec: spec.clone(),
            weights: None,
        };
        match op.prepared(model, inputs)? {
            Some((prepared, per_run)) => model.wire_node(prefix, prepared, &per_run),
            None => model.wire_node(prefix, op, inputs),
        }
    }
}

/// One direction's constant part.
#[derive(Debug, Clone)]
struct DirWeights {
    w: IntMatrix,
    r: IntMatrix,
    /// One scale (per tensor) or 4·hidden (per column).
    w_scale: Vec<f32>,
    r_scale: Vec<f32>,
    /// `Wb + Rb`, `[4·hidden]`, gates i, o, f, c.
    bias: Option<Vec<f32>>,
    /// Peepholes `[Pi, Po, Pf]`.
    p: Option<Vec<f32>>,
    f: GateAct,
    g: GateAct,
    h: GateAct,
}

/// An activation as onnxruntime's LSTM applies it: MLAS's logistic and tanh for `Sigmoid`
/// and `Tanh` ([`mlas`]), the crate's functions for the others.
#[derive(Debug, Clone, Copy)]
enum GateAct {
    Logistic,
    Tanh,
    Other(Act<f32>),
}

impl GateAct {
    fn new(a: Activation) -> GateAct {
        match a {
            Activation::Sigmoid => GateAct::Logistic,
            Activation::Tanh => GateAct::Tanh,
            other => GateAct::Other(Act::new(other)),
        }
    }

    fn apply_slice(&self, xs: &mut [f32]) {
        match self {
            GateAct::Logistic => mlas::logistic_slice(xs),
            GateAct::Tanh => mlas::tanh_slice(xs),
            GateAct::Other(a) => a.apply_slice(xs),
        }
    }
}

/// A node's weights, ready to run.
#[derive(Debug, Clone)]
struct QuantWeights {
    input: usize,
    dirs: Vec<DirWeights>,
}

impl QuantWeights {
    /// From the node's constant (or per-run) tensors, after checking their types, shapes and
    /// zero points; `x_input` is X's input size when known.
    #[allow(clippy::too_many_arguments)]
    fn build(
        spec: &QuantSpec,
        x_input: Option<usize>,
        w: &Tensor,
        r: &Tensor,
        b: Option<&Tensor>,
        p: Option<&Tensor>,
        w_scale: &Tensor,
        w_zp: &Tensor,
        r_scale: &Tensor,
        r_zp: &Tensor,
    ) -> Result<QuantWeights, NodeError> {
        let dirs = spec.dirs();
        let h = spec.hidden;
        let g = 4 * h;
        let expect = |name: &str, t: &Tensor, want: &[usize], what: &str| {
            if t.shape() == want {
                Ok(())
            } else {
                Err(spec.error(format!(
                    "input {name}: expected shape {} ({what}), found {}",
                    shape_string(want),
                    shape_string(t.shape())
                )))
            }
        };
        let input = match (x_input, w.shape()) {
            (Some(i), _) => i,
            (None, &[_, i, _]) => i,
            (None, other) => {
                return Err(spec.error(format!(
                    "input W: expected rank 3 [num_directions, input_size, 4·hidden_size], \
                     found shape {}",
                    shape_string(other)
                )))
            }
        };
        let from = format!(
            "direction '{}', hidden_size {h}",
            spec.lstm.direction.as_str()
        );
        expect(
            "W",
            w,
            &[dirs, input, g],
            &format!("[num_directions, input_size, 4·hidden_size]: {from}"),
        )?;
        expect(
            "R",
            r,
            &[dirs, h, g],
            &format!("[num_directions, hidden_size, 4·hidden_size]: {from}"),
        )?;
        if let Some(b) = b {
            expect("B", b, &[dirs, 8 * h], "[num_directions, 8·hidden_size]")?;
        }
        if let Some(p) = p {
            expect("P", p, &[dirs, 3 * h], "[num_directions, 3·hidden_size]")?;
        }
        let floats = |name: &str, t: &Tensor| -> Result<Vec<f32>, NodeError> {
            let view = t
                .to_plain_array_view::<f32>()
                .map_err(|e| spec.error(format!("input {name}: {e}")))?;
            Ok(view.iter().copied().collect())
        };
        let ints = |name: &str, t: &Tensor| -> Result<Vec<i16>, NodeError> {
            let fail = |e: TractError| spec.error(format!("input {name}: {e}"));
            Ok(match t.datum_type() {
                DatumType::I8 => t
                    .to_plain_array_view::<i8>()
                    .map_err(fail)?
                    .iter()
                    .map(|&v| v as i16)
                    .collect(),
                DatumType::U8 => t
                    .to_plain_array_view::<u8>()
                    .map_err(fail)?
                    .iter()
                    .map(|&v| v as i16)
                    .collect(),
                other => {
                    return Err(spec.error(format!(
                        "input {name}: expected int8 or uint8, found {other:?}"
                    )))
                }
            })
        };
        // Scale and zero point of one direction, as onnxruntime picks them.
        let quant = |which: &str,
                     scale: &Tensor,
                     zp: &Tensor,
                     signed: bool|
         -> Result<Vec<(Vec<f32>, i16)>, NodeError> {
            let (sname, zname) = (format!("{which}_scale"), format!("{which}_zero_point"));
            let per_column = |t: &Tensor, name: &str| match t.shape() {
                [d] if *d == dirs => Ok(false),
                [d, n] if *d == dirs && *n == g => Ok(true),
                other => Err(spec.error(format!(
                    "input {name}: expected shape [{dirs}] (per tensor) or [{dirs}, {g}] (per \
                     column: num_directions, 4·hidden_size), found {}",
                    shape_string(other)
                ))),
            };
            let scale_cols = per_column(scale, &sname)?;
            let zp_cols = per_column(zp, &zname)?;
            let scales = floats(&sname, scale)?;
            let zps = ints(&zname, zp)?;
            if zp_cols {
                if signed && zps.iter().any(|&z| z != 0) {
                    return Err(spec.error(format!(
                        "input {zname}: per-column zero points of int8 weights must all be 0 \
                         (onnxruntime refuses others), found {:?}",
                        zps.iter().find(|&&z| z != 0).unwrap_or(&0)
                    )));
                }
                if zps.iter().any(|&z| z != zps[0]) {
                    return Err(spec.error(format!(
                        "input {zname}: per-column zero points of uint8 weights must all be \
                         equal (onnxruntime refuses others), found {} and {}",
                        zps[0],
                        zps.iter().find(|&&z| z != zps[0]).unwrap_or(&0)
                    )));
                }
            } else if scale_cols && dirs == 2 {
                return Err(spec.error(format!(
                    "input {zname}: a per-tensor zero point with per-column scales in a \
                     bidirectional node (onnxruntime reads the reverse direction's zero point \
                     past the tensor's end); give {zname} the shape of {sname}"
                )));
            }
            let n = if scale_cols { g } else { 1 };
            Ok((0..dirs)
                .map(|d| {
                    // onnxruntime offsets the zero point by the scale's length per direction.
                    let z = if zp_cols { zps[0] } else { zps[d] };
                    (scales[d * n..(d + 1) * n].to_vec(), z)
                })
                .collect())
        };
        let signed = w.datum_type() == DatumType::I8;
        let wq = quant("W", w_scale, w_zp, signed)?;
        let rq = quant("R", r_scale, r_zp, r.datum_type() == DatumType::I8)?;
        let w_all = ints("W", w)?;
        let r_all = ints("R", r)?;
        let b_all = b.map(|b| floats("B", b)).transpose()?;
        let p_all = p.map(|p| floats("P", p)).transpose()?;
        let matrix = |all: &[i16], d: usize, k: usize, zp: i16| {
            let centered: Vec<i16> = all[d * k * g..(d + 1) * k * g]
                .iter()
                .map(|&v| v - zp)
                .collect();
            IntMatrix::new(k, g, &centered)
        };
        let dir_weights = (0..dirs)
            .map(|d| {
                let acts = spec.lstm.activations_of(d);
                DirWeights {
                    w: matrix(&w_all, d, input, wq[d].1),
                    r: matrix(&r_all, d, h, rq[d].1),
                    w_scale: wq[d].0.clone(),
                    r_scale: rq[d].0.clone(),
                    bias: b_all.as_ref().map(|b| {
                        let b = &b[d * 8 * h..(d + 1) * 8 * h];
                        (0..g).map(|j| b[j] + b[g + j]).collect()
                    }),
                    p: p_all
                        .as_ref()
                        .map(|p| p[d * 3 * h..(d + 1) * 3 * h].to_vec()),
                    f: GateAct::new(acts[0]),
                    g: GateAct::new(acts[1]),
                    h: GateAct::new(acts[2]),
                }
            })
            .collect();
        Ok(QuantWeights {
            input,
            dirs: dir_weights,
        })
    }
}

/// onnxruntime's dynamic quantization parameters of a float matrix for uint8
/// (`GetQuantizationParameter`): the range of the values widened to include 0,
/// `scale = (max − min) / 255` (1 for an all-zero range) and
/// `zero_point = round_half_even(clamp(−min / scale, 0, 255))`, in float32.
pub fn quantization_params(values: impl IntoIterator<Item = f32>) -> (f32, u8) {
    let (lo, hi) = values
        .into_iter()
        .fold((0f32, 0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zero_point = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even();
    (scale, zero_point as u8)
}

/// `clamp(round_half_even(v / scale) + zero_point, 0, 255)`, as `MlasQuantizeLinear`.
#[inline]
pub fn quantize(v: f32, scale: f32, zero_point: u8) -> u8 {
    ((v / scale).round_ties_even() + zero_point as f32).clamp(0.0, 255.0) as u8
}

/// Quantizes `values` with their own parameters into `out` (minus the zero point); returns
/// the scale.
fn quantize_centered<'a>(values: impl Iterator<Item = &'a f32> + Clone, out: &mut [i16]) -> f32 {
    let (scale, zp) = quantization_params(values.clone().copied());
    for (o, &v) in out.iter_mut().zip(values) {
        *o = quantize(v, scale, zp) as i16 - zp as i16;
    }
    scale
}

/// What one direction writes.
struct DirOutputs<'a> {
    /// `[T, B, H]`, zero-filled; `None` when the node has no Y.
    y: Option<ArrayViewMut3<'a, f32>>,
    y_h: ArrayViewMut2<'a, f32>,
    y_c: ArrayViewMut2<'a, f32>,
}

impl DirWeights {
    /// Runs one direction over `x` (`[T, B, I]`).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        x: ArrayView3<f32>,
        lens: &[usize],
        reverse: bool,
        h0: Option<ArrayView2<f32>>,
        c0: Option<ArrayView2<f32>>,
        clip: Clip<f32>,
        input_forget: bool,
        mut out: DirOutputs,
    ) {
        let (_, batch, input) = x.dim();
        let hs = self.r.k;
        let g = self.w.n;
        out.y_h.fill(0.0);
        out.y_c.fill(0.0);
        let max_len = lens.iter().copied().max().unwrap_or(0);
        if batch == 0 || max_len == 0 {
            return;
        }
        let keep_y = out.y.is_some();

        // The input projection: X's first max_len steps quantized as one matrix, rows in the
        // order this direction visits them.
        let rows = max_len * batch;
        let mut qx = vec![0i16; rows * input];
        let x_used = x.slice(s![..max_len, .., ..]);
        let (scale, zp) = quantization_params(x_used.iter().copied());
        for j in 0..max_len {
            for (b, &len) in lens.iter().enumerate() {
                let src = if reverse && j < len { len - 1 - j } else { j };
                let row = &mut qx[(j * batch + b) * input..(j * batch + b + 1) * input];
                for (q, &v) in row.iter_mut().zip(x.slice(s![src, b, ..])) {
                    *q = quantize(v, scale, zp) as i16 - zp as i16;
                }
            }
        }
        let mult: Vec<f32> = self.w_scale.iter().map(|&s| scale * s).collect();
        let mut gx = vec![0f32; rows * g];
        int_product(&qx, rows, &self.w, &mult, &mut gx, false);
        drop(qx);

        let zeros = || Array2::<f32>::zeros((batch, hs));
        let mut h_prev = h0.map_or_else(zeros, |h| h.to_owned());
        let mut h_next = zeros();
        let mut c = c0.map_or_else(zeros, |c| c.to_owned());
        let mut qh = vec![0i16; batch * hs];
        let mut gates = vec![0f32; batch * g];
        let mut r_mult = vec![0f32; self.r_scale.len()];
        for t in 0..max_len {
            let h_slice = h_prev.as_slice().expect("owned, standard layout");
            let scale = quantize_centered(h_slice.iter(), &mut qh);
            for (m, &s) in r_mult.iter_mut().zip(&self.r_scale) {
                *m = scale * s;
            }
            gates.copy_from_slice(&gx[t * batch * g..(t + 1) * batch * g]);
            int_product(&qh, batch, &self.r, &r_mult, &mut gates, true);
            for (b, &len) in lens.iter().enumerate() {
                if t >= len {
                    // Past its length the entry takes no new state; its row of the next
                    // step's A is Y's zero row, or its last state when there is no Y.
                    if keep_y {
                        h_next.row_mut(b).fill(0.0);
                    } else {
                        h_next.row_mut(b).assign(&h_prev.row(b));
                    }
                    continue;
                }
                let row = &mut gates[b * g..(b + 1) * g];
                let (gi, rest) = row.split_at_mut(hs);
                let (go, rest) = rest.split_at_mut(hs);
                let (gf, gc) = rest.split_at_mut(hs);
                let cb = c.row_mut(b).into_slice().expect("owned, standard layout");
                let bias = |k: usize| self.bias.as_ref().map(|v| &v[k * hs..(k + 1) * hs]);
                let peep = |k: usize| self.p.as_ref().map(|v| &v[k * hs..(k + 1) * hs]);
                // Gates i, o, f, c; peepholes i, o, f.
                finish_gate(gi, peep(0).map(|p| (p, &*cb)), bias(0), &clip);
                self.f.apply_slice(gi);
                if input_forget {
                    for (f, &i) in gf.iter_mut().zip(&*gi) {
                        *f = 1.0 - i;
                    }
                } else {
                    finish_gate(gf, peep(2).map(|p| (p, &*cb)), bias(2), &clip);
                    self.f.apply_slice(gf);
                }
                finish_gate(gc, None, bias(3), &clip);
                self.g.apply_slice(gc);
                for (((cv, &f), &i), &cand) in cb.iter_mut().zip(&*gf).zip(&*gi).zip(&*gc) {
                    *cv = *cv * f + i * cand;
                }
                finish_gate(go, peep(1).map(|p| (p, &*cb)), bias(1), &clip);
                self.f.apply_slice(go);
                let hn = h_next
                    .row_mut(b)
                    .into_slice()
                    .expect("owned, standard layout");
                hn.copy_from_slice(cb);
                self.h.apply_slice(hn);
                for (hv, &o) in hn.iter_mut().zip(&*go) {
                    *hv *= o;
                }
                if let Some(y) = out.y.as_mut() {
                    let at = if reverse { len - 1 - t } else { t };
                    y.slice_mut(s![at, b, ..]).assign(&h_next.row(b));
                }
                if t + 1 == len {
                    out.y_h.row_mut(b).assign(&h_next.row(b));
                    out.y_c.row_mut(b).assign(&c.row(b));
                }
            }
            std::mem::swap(&mut h_prev, &mut h_next);
        }
    }
}

/// One gate's pre-activation finished as onnxruntime does: `+ P ⊙ C` (peephole weights and
/// cell state), `+ (Wb + Rb)`, then `clip`.
fn finish_gate(
    v: &mut [f32],
    peephole: Option<(&[f32], &[f32])>,
    bias: Option<&[f32]>,
    clip: &Clip<f32>,
) {
    if let Some((p, c)) = peephole {
        for ((v, &c), &p) in v.iter_mut().zip(c).zip(p) {
            *v += c * p;
        }
    }
    if let Some(bias) = bias {
        for (v, &b) in v.iter_mut().zip(bias) {
            *v += b;
        }
    }
    clip.apply_slice(v);
}

/// Packed weights shared by every plan holding the same constant tensors (see
/// [`crate::shared`]), keyed by the node and X's input size.
static WEIGHTS: SharedBuilds<(Arc<QuantSpec>, Option<usize>), QuantWeights> = SharedBuilds::new();

/// The packed weights for these constant tensors (W, R, B, P, W_scale, W_zero_point,
/// R_scale, R_zero_point), built once.
fn shared_weights(
    spec: &Arc<QuantSpec>,
    x_input: Option<usize>,
    tensors: Tensors,
) -> TractResult<Arc<QuantWeights>> {
    WEIGHTS.get_or_build(
        (spec.clone(), x_input),
        tensors,
        |(spec, x_input), tensors| {
            let get = |i: usize| tensors[i].as_deref();
            Ok(QuantWeights::build(
                spec,
                *x_input,
                get(0).context("W")?,
                get(1).context("R")?,
                get(2),
                get(3),
                get(4).context("W_scale")?,
                get(5).context("W_zero_point")?,
                get(6).context("R_scale")?,
                get(7).context("R_zero_point")?,
            )?)
        },
    )
}

/// The typed op: one `DynamicQuantizeLSTM` node evaluated as onnxruntime does.
#[derive(Debug, Clone)]
pub struct QuantizedLstm {
    spec: Arc<QuantSpec>,
    /// Built from constant weights; `None` when they arrive as inputs.
    weights: Option<Arc<QuantWeights>>,
}

impl PartialEq for QuantizedLstm {
    fn eq(&self, other: &Self) -> bool {
        let same_weights = match (&self.weights, &other.weights) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.spec == other.spec && same_weights
    }
}
impl Eq for QuantizedLstm {}

impl QuantizedLstm {
    /// The node's description.
    pub fn spec(&self) -> &QuantSpec {
        &self.spec
    }

    /// Whether the weights were constant and prepared at load.
    pub fn weights_prepared(&self) -> bool {
        self.weights.is_some()
    }

    /// Slots of the weight-side inputs: W, R, B, P, W_scale, W_zero_point, R_scale,
    /// R_zero_point.
    fn weight_slots(&self) -> [Option<usize>; 8] {
        let slots = &self.spec.lstm.slots;
        let [ws, wz, rs, rz] = self.spec.quant_slots;
        [
            Some(1),
            Some(2),
            slots.b,
            slots.p,
            Some(ws),
            Some(wz),
            Some(rs),
            Some(rz),
        ]
    }

    /// With every weight-side input constant, the same op with its weights built, and the
    /// inputs it still takes per run (X, sequence_lens, initial_h, initial_c).
    fn prepared(
        &self,
        model: &TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<(QuantizedLstm, TVec<OutletId>)>> {
        if self.weights.is_some() {
            return Ok(None);
        }
        let mut consts: Vec<Option<Arc<Tensor>>> = vec![];
        for slot in self.weight_slots() {
            match slot {
                None => consts.push(None),
                Some(s) => match model.outlet_fact(inputs[s])?.konst.clone() {
                    Some(k) => consts.push(Some(k)),
                    None => return Ok(None),
                },
            }
        }
        let x_input = model
            .outlet_fact(inputs[0])?
            .shape
            .get(2)
            .and_then(|d| d.to_usize().ok());
        let weights = shared_weights(&self.spec, x_input, consts)?;
        let slots = &self.spec.lstm.slots;
        let per_run = [
            Some(0),
            slots.sequence_lens,
            slots.initial_h,
            slots.initial_c,
        ];
        let op = QuantizedLstm {
            weights: Some(weights),
            ..self.clone()
        };
        Ok(Some((
            op,
            per_run.into_iter().flatten().map(|s| inputs[s]).collect(),
        )))
    }

    /// Positions of (sequence_lens, initial_h, initial_c) among this op's inputs (X is 0).
    fn run_positions(&self) -> (Option<usize>, Option<usize>, Option<usize>) {
        let slots = &self.spec.lstm.slots;
        if self.weights.is_none() {
            return (slots.sequence_lens, slots.initial_h, slots.initial_c);
        }
        let mut next = 1;
        let mut take = |present: Option<usize>| {
            present.map(|_| {
                next += 1;
                next - 1
            })
        };
        let sl = take(slots.sequence_lens);
        let h0 = take(slots.initial_h);
        let c0 = take(slots.initial_c);
        (sl, h0, c0)
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let spec = &*self.spec;
        let built;
        let weights: &QuantWeights = match &self.weights {
            Some(w) => w,
            None => {
                let get = |slot: Option<usize>| slot.map(|s| &*inputs[s]);
                let s = self.weight_slots();
                built = QuantWeights::build(
                    spec,
                    inputs[0].shape().get(2).copied(),
                    &inputs[1],
                    &inputs[2],
                    get(s[2]),
                    get(s[3]),
                    &inputs[s[4].expect("W_scale")],
                    &inputs[s[5].expect("W_zero_point")],
                    &inputs[s[6].expect("R_scale")],
                    &inputs[s[7].expect("R_zero_point")],
                )?;
                &built
            }
        };
        let (sl_ix, h0_ix, c0_ix) = self.run_positions();
        let x = inputs[0].to_plain_array_view::<f32>()?;
        let &[t_len, batch, input] = x.shape() else {
            return Err(spec
                .error(format!(
                    "input X: expected rank 3 [seq_length, batch_size, input_size], found shape {}",
                    shape_string(x.shape())
                ))
                .into());
        };
        if input != weights.input {
            return Err(spec
                .error(format!(
                    "input X: expected input size {} (from W), found {input} in shape {}",
                    weights.input,
                    shape_string(x.shape())
                ))
                .into());
        }
        let (dirs, h) = (spec.dirs(), spec.hidden);
        let largest = [dirs * h, 4 * h]
            .iter()
            .map(|&w| {
                [t_len, batch, w, 4]
                    .iter()
                    .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            })
            .try_fold(0u64, |acc, b| b.map(|b| acc.max(b)));
        if largest.is_none_or(|b| b > MAX_TENSOR_BYTES) {
            return Err(spec
                .error(format!(
                    "input X: shape {} asks for more than the {} GiB a tensor may take",
                    shape_string(x.shape()),
                    MAX_TENSOR_BYTES >> 30
                ))
                .into());
        }
        let lens: Vec<usize> = match sl_ix {
            None => vec![t_len; batch],
            Some(i) => {
                let l = inputs[i].cast_to::<i64>()?;
                let l = l.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
                if l.len() != batch {
                    return Err(spec
                        .error(format!(
                            "input sequence_lens: expected {batch} values (batch size), found {}",
                            l.len()
                        ))
                        .into());
                }
                if let Some((b, &bad)) = l
                    .iter()
                    .enumerate()
                    .find(|(_, &n)| n < 0 || n as u64 > t_len as u64)
                {
                    return Err(spec
                        .error(format!(
                            "input sequence_lens: entry {b} is {bad}, expected 0 ≤ length ≤ \
                             {t_len} (sequence length)"
                        ))
                        .into());
                }
                l.into_iter().map(|n| n as usize).collect()
            }
        };
        let state = |name: &str, ix: Option<usize>| -> TractResult<Option<ArrayView3<f32>>> {
            let Some(i) = ix else { return Ok(None) };
            let v = inputs[i].to_plain_array_view::<f32>()?;
            if v.shape() != [dirs, batch, h] {
                return Err(spec
                    .error(format!(
                        "input {name}: expected shape {} ([num_directions, batch, hidden_size]), \
                         found {}",
                        shape_string([dirs, batch, h]),
                        shape_string(v.shape())
                    ))
                    .into());
            }
            Ok(Some(v.into_dimensionality::<Ix3>()?))
        };
        let h0 = state("initial_h", h0_ix)?;
        let c0 = state("initial_c", c0_ix)?;
        let x = x.into_dimensionality::<Ix3>()?;

        let slots = &spec.lstm.slots;
        let mut y = slots
            .y
            .map(|_| Tensor::zero::<f32>(&[t_len, dirs, batch, h]))
            .transpose()?;
        let mut y_h = Tensor::zero::<f32>(&[dirs, batch, h])?;
        let mut y_c = Tensor::zero::<f32>(&[dirs, batch, h])?;
        {
            let mut y_view = match y.as_mut() {
                Some(t) => Some(
                    t.to_plain_array_view_mut::<f32>()?
                        .into_dimensionality::<Ix4>()?,
                ),
                None => None,
            };
            let mut y_dirs: Vec<Option<ArrayViewMut3<f32>>> = match y_view.as_mut() {
                Some(v) => y_directions_as_seq_major(v, Layout::SeqMajor)
                    .into_iter()
                    .map(Some)
                    .collect(),
                None => (0..dirs).map(|_| None).collect(),
            };
            let mut y_h_view = y_h
                .to_plain_array_view_mut::<f32>()?
                .into_dimensionality::<Ix3>()?;
            let mut y_c_view = y_c
                .to_plain_array_view_mut::<f32>()?
                .into_dimensionality::<Ix3>()?;
            let clip = Clip::new(spec.lstm.clip());
            for (d, dw) in weights.dirs.iter().enumerate() {
                dw.run(
                    x,
                    &lens,
                    spec.lstm.direction.is_reverse(d),
                    h0.map(|s| state_direction(s, Layout::SeqMajor, d)),
                    c0.map(|s| state_direction(s, Layout::SeqMajor, d)),
                    clip,
                    spec.lstm.input_forget,
                    DirOutputs {
                        y: y_dirs[d].take(),
                        y_h: state_direction_mut(y_h_view.view_mut(), Layout::SeqMajor, d),
                        y_c: state_direction_mut(y_c_view.view_mut(), Layout::SeqMajor, d),
                    },
                );
            }
        }
        let outs = [(slots.y, y), (slots.y_h, Some(y_h)), (slots.y_c, Some(y_c))];
        Ok(outs
            .into_iter()
            .filter_map(|(slot, t)| slot.and(t))
            .map(|t| t.into_tvalue())
            .collect())
    }
}

impl Op for QuantizedLstm {
    fn name(&self) -> StaticName {
        format!("Native{OP_TYPE}").into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "direction={} hidden={} weights={}",
            self.spec.lstm.direction.as_str(),
            self.spec.hidden,
            if self.weights.is_some() {
                "prepared"
            } else {
                "inputs"
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QuantizedLstm {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.evaluate(inputs)
    }

    op_out_of_plan!();
}

impl TypedOp for QuantizedLstm {
    as_op!();

    /// Weights computed by nodes become constants once tract folds them; they are then
    /// prepared once, here, instead of on every run.
    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let Some((op, per_run)) = self.prepared(model, &node.inputs)? else {
            return Ok(None);
        };
        Ok(Some(TypedModelPatch::replace_single_op(
            model, node, &per_run, op,
        )?))
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let spec = &self.spec;
        let x = inputs[0];
        if x.rank() != 3 {
            return Err(spec
                .error(format!(
                    "input X: expected rank 3, found shape {:?}",
                    x.shape
                ))
                .into());
        }
        let (t, b) = (&x.shape[0], &x.shape[1]);
        let d = spec.dirs().to_dim();
        let h = spec.hidden.to_dim();
        let slots = &spec.lstm.slots;
        let mut present: Vec<(usize, TypedFact)> = vec![];
        if let Some(s) = slots.y {
            let shape = tvec![t.clone(), d.clone(), b.clone(), h.clone()];
            present.push((s, f32::fact(&*shape)));
        }
        for s in [slots.y_h, slots.y_c].into_iter().flatten() {
            let shape = tvec![d.clone(), b.clone(), h.clone()];
            present.push((s, f32::fact(&*shape)));
        }
        present.sort_by_key(|(s, _)| *s);
        Ok(present.into_iter().map(|(_, f)| f).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_parameters_follow_onnxruntime() {
        // Range [-1, 2]: scale 3/255, zero point round(85.0) = 85.
        let (scale, zp) = quantization_params([-1.0, 2.0, 0.5]);
        assert_eq!(scale.to_bits(), 0x3c40c0c1);
        assert_eq!(zp, 85);
        // 0.5 / scale = 42.5 rounds half to even: 42.
        let q: Vec<u8> = [-1.0, 2.0, 0.5, 9.0, -9.0]
            .iter()
            .map(|&v| quantize(v, scale, zp))
            .collect();
        assert_eq!(q, [0, 255, 127, 255, 0]);
        // The range always includes 0; an all-zero range has scale 1.
        assert_eq!(quantization_params([3.0, 1.0]), (3.0 / 255.0, 0));
        assert_eq!(quantization_params([-2.0f32]), (2.0 / 255.0, 255));
        assert_eq!(quantization_params([0.0f32; 4]), (1.0, 0));
        assert_eq!(quantization_params(std::iter::empty()), (1.0, 0));
    }

    #[test]
    fn integer_products_are_exact_and_rescaled_per_column() {
        // a: 2 rows × 3, w: 3 × 2.
        let a = [1, -2, 3, 255, -255, 0];
        let w = IntMatrix::new(3, 2, &[1, -1, 2, 255, -255, 3]);
        let mut out = vec![10.0f32; 4];
        int_product(&a, 2, &w, &[0.5, 2.0], &mut out, true);
        // Row 0: 1·1 − 2·2 + 3·(−255) = −768; 1·(−1) − 2·255 + 3·3 = −502.
        // Row 1: 255·1 − 255·2 = −255; 255·(−1) − 255·255 = −65280.
        assert_eq!(
            out,
            [10.0 - 384.0, 10.0 - 1004.0, 10.0 - 127.5, 10.0 - 130560.0]
        );
        int_product(&a, 2, &w, &[1.0], &mut out, false);
        assert_eq!(out, [-768.0, -502.0, -255.0, -65280.0]);
    }

    fn node(domain: &str) -> NodeProto {
        use tract_onnx::pb::attribute_proto::AttributeType;
        use tract_onnx::pb::AttributeProto;
        let mut n = NodeProto {
            name: "q".into(),
            op_type: OP_TYPE.into(),
            domain: domain.into(),
            ..Default::default()
        };
        n.input = INPUT_NAMES.iter().map(|s| s.to_string()).collect();
        for i in [3, 4, 7] {
            n.input[i].clear();
        }
        n.output = vec!["Y".into(), "".into(), "Y_c".into()];
        n.attribute.push(AttributeProto {
            name: "hidden_size".into(),
            r#type: AttributeType::Int as i32,
            i: 3,
            ..Default::default()
        });
        n
    }

    #[test]
    fn spec_slots_count_only_present_inputs() {
        let spec = QuantSpec::from_node(&node(DOMAIN)).unwrap();
        assert_eq!(spec.hidden, 3);
        let s = spec.lstm.slots;
        assert_eq!((s.b, s.sequence_lens, s.p), (None, None, None));
        assert_eq!((s.initial_h, s.initial_c), (Some(3), Some(4)));
        assert_eq!((s.y, s.y_h, s.y_c), (Some(0), None, Some(1)));
        assert_eq!(spec.quant_slots, [5, 6, 7, 8]);
        assert_eq!(spec.input_count(), 9);
    }

    #[test]
    fn the_domain_and_hidden_size_are_required() {
        let e = QuantSpec::from_node(&node("")).unwrap_err();
        assert_eq!(e.op, "ai.onnx DynamicQuantizeLSTM");
        assert!(e.message.contains("found it in domain 'ai.onnx'"), "{e}");
        let mut n = node(DOMAIN);
        n.attribute.clear();
        let e = QuantSpec::from_node(&n).unwrap_err();
        assert!(e.to_string().contains("'hidden_size' is required"), "{e}");
        let mut n = node(DOMAIN);
        n.input.pop();
        let e = QuantSpec::from_node(&n).unwrap_err();
        assert!(e.to_string().contains("expected 12 inputs"), "{e}");
    }
}
