//! `LoadOptions::recurrent_weights`: Rᵀ stored in bfloat16 or IEEE half.
//!
//! The option rounds R and nothing else, so a model loaded with it must compute what the
//! float64 reference computes from the same model with R rounded beforehand. The rounding
//! here is the tests' own (bit arithmetic for bfloat16, the `half` crate for f16), not the
//! library's. Each case also checks that the option took effect: the outputs move away from
//! the unrounded reference.

mod common;

use common::onnx_builder::{build_node_model, BuildOpts, Dt};
use common::reference::{run_reference, OpKind, RefAttrs, RefInputs, RefOutputs};
use common::rng::Rng;
use ndarray::{ArrayD, IxDyn};
use rnn_run::{LoadOptions, Model, Tensor, WeightFormat};

impl Rng {
    /// Uniform in [-a, a), exactly representable in f32.
    fn array(&mut self, shape: &[usize], a: f64) -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(shape), |_| {
            ((self.unit() * 2.0 - 1.0) * a) as f32 as f64
        })
    }
}

/// Nearest bfloat16 (ties to even): the top 16 bits of the f32 after rounding the rest.
fn round_bf16(x: f64) -> f64 {
    let bits = (x as f32).to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000;
    f32::from_bits(rounded) as f64
}

fn round_f16(x: f64) -> f64 {
    tract_core::internal::f16::from_f64(x).to_f64()
}

fn round_r(inputs: &RefInputs, format: WeightFormat) -> RefInputs {
    let round = match format {
        WeightFormat::Bf16 => round_bf16,
        WeightFormat::F16 => round_f16,
        WeightFormat::Full => |x| x,
    };
    RefInputs {
        r: inputs.r.mapv(round),
        ..inputs.clone()
    }
}

struct Case {
    attrs: RefAttrs,
    inputs: RefInputs,
}

fn case(op: OpKind, lbr: bool, hidden: usize, seed: u64) -> Case {
    let (t, b, i) = (12, 2, 5);
    let mut attrs = RefAttrs::new(op, "bidirectional", hidden);
    attrs.linear_before_reset = lbr;
    let mut rng = Rng(seed);
    let g = op.gates();
    let d = attrs.num_directions();
    let lstm = op == OpKind::Lstm;
    let inputs = RefInputs {
        x: rng.array(&[t, b, i], 1.0),
        w: rng.array(&[d, g * hidden, i], 0.5),
        // Large enough that rounding R changes the outputs well beyond f32's own error.
        r: rng.array(&[d, g * hidden, hidden], 0.5),
        b: Some(rng.array(&[d, 2 * g * hidden], 0.2)),
        sequence_lens: Some(vec![t as i32, 7]),
        initial_h: Some(rng.array(&[d, b, hidden], 0.5)),
        initial_c: lstm.then(|| rng.array(&[d, b, hidden], 0.5)),
        p: lstm.then(|| rng.array(&[d, 3 * hidden], 0.3)),
    };
    Case { attrs, inputs }
}

fn tensor(a: &ArrayD<f64>, dt: Dt) -> Tensor {
    match dt {
        Dt::F32 => Tensor::from(a.mapv(|v| v as f32)),
        Dt::F64 => Tensor::from(a.clone()),
    }
}

/// The model, loaded with `format`, and its graph inputs.
fn load(c: &Case, dt: Dt, initializers: bool, format: WeightFormat) -> (Model, Vec<Tensor>) {
    let mut opts = BuildOpts::for_inputs(c.attrs.op, 14, dt, &c.inputs);
    opts.weights_as_initializers = initializers;
    let (bytes, names, _) = build_node_model(&c.attrs, &opts, &c.inputs);
    let i = &c.inputs;
    let inputs = names
        .iter()
        .map(|name| match name.as_str() {
            "X" => tensor(&i.x, dt),
            "W" => tensor(&i.w, dt),
            "R" => tensor(&i.r, dt),
            "B" => tensor(i.b.as_ref().unwrap(), dt),
            "initial_h" => tensor(i.initial_h.as_ref().unwrap(), dt),
            "initial_c" => tensor(i.initial_c.as_ref().unwrap(), dt),
            "P" => tensor(i.p.as_ref().unwrap(), dt),
            "sequence_lens" => {
                let l = i.sequence_lens.clone().unwrap();
                Tensor::from(ArrayD::from_shape_vec(IxDyn(&[l.len()]), l).unwrap())
            }
            other => panic!("unexpected graph input {other}"),
        })
        .collect();
    let options = LoadOptions {
        recurrent_weights: format,
        ..Default::default()
    };
    (Model::from_bytes_with(&bytes, &options).unwrap(), inputs)
}

/// Largest |got - want| over Y, Y_h (and Y_c).
fn max_diff(got: &[Tensor], want: &RefOutputs) -> f64 {
    let wants = [Some(&want.y), Some(&want.y_h), want.y_c.as_ref()];
    got.iter()
        .zip(wants.into_iter().flatten())
        .map(|(g, w)| {
            let g = g.cast_to::<f64>().unwrap();
            let g = g.to_plain_array_view::<f64>().unwrap();
            assert_eq!(g.shape(), w.shape());
            g.iter()
                .zip(w.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max)
}

const CELLS: [(OpKind, bool); 4] = [
    (OpKind::Rnn, false),
    (OpKind::Lstm, false),
    (OpKind::Gru, false),
    (OpKind::Gru, true),
];

#[test]
fn half_precision_weights_compute_the_reference_of_the_rounded_weights() {
    let mut report = vec![];
    for (n, (op, lbr)) in CELLS.into_iter().enumerate() {
        // 37 is off every panel width, 64 on them.
        for hidden in [37, 64] {
            let c = case(op, lbr, hidden, 100 + n as u64 * 7 + hidden as u64);
            let exact = run_reference(&c.attrs, &c.inputs);
            for format in [WeightFormat::Bf16, WeightFormat::F16] {
                let rounded = run_reference(&c.attrs, &round_r(&c.inputs, format));
                for dt in [Dt::F32, Dt::F64] {
                    // Weights as initializers are packed once at load, as inputs per run.
                    for initializers in [true, false] {
                        let (model, inputs) = load(&c, dt, initializers, format);
                        let got = model.run(inputs).unwrap();
                        let to_rounded = max_diff(&got, &rounded);
                        let to_exact = max_diff(&got, &exact);
                        let what = format!(
                            "{op:?} lbr {lbr} H {hidden} {} {dt:?} initializers {initializers}",
                            format.name()
                        );
                        let tolerance = match dt {
                            Dt::F32 => 2e-5,
                            Dt::F64 => 1e-11,
                        };
                        assert!(
                            to_rounded <= tolerance,
                            "{what}: {to_rounded:e} from the reference with R rounded"
                        );
                        assert!(
                            to_exact > 3.0 * tolerance,
                            "{what}: {to_exact:e} from the exact reference: was R rounded?"
                        );
                        report.push(format!("{what}: error {to_exact:.2e}"));
                    }
                }
            }
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn the_default_keeps_the_weights_exact() {
    let c = case(OpKind::Lstm, false, 37, 7);
    let (model, inputs) = load(&c, Dt::F64, true, WeightFormat::default());
    let got = model.run(inputs).unwrap();
    assert!(max_diff(&got, &run_reference(&c.attrs, &c.inputs)) < 1e-11);
}

#[test]
fn streams_and_threads_keep_the_format() {
    for op in [OpKind::Lstm, OpKind::Gru] {
        let mut c = case(op, op == OpKind::Gru, 64, 11);
        // A stream carries the states between pushes: a forward node, X its only input.
        c.attrs.direction = "forward".into();
        let hidden = 64;
        let g = op.gates();
        let mut rng = Rng(5);
        c.inputs = RefInputs {
            x: rng.array(&[12, 2, 5], 1.0),
            w: rng.array(&[1, g * hidden, 5], 0.5),
            r: rng.array(&[1, g * hidden, hidden], 0.5),
            b: Some(rng.array(&[1, 2 * g * hidden], 0.2)),
            sequence_lens: None,
            initial_h: None,
            initial_c: None,
            p: None,
        };
        let rounded = run_reference(&c.attrs, &round_r(&c.inputs, WeightFormat::Bf16));
        for threads in [1, 2] {
            let mut opts = BuildOpts::for_inputs(op, 14, Dt::F32, &c.inputs);
            opts.weights_as_initializers = true;
            let (bytes, _, _) = build_node_model(&c.attrs, &opts, &c.inputs);
            let options = LoadOptions {
                recurrent_weights: WeightFormat::Bf16,
                threads,
                ..Default::default()
            };
            let model = Model::from_bytes_with(&bytes, &options).unwrap();
            let x = tensor(&c.inputs.x, Dt::F32);
            let whole = model.run(vec![x.clone()]).unwrap();
            assert!(
                max_diff(&whole, &rounded) < 2e-5,
                "{op:?} threads {threads}"
            );
            let (chunked, pushes) = model.run_chunked(vec![x], 5).unwrap();
            assert_eq!(pushes, 3);
            assert!(
                max_diff(&chunked, &rounded) < 2e-5,
                "{op:?} threads {threads}, chunks of 5"
            );
        }
    }
}
