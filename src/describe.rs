//! What the ONNX protobuf itself says about a model, before tract types anything: opsets,
//! inputs and outputs as declared, an op histogram and every recurrent node, subgraphs of
//! `If`/`Loop`/`Scan` included. `inspect` reports this even for models that tract cannot type
//! until it sees actual input shapes, or cannot load at all.

use std::collections::BTreeMap;

use tract_hir::internal::DatumType;
use tract_onnx::pb::{tensor_shape_proto::dimension::Value as DimValue, type_proto, GraphProto};
use tract_onnx::pb::{ModelProto, NodeProto, ValueInfoProto};

use crate::attrs::{NodeSpec, OpKind};
use crate::error::NodeError;
use crate::io_info::{Dim, IoInfo};

/// A recurrent node found in the protobuf, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundNode {
    /// The parsed and checked attributes.
    pub spec: NodeSpec,
    /// `None` in the main graph; otherwise the chain of subgraphs that holds it, e.g.
    /// `If 'If_0' else_branch > If '/decoder/If_1' then_branch`.
    pub subgraph: Option<String>,
    /// Whether W and R (and B, P when given) are initializers or `Constant` outputs, so that
    /// the cells can be built once rather than on every run.
    pub constant_weights: bool,
    /// onnxruntime's `com.microsoft` DynamicQuantizeLSTM (int8 weights), described by its
    /// LSTM attributes.
    pub quantized: bool,
}

/// The protobuf's description of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Every imported opset, `ai.onnx` for the default domain.
    pub opsets: Vec<(String, i64)>,
    /// The default-domain opset.
    pub opset: i64,
    /// Graph inputs that are not initializers, as declared.
    pub inputs: Vec<IoInfo>,
    /// Graph inputs that are initializers too (IR version 4 and later): defaults a caller may
    /// override, as declared (the initializer's own shape where the input declares none).
    pub defaults: Vec<IoInfo>,
    /// Graph outputs, as declared.
    pub outputs: Vec<IoInfo>,
    /// How many nodes of each op type, subgraphs included, most frequent first.
    pub op_counts: Vec<(String, usize)>,
    /// RNN, LSTM and GRU nodes, in graph order, subgraphs included.
    pub recurrent: Vec<FoundNode>,
}

impl ModelInfo {
    /// Describes a model file: fails where [`crate::Model::load`] refuses the file itself (not
    /// a regular file, not an ONNX model, external data missing or outside its directory), or
    /// on a recurrent node whose attributes break the spec, but not where tract cannot load
    /// the graph.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> crate::Result<ModelInfo> {
        let path = path.as_ref();
        let bytes = crate::files::read_model_file(path)?;
        let invalid = |message: String| crate::Error::InvalidModel {
            what: path.display().to_string(),
            message,
        };
        let proto = crate::sniff::decode_model(&bytes).map_err(invalid)?;
        let graph = proto.graph.as_ref().expect("decode_model checks the graph");
        let dir = path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        });
        crate::precheck::check_model(&proto, graph, dir).map_err(invalid)?;
        Ok(ModelInfo::from_proto(&proto)?)
    }

    /// Describes a decoded model. Fails only on a recurrent node whose attributes break the
    /// spec (the error names it).
    pub fn from_proto(proto: &ModelProto) -> Result<ModelInfo, NodeError> {
        let opsets: Vec<(String, i64)> = proto
            .opset_import
            .iter()
            .map(|o| {
                let domain = if o.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &o.domain
                };
                (domain.to_string(), o.version)
            })
            .collect();
        let opset = opsets
            .iter()
            .find(|(d, _)| d == "ai.onnx")
            .map(|(_, v)| *v)
            .unwrap_or(0);
        let mut info = ModelInfo {
            opsets,
            opset,
            inputs: vec![],
            defaults: vec![],
            outputs: vec![],
            op_counts: vec![],
            recurrent: vec![],
        };
        let Some(graph) = proto.graph.as_ref() else {
            return Ok(info);
        };
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        info.inputs = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .map(declared)
            .collect();
        // Before IR version 4 every initializer had to be listed as an input: a constant.
        if proto.ir_version >= 4 {
            info.defaults = graph
                .input
                .iter()
                .filter_map(|i| {
                    let t = graph.initializer.iter().find(|t| t.name == i.name)?;
                    let mut info = declared(i);
                    info.dtype = onnx_dtype(t.data_type).unwrap_or(info.dtype);
                    let has_shape = i.r#type.as_ref().is_some_and(|t| match &t.value {
                        Some(type_proto::Value::TensorType(t)) => t.shape.is_some(),
                        _ => false,
                    });
                    if !has_shape {
                        info.shape = t
                            .dims
                            .iter()
                            .map(|&d| Dim::Fixed(d.max(0) as usize))
                            .collect();
                    }
                    Some(info)
                })
                .collect();
        }
        info.outputs = graph.output.iter().map(declared).collect();
        let mut counts = BTreeMap::new();
        walk(graph, &[], opset, &mut counts, &mut info.recurrent)?;
        let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        info.op_counts = counts;
        Ok(info)
    }
}

/// Counts ops and collects recurrent nodes in `graph` and below; `scopes` are the graphs
/// enclosing it, innermost last (their constants are visible to it).
fn walk<'g>(
    graph: &'g GraphProto,
    scopes: &[(&'g GraphProto, String)],
    opset: i64,
    counts: &mut BTreeMap<String, usize>,
    found: &mut Vec<FoundNode>,
) -> Result<(), NodeError> {
    let here: Vec<&GraphProto> = scopes.iter().map(|(g, _)| *g).chain([graph]).collect();
    // Computed once per graph, and only for a graph holding a recurrent node: computed for
    // every subgraph, it would cost the enclosing graphs' size once per If or Loop body.
    let mut constants = None;
    for node in &graph.node {
        let op = if node.domain.is_empty() || node.domain == "ai.onnx" {
            node.op_type.clone()
        } else {
            format!("{}:{}", node.domain, node.op_type)
        };
        *counts.entry(op).or_default() += 1;
        let quantized =
            node.domain == crate::qlstm::DOMAIN && node.op_type == crate::qlstm::OP_TYPE;
        if quantized || node.domain.is_empty() && OpKind::from_op_type(&node.op_type).is_some() {
            let spec = if quantized {
                crate::qlstm::QuantSpec::from_node(node)?.lstm
            } else {
                NodeSpec::from_node(node, opset)?
            };
            let constants = constants.get_or_insert_with(|| constant_values(&here));
            let constant_weights = weight_inputs(node, &spec)
                .iter()
                .all(|name| constants.contains(name));
            found.push(FoundNode {
                spec,
                subgraph: (!scopes.is_empty()).then(|| {
                    scopes
                        .iter()
                        .map(|(_, s)| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" > ")
                }),
                constant_weights,
                quantized,
            });
        }
        for attr in &node.attribute {
            for sub in attr.g.iter().chain(&attr.graphs) {
                let mut inner = scopes.to_vec();
                inner.push((
                    graph,
                    format!("{} '{}' {}", node.op_type, node.name, attr.name),
                ));
                // The enclosing graph of `sub` is `graph`; keep it as the last scope.
                let inner: Vec<(&GraphProto, String)> = inner;
                walk(sub, &inner, opset, counts, found)?;
            }
        }
    }
    Ok(())
}

/// The names of a recurrent node's weight inputs (W, R, and B, P when present).
fn weight_inputs<'n>(node: &'n NodeProto, spec: &NodeSpec) -> Vec<&'n str> {
    [Some(1), Some(2), spec.slots.b, spec.slots.p]
        .into_iter()
        .flatten()
        .filter_map(|slot| node.input.get(slot).map(String::as_str))
        .filter(|name| !name.is_empty())
        .collect()
}

/// The values of `graphs` (a graph and those enclosing it) known before anything runs:
/// initializers, `Constant` outputs, and what shape-only ops (Unsqueeze, Transpose, Cast...)
/// make of them alone, as exporters write around weights (tract folds them at load).
fn constant_values<'g>(graphs: &[&'g GraphProto]) -> std::collections::HashSet<&'g str> {
    const PURE: &[&str] = &[
        "Constant",
        "Identity",
        "Unsqueeze",
        "Squeeze",
        "Reshape",
        "Transpose",
        "Cast",
        "Concat",
        "Slice",
        "Gather",
        "Split",
        "Flatten",
    ];
    let mut known: std::collections::HashSet<&str> = graphs
        .iter()
        .flat_map(|g| g.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    for graph in graphs {
        for node in &graph.node {
            let pure = node.domain.is_empty() && PURE.contains(&node.op_type.as_str());
            if pure
                && node
                    .input
                    .iter()
                    .all(|i| i.is_empty() || known.contains(i.as_str()))
            {
                known.extend(node.output.iter().map(String::as_str));
            }
        }
    }
    known
}

/// A graph input or output as declared: dims with a value are fixed, with a name symbolic,
/// with neither `?`.
fn declared(value: &ValueInfoProto) -> IoInfo {
    let tensor = value.r#type.as_ref().and_then(|t| match &t.value {
        Some(type_proto::Value::TensorType(t)) => Some(t),
        _ => None,
    });
    let dtype = tensor
        .and_then(|t| onnx_dtype(t.elem_type))
        .unwrap_or(DatumType::F32);
    let shape = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimValue::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                    Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Symbol(p.clone()),
                    _ => Dim::Symbol("?".into()),
                })
                .collect()
        })
        .unwrap_or_default();
    IoInfo {
        name: value.name.clone(),
        dtype,
        shape,
    }
}

/// The element type of an ONNX `TensorProto.DataType` code.
pub(crate) fn onnx_dtype(code: i32) -> Option<DatumType> {
    Some(match code {
        1 => DatumType::F32,
        2 => DatumType::U8,
        3 => DatumType::I8,
        4 => DatumType::U16,
        5 => DatumType::I16,
        6 => DatumType::I32,
        7 => DatumType::I64,
        9 => DatumType::Bool,
        10 => DatumType::F16,
        11 => DatumType::F64,
        12 => DatumType::U32,
        13 => DatumType::U64,
        _ => return None,
    })
}
