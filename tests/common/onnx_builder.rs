//! Builds single-node ONNX models (RNN / LSTM / GRU) with prost types from
//! `tract_onnx::pb`, for feeding the library under test.
#![allow(dead_code)]

use super::proto::{
    attr_float, attr_floats, attr_int, attr_string, attr_strings, fixed, value_info,
};
use super::reference::{OpKind, RefAttrs, RefInputs};
use ndarray::ArrayD;
use prost::Message;
use tract_onnx::pb::{
    tensor_proto::DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    ValueInfoProto,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt {
    F32,
    F64,
}

impl Dt {
    pub fn onnx(self) -> DataType {
        match self {
            Dt::F32 => DataType::Float,
            Dt::F64 => DataType::Double,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BuildOpts {
    pub opset: i64,
    pub dtype: Dt,
    pub has_b: bool,
    pub has_seq_lens: bool,
    pub has_h0: bool,
    pub has_c0: bool,
    pub has_p: bool,
    pub want_y: bool,
    pub want_y_h: bool,
    pub want_y_c: bool,
    pub weights_as_initializers: bool,
}

impl BuildOpts {
    /// Options matching the optional inputs present in `inputs`, all outputs
    /// wanted (Y_c only for LSTM), weights as graph inputs.
    pub fn for_inputs(op: OpKind, opset: i64, dtype: Dt, inputs: &RefInputs) -> BuildOpts {
        BuildOpts {
            opset,
            dtype,
            has_b: inputs.b.is_some(),
            has_seq_lens: inputs.sequence_lens.is_some(),
            has_h0: inputs.initial_h.is_some(),
            has_c0: inputs.initial_c.is_some(),
            has_p: inputs.p.is_some(),
            want_y: true,
            want_y_h: true,
            want_y_c: op == OpKind::Lstm,
            weights_as_initializers: false,
        }
    }
}

/// Encode a float tensor as an initializer. `raw` selects raw_data
/// (little-endian bytes) vs float_data/double_data.
pub fn tensor_proto(name: &str, a: &ArrayD<f64>, dt: Dt, raw: bool) -> TensorProto {
    let mut t = TensorProto {
        name: name.to_string(),
        dims: a.shape().iter().map(|&d| d as i64).collect(),
        data_type: dt.onnx() as i32,
        ..Default::default()
    };
    let vals: Vec<f64> = a.iter().copied().collect(); // logical (row-major) order
    match (dt, raw) {
        (Dt::F32, true) => {
            t.raw_data = vals
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect()
        }
        (Dt::F32, false) => t.float_data = vals.iter().map(|&v| v as f32).collect(),
        (Dt::F64, true) => t.raw_data = vals.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        (Dt::F64, false) => t.double_data = vals,
    }
    t
}

/// Build a one-node model. Returns (model bytes, graph input names in order,
/// graph output names in order).
///
/// Node inputs are named X, W, R, B, sequence_lens, initial_h, initial_c, P;
/// absent optional inputs in the middle are "" and trailing ones are omitted.
/// Node outputs are Y, Y_h, Y_c likewise.
pub fn build_node_model(
    attrs: &RefAttrs,
    opts: &BuildOpts,
    inputs: &RefInputs,
) -> (Vec<u8>, Vec<String>, Vec<String>) {
    let op = attrs.op;
    let elem = opts.dtype.onnx();
    assert!(
        attrs.layout == 0 || opts.opset >= 14,
        "layout=1 needs opset >= 14"
    );
    if opts.has_b {
        assert!(inputs.b.is_some(), "builder: has_b but inputs.b is None");
    }
    if opts.has_seq_lens {
        assert!(
            inputs.sequence_lens.is_some(),
            "builder: has_seq_lens but no sequence_lens"
        );
    }
    if opts.has_h0 {
        assert!(
            inputs.initial_h.is_some(),
            "builder: has_h0 but no initial_h"
        );
    }
    if opts.has_c0 {
        assert!(
            op == OpKind::Lstm && inputs.initial_c.is_some(),
            "builder: bad has_c0"
        );
    }
    if opts.has_p {
        assert!(
            op == OpKind::Lstm && inputs.p.is_some(),
            "builder: bad has_p"
        );
    }
    if opts.want_y_c {
        assert!(op == OpKind::Lstm, "builder: Y_c only exists for LSTM");
    }

    // --- attributes
    let mut attributes = vec![attr_int("hidden_size", attrs.hidden_size as i64)];
    if attrs.direction != "forward" {
        attributes.push(attr_string("direction", &attrs.direction));
    }
    if attrs.layout != 0 {
        attributes.push(attr_int("layout", attrs.layout));
    }
    if let Some(acts) = &attrs.activations {
        attributes.push(attr_strings("activations", acts));
    }
    if !attrs.activation_alpha.is_empty() {
        attributes.push(attr_floats("activation_alpha", &attrs.activation_alpha));
    }
    if !attrs.activation_beta.is_empty() {
        attributes.push(attr_floats("activation_beta", &attrs.activation_beta));
    }
    if let Some(c) = attrs.clip {
        attributes.push(attr_float("clip", c));
    }
    if attrs.input_forget {
        assert_eq!(op, OpKind::Lstm);
        attributes.push(attr_int("input_forget", 1));
    }
    if attrs.linear_before_reset {
        assert_eq!(op, OpKind::Gru);
        attributes.push(attr_int("linear_before_reset", 1));
    }

    // --- inputs: (name, present, is_weight, value)
    enum Val<'a> {
        F(&'a ArrayD<f64>),
        Lens(&'a [i32]),
    }
    let slots: Vec<(&str, bool, bool, Option<Val>)> = vec![
        ("X", true, false, Some(Val::F(&inputs.x))),
        ("W", true, true, Some(Val::F(&inputs.w))),
        ("R", true, true, Some(Val::F(&inputs.r))),
        ("B", opts.has_b, true, inputs.b.as_ref().map(Val::F)),
        (
            "sequence_lens",
            opts.has_seq_lens,
            false,
            inputs.sequence_lens.as_deref().map(Val::Lens),
        ),
        (
            "initial_h",
            opts.has_h0,
            false,
            inputs.initial_h.as_ref().map(Val::F),
        ),
        (
            "initial_c",
            opts.has_c0,
            false,
            inputs.initial_c.as_ref().map(Val::F),
        ),
        ("P", opts.has_p, true, inputs.p.as_ref().map(Val::F)),
    ];
    let mut node_inputs: Vec<String> = vec![];
    let mut graph_inputs: Vec<ValueInfoProto> = vec![];
    let mut input_names: Vec<String> = vec![];
    let mut initializers: Vec<TensorProto> = vec![];
    for (name, present, is_weight, val) in slots {
        if !present {
            node_inputs.push(String::new());
            continue;
        }
        node_inputs.push(name.to_string());
        let val = val.unwrap();
        if is_weight && opts.weights_as_initializers {
            let a = match val {
                Val::F(a) => a,
                Val::Lens(_) => unreachable!(),
            };
            // Exercise both encodings: W and R as raw_data, B and P as typed data.
            let raw = name == "W" || name == "R";
            initializers.push(tensor_proto(name, a, opts.dtype, raw));
        } else {
            let vi = match val {
                Val::F(a) => value_info(name, elem, Some(&fixed(a.shape()))),
                Val::Lens(l) => value_info(name, DataType::Int32, Some(&fixed(&[l.len()]))),
            };
            graph_inputs.push(vi);
            input_names.push(name.to_string());
        }
    }
    while node_inputs.last().map(|s| s.is_empty()).unwrap_or(false) {
        node_inputs.pop();
    }

    // --- outputs
    let mut node_outputs: Vec<String> = vec![];
    let mut graph_outputs: Vec<ValueInfoProto> = vec![];
    let mut output_names: Vec<String> = vec![];
    for (name, want) in [
        ("Y", opts.want_y),
        ("Y_h", opts.want_y_h),
        ("Y_c", opts.want_y_c),
    ] {
        if want {
            node_outputs.push(name.to_string());
            graph_outputs.push(value_info(name, elem, None));
            output_names.push(name.to_string());
        } else {
            node_outputs.push(String::new());
        }
    }
    while node_outputs.last().map(|s| s.is_empty()).unwrap_or(false) {
        node_outputs.pop();
    }
    assert!(
        !output_names.is_empty(),
        "builder: at least one output must be wanted"
    );

    let node = NodeProto {
        input: node_inputs,
        output: node_outputs,
        name: format!("{}_node", op.op_type().to_lowercase()),
        op_type: op.op_type().to_string(),
        domain: String::new(),
        attribute: attributes,
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![node],
        name: "single_node".to_string(),
        initializer: initializers,
        input: graph_inputs,
        output: graph_outputs,
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opts.opset,
        }],
        producer_name: "rnn-run-tests".to_string(),
        graph: Some(graph),
        ..Default::default()
    };
    (model.encode_to_vec(), input_names, output_names)
}
