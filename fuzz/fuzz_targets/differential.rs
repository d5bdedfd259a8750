//! Random valid RNN / LSTM / GRU nodes: the native cells against the float64 reference.
//!
//! A structured target (`arbitrary`): op, direction, sizes, layout, activations with
//! alpha/beta, clip, input_forget, linear_before_reset, optional B / sequence_lens /
//! initial_h / initial_c / P, which outputs are wanted, weights as graph inputs or as
//! initializers, float32 or float64. Each case runs through `Model::from_bytes` and through
//! `layer::Layer` directly, and both are compared with `tests/common/reference.rs`:
//! float64 within 1e-9 (relative to the output's magnitude), float32 within 1e-4.
//!
//! Some cases are then broken on purpose (a wrong shape, attribute or length): those must be
//! refused with an error, never accepted and never a panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use rnn_run::layer::{Layer, RunInputs};
use rnn_run::{Model, Tensor};
use tract_onnx::pb::{AttributeProto, ModelProto};

#[path = "common.rs"]
mod common;
#[path = "../../tests/common/onnx_builder.rs"]
mod onnx_builder;
#[path = "../../tests/common/proto.rs"]
mod proto;
#[path = "../../tests/common/reference.rs"]
mod reference;

use onnx_builder::{build_node_model, BuildOpts, Dt};
use proto::{attr_float, attr_floats, attr_int, attr_string, attr_strings};
use reference::{run_reference, takes_alpha, takes_beta, OpKind, RefAttrs, RefInputs};

#[derive(Arbitrary, Debug)]
struct Case {
    op: u8,
    direction: u8,
    hidden: u8,
    input: u8,
    seq: u8,
    batch: u8,
    batch_major: bool,
    opset: u8,
    /// Indices into the eleven functions; `None` keeps the spec defaults.
    activations: Option<[u8; 6]>,
    /// Bit k set: write function k in lower case (names match case-insensitively).
    lower_case: u8,
    alphas: Vec<i8>,
    betas: Vec<i8>,
    clip: Option<u8>,
    input_forget: bool,
    linear_before_reset: bool,
    has_b: bool,
    has_h0: bool,
    has_c0: bool,
    has_p: bool,
    sequence_lens: Option<[u8; 3]>,
    /// Bits: Y, Y_h, Y_c.
    outputs: u8,
    /// Leave the hidden_size attribute out (derived from R).
    no_hidden_attr: bool,
    float64: bool,
    initializers: bool,
    scale: u8,
    seed: u64,
    corrupt: Option<Corrupt>,
}

/// Ways to break a valid case; each must be an error.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Corrupt {
    HiddenSizeAttr,
    SequenceLenTooLong,
    SequenceLenNegative,
    SequenceLensCount,
    InitialHShape,
    InitialCShape,
    BShape,
    PShape,
    WShape,
    RShape,
    UnknownActivation,
    ActivationCount,
    TooManyAlphas,
    Direction,
    Layout,
    Clip,
    InputForgetOnNonLstm,
    PeepholesOnNonLstm,
}

const FUNCTIONS: [&str; 11] = reference::ALL_ACTIVATIONS;
const SCALES: [f64; 5] = [0.1, 0.5, 1.0, 2.0, 4.0];

/// splitmix64: the values come from a seed, so the fuzzer steers shapes and attributes while
/// every case still has dense, varied numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-scale, scale), rounded to f32 so both dtypes see the same numbers.
    fn val(&mut self, scale: f64) -> f64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((2.0 * u - 1.0) * scale) as f32 as f64
    }
    fn array(&mut self, shape: &[usize], scale: f64) -> ArrayD<f64> {
        let n = shape.iter().product();
        let v = (0..n).map(|_| self.val(scale)).collect();
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }
}

struct Built {
    attrs: RefAttrs,
    inputs: RefInputs,
    opts: BuildOpts,
}

fn build(case: &Case) -> Built {
    let op = [OpKind::Rnn, OpKind::Lstm, OpKind::Gru][case.op as usize % 3];
    let direction = ["forward", "reverse", "bidirectional"][case.direction as usize % 3];
    let h = 1 + case.hidden as usize % 6;
    let i = 1 + case.input as usize % 5;
    let t = 1 + case.seq as usize % 5;
    let b = 1 + case.batch as usize % 3;
    let opset = [7, 14, 22][case.opset as usize % 3];
    let layout = if opset >= 14 && case.batch_major {
        1
    } else {
        0
    };
    let mut attrs = RefAttrs::new(op, direction, h);
    attrs.layout = layout;
    let nd = attrs.num_directions();
    let g = op.gates();

    if let Some(idx) = case.activations {
        let n = op.acts_per_direction() * nd;
        let names: Vec<String> = idx[..n]
            .iter()
            .map(|&k| FUNCTIONS[k as usize % FUNCTIONS.len()].to_string())
            .collect();
        let want_a = names.iter().filter(|n| takes_alpha(n)).count();
        let want_b = names.iter().filter(|n| takes_beta(n)).count();
        attrs.activation_alpha = case
            .alphas
            .iter()
            .take(want_a)
            .map(|&a| a as f32 / 32.0)
            .collect();
        attrs.activation_beta = case
            .betas
            .iter()
            .take(want_b)
            .map(|&v| v as f32 / 32.0)
            .collect();
        attrs.activations = Some(names);
    }
    attrs.clip = case.clip.map(|c| (1 + c as u32) as f32 / 16.0);
    attrs.input_forget = op == OpKind::Lstm && case.input_forget;
    attrs.linear_before_reset = op == OpKind::Gru && case.linear_before_reset;

    let scale = SCALES[case.scale as usize % SCALES.len()];
    let mut rng = Rng(case.seed);
    let (x_shape, state) = if layout == 0 {
        (vec![t, b, i], vec![nd, b, h])
    } else {
        (vec![b, t, i], vec![b, nd, h])
    };
    let inputs = RefInputs {
        x: rng.array(&x_shape, 1.0),
        w: rng.array(&[nd, g * h, i], scale),
        r: rng.array(&[nd, g * h, h], scale),
        b: case.has_b.then(|| rng.array(&[nd, 2 * g * h], scale)),
        sequence_lens: case.sequence_lens.map(|l| {
            l[..b]
                .iter()
                .map(|&n| (n as usize % (t + 1)) as i32)
                .collect()
        }),
        initial_h: case.has_h0.then(|| rng.array(&state, 1.0)),
        initial_c: (op == OpKind::Lstm && case.has_c0).then(|| rng.array(&state, 1.0)),
        p: (op == OpKind::Lstm && case.has_p).then(|| rng.array(&[nd, 3 * h], scale)),
    };
    let mut want = case.outputs & if op == OpKind::Lstm { 7 } else { 3 };
    if want == 0 {
        want = 1;
    }
    // RNN_RUN_FUZZ_DTYPE=f32|f64 replays a case in the other element type.
    let dtype = match std::env::var("RNN_RUN_FUZZ_DTYPE").as_deref() {
        Ok("f64") => Dt::F64,
        Ok("f32") => Dt::F32,
        _ if case.float64 => Dt::F64,
        _ => Dt::F32,
    };
    let mut opts = BuildOpts::for_inputs(op, opset, dtype, &inputs);
    opts.want_y = want & 1 != 0;
    opts.want_y_h = want & 2 != 0;
    opts.want_y_c = want & 4 != 0;
    opts.weights_as_initializers = case.initializers;
    Built {
        attrs,
        inputs,
        opts,
    }
}

fn to_tensor(a: &ArrayD<f64>, dt: Dt) -> Tensor {
    match dt {
        Dt::F32 => Tensor::from(a.mapv(|v| v as f32)),
        Dt::F64 => Tensor::from(a.clone()),
    }
}

fn graph_inputs(names: &[String], inputs: &RefInputs, dt: Dt) -> Vec<Tensor> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "X" => to_tensor(&inputs.x, dt),
            "W" => to_tensor(&inputs.w, dt),
            "R" => to_tensor(&inputs.r, dt),
            "B" => to_tensor(inputs.b.as_ref().unwrap(), dt),
            "initial_h" => to_tensor(inputs.initial_h.as_ref().unwrap(), dt),
            "initial_c" => to_tensor(inputs.initial_c.as_ref().unwrap(), dt),
            "P" => to_tensor(inputs.p.as_ref().unwrap(), dt),
            "sequence_lens" => {
                let l = inputs.sequence_lens.clone().unwrap();
                Tensor::from(ArrayD::from_shape_vec(IxDyn(&[l.len()]), l).unwrap())
            }
            other => panic!("unexpected graph input {other}"),
        })
        .collect()
}

/// Rewrites the single node of an encoded model.
fn edit_node(bytes: &[u8], f: impl FnOnce(&mut tract_onnx::pb::NodeProto)) -> Vec<u8> {
    let mut model = ModelProto::decode(bytes).expect("the builder's model decodes");
    let graph = model.graph.as_mut().expect("graph");
    f(&mut graph.node[0]);
    model.encode_to_vec()
}

fn set_attr(node: &mut tract_onnx::pb::NodeProto, attr: AttributeProto) {
    node.attribute.retain(|a| a.name != attr.name);
    node.attribute.push(attr);
}

fn lower_case_activations(bytes: &[u8], mask: u8) -> Vec<u8> {
    edit_node(bytes, |node| {
        for a in &mut node.attribute {
            if a.name == "activations" {
                for (k, s) in a.strings.iter_mut().enumerate() {
                    if mask & (1 << k) != 0 {
                        s.make_ascii_lowercase();
                    }
                }
            }
        }
    })
}

/// Compares outputs with the reference for one case.
///
/// float32 runs differ from the float64 reference by rounding, amplified by the recurrence:
/// an Affine update gate with alpha 3 compounds both the values and their errors step after
/// step. A float32 mismatch is therefore checked again against the reference's own
/// sensitivity: the largest change of each output element when every input and weight moves
/// by 2 float32 ulps (three random perturbations). A difference more than 100 times that is a
/// finding; one within it is the problem's conditioning, not the cells.
struct Checker<'a> {
    attrs: &'a RefAttrs,
    inputs: &'a RefInputs,
    reference: reference::RefOutputs,
    case: &'a Case,
    dt: Dt,
    skip_f32: bool,
    sensitivity: std::cell::OnceCell<reference::RefOutputs>,
}

impl Checker<'_> {
    fn want<'r>(outputs: &'r reference::RefOutputs, name: &str) -> &'r ArrayD<f64> {
        match name {
            "Y" => &outputs.y,
            "Y_h" => &outputs.y_h,
            _ => outputs.y_c.as_ref().expect("Y_c only for LSTM"),
        }
    }

    fn sensitivity(&self) -> &reference::RefOutputs {
        self.sensitivity.get_or_init(|| {
            let mut rng = Rng(0x5EED);
            let ulps = 2.0 * f32::EPSILON as f64;
            let mut jitter = |a: &ArrayD<f64>| {
                a.mapv(|v| {
                    let sign = if rng.next() & 1 == 0 { 1.0 } else { -1.0 };
                    v * (1.0 + sign * ulps)
                })
            };
            let base = &self.reference;
            let mut worst = reference::RefOutputs {
                y: ArrayD::zeros(base.y.raw_dim()),
                y_h: ArrayD::zeros(base.y_h.raw_dim()),
                y_c: base.y_c.as_ref().map(|c| ArrayD::zeros(c.raw_dim())),
            };
            for _ in 0..3 {
                let i = self.inputs;
                let moved = RefInputs {
                    x: jitter(&i.x),
                    w: jitter(&i.w),
                    r: jitter(&i.r),
                    b: i.b.as_ref().map(&mut jitter),
                    sequence_lens: i.sequence_lens.clone(),
                    initial_h: i.initial_h.as_ref().map(&mut jitter),
                    initial_c: i.initial_c.as_ref().map(&mut jitter),
                    p: i.p.as_ref().map(&mut jitter),
                };
                let out = run_reference(self.attrs, &moved);
                let widen = |acc: &mut ArrayD<f64>, new: &ArrayD<f64>, old: &ArrayD<f64>| {
                    ndarray::Zip::from(acc)
                        .and(new)
                        .and(old)
                        .for_each(|a, &n, &o| {
                            *a = a.max((n - o).abs());
                        })
                };
                widen(&mut worst.y, &out.y, &base.y);
                widen(&mut worst.y_h, &out.y_h, &base.y_h);
                if let (Some(a), Some(n), Some(o)) = (&mut worst.y_c, &out.y_c, &base.y_c) {
                    widen(a, n, o);
                }
            }
            worst
        })
    }

    fn check(&self, what: &str, name: &str, got: &Tensor) {
        let (dt, case) = (self.dt, self.case);
        let want = Self::want(&self.reference, name);
        let got = got.cast_to::<f64>().expect("cast");
        let got = got.to_plain_array_view::<f64>().expect("view");
        assert_eq!(got.shape(), want.shape(), "{what}: shape\n{case:?}");
        if std::env::var_os("RNN_RUN_FUZZ_VERBOSE").is_some() {
            eprintln!(
                "{what} {dt:?} {:?}\n  got  {:?}\n  want {:?}",
                got.shape(),
                got.iter().collect::<Vec<_>>(),
                want.iter().collect::<Vec<_>>()
            );
        }
        if want.iter().any(|v| !v.is_finite()) {
            return;
        }
        let magnitude = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        if dt == Dt::F32 && magnitude > 1e30 {
            // Past float32's range (an unbounded activation such as Affine or Relu
            // compounding over the steps): inf and NaN there are IEEE arithmetic.
            return;
        }
        let (rtol, atol) = match dt {
            Dt::F64 => (1e-9, 1e-10 * magnitude),
            Dt::F32 => (1e-4, 1e-4 * magnitude),
        };
        let mut slack: Option<&ArrayD<f64>> = None;
        for ((idx, &w), &g) in want.indexed_iter().zip(got.iter()) {
            let diff = (g - w).abs();
            let within = |extra: f64| diff <= atol + rtol * w.abs() + extra;
            if within(0.0) {
                continue;
            }
            if dt == Dt::F32 {
                if self.skip_f32 {
                    return;
                }
                let s = *slack.get_or_insert_with(|| Self::want(self.sensitivity(), name));
                if within(100.0 * s[&idx]) {
                    continue;
                }
            }
            panic!(
                "{what} {dt:?}: at {idx:?} got {g:e}, reference {w:e} (|diff| {diff:e}, \
                 magnitude {magnitude:e}, reference's change for 2-ulp input changes {:e})\n\
                 got  {:?}\nwant {:?}\n{case:?}",
                slack.map(|s| s[&idx]).unwrap_or(0.0),
                got.iter().take(24).collect::<Vec<_>>(),
                want.iter().take(24).collect::<Vec<_>>(),
            );
        }
    }
}

fn check_valid(case: &Case, built: &Built) {
    let Built {
        attrs,
        inputs,
        opts,
    } = built;
    let (bytes, in_names, out_names) = build_node_model(attrs, opts, inputs);
    let mut bytes = lower_case_activations(&bytes, case.lower_case);
    if case.no_hidden_attr {
        bytes = edit_node(&bytes, |n| n.attribute.retain(|a| a.name != "hidden_size"));
    }
    let dt = opts.dtype;
    let reference = run_reference(attrs, inputs);
    // A reference that overflows (sums past f64's range with huge weights) turns inf into
    // NaN (0 · inf), and a later Relu can turn the NaN into 0, so outputs that look finite
    // can still be wrong. Y (every step) and Y_c show such a NaN: skip the whole case then.
    let finite = |a: &ArrayD<f64>| a.iter().all(|v| v.is_finite());
    if !finite(&reference.y)
        || !finite(&reference.y_h)
        || !reference.y_c.as_ref().is_none_or(finite)
    {
        return;
    }
    let checker = Checker {
        attrs,
        inputs,
        reference,
        case,
        dt,
        // ThresholdedRelu is discontinuous at alpha: float32 rounding may put a value on
        // the other side, so a float32 mismatch there is not a finding.
        skip_f32: attrs
            .activations
            .as_ref()
            .is_some_and(|a| a.iter().any(|n| n == "ThresholdedRelu")),
        sensitivity: Default::default(),
    };

    let model = Model::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("a valid node was refused at load: {e}\n{case:?}"));
    let outs = model
        .run(graph_inputs(&in_names, inputs, dt))
        .unwrap_or_else(|e| panic!("a valid node was refused at run: {e}\n{case:?}"));
    assert_eq!(outs.len(), out_names.len());
    for (name, got) in out_names.iter().zip(&outs) {
        checker.check(name, name, got);
    }

    // The same node through `layer::Layer`, without tract.
    let spec = &model.recurrent_nodes()[0].spec;
    match dt {
        Dt::F64 => check_layer::<f64>(spec, &checker, |a| a.clone()),
        Dt::F32 => check_layer::<f32>(spec, &checker, |a| a.mapv(|v| v as f32)),
    }
}

fn check_layer<T: rnn_run::kernels::Float>(
    spec: &rnn_run::attrs::NodeSpec,
    checker: &Checker,
    conv: impl Fn(&ArrayD<f64>) -> ArrayD<T>,
) {
    let (inputs, case) = (checker.inputs, checker.case);
    let w = conv(&inputs.w);
    let r = conv(&inputs.r);
    let b = inputs.b.as_ref().map(&conv);
    let p = inputs.p.as_ref().map(&conv);
    let layer = Layer::from_onnx(
        spec,
        w.view(),
        r.view(),
        b.as_ref().map(|a| a.view()),
        p.as_ref().map(|a| a.view()),
    )
    .unwrap_or_else(|e| panic!("Layer::from_onnx refused a valid node: {e}\n{case:?}"));
    let x = conv(&inputs.x);
    let h0 = inputs.initial_h.as_ref().map(&conv);
    let c0 = inputs.initial_c.as_ref().map(&conv);
    let lens: Option<Vec<i64>> = inputs
        .sequence_lens
        .as_ref()
        .map(|l| l.iter().map(|&n| n as i64).collect());
    let run = RunInputs {
        sequence_lens: lens.as_deref(),
        initial_h: h0.as_ref().map(|a| a.view()),
        initial_c: c0.as_ref().map(|a| a.view()),
        ..Default::default()
    };
    let out = layer
        .run(x.view(), run, None)
        .unwrap_or_else(|e| panic!("Layer::run refused a valid node: {e}\n{case:?}"));
    let f64_of = |a: ndarray::ArrayViewD<T>| -> Tensor {
        Tensor::from(a.mapv(|v| v.to_f64().unwrap_or(f64::NAN)))
    };
    checker.check("layer Y", "Y", &f64_of(out.y.view().into_dyn()));
    checker.check("layer Y_h", "Y_h", &f64_of(out.y_h.view().into_dyn()));
    if let Some(got) = &out.y_c {
        checker.check("layer Y_c", "Y_c", &f64_of(got.view().into_dyn()));
    }
}

fn check_corrupt(case: &Case, built: &Built, corrupt: Corrupt) {
    let Built {
        attrs,
        inputs,
        opts,
    } = built;
    let mut attrs = attrs.clone();
    let mut inputs = inputs.clone();
    let mut opts = opts.clone();
    let op = attrs.op;
    let nd = attrs.num_directions();
    let h = attrs.hidden_size;
    let g = op.gates();
    let bigger = |a: &ArrayD<f64>, axis: usize| {
        let mut shape = a.shape().to_vec();
        shape[axis] += 1;
        ArrayD::<f64>::zeros(IxDyn(&shape))
    };
    let t = inputs.x.shape()[attrs.layout as usize];
    let batch = inputs.x.shape()[1 - attrs.layout as usize];
    let mut edit: Option<Box<dyn FnOnce(&mut tract_onnx::pb::NodeProto)>> = None;
    match corrupt {
        Corrupt::HiddenSizeAttr => {
            edit = Some(Box::new(move |n| {
                set_attr(n, attr_int("hidden_size", h as i64 + 1))
            }))
        }
        Corrupt::SequenceLenTooLong | Corrupt::SequenceLenNegative => {
            let mut l = inputs.sequence_lens.take().unwrap_or(vec![t as i32; batch]);
            l[0] = if matches!(corrupt, Corrupt::SequenceLenNegative) {
                -1
            } else {
                t as i32 + 1
            };
            inputs.sequence_lens = Some(l);
            opts.has_seq_lens = true;
        }
        Corrupt::SequenceLensCount => {
            inputs.sequence_lens = Some(vec![t as i32; batch + 1]);
            opts.has_seq_lens = true;
        }
        Corrupt::InitialHShape => {
            let shape = if attrs.layout == 0 {
                [nd, batch, h + 1]
            } else {
                [batch, nd, h + 1]
            };
            inputs.initial_h = Some(ArrayD::zeros(IxDyn(&shape)));
            opts.has_h0 = true;
        }
        Corrupt::InitialCShape => {
            if op != OpKind::Lstm {
                return;
            }
            let shape = if attrs.layout == 0 {
                [nd + 1, batch, h]
            } else {
                [batch, nd + 1, h]
            };
            inputs.initial_c = Some(ArrayD::zeros(IxDyn(&shape)));
            opts.has_c0 = true;
        }
        Corrupt::BShape => {
            inputs.b = Some(ArrayD::zeros(IxDyn(&[nd, 2 * g * h + 1])));
            opts.has_b = true;
        }
        Corrupt::PShape => {
            if op != OpKind::Lstm {
                return;
            }
            inputs.p = Some(ArrayD::zeros(IxDyn(&[nd, 3 * h - 1])));
            opts.has_p = true;
        }
        Corrupt::WShape => inputs.w = bigger(&inputs.w, 2 - (case.seed % 2) as usize),
        Corrupt::RShape => inputs.r = bigger(&inputs.r, 1 + (case.seed % 2) as usize),
        Corrupt::UnknownActivation => {
            let n = op.acts_per_direction() * nd;
            let mut names = vec!["Tanh".to_string(); n];
            names[case.seed as usize % n] = "Tahn".into();
            attrs.activations = Some(names);
            attrs.activation_alpha.clear();
            attrs.activation_beta.clear();
        }
        Corrupt::ActivationCount => {
            let n = op.acts_per_direction() * nd + 1;
            edit = Some(Box::new(move |node| {
                set_attr(node, attr_strings("activations", &vec!["Tanh"; n]))
            }))
        }
        Corrupt::TooManyAlphas => {
            let n = op.acts_per_direction() * nd;
            edit = Some(Box::new(move |node| {
                set_attr(node, attr_strings("activations", &vec!["LeakyRelu"; n]));
                set_attr(node, attr_floats("activation_alpha", &vec![0.5; n + 1]));
            }))
        }
        Corrupt::Direction => {
            edit = Some(Box::new(|n| {
                set_attr(n, attr_string("direction", "sideways"))
            }))
        }
        Corrupt::Layout => {
            if opts.opset < 14 {
                return;
            }
            edit = Some(Box::new(|n| set_attr(n, attr_int("layout", 2))))
        }
        Corrupt::Clip => {
            let c = [0.0, -1.0, f32::NAN][case.seed as usize % 3];
            edit = Some(Box::new(move |n| set_attr(n, attr_float("clip", c))))
        }
        Corrupt::InputForgetOnNonLstm => {
            if op == OpKind::Lstm {
                return;
            }
            edit = Some(Box::new(|n| set_attr(n, attr_int("input_forget", 1))))
        }
        Corrupt::PeepholesOnNonLstm => {
            if op == OpKind::Lstm {
                return;
            }
            // The builder only writes P for LSTM: add the input by hand.
            let p = ArrayD::<f64>::zeros(IxDyn(&[nd, 3 * h]));
            let dt = opts.dtype;
            let (bytes, in_names, _) = build_node_model(&attrs, &opts, &inputs);
            let mut model = ModelProto::decode(&bytes[..]).unwrap();
            let graph = model.graph.as_mut().unwrap();
            while graph.node[0].input.len() < 7 {
                graph.node[0].input.push(String::new());
            }
            graph.node[0].input.push("P".into());
            graph
                .initializer
                .push(onnx_builder::tensor_proto("P", &p, dt, true));
            let bytes = model.encode_to_vec();
            expect_error(case, &bytes, graph_inputs(&in_names, &inputs, dt));
            return;
        }
    }
    let (bytes, in_names, _) = build_node_model(&attrs, &opts, &inputs);
    let bytes = match edit {
        Some(f) => edit_node(&bytes, f),
        None => bytes,
    };
    expect_error(case, &bytes, graph_inputs(&in_names, &inputs, opts.dtype));
}

fn expect_error(case: &Case, bytes: &[u8], inputs: Vec<Tensor>) {
    let result = Model::from_bytes(bytes).and_then(|m| m.run(inputs));
    if let Ok(outs) = result {
        panic!(
            "a broken node was accepted ({} outputs)\n{case:?}",
            outs.len()
        );
    }
}

fuzz_target!(|case: Case| {
    common::install_panic_hook();
    let built = build(&case);
    match case.corrupt {
        None => check_valid(&case, &built),
        Some(c) => check_corrupt(&case, &built, c),
    }
});
