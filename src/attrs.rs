//! Node attributes: one ONNX `RNN` / `LSTM` / `GRU` node read into a validated [`NodeSpec`].
//!
//! Everything the spec says about attributes lives here (defaults, which opset knows which
//! attribute, how `activation_alpha`/`activation_beta` are shared out), so the cells and the
//! tract op work from a description that is already known to be consistent. Every error names
//! the node, the attribute, and what was expected versus found.

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::{AttributeProto, NodeProto};

use crate::error::NodeError;

mod activation;
pub use activation::{Activation, F32Bits, ACTIVATION_NAMES};

/// Which recurrent operator a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `RNN`: one gate.
    Rnn,
    /// `LSTM`: gates i, o, f, c.
    Lstm,
    /// `GRU`: gates z, r, h.
    Gru,
}

impl OpKind {
    /// Parses an ONNX op type.
    pub fn from_op_type(op_type: &str) -> Option<OpKind> {
        match op_type {
            "RNN" => Some(OpKind::Rnn),
            "LSTM" => Some(OpKind::Lstm),
            "GRU" => Some(OpKind::Gru),
            _ => None,
        }
    }

    /// The ONNX op type.
    pub fn op_type(self) -> &'static str {
        match self {
            OpKind::Rnn => "RNN",
            OpKind::Lstm => "LSTM",
            OpKind::Gru => "GRU",
        }
    }

    /// Number of gates stacked in W and R.
    pub fn gates(self) -> usize {
        match self {
            OpKind::Rnn => 1,
            OpKind::Lstm => 4,
            OpKind::Gru => 3,
        }
    }

    /// How many activation functions one direction takes (f; f, g; f, g, h).
    pub fn activations_per_direction(self) -> usize {
        match self {
            OpKind::Rnn => 1,
            OpKind::Gru => 2,
            OpKind::Lstm => 3,
        }
    }

    fn default_activations(self) -> &'static [Activation] {
        match self {
            OpKind::Rnn => &[Activation::Tanh],
            OpKind::Gru => &[Activation::Sigmoid, Activation::Tanh],
            OpKind::Lstm => &[Activation::Sigmoid, Activation::Tanh, Activation::Tanh],
        }
    }
}

/// The `direction` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Steps 0 to T-1.
    Forward,
    /// Steps T-1 down to 0.
    Reverse,
    /// Both, forward's outputs first.
    Bidirectional,
}

impl Direction {
    /// 1 or 2.
    pub fn num_directions(self) -> usize {
        if self == Direction::Bidirectional {
            2
        } else {
            1
        }
    }

    /// Whether direction index `d` (0 or 1) of this node runs backwards in time.
    pub fn is_reverse(self, d: usize) -> bool {
        self == Direction::Reverse || (self == Direction::Bidirectional && d == 1)
    }

    /// The attribute's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
            Direction::Bidirectional => "bidirectional",
        }
    }
}

/// The `layout` attribute (opset 14+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// 0: X is `[seq, batch, input]`, Y is `[seq, dirs, batch, hidden]`.
    SeqMajor,
    /// 1: X is `[batch, seq, input]`, Y is `[batch, seq, dirs, hidden]`.
    BatchMajor,
}

/// Where each optional input and output sits among the node's *present* inputs/outputs.
///
/// ONNX marks an absent optional input with an empty name; tract drops those, so input 5 in
/// the spec may be input 3 of the op. `None` means absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(missing_docs)]
pub struct Slots {
    pub b: Option<usize>,
    pub sequence_lens: Option<usize>,
    pub initial_h: Option<usize>,
    pub initial_c: Option<usize>,
    pub p: Option<usize>,
    pub y: Option<usize>,
    pub y_h: Option<usize>,
    pub y_c: Option<usize>,
}

impl Slots {
    /// Number of present inputs (X, W, R and the optional ones).
    pub fn input_count(&self) -> usize {
        3 + [
            self.b,
            self.sequence_lens,
            self.initial_h,
            self.initial_c,
            self.p,
        ]
        .iter()
        .filter(|s| s.is_some())
        .count()
    }

    /// The slots of the same node with initial_h (and, for an LSTM, initial_c) among its
    /// inputs and Y_h (and Y_c) among its outputs, present or not before.
    pub fn with_states(&self, lstm: bool) -> Slots {
        // Inputs in ONNX order: X, W, R, B, sequence_lens, initial_h, initial_c, P.
        let present = [
            self.b.is_some(),
            self.sequence_lens.is_some(),
            true,
            lstm || self.initial_c.is_some(),
            self.p.is_some(),
        ];
        let mut next = 3;
        let mut place = |here: bool| {
            here.then(|| {
                next += 1;
                next - 1
            })
        };
        let [b, sequence_lens, initial_h, initial_c, p] = present.map(&mut place);
        let outputs = [self.y.is_some(), true, lstm || self.y_c.is_some()];
        let mut next = 0;
        let mut place = |here: bool| {
            here.then(|| {
                next += 1;
                next - 1
            })
        };
        let [y, y_h, y_c] = outputs.map(&mut place);
        Slots {
            b,
            sequence_lens,
            initial_h,
            initial_c,
            p,
            y,
            y_h,
            y_c,
        }
    }

    /// Number of present outputs.
    pub fn output_count(&self) -> usize {
        [self.y, self.y_h, self.y_c]
            .iter()
            .filter(|s| s.is_some())
            .count()
    }
}

/// One recurrent node, fully described and checked against the spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeSpec {
    /// Node name (or its first output when the node is unnamed), for messages.
    pub name: String,
    /// RNN, LSTM or GRU.
    pub op: OpKind,
    /// The default-domain opset the model imports.
    pub opset: i64,
    /// Forward, reverse or both.
    pub direction: Direction,
    /// The `hidden_size` attribute when given; otherwise derived from R at load.
    pub hidden_size: Option<usize>,
    /// Sequence- or batch-major tensors.
    pub layout: Layout,
    /// `activations_per_direction × num_directions` functions, forward's first.
    pub activations: Vec<Activation>,
    /// Whether `activations` came from the attribute (for `inspect`).
    pub activations_given: bool,
    /// Bound on gate pre-activations.
    pub clip: Option<F32Bits>,
    /// LSTM: couple the forget gate to the input gate (f = 1 - i).
    pub input_forget: bool,
    /// GRU: apply the reset gate after the recurrent product.
    pub linear_before_reset: bool,
    /// Which optional inputs/outputs are present.
    pub slots: Slots,
}

impl NodeSpec {
    /// Reads and checks a node's attributes and input/output slots.
    pub fn from_node(node: &NodeProto, opset: i64) -> Result<NodeSpec, NodeError> {
        let name = if node.name.is_empty() {
            let first = node.output.iter().find(|o| !o.is_empty());
            first
                .map(|o| format!("(producing {o})"))
                .unwrap_or_else(|| "(unnamed)".into())
        } else {
            node.name.clone()
        };
        let err = |message: String| NodeError {
            node: name.clone(),
            op: node.op_type.clone(),
            message,
        };
        let op = OpKind::from_op_type(&node.op_type)
            .ok_or_else(|| err(format!("'{}' is not a recurrent op", node.op_type)))?;
        let attrs = Attrs {
            list: &node.attribute,
            err: &err,
        };
        attrs.check_known(op, opset)?;

        let direction = match attrs.string("direction")?.as_deref() {
            None | Some("forward") => Direction::Forward,
            Some("reverse") => Direction::Reverse,
            Some("bidirectional") => Direction::Bidirectional,
            Some(other) => {
                return Err(err(format!(
                    "attribute 'direction': expected forward, reverse or bidirectional, found '{other}'"
                )))
            }
        };
        let hidden_size = match attrs.int("hidden_size")? {
            None => None,
            Some(h) if h > 0 => Some(h as usize),
            Some(h) => {
                return Err(err(format!(
                    "attribute 'hidden_size': expected > 0, found {h}"
                )))
            }
        };
        let layout = match attrs.int("layout")? {
            None | Some(0) => Layout::SeqMajor,
            Some(1) => Layout::BatchMajor,
            Some(other) => {
                return Err(err(format!(
                    "attribute 'layout': expected 0 or 1, found {other}"
                )))
            }
        };
        let clip = match attrs.float("clip")? {
            None => None,
            Some(c) if c > 0.0 && !c.is_nan() => Some(F32Bits::new(c)),
            Some(c) => return Err(err(format!("attribute 'clip': expected > 0, found {c}"))),
        };
        let input_forget = attrs.flag("input_forget")?;
        let linear_before_reset = attrs.flag("linear_before_reset")?;

        let per_dir = op.activations_per_direction();
        let dirs = direction.num_directions();
        let names = attrs.strings("activations")?;
        let alphas = attrs.floats("activation_alpha")?.unwrap_or_default();
        let betas = attrs.floats("activation_beta")?.unwrap_or_default();
        let activations_given = names.is_some();
        let activations = match names {
            None => {
                if !alphas.is_empty() || !betas.is_empty() {
                    return Err(err(
                        "attribute 'activation_alpha'/'activation_beta' given without 'activations'"
                            .into(),
                    ));
                }
                op.default_activations().repeat(dirs)
            }
            Some(names) => {
                if names.len() != per_dir * dirs {
                    return Err(err(format!(
                        "attribute 'activations': expected {} functions ({per_dir} per direction × {dirs} direction{}), found {} ({})",
                        per_dir * dirs,
                        if dirs == 1 { "" } else { "s" },
                        names.len(),
                        names.join(", ")
                    )));
                }
                let (want_a, want_b) = names.iter().fold((0, 0), |(a, b), n| {
                    let (ta, tb) = Activation::takes(n);
                    (a + ta as usize, b + tb as usize)
                });
                if alphas.len() > want_a || betas.len() > want_b {
                    return Err(err(format!(
                        "attributes 'activation_alpha'/'activation_beta': the activations ({}) take at most {want_a} alpha and {want_b} beta values, found {} and {}",
                        names.join(", "),
                        alphas.len(),
                        betas.len()
                    )));
                }
                let mut a = alphas.iter().copied();
                let mut b = betas.iter().copied();
                names
                    .iter()
                    .map(|n| {
                        Activation::from_name(n, &mut a, &mut b).ok_or_else(|| {
                            err(format!(
                                "attribute 'activations': unknown function '{n}' (expected one of {})",
                                ACTIVATION_NAMES.join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };

        if op != OpKind::Lstm && input_forget {
            return Err(err("attribute 'input_forget' applies to LSTM only".into()));
        }

        // Absent optional inputs are empty names; tract keeps only the present ones.
        let slot = |i: usize, list: &[String]| -> Option<usize> {
            list.get(i)
                .filter(|s| !s.is_empty())
                .map(|_| list[..i].iter().filter(|s| !s.is_empty()).count())
        };
        for i in 0..3 {
            if slot(i, &node.input).is_none() {
                return Err(err(format!(
                    "input {} ({}) is required but missing",
                    i,
                    ["X", "W", "R"][i]
                )));
            }
        }
        let max_inputs = if op == OpKind::Lstm { 8 } else { 6 };
        if node.input.len() > max_inputs {
            return Err(err(format!(
                "expected at most {max_inputs} inputs, found {}",
                node.input.len()
            )));
        }
        let b = slot(3, &node.input);
        let sequence_lens = slot(4, &node.input);
        let initial_h = slot(5, &node.input);
        let initial_c = slot(6, &node.input);
        let p = slot(7, &node.input);
        let max_outputs = if op == OpKind::Lstm { 3 } else { 2 };
        if node.output.len() > max_outputs {
            return Err(err(format!(
                "expected at most {max_outputs} outputs, found {}",
                node.output.len()
            )));
        }
        let y = slot(0, &node.output);
        let y_h = slot(1, &node.output);
        let y_c = slot(2, &node.output);

        Ok(NodeSpec {
            name,
            op,
            opset,
            direction,
            hidden_size,
            layout,
            activations,
            activations_given,
            clip,
            input_forget,
            linear_before_reset,
            slots: Slots {
                b,
                sequence_lens,
                initial_h,
                initial_c,
                p,
                y,
                y_h,
                y_c,
            },
        })
    }

    /// The activation functions of direction `d`.
    pub fn activations_of(&self, d: usize) -> &[Activation] {
        let n = self.op.activations_per_direction();
        &self.activations[d * n..(d + 1) * n]
    }

    /// The clip bound, if any.
    pub fn clip(&self) -> Option<f32> {
        self.clip.map(F32Bits::get)
    }

    /// An error about this node.
    pub fn error(&self, message: impl Into<String>) -> NodeError {
        NodeError {
            node: self.name.clone(),
            op: self.op.op_type().into(),
            message: message.into(),
        }
    }
}

/// Typed access to a node's attribute list, with messages that name the attribute.
struct Attrs<'a, E: Fn(String) -> NodeError> {
    list: &'a [AttributeProto],
    err: &'a E,
}

impl<E: Fn(String) -> NodeError> Attrs<'_, E> {
    /// Refuses attributes this op does not define at this opset: a misspelt or misplaced
    /// attribute would otherwise be silently ignored, which is the failure this crate exists
    /// to avoid.
    fn check_known(&self, op: OpKind, opset: i64) -> Result<(), NodeError> {
        for a in self.list {
            let known = match a.name.as_str() {
                "activation_alpha" | "activation_beta" | "activations" | "clip" | "direction"
                | "hidden_size" => true,
                "input_forget" => op == OpKind::Lstm,
                "linear_before_reset" => op == OpKind::Gru && (opset == 0 || opset >= 3),
                "output_sequence" => opset != 0 && opset < 7,
                "layout" => opset == 0 || opset >= 14,
                _ => false,
            };
            if !known {
                return Err((self.err)(format!(
                    "attribute '{}' is not defined for {} at opset {opset}",
                    a.name,
                    op.op_type()
                )));
            }
        }
        Ok(())
    }

    fn find(&self, name: &str, ty: AttributeType) -> Result<Option<&AttributeProto>, NodeError> {
        let Some(a) = self.list.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        // Old exporters leave `type` unset; accept that when the matching field is filled.
        if a.r#type != ty as i32 && a.r#type != AttributeType::Undefined as i32 {
            let found = AttributeType::try_from(a.r#type)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| a.r#type.to_string());
            return Err((self.err)(format!(
                "attribute '{name}': expected type {}, found {found}",
                ty.as_str_name()
            )));
        }
        Ok(Some(a))
    }

    fn int(&self, name: &str) -> Result<Option<i64>, NodeError> {
        Ok(self.find(name, AttributeType::Int)?.map(|a| a.i))
    }

    fn flag(&self, name: &str) -> Result<bool, NodeError> {
        Ok(self.int(name)?.unwrap_or(0) != 0)
    }

    fn float(&self, name: &str) -> Result<Option<f32>, NodeError> {
        Ok(self.find(name, AttributeType::Float)?.map(|a| a.f))
    }

    fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, NodeError> {
        Ok(self
            .find(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }

    fn string(&self, name: &str) -> Result<Option<String>, NodeError> {
        self.find(name, AttributeType::String)?
            .map(|a| self.utf8(name, &a.s))
            .transpose()
    }

    fn strings(&self, name: &str) -> Result<Option<Vec<String>>, NodeError> {
        self.find(name, AttributeType::Strings)?
            .map(|a| a.strings.iter().map(|s| self.utf8(name, s)).collect())
            .transpose()
    }

    fn utf8(&self, name: &str, bytes: &[u8]) -> Result<String, NodeError> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| (self.err)(format!("attribute '{name}': not valid UTF-8")))
    }
}
