//! Reading a `DynamicQuantizeLSTM` node: its inputs and attributes checked ([`QuantSpec`]),
//! the parsers registered, and the inference-time expansion that wires the typed op.

use std::sync::Arc;

use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;

use super::op::QuantizedLstm;
use super::{dynamic_quantize, mlas, DOMAIN, OP_NAME, OP_TYPE};
use crate::attrs::NodeSpec;
use crate::error::NodeError;

pub(super) const INPUT_NAMES: [&str; 12] = [
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

pub(super) const ATTRIBUTES: [&str; 7] = [
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

pub(super) fn parse_node(
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
    pub(super) fn input_count(&self) -> usize {
        self.lstm.slots.input_count() + 4
    }

    pub(super) fn dirs(&self) -> usize {
        self.lstm.direction.num_directions()
    }
}

/// Refuses `Affine`, `ScaledTanh` and `ThresholdedRelu` whose parameters run out of the
/// alpha/beta lists: onnxruntime falls back to 0 for them, the ONNX spec (and rnn-run's LSTM)
/// to 1.
pub(super) fn check_activation_defaults(
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
pub(super) struct QuantExpansion {
    pub(super) spec: Arc<QuantSpec>,
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
