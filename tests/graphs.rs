//! Graphs whose answer depends on the graph rewrites being exact, and graphs that must be
//! refused at load: reversing and strided `Slice`s around recurrent nodes (a property test
//! against the float64 reference), shape values too large for the machine, and defects of
//! the graph itself (two producers of one tensor, an attribute given twice, an unknown opset).
//!
//! `RNN_RUN_SLICE_CASES=N` sets how many random placements the property test tries (default
//! 400); `RNN_RUN_SLICE_SEED=S` replays one (its seed is printed on failure).

mod common;

use ndarray::{ArrayD, Axis, IxDyn, Slice};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use common::onnx_builder::{build_node_model, BuildOpts, Dt};
use common::random_graph::{Choices, Seeded};
use common::reference::{run_reference, OpKind, RefAttrs, RefInputs};
use rnn_run::TensorExt;

// ------------------------------------------------------------------------------------------
// Slices around recurrent nodes

/// One `Slice` along one axis, as the file says it.
#[derive(Clone, Copy, Debug)]
struct SliceSpec {
    axis: usize,
    start: i64,
    end: i64,
    step: i64,
}

/// The ONNX `Slice` of one axis, written from the spec: negative starts and ends count from
/// the end, then both are clamped (to `[0, dim]` going forward, to `[0, dim-1]` and `[-1,
/// dim-1]` going backward), and the axis is walked from start towards end.
fn onnx_slice(a: &ArrayD<f64>, s: SliceSpec) -> ArrayD<f64> {
    let dim = a.shape()[s.axis] as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (start, end) = if s.step > 0 {
        (fix(s.start).clamp(0, dim), fix(s.end).clamp(0, dim))
    } else {
        (
            fix(s.start).clamp(0, dim - 1),
            fix(s.end).clamp(-1, dim - 1),
        )
    };
    let mut picked = vec![];
    let mut i = start;
    while (s.step > 0 && i < end) || (s.step < 0 && i > end) {
        picked.push(i as usize);
        i += s.step;
    }
    let views: Vec<_> = picked
        .iter()
        .map(|&i| a.slice_axis(Axis(s.axis), Slice::from(i..i + 1)))
        .collect();
    if views.is_empty() {
        let mut shape = a.shape().to_vec();
        shape[s.axis] = 0;
        return ArrayD::zeros(IxDyn(&shape));
    }
    ndarray::concatenate(Axis(s.axis), &views).unwrap()
}

fn i64_initializer(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// Appends a `Slice` node reading `input` and writing `output`.
fn add_slice(graph: &mut pb::GraphProto, input: &str, output: &str, s: SliceSpec) {
    let k = graph.node.len();
    let names: Vec<String> = ["starts", "ends", "axes", "steps"]
        .iter()
        .map(|p| format!("{output}_{p}_{k}"))
        .collect();
    for (name, v) in names.iter().zip([s.start, s.end, s.axis as i64, s.step]) {
        graph.initializer.push(i64_initializer(name, &[v]));
    }
    let mut inputs = vec![input.to_string()];
    inputs.extend(names);
    graph.node.push(pb::NodeProto {
        name: format!("slice_{output}"),
        op_type: "Slice".into(),
        input: inputs,
        output: vec![output.into()],
        ..Default::default()
    });
}

fn output(name: &str) -> pb::ValueInfoProto {
    common::proto::value_info(name, DataType::Float, None)
}

/// A slice along `axis` of a dimension `dim`: mostly reversing (the sentinels exporters write
/// for "to the start": `-INT64_MAX`, `INT64_MIN`, `-(dim+1)`, `INT32_MIN`), some strided or
/// partial, some forward; never empty.
fn random_slice<C: Choices>(c: &mut C, axis: usize, dim: usize) -> SliceSpec {
    let d = dim as i64;
    loop {
        let step = [-1, -1, -1, -2, 1, 2][c.below(6)];
        let (start, end) = if step < 0 {
            let start = [
                -1,
                d - 1,
                i64::MAX,
                c.below(dim) as i64,
                -(c.below(dim) as i64) - 1,
            ][c.below(5)];
            let end = [
                -i64::MAX,
                i64::MIN,
                -(d + 1),
                i32::MIN as i64,
                c.below(dim) as i64 - 1,
            ][c.below(5)];
            (start, end)
        } else {
            let start = [0, c.below(dim) as i64, -(c.below(dim) as i64) - 1][c.below(3)];
            let end = [i64::MAX, d, c.below(dim + 1) as i64, -1][c.below(4)];
            (start, end)
        };
        let s = SliceSpec {
            axis,
            start,
            end,
            step,
        };
        let probe = ArrayD::<f64>::zeros(IxDyn(&[dim]));
        let one_axis = SliceSpec { axis: 0, ..s };
        if !onnx_slice(&probe, one_axis).is_empty() {
            return s;
        }
    }
}

fn random_array<C: Choices>(c: &mut C, shape: &[usize], scale: f64) -> ArrayD<f64> {
    let n = shape.iter().product();
    let v = (0..n).map(|_| c.small_float() as f64 * scale).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// A recurrent node with slices around it: maybe one on X (whose input may also be read by
/// another output), maybe one or two on Y (squeezed or not, Y itself maybe an output too),
/// maybe one on Y_h. Returns the model, X, and the expected outputs in graph order.
struct SliceCase {
    bytes: Vec<u8>,
    x: ArrayD<f64>,
    expected: Vec<(String, ArrayD<f64>)>,
    description: String,
}

fn slice_case<C: Choices>(c: &mut C) -> SliceCase {
    let op = [OpKind::Rnn, OpKind::Lstm, OpKind::Gru][c.below(3)];
    let direction = ["forward", "forward", "reverse", "bidirectional"][c.below(4)];
    let h = 1 + c.below(4);
    let mut attrs = RefAttrs::new(op, direction, h);
    attrs.layout = c.below(2) as i64;
    let (t, b, i) = (1 + c.below(6), 1 + c.below(3), 1 + c.below(3));
    let x_shape = if attrs.layout == 0 {
        [t, b, i]
    } else {
        [b, t, i]
    };
    let x = random_array(c, &x_shape, 2.0);
    let (time_axis, batch_axis) = if attrs.layout == 0 { (0, 1) } else { (1, 0) };

    let pre = c.chance(50).then(|| {
        let axis = [time_axis, time_axis, batch_axis, 2][c.below(4)];
        random_slice(c, axis, x_shape[axis])
    });
    let share_x = pre.is_some() && c.chance(30);
    let x_in = match pre {
        Some(s) => onnx_slice(&x, s),
        None => x.clone(),
    };

    let d = attrs.num_directions();
    let g = op.gates();
    let features = x_in.shape()[2];
    let inputs = RefInputs {
        w: random_array(c, &[d, g * h, features], 1.0),
        r: random_array(c, &[d, g * h, h], 1.0),
        b: Some(random_array(c, &[d, 2 * g * h], 0.5)),
        x: x_in,
        sequence_lens: None,
        initial_h: None,
        initial_c: None,
        p: None,
    };
    let reference = run_reference(&attrs, &inputs);

    let opts = BuildOpts {
        opset: 14,
        dtype: Dt::F32,
        has_b: true,
        has_seq_lens: false,
        has_h0: false,
        has_c0: false,
        has_p: false,
        want_y: true,
        want_y_h: true,
        want_y_c: false,
        weights_as_initializers: true,
    };
    let (bytes, _, _) = build_node_model(&attrs, &opts, &inputs);
    let mut model = pb::ModelProto::decode(&*bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.output.clear();
    let mut expected = vec![];
    let mut description = vec![format!(
        "{} {direction} layout {} h {h}, X {x_shape:?}",
        op.op_type(),
        attrs.layout
    )];

    // The node reads "X"; the graph input becomes "X_in" when a slice sits between them.
    if let Some(s) = pre {
        graph.input[0] = common::proto::value_info(
            "X_in",
            DataType::Float,
            Some(&common::proto::fixed(x.shape())),
        );
        add_slice(graph, "X_in", "X", s);
        description.push(format!("slice on X: {s:?}"));
        if share_x {
            graph.node.push(pb::NodeProto {
                name: "x_in_also".into(),
                op_type: "Neg".into(),
                input: vec!["X_in".into()],
                output: vec!["X_neg".into()],
                ..Default::default()
            });
            graph.output.push(output("X_neg"));
            expected.push(("X_neg".to_string(), x.mapv(|v| -v)));
            description.push("X_in also read by a Neg output".into());
        }
    }

    // Y, squeezed of its direction axis when there is one direction, then sliced.
    let dir_axis = if attrs.layout == 0 { 1 } else { 2 };
    let (y_name, y_value) = if d == 1 && c.chance(70) {
        graph
            .initializer
            .push(i64_initializer("squeeze_axes", &[dir_axis as i64]));
        graph.node.push(pb::NodeProto {
            name: "squeeze".into(),
            op_type: "Squeeze".into(),
            input: vec!["Y".into(), "squeeze_axes".into()],
            output: vec!["Y_sq".into()],
            ..Default::default()
        });
        description.push("Y squeezed".into());
        ("Y_sq", reference.y.index_axis(Axis(dir_axis), 0).to_owned())
    } else {
        ("Y", reference.y.clone())
    };
    let y_time = if attrs.layout == 0 { 0 } else { 1 };
    let posts = if pre.is_none() {
        1 + c.below(2)
    } else {
        c.below(3)
    };
    for k in 0..posts {
        let axis = if c.chance(60) {
            y_time
        } else {
            c.below(y_value.ndim())
        };
        let s = random_slice(c, axis, y_value.shape()[axis]);
        let name = format!("Y_slice{k}");
        add_slice(graph, y_name, &name, s);
        graph.output.push(output(&name));
        expected.push((name, onnx_slice(&y_value, s)));
        description.push(format!("slice on {y_name}: {s:?}"));
    }
    if posts == 0 || c.chance(30) {
        graph.output.push(output(y_name));
        expected.push((y_name.to_string(), y_value.clone()));
        description.push(format!("{y_name} is an output too"));
    }
    if c.chance(30) {
        let batch = if attrs.layout == 0 { 1 } else { 0 };
        let s = random_slice(c, batch, reference.y_h.shape()[batch]);
        add_slice(graph, "Y_h", "Y_h_slice", s);
        graph.output.push(output("Y_h_slice"));
        expected.push(("Y_h_slice".into(), onnx_slice(&reference.y_h, s)));
        description.push(format!("slice on Y_h: {s:?}"));
    }
    SliceCase {
        bytes: model.encode_to_vec(),
        x,
        expected,
        description: description.join("; "),
    }
}

fn check_slice_case(seed: u64) -> Result<(), String> {
    let case = slice_case(&mut Seeded(seed));
    let fail = |why: String| Err(format!("seed {seed}: {}\n  {why}", case.description));
    let model = match rnn_run::Model::from_bytes(&case.bytes) {
        Ok(m) => m,
        Err(e) => return fail(format!("load failed: {e}")),
    };
    let x = rnn_run::Tensor::from(case.x.mapv(|v| v as f32));
    let outputs = match model.run(vec![x]) {
        Ok(o) => o,
        Err(e) => return fail(format!("run failed: {e}")),
    };
    for ((name, want), got) in case.expected.iter().zip(&outputs) {
        let got = got.array_view::<f32>().unwrap();
        if got.shape() != want.shape() {
            return fail(format!(
                "output {name}: shape {:?}, expected {:?}",
                got.shape(),
                want.shape()
            ));
        }
        let worst = got
            .iter()
            .zip(want.iter())
            .map(|(&g, &w)| (g as f64 - w).abs() / (1e-4 + 1e-4 * w.abs()))
            .fold(0.0f64, f64::max);
        if worst > 1.0 {
            return fail(format!("output {name}: {got:?}\n  expected {want:?}"));
        }
    }
    Ok(())
}

/// The graph, exactly: a forward LSTM, Squeeze, and a Slice reversing the time axis
/// to `-INT64_MAX`, and to `-(T+1)`.
#[test]
fn a_reversing_slice_after_a_forward_lstm_reverses_its_output() {
    for end in [-i64::MAX, -6] {
        let mut c = Seeded(7);
        let attrs = RefAttrs::new(OpKind::Lstm, "forward", 3);
        let inputs = RefInputs {
            x: random_array(&mut c, &[5, 2, 4], 2.0),
            w: random_array(&mut c, &[1, 12, 4], 1.0),
            r: random_array(&mut c, &[1, 12, 3], 1.0),
            b: None,
            sequence_lens: None,
            initial_h: None,
            initial_c: None,
            p: None,
        };
        let opts = BuildOpts {
            weights_as_initializers: true,
            want_y_h: false,
            want_y_c: false,
            ..BuildOpts::for_inputs(OpKind::Lstm, 14, Dt::F32, &inputs)
        };
        let (bytes, _, _) = build_node_model(&attrs, &opts, &inputs);
        let mut model = pb::ModelProto::decode(&*bytes).unwrap();
        let graph = model.graph.as_mut().unwrap();
        graph.output.clear();
        graph.initializer.push(i64_initializer("axes1", &[1]));
        graph.node.push(pb::NodeProto {
            name: "squeeze".into(),
            op_type: "Squeeze".into(),
            input: vec!["Y".into(), "axes1".into()],
            output: vec!["Y_sq".into()],
            ..Default::default()
        });
        let s = SliceSpec {
            axis: 0,
            start: -1,
            end,
            step: -1,
        };
        add_slice(graph, "Y_sq", "flipped", s);
        graph.output.push(output("flipped"));
        let y = run_reference(&attrs, &inputs)
            .y
            .index_axis(Axis(1), 0)
            .to_owned();
        let want = onnx_slice(&y, s);
        assert_eq!(want[[0, 0, 0]], y[[4, 0, 0]]);

        let m = rnn_run::Model::from_bytes(&model.encode_to_vec()).unwrap();
        let got = m
            .run(vec![rnn_run::Tensor::from(inputs.x.mapv(|v| v as f32))])
            .unwrap();
        let got = got[0].array_view::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(want.iter())
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0f64, f64::max);
        assert!(worst < 1e-4, "end {end}: largest error {worst}");
    }
}

#[test]
fn slices_around_recurrent_nodes_match_the_reference() {
    if let Ok(seed) = std::env::var("RNN_RUN_SLICE_SEED") {
        let seed = seed.parse().unwrap();
        if let Err(e) = check_slice_case(seed) {
            panic!("{e}");
        }
        return;
    }
    let n: u64 = std::env::var("RNN_RUN_SLICE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let failures: Vec<String> = (0..n)
        .filter_map(|seed| check_slice_case(seed).err())
        .take(5)
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------------------
// Graphs refused at load

/// A graph of `nodes` over one float input `x` `[3, 10]`, with `outputs` as its outputs and
/// int64 `constants` as initializers.
fn graph_model(
    nodes: Vec<pb::NodeProto>,
    constants: &[(&str, &[i64])],
    outputs: &[&str],
    opset: i64,
) -> Vec<u8> {
    let graph = pb::GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: constants
            .iter()
            .map(|(name, v)| i64_initializer(name, v))
            .collect(),
        input: vec![common::proto::value_info(
            "x",
            DataType::Float,
            Some(&common::proto::fixed(&[3, 10])),
        )],
        output: outputs.iter().map(|o| output(o)).collect(),
        ..Default::default()
    };
    common::proto::model_bytes(graph, opset)
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Loads `bytes`, expecting a refusal whose message holds every one of `words`.
fn refused(bytes: &[u8], words: &[&str]) {
    match rnn_run::Model::from_bytes(bytes) {
        Ok(m) => {
            let x = rnn_run::Tensor::from(ndarray::Array2::<f32>::zeros((3, 10)));
            let got = m.run(vec![x]).map(|o| {
                o.iter()
                    .map(|t| format!("{:?}", t.shape()))
                    .collect::<Vec<_>>()
            });
            panic!("loaded (a run gives {got:?}); expected a refusal naming {words:?}")
        }
        Err(e) => {
            let text = e.to_string();
            for w in words {
                assert!(text.contains(w), "'{w}' is not in: {text}");
            }
        }
    }
}

const BIG: i64 = (1 << 32) + 3;

#[test]
fn reshape_to_a_dimension_past_32_bits_is_refused() {
    for shape in [[BIG, -1], [1 << 40, -1], [-1, (1 << 32) + 10]] {
        let bytes = graph_model(
            vec![node("reshape_big", "Reshape", &["x", "shape"], &["y"])],
            &[("shape", &shape)],
            &["y"],
            14,
        );
        refused(
            &bytes,
            &[
                "reshape_big",
                "Reshape",
                &shape[0].max(shape[1]).to_string(),
            ],
        );
    }
}

#[test]
fn constant_of_shape_past_32_bits_is_refused() {
    let mut n = node("fill", "ConstantOfShape", &["shape"], &["y"]);
    n.attribute.push(pb::AttributeProto {
        name: "value".into(),
        r#type: pb::attribute_proto::AttributeType::Tensor as i32,
        t: Some(common::proto::float_initializer("v", &[1], vec![1.0])),
        ..Default::default()
    });
    let bytes = graph_model(vec![n], &[("shape", &[BIG, 2, 5])], &["y"], 14);
    refused(&bytes, &["fill", "ConstantOfShape", &BIG.to_string()]);
}

#[test]
fn tile_past_32_bits_is_refused() {
    let bytes = graph_model(
        vec![node("tile_big", "Tile", &["x", "repeats"], &["y"])],
        &[("repeats", &[(1 << 32) + 1, 1])],
        &["y"],
        14,
    );
    refused(&bytes, &["tile_big", "Tile", "4294967297"]);
}

#[test]
fn expand_past_32_bits_is_refused_through_a_concat() {
    // The shape is assembled the way exporters do: a Constant node, then Concat.
    let mut head = node("head", "Constant", &[], &["head_v"]);
    head.attribute.push(pb::AttributeProto {
        name: "value_ints".into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: vec![(1 << 32) + 1],
        ..Default::default()
    });
    let mut concat = node("cat", "Concat", &["head_v", "tail"], &["shape"]);
    concat.attribute.push(common::proto::attr_int("axis", 0));
    let bytes = graph_model(
        vec![
            head,
            concat,
            node("expand_big", "Expand", &["x", "shape"], &["y"]),
        ],
        &[("tail", &[3, 10])],
        &["y"],
        14,
    );
    refused(&bytes, &["expand_big", "Expand", "4294967297"]);
}

#[test]
fn shapes_within_32_bits_still_load() {
    let bytes = graph_model(
        vec![node("reshape", "Reshape", &["x", "shape"], &["y"])],
        &[("shape", &[-1, 5, 2])],
        &["y"],
        14,
    );
    let m = rnn_run::Model::from_bytes(&bytes).unwrap();
    let x = rnn_run::Tensor::from(ndarray::Array2::<f32>::zeros((3, 10)));
    assert_eq!(m.run(vec![x]).unwrap()[0].shape(), &[3, 5, 2]);
}

#[test]
fn a_tensor_written_by_two_nodes_is_refused() {
    let bytes = graph_model(
        vec![
            node("first", "Relu", &["x"], &["y"]),
            node("second", "Neg", &["x"], &["y"]),
        ],
        &[],
        &["y"],
        14,
    );
    refused(&bytes, &["tensor 'y'", "'first' (Relu)", "'second' (Neg)"]);
}

#[test]
fn an_attribute_given_twice_is_refused() {
    let mut n = node("softmax", "Softmax", &["x"], &["y"]);
    n.attribute.push(common::proto::attr_int("axis", 1));
    n.attribute.push(common::proto::attr_int("axis", 0));
    let bytes = graph_model(vec![n], &[], &["y"], 14);
    refused(
        &bytes,
        &["'softmax' (Softmax)", "attribute 'axis' is given twice"],
    );

    // On a recurrent node too: hidden_size 6 then 7.
    let (bytes, _, _) = lstm_behind(vec![node("id", "Identity", &["X_in"], &["X"])], &[], false);
    let mut lstm = pb::ModelProto::decode(&*bytes).unwrap();
    let graph = lstm.graph.as_mut().unwrap();
    let lstm_node = graph.node.iter_mut().find(|n| n.op_type == "LSTM").unwrap();
    lstm_node
        .attribute
        .push(common::proto::attr_int("hidden_size", 7));
    refused(
        &lstm.encode_to_vec(),
        &[
            "'lstm_node' (LSTM)",
            "attribute 'hidden_size' is given twice",
        ],
    );
}

#[test]
fn an_opset_newer_than_any_known_is_refused() {
    let bytes = graph_model(vec![node("relu", "Relu", &["x"], &["y"])], &[], &["y"], 999);
    refused(&bytes, &["opset 999"]);
    // The newest opset known still loads.
    let bytes = graph_model(vec![node("relu", "Relu", &["x"], &["y"])], &[], &["y"], 28);
    rnn_run::Model::from_bytes(&bytes).unwrap();
}

// ------------------------------------------------------------------------------------------
// Valid graphs tract could not read: a crop by Pad, a Slice to INT32_MIN

/// An LSTM over `[seq, 1, 3]` with `front` nodes between the graph input `X_in` and the
/// node's `X`; the time axis is symbolic when `symbolic`.
fn lstm_behind(
    front: Vec<pb::NodeProto>,
    constants: &[(&str, &[i64])],
    symbolic: bool,
) -> (Vec<u8>, RefAttrs, RefInputs) {
    let mut c = Seeded(11);
    let attrs = RefAttrs::new(OpKind::Lstm, "forward", 2);
    let inputs = RefInputs {
        x: random_array(&mut c, &[4, 1, 3], 2.0),
        w: random_array(&mut c, &[1, 8, 3], 1.0),
        r: random_array(&mut c, &[1, 8, 2], 1.0),
        b: None,
        sequence_lens: None,
        initial_h: None,
        initial_c: None,
        p: None,
    };
    let opts = BuildOpts {
        weights_as_initializers: true,
        want_y_h: false,
        want_y_c: false,
        ..BuildOpts::for_inputs(OpKind::Lstm, 18, Dt::F32, &inputs)
    };
    let (bytes, _, _) = build_node_model(&attrs, &opts, &inputs);
    let mut model = pb::ModelProto::decode(&*bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    use common::proto::Dim;
    let seq = if symbolic { Dim::S("seq") } else { Dim::N(7) };
    graph.input[0] =
        common::proto::value_info("X_in", DataType::Float, Some(&[seq, Dim::N(1), Dim::N(3)]));
    graph.node.splice(0..0, front);
    graph
        .initializer
        .extend(constants.iter().map(|(n, v)| i64_initializer(n, v)));
    (model.encode_to_vec(), attrs, inputs)
}

fn run_f32(bytes: &[u8], x: &ArrayD<f64>) -> ArrayD<f32> {
    let m = rnn_run::Model::from_bytes(bytes).unwrap();
    let out = m
        .run(vec![rnn_run::Tensor::from(x.mapv(|v| v as f32))])
        .unwrap();
    out[0].array_view::<f32>().unwrap().to_owned()
}

fn assert_close(got: &ArrayD<f32>, want: &ArrayD<f64>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let worst = got
        .iter()
        .zip(want.iter())
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0f64, f64::max);
    assert!(worst < 1e-4, "{what}: largest error {worst}");
}

#[test]
fn a_pad_that_crops_the_time_axis_runs() {
    // 7 steps in, 1 cropped in front and 2 behind: the LSTM sees steps 1..5.
    let mut c = Seeded(3);
    let x = random_array(&mut c, &[7, 1, 3], 2.0);
    for symbolic in [false, true] {
        let (bytes, attrs, mut inputs) = lstm_behind(
            vec![node("crop", "Pad", &["X_in", "pads"], &["X"])],
            &[("pads", &[-1, 0, 0, -2, 0, 0])],
            symbolic,
        );
        inputs.x = x.slice_axis(Axis(0), Slice::from(1..5)).to_owned();
        let want = run_reference(&attrs, &inputs).y;
        assert_close(&run_f32(&bytes, &x), &want, &format!("symbolic {symbolic}"));
    }
    // Cropping one side and padding the other, on the feature axis, with a constant.
    let (bytes, _, _) = lstm_behind(vec![], &[], false);
    let mut model = pb::ModelProto::decode(&*bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.node = vec![node("pad", "Pad", &["X_in", "pads", "value"], &["Y"])];
    graph.initializer = vec![i64_initializer("pads", &[0, 0, -1, -3, 0, 2])];
    graph
        .initializer
        .push(common::proto::float_initializer("value", &[], vec![9.0]));
    graph.output = vec![output("Y")];
    let got = run_f32(&model.encode_to_vec(), &x);
    let mut want = ArrayD::from_elem(IxDyn(&[4, 1, 4]), 9.0);
    want.slice_mut(ndarray::s![.., .., 0..2])
        .assign(&x.slice(ndarray::s![0..4, .., 1..3]));
    assert_close(&got, &want, "crop and pad");
}

#[test]
fn a_slice_to_int32_min_reverses_a_symbolic_time_axis() {
    let mut c = Seeded(5);
    let x = random_array(&mut c, &[6, 1, 3], 2.0);
    for end in [i32::MIN as i64, i64::MIN, -i64::MAX, -(1 << 40)] {
        let mut slice = node("flip", "Slice", &["X_in", "s", "e", "a", "st"], &["X"]);
        slice.name = "flip".into();
        let (bytes, attrs, mut inputs) = lstm_behind(
            vec![slice],
            &[("s", &[-1]), ("e", &[end]), ("a", &[0]), ("st", &[-1])],
            true,
        );
        inputs.x = x.slice_axis(Axis(0), Slice::new(0, None, -1)).to_owned();
        let want = run_reference(&attrs, &inputs).y;
        assert_close(&run_f32(&bytes, &x), &want, &format!("end {end}"));
    }
    // Starts past 32 bits: from the last step backwards, and from the first forwards.
    for (start, step, want) in [
        (
            i64::MAX,
            -1,
            x.slice_axis(Axis(0), Slice::new(0, None, -1)).to_owned(),
        ),
        (
            (1 << 32) + 1,
            -1,
            x.slice_axis(Axis(0), Slice::new(0, None, -1)).to_owned(),
        ),
        (-(1 << 40), 1, x.clone()),
    ] {
        let (bytes, _, _) = lstm_behind(vec![], &[], true);
        let mut model = pb::ModelProto::decode(&*bytes).unwrap();
        let graph = model.graph.as_mut().unwrap();
        let end = if step < 0 { i64::MIN } else { i64::MAX };
        graph.node = vec![node("s", "Slice", &["X_in", "s", "e", "a", "st"], &["Y"])];
        graph.initializer = [("s", start), ("e", end), ("a", 0), ("st", step)]
            .iter()
            .map(|(n, v)| i64_initializer(n, &[*v]))
            .collect();
        graph.output = vec![output("Y")];
        assert_close(
            &run_f32(&model.encode_to_vec(), &x),
            &want,
            &format!("start {start} step {step}"),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Initializers listed as inputs: defaults a caller may override

/// `y = x + b` with `b` an initializer listed as a graph input (a default), at `ir_version`.
fn add_with_default(ir_version: i64) -> Vec<u8> {
    let bytes = graph_model(
        vec![node("add", "Add", &["x", "b"], &["y"])],
        &[],
        &["y"],
        14,
    );
    let mut model = pb::ModelProto::decode(&*bytes).unwrap();
    model.ir_version = ir_version;
    let graph = model.graph.as_mut().unwrap();
    graph
        .initializer
        .push(common::proto::float_initializer("b", &[10], vec![1.0; 10]));
    graph.input.push(common::proto::value_info(
        "b",
        DataType::Float,
        Some(&common::proto::fixed(&[10])),
    ));
    model.encode_to_vec()
}

fn values(t: &rnn_run::Tensor) -> Vec<f32> {
    t.array_view::<f32>().unwrap().iter().copied().collect()
}

#[test]
fn a_default_input_is_used_or_overridden_by_position_and_by_name() {
    let m = rnn_run::Model::from_bytes(&add_with_default(8)).unwrap();
    assert_eq!(m.inputs().len(), 1);
    assert_eq!(m.defaults().len(), 1);
    assert_eq!(m.defaults()[0].name, "b");
    let x = || rnn_run::Tensor::from(ndarray::Array2::<f32>::zeros((3, 10)));
    let b = rnn_run::Tensor::from(ndarray::Array1::<f32>::from_elem(10, 5.0));
    assert!(values(&m.run(vec![x()]).unwrap()[0])
        .iter()
        .all(|&v| v == 1.0));
    assert!(values(&m.run(vec![x(), b.clone()]).unwrap()[0])
        .iter()
        .all(|&v| v == 5.0));
    let named = m.run_named(vec![("b", b.clone()), ("x", x())]).unwrap();
    assert!(values(&named[0]).iter().all(|&v| v == 5.0));
    // The default again after an override: the plans are apart.
    assert!(values(&m.run_named(vec![("x", x())]).unwrap()[0])
        .iter()
        .all(|&v| v == 1.0));
    // Wrong names, types and shapes are input errors naming the input.
    let err = m.run_named(vec![("x", x()), ("c", b.clone())]).unwrap_err();
    assert!(
        err.to_string().contains("'c'") || err.to_string().contains("c:"),
        "{err}"
    );
    let short = rnn_run::Tensor::from(ndarray::Array1::<f32>::zeros(4));
    let err = m.run(vec![x(), short]).unwrap_err();
    assert!(err.to_string().contains('b'), "{err}");
    assert!(m.run(vec![x(), b.clone(), b]).is_err());
}

#[test]
fn before_ir_version_4_an_initializer_listed_as_input_is_a_constant() {
    let m = rnn_run::Model::from_bytes(&add_with_default(3)).unwrap();
    assert!(m.defaults().is_empty());
    let x = rnn_run::Tensor::from(ndarray::Array2::<f32>::zeros((3, 10)));
    assert!(values(&m.run(vec![x]).unwrap()[0])
        .iter()
        .all(|&v| v == 1.0));
}

/// Recurrent weights exported as inputs with defaults (`keep_initializers_as_inputs`): the
/// defaults run on prepared cells, and an overridden R gives the reference's answer for it.
#[test]
fn recurrent_weights_with_defaults_can_be_overridden() {
    let mut c = Seeded(21);
    let attrs = RefAttrs::new(OpKind::Gru, "forward", 3);
    let mut inputs = RefInputs {
        x: random_array(&mut c, &[4, 2, 2], 2.0),
        w: random_array(&mut c, &[1, 9, 2], 1.0),
        r: random_array(&mut c, &[1, 9, 3], 1.0),
        b: None,
        sequence_lens: None,
        initial_h: None,
        initial_c: None,
        p: None,
    };
    let opts = BuildOpts {
        weights_as_initializers: true,
        ..BuildOpts::for_inputs(OpKind::Gru, 14, Dt::F32, &inputs)
    };
    let (bytes, _, _) = build_node_model(&attrs, &opts, &inputs);
    let mut model = pb::ModelProto::decode(&*bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    for (name, shape) in [("W", [1, 9, 2]), ("R", [1, 9, 3])] {
        graph.input.push(common::proto::value_info(
            name,
            DataType::Float,
            Some(&common::proto::fixed(&shape)),
        ));
    }
    let m = rnn_run::Model::from_bytes(&model.encode_to_vec()).unwrap();
    assert!(m.recurrent_nodes()[0].weights_prepared);
    let names: Vec<&str> = m.defaults().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["W", "R"]);
    let x = rnn_run::Tensor::from(inputs.x.mapv(|v| v as f32));
    let y = m.run(vec![x.clone()]).unwrap();
    let got = y[0].array_view::<f32>().unwrap().to_owned();
    assert_close(&got, &run_reference(&attrs, &inputs).y, "defaults");

    // Overridden weights are packed per run, and reused while a run brings the same bytes:
    // alternating two Rs (and one of them again) must give each R's answer every time.
    let r1 = random_array(&mut c, &[1, 9, 3], 1.0);
    let mut r2 = r1.clone();
    r2[[0, 4, 1]] += 0.5;
    for (k, r) in [&r1, &r1, &r2, &r1, &r2, &r2].into_iter().enumerate() {
        inputs.r = r.clone();
        let r = rnn_run::Tensor::from(inputs.r.mapv(|v| v as f32));
        let y = m.run_named(vec![("X", x.clone()), ("R", r)]).unwrap();
        let got = y[0].array_view::<f32>().unwrap().to_owned();
        assert_close(
            &got,
            &run_reference(&attrs, &inputs).y,
            &format!("R overridden, run {k}"),
        );
    }
}

#[test]
fn the_cli_overrides_a_default_by_name_and_inspect_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("add.onnx");
    std::fs::write(&model, add_with_default(8)).unwrap();
    let x = dir.path().join("x.npy");
    let b = dir.path().join("b.npy");
    let out = dir.path().join("out");
    rnn_run::npy::write_npy(
        &x,
        &rnn_run::Tensor::from(ndarray::Array2::<f32>::zeros((3, 10))),
    )
    .unwrap();
    rnn_run::npy::write_npy(
        &b,
        &rnn_run::Tensor::from(ndarray::Array1::<f32>::from_elem(10, 5.0)),
    )
    .unwrap();
    let run = |extra: &[String]| {
        let mut cmd = assert_cmd::Command::cargo_bin("rnn-run").unwrap();
        cmd.arg(&model)
            .arg(&x)
            .args(extra)
            .arg("--output")
            .arg(&out);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        values(&rnn_run::npy::read_npy(out.join("y.npy")).unwrap())
    };
    assert!(run(&[]).iter().all(|&v| v == 1.0));
    std::fs::remove_dir_all(&out).unwrap();
    assert!(run(&[format!("b={}", b.display())])
        .iter()
        .all(|&v| v == 5.0));

    let inspect = |json: bool| {
        let mut cmd = assert_cmd::Command::cargo_bin("rnn-run").unwrap();
        cmd.arg("inspect").arg(&model);
        if json {
            cmd.arg("--json");
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let text = inspect(false);
    assert!(text.contains("inputs with defaults"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&inspect(true)).unwrap();
    assert_eq!(json["defaults"][0]["name"], "b");
    assert_eq!(json["inputs"].as_array().unwrap().len(), 1);
}

// ------------------------------------------------------------------------------------------
// The graphs as files (scripts/gen_hostile_graphs.py)

/// Each hostile graph of `fixtures/robustness/` is refused naming what is wrong, or runs and
/// matches onnxruntime's output stored beside it.
#[test]
fn hostile_fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/robustness");
    let refused: &[(&str, &[&str])] = &[
        ("graph_reshape_2p32", &["reshape_big", "4294967299"]),
        ("graph_reshape_2p40", &["reshape_big", "1099511627776"]),
        ("graph_constant_of_shape_2p32", &["fill", "4294967299"]),
        ("graph_tile_2p32", &["tile_big", "4294967297"]),
        ("graph_expand_2p32", &["expand_big", "4294967297"]),
        (
            "graph_reshape_shape_plus_2p32",
            &["'reshape_big' (Reshape)", "'k'", "4294967296"],
        ),
        (
            "graph_reshape_sum_2p32",
            &["'reshape_big' (Reshape)", "4294967299"],
        ),
        (
            "graph_constant_of_shape_shape_plus_2p32",
            &["'fill' (ConstantOfShape)", "4294967296"],
        ),
        (
            "graph_expand_shape_plus_2p32",
            &["'expand_big' (Expand)", "4294967296"],
        ),
        (
            "graph_tile_shape_plus_2p32",
            &["'tile_big' (Tile)", "repeats", "4294967296"],
        ),
        ("graph_two_writers", &["tensor 'y'", "'first'", "'second'"]),
        (
            "graph_attribute_twice",
            &["'lstm' (LSTM)", "'hidden_size' is given twice"],
        ),
        ("graph_opset_999", &["opset 999"]),
    ];
    for (name, words) in refused {
        let err = rnn_run::Model::load(dir.join(format!("{name}.onnx")))
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"));
        for w in *words {
            assert!(
                err.to_string().contains(w),
                "{name}: '{w}' is not in: {err}"
            );
        }
    }
    let ran = [
        "graph_reversing_slice_after_lstm",
        "graph_reversing_slice_to_t_plus_1",
        "graph_pad_crop_time",
        "graph_slice_int32_min",
        "graph_initializer_default",
        "graph_slice_negative_step_clamped",
    ];
    for name in ran {
        let m = rnn_run::Model::load(dir.join(format!("{name}.onnx"))).unwrap();
        let arrays = rnn_run::npy::read_npz(dir.join(format!("{name}.npz"))).unwrap();
        let inputs: Vec<(String, rnn_run::Tensor)> = arrays
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix("in_")?.to_string(), t.clone())))
            .collect();
        let outputs = m
            .run_named(inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (info, got) in m.outputs().iter().zip(&outputs) {
            let want = &arrays
                .iter()
                .find(|(k, _)| *k == format!("out_{}", info.name))
                .unwrap()
                .1;
            let want = want.array_view::<f32>().unwrap();
            let got = got.array_view::<f32>().unwrap();
            assert_eq!(got.shape(), want.shape(), "{name}");
            let worst = got
                .iter()
                .zip(want.iter())
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-5,
                "{name}: largest error {worst} against onnxruntime"
            );
        }
    }
}

/// A shape computed from a scalar input is known only at run time: `k = 2^32 + 3` is refused
/// there, naming the node, where tract would reshape to `[3, 10]`; `k = 3` still runs.
#[test]
fn shape_from_a_scalar_input_past_32_bits_is_refused_at_run_time() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/robustness");
    let m = rnn_run::Model::load(dir.join("graph_reshape_scalar_input.onnx")).unwrap();
    let arrays = rnn_run::npy::read_npz(dir.join("graph_reshape_scalar_input.npz")).unwrap();
    let input = |name: &str| arrays.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let err = m
        .run(vec![input("in_x"), input("in_k")])
        .expect_err("k = 2^32 + 3 ran");
    let text = err.to_string();
    for w in ["'reshape_big' (Reshape)", "4294967299"] {
        assert!(text.contains(w), "'{w}' is not in: {text}");
    }
    let y = m
        .run(vec![
            input("in_x"),
            rnn_run::Tensor::from(ndarray::arr0(3i64)),
        ])
        .unwrap();
    assert_eq!(y[0].shape(), [3, 10]);
}

/// A shape (or repeats) taken from an input's values is known only when the graph runs, and
/// tract plans every shape before: the refusal names the node and says so, in words.
#[test]
fn shapes_from_input_values_are_refused_naming_the_node() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/robustness");
    let k = |v: &[i64]| rnn_run::Tensor::from(ndarray::arr1(v));
    let x = || rnn_run::Tensor::from(ndarray::Array3::<f32>::zeros((3, 2, 5)));
    let cases = [
        (
            "graph_constant_of_shape_input",
            vec![k(&[2, 3, 4])],
            "node 'fill' (ConstantOfShape): its shape",
        ),
        (
            "graph_expand_input",
            vec![x(), k(&[2, 3, 2, 5])],
            "node 'expand' (Expand): its shape",
        ),
        (
            "graph_tile_input",
            vec![x(), k(&[2, 1, 1])],
            "node 'tile' (Tile): its repeats",
        ),
    ];
    for (name, inputs, wanted) in cases {
        let m = rnn_run::Model::load(dir.join(format!("{name}.onnx"))).unwrap();
        let err = m.run(inputs).expect_err(name).to_string();
        assert!(err.contains(wanted), "{name}: {err}");
        assert!(err.contains("known only when it runs"), "{name}: {err}");
        assert!(
            !err.contains('#') && !err.contains("Translat"),
            "{name}: {err}"
        );
    }
}

// `If` on a scalar input

/// `y = If(cond, x · 2, x + 1)` over `x` `[3, 10]`, where `cond` is `sr == 16000` (`on_sr`, a
/// scalar int64 input as Silero v4 has) or `ReduceSum(x) > 0` (data).
fn if_model(on_sr: bool) -> Vec<u8> {
    let scalar = |name: &str, v: f32| pb::NodeProto {
        attribute: vec![pb::AttributeProto {
            name: "value".into(),
            r#type: pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(common::proto::float_initializer(name, &[], vec![v])),
            ..Default::default()
        }],
        ..node(name, "Constant", &[], &[name])
    };
    let branch = |name: &str, op: &str, k: f32| {
        let c = format!("{name}_k");
        pb::AttributeProto {
            name: name.into(),
            r#type: pb::attribute_proto::AttributeType::Graph as i32,
            g: Some(pb::GraphProto {
                name: name.into(),
                node: vec![
                    scalar(&c, k),
                    node(op, op, &["x", &c], &[&format!("{name}_y")]),
                ],
                output: vec![output(&format!("{name}_y"))],
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let mut nodes = if on_sr {
        vec![node("eq", "Equal", &["sr", "sr16k"], &["cond"])]
    } else {
        vec![
            node("sum", "ReduceSum", &["x"], &["s"]),
            scalar("zero", 0.0),
            node("gt", "Greater", &["s", "zero"], &["cond_v"]),
            node("sq", "Reshape", &["cond_v", "empty"], &["cond"]),
        ]
    };
    nodes.push(pb::NodeProto {
        attribute: vec![
            branch("then_branch", "Mul", 2.0),
            branch("else_branch", "Add", 1.0),
        ],
        ..node("if", "If", &["cond"], &["y"])
    });
    let mut graph = pb::GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: vec![
            pb::TensorProto {
                name: "sr16k".into(),
                data_type: DataType::Int64 as i32,
                int64_data: vec![16000],
                ..Default::default()
            },
            pb::TensorProto {
                name: "empty".into(),
                dims: vec![0],
                data_type: DataType::Int64 as i32,
                ..Default::default()
            },
        ],
        input: vec![common::proto::value_info(
            "x",
            DataType::Float,
            Some(&common::proto::fixed(&[3, 10])),
        )],
        output: vec![output("y")],
        ..Default::default()
    };
    if on_sr {
        graph
            .input
            .push(common::proto::value_info("sr", DataType::Int64, Some(&[])));
    }
    common::proto::model_bytes(graph, 14)
}

/// An `If` on a scalar input both of whose branches type is planned per value of that input,
/// its branch inlined (no `If` left to run); one on data stays an `If` chosen per run. Both
/// give each branch's values.
#[test]
fn an_if_on_a_scalar_input_is_planned_per_value_and_one_on_data_per_run() {
    let x = |v: f32| rnn_run::Tensor::from(ndarray::Array2::<f32>::from_elem((3, 10), v));
    let sr = |v: i64| rnn_run::Tensor::from(ndarray::arr0(v));
    let ops = |m: &rnn_run::Model, inputs: Vec<rnn_run::Tensor>| -> Vec<String> {
        m.profile(inputs, 1)
            .unwrap()
            .into_iter()
            .map(|(_, op, _)| op)
            .collect()
    };
    let m = rnn_run::Model::from_bytes(&if_model(true)).unwrap();
    for (rate, want) in [(16000, 3.0), (8000, 2.5), (16000, 3.0)] {
        let y = m.run(vec![x(1.5), sr(rate)]).unwrap();
        assert!(values(&y[0]).iter().all(|&v| v == want), "sr {rate}");
        let ops = ops(&m, vec![x(1.5), sr(rate)]);
        assert!(!ops.iter().any(|o| o.contains("If")), "sr {rate}: {ops:?}");
    }
    // A scalar that changes on every call (a step counter) gets a few plans per value, then
    // the run-time `If`: the plans built stop growing, the answers stay right.
    let m = rnn_run::Model::from_bytes(&if_model(true)).unwrap();
    for step in 0..12 {
        let rate = if step % 5 == 0 { 16000 } else { step };
        let want = if rate == 16000 { 3.0 } else { 2.5 };
        let y = m.run(vec![x(1.5), sr(rate)]).unwrap();
        assert!(values(&y[0]).iter().all(|&v| v == want), "step {step}");
    }
    let built = m.plan_stats().built;
    assert!(built <= 6, "{built} plans for 12 calls");
    assert!(ops(&m, vec![x(1.5), sr(99)])
        .iter()
        .any(|o| o.contains("If")));
    assert_eq!(m.plan_stats().built, built);

    let m = rnn_run::Model::from_bytes(&if_model(false)).unwrap();
    for (v, want) in [(1.5, 3.0), (-1.5, -0.5), (2.0, 4.0)] {
        let y = m.run(vec![x(v)]).unwrap();
        assert!(values(&y[0]).iter().all(|&o| o == want), "x {v}");
    }
    assert!(ops(&m, vec![x(1.0)]).iter().any(|o| o.contains("If")));
}
