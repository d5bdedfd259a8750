//! Attribute-matrix test: single-node ONNX RNN / LSTM / GRU models built on the
//! fly, run through `rnn_run`, compared with the independent f64 reference in
//! `tests/common/reference.rs` (written from the ONNX operator spec).
//!
//! * `spec_matrix` runs a deterministic covering design over every attribute
//!   and optional input/output (see `generate_matrix`), each case in f32 and in
//!   f64, with the weights alternately as graph inputs and as initializers.
//! * The `named_*` tests are small hand-readable cases so that a failure points
//!   at one feature.
//! * The `reference_*` tests check the reference itself (hand-computed values,
//!   metamorphic relations); they do not use the library.
//!
//! Run with `cargo test --test spec_matrix -- --nocapture` to see the summary.

mod common;

use common::onnx_builder::{build_node_model, BuildOpts, Dt};
use common::reference::{
    resolve_activations, run_reference, takes_alpha, takes_beta, Activation, OpKind, RefAttrs,
    RefInputs, ALL_ACTIVATIONS,
};
use common::rng::Rng;
use ndarray::{ArrayD, Dimension, IxDyn};
use std::collections::BTreeMap;

const F32_ATOL: f64 = 1e-5;
const F32_RTOL: f64 = 1e-4;
const F64_ATOL: f64 = 1e-10;
const F64_RTOL: f64 = 1e-10;

/// Cases generated per (op, direction, layout) triple; 18 triples.
const CASES_PER_TRIPLE: usize = 72;
/// The matrix must not silently shrink below this.
const MIN_MATRIX_CASES: usize = 1296;

// ---------------------------------------------------------------------------
// Deterministic draws (splitmix64, tests/common/rng.rs).

impl Rng {
    /// Uniform in [lo, hi), rounded to an f32-representable value so that the
    /// f32 and f64 runs see exactly the same numbers as the reference.
    fn val(&mut self, lo: f64, hi: f64) -> f64 {
        (lo + (hi - lo) * self.unit()) as f32 as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

// ---------------------------------------------------------------------------
// Cases

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeqMode {
    /// no sequence_lens input
    Absent,
    /// sequence_lens present, every entry == T
    Full,
    /// sequence_lens present, entries random in 1..=T
    Varied,
}

#[derive(Clone, Debug)]
struct Case {
    id: String,
    attrs: RefAttrs,
    inputs: RefInputs,
    opset: i64,
    want_y: bool,
    want_y_h: bool,
    want_y_c: bool,
    /// weights as initializers in the f32 run; the f64 run uses the opposite.
    init_f32: bool,
}

struct Shape {
    t: usize,
    b: usize,
    i: usize,
    h: usize,
}

fn x_shape(layout: i64, s: &Shape) -> Vec<usize> {
    if layout == 0 {
        vec![s.t, s.b, s.i]
    } else {
        vec![s.b, s.t, s.i]
    }
}

fn state_shape(layout: i64, nd: usize, s: &Shape) -> Vec<usize> {
    if layout == 0 {
        vec![nd, s.b, s.h]
    } else {
        vec![s.b, nd, s.h]
    }
}

fn rand_array(rng: &mut Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.val(lo, hi)).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn gen_inputs(
    rng: &mut Rng,
    attrs: &RefAttrs,
    s: &Shape,
    has_b: bool,
    seq: SeqMode,
    has_h0: bool,
    has_c0: bool,
    has_p: bool,
) -> RefInputs {
    let nd = attrs.num_directions();
    let g = attrs.op.gates();
    let h = attrs.hidden_size;
    assert_eq!(h, s.h);
    // keep pre-activations moderate whatever the fan-in
    let ws = 0.5 * (2.0 / ((s.i + s.h) as f64).sqrt()).min(1.0);
    let x = rand_array(rng, &x_shape(attrs.layout, s), -1.0, 1.0);
    let w = rand_array(rng, &[nd, g * h, s.i], -ws, ws);
    let r = rand_array(rng, &[nd, g * h, h], -ws, ws);
    let b = if has_b {
        Some(rand_array(rng, &[nd, 2 * g * h], -0.5, 0.5))
    } else {
        None
    };
    let sequence_lens = match seq {
        SeqMode::Absent => None,
        SeqMode::Full => Some(vec![s.t as i32; s.b]),
        SeqMode::Varied => Some((0..s.b).map(|_| 1 + rng.below(s.t) as i32).collect()),
    };
    let st = state_shape(attrs.layout, nd, s);
    let initial_h = if has_h0 {
        Some(rand_array(rng, &st, -1.0, 1.0))
    } else {
        None
    };
    let initial_c = if has_c0 {
        Some(rand_array(rng, &st, -1.0, 1.0))
    } else {
        None
    };
    let p = if has_p {
        Some(rand_array(rng, &[nd, 3 * h], -0.5, 0.5))
    } else {
        None
    };
    RefInputs {
        x,
        w,
        r,
        b,
        sequence_lens,
        initial_h,
        initial_c,
        p,
    }
}

/// A sensible random alpha for a function taking alpha.
fn gen_alpha(rng: &mut Rng, name: &str) -> f32 {
    (match name {
        "Affine" => rng.val(0.5, 1.2),
        "LeakyRelu" => rng.val(0.01, 0.3),
        "ThresholdedRelu" => rng.val(0.0, 0.5),
        "ScaledTanh" => rng.val(0.5, 1.5),
        "HardSigmoid" => rng.val(0.1, 0.5),
        "Elu" => rng.val(0.5, 1.5),
        other => panic!("{other} takes no alpha"),
    }) as f32
}

/// A sensible random beta for a function taking beta.
fn gen_beta(rng: &mut Rng, name: &str) -> f32 {
    (match name {
        "Affine" => rng.val(-0.3, 0.3),
        "ScaledTanh" => rng.val(0.5, 1.5),
        "HardSigmoid" => rng.val(0.3, 0.7),
        other => panic!("{other} takes no beta"),
    }) as f32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParamMode {
    Full,
    Partial,
    Empty,
}

/// Fill activation_alpha / activation_beta for the given activation list.
fn gen_params(rng: &mut Rng, names: &[String], mode: ParamMode) -> (Vec<f32>, Vec<f32>) {
    let alpha_users: Vec<&String> = names.iter().filter(|n| takes_alpha(n)).collect();
    let beta_users: Vec<&String> = names.iter().filter(|n| takes_beta(n)).collect();
    let cut = |rng: &mut Rng, n: usize| -> usize {
        match mode {
            ParamMode::Full => n,
            ParamMode::Empty => 0,
            ParamMode::Partial => {
                if n >= 2 {
                    1 + rng.below(n - 1)
                } else {
                    0
                }
            }
        }
    };
    let na = cut(rng, alpha_users.len());
    let nb = cut(rng, beta_users.len());
    let alpha = alpha_users[..na]
        .iter()
        .map(|n| gen_alpha(rng, n))
        .collect();
    let beta = beta_users[..nb].iter().map(|n| gen_beta(rng, n)).collect();
    (alpha, beta)
}

const OPS: [OpKind; 3] = [OpKind::Rnn, OpKind::Lstm, OpKind::Gru];
const DIRECTIONS: [&str; 3] = ["forward", "reverse", "bidirectional"];
const CLIPS: [Option<f32>; 4] = [None, Some(0.5), Some(3.0), Some(1000.0)];
const SEQ_MODES: [SeqMode; 3] = [SeqMode::Absent, SeqMode::Full, SeqMode::Varied];
/// (T, B, I, H): batch 1, sequence length 1, hidden sizes not multiples of 8.
const SHAPES: [(usize, usize, usize, usize); 13] = [
    (1, 1, 1, 1),
    (2, 1, 3, 3),
    (3, 2, 2, 5),
    (4, 3, 4, 7),
    (5, 2, 3, 13),
    (1, 4, 5, 33),
    (3, 1, 6, 8),
    (6, 2, 1, 2),
    (2, 5, 9, 16),
    (7, 3, 2, 4),
    (1, 2, 3, 13),
    (4, 1, 2, 33),
    (12, 2, 3, 6),
];

/// Largest |value| allowed in any reference output of a matrix case. Random
/// unbounded gate activations (Relu, Affine, Softplus, ... as f) over long
/// sequences can make states grow geometrically; such candidates are redrawn
/// so that the f32 comparison stays meaningful.
const MAX_REFERENCE_MAGNITUDE: f64 = 20.0;

fn max_magnitude(r: &common::reference::RefOutputs) -> f64 {
    let m = |a: &ArrayD<f64>| a.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
    let mut x = m(&r.y).max(m(&r.y_h));
    if let Some(c) = &r.y_c {
        x = x.max(m(c));
    }
    x
}

/// Deterministic covering design. The (op, direction, layout) triple is
/// iterated fully; inside each triple, (sequence_lens mode × clip) is fully
/// crossed (every 12 cases) so every triple appears with every sequence_lens
/// mode and every clip value; all other axes are drawn pseudo-randomly, and
/// their coverage is asserted by `spec_matrix`. Returns the cases and the
/// number of candidates redrawn because their values grew too large.
fn generate_matrix() -> (Vec<Case>, usize) {
    let mut cases = vec![];
    let mut redrawn = 0;
    let mut triple = 0u64;
    for &op in &OPS {
        for &dir in &DIRECTIONS {
            for layout in [0i64, 1] {
                let mut rng = Rng::new(0x5EED_0000 + triple * 7919);
                triple += 1;
                for k in 0..CASES_PER_TRIPLE {
                    let seq = SEQ_MODES[k % 3];
                    let clip = CLIPS[(k / 3) % 4];
                    let mut attempts = 0;
                    loop {
                        let mut case = gen_case(&mut rng, op, dir, layout, seq, clip);
                        let r = run_reference(&case.attrs, &case.inputs);
                        if max_magnitude(&r) <= MAX_REFERENCE_MAGNITUDE {
                            case.id = format!("matrix#{}", cases.len());
                            case.init_f32 = k % 2 == 0;
                            cases.push(case);
                            break;
                        }
                        redrawn += 1;
                        attempts += 1;
                        assert!(
                            attempts < 100,
                            "cannot draw a bounded case for {op:?} {dir} {layout}"
                        );
                    }
                }
            }
        }
    }
    (cases, redrawn)
}

/// One random matrix case with the given fixed axes.
fn gen_case(
    rng: &mut Rng,
    op: OpKind,
    dir: &str,
    layout: i64,
    seq: SeqMode,
    clip: Option<f32>,
) -> Case {
    let (t, b, i, h) = SHAPES[rng.below(SHAPES.len())];
    let s = Shape { t, b, i, h };
    let mut attrs = RefAttrs::new(op, dir, h);
    attrs.layout = layout;
    attrs.clip = clip;
    let nd = attrs.num_directions();
    // activations: 1/3 spec defaults, 2/3 random lists
    if rng.below(3) != 0 {
        let n = op.acts_per_direction() * nd;
        let names: Vec<String> = (0..n)
            .map(|_| rng.pick(&ALL_ACTIVATIONS).to_string())
            .collect();
        let mode = [ParamMode::Full, ParamMode::Partial, ParamMode::Empty][rng.below(3)];
        let (alpha, beta) = gen_params(rng, &names, mode);
        attrs.activations = Some(names);
        attrs.activation_alpha = alpha;
        attrs.activation_beta = beta;
    }
    if op == OpKind::Lstm {
        attrs.input_forget = rng.chance(0.5);
    }
    if op == OpKind::Gru {
        attrs.linear_before_reset = rng.chance(0.5);
    }
    let has_b = rng.chance(0.6);
    let has_h0 = rng.chance(0.6);
    let has_c0 = op == OpKind::Lstm && rng.chance(0.6);
    let has_p = op == OpKind::Lstm && rng.chance(0.5);
    let inputs = gen_inputs(rng, &attrs, &s, has_b, seq, has_h0, has_c0, has_p);
    let (want_y, want_y_h, want_y_c) = if op == OpKind::Lstm {
        let m = 1 + rng.below(7);
        (m & 1 != 0, m & 2 != 0, m & 4 != 0)
    } else {
        let m = 1 + rng.below(3);
        (m & 1 != 0, m & 2 != 0, false)
    };
    let opset = if layout == 1 {
        rng.pick(&[14i64, 17, 22])
    } else {
        rng.pick(&[7i64, 9, 13, 14, 17, 22])
    };
    Case {
        id: String::new(),
        attrs,
        inputs,
        opset,
        want_y,
        want_y_h,
        want_y_c,
        init_f32: false,
    }
}

// ---------------------------------------------------------------------------
// Running and comparing

fn shape_of(a: &Option<ArrayD<f64>>) -> String {
    match a {
        None => "absent".to_string(),
        Some(a) => format!("{:?}", a.shape()),
    }
}

fn describe(case: &Case, dt: Dt, weights_as_initializers: bool) -> String {
    let a = &case.attrs;
    let acts: Vec<Activation> = resolve_activations(a).into_iter().flatten().collect();
    let acts: Vec<String> = acts
        .iter()
        .map(|x| {
            let mut s = x.name.clone();
            if takes_alpha(&x.name) || takes_beta(&x.name) {
                s += &format!("(alpha={}", x.alpha);
                if takes_beta(&x.name) {
                    s += &format!(", beta={}", x.beta);
                }
                s += ")";
            }
            s
        })
        .collect();
    let i = &case.inputs;
    format!(
        "case {id}: op={op} direction={dir} hidden_size={h} layout={layout} opset={opset} dtype={dt:?} weights_as_initializers={wai}\n  \
         activations attr={acts_attr:?} activation_alpha={aa:?} activation_beta={ab:?}\n  \
         resolved activations={acts:?}\n  \
         clip={clip:?} input_forget={inf} linear_before_reset={lbr}\n  \
         X{x:?} W{w:?} R{r:?} B={b} sequence_lens={sl:?} initial_h={h0} initial_c={c0} P={p}\n  \
         outputs: Y={wy} Y_h={wyh} Y_c={wyc}",
        id = case.id,
        op = a.op.op_type(),
        dir = a.direction,
        h = a.hidden_size,
        layout = a.layout,
        opset = case.opset,
        wai = weights_as_initializers,
        acts_attr = a.activations,
        aa = a.activation_alpha,
        ab = a.activation_beta,
        clip = a.clip,
        inf = a.input_forget,
        lbr = a.linear_before_reset,
        x = i.x.shape(),
        w = i.w.shape(),
        r = i.r.shape(),
        b = shape_of(&i.b),
        sl = i.sequence_lens,
        h0 = shape_of(&i.initial_h),
        c0 = shape_of(&i.initial_c),
        p = shape_of(&i.p),
        wy = case.want_y,
        wyh = case.want_y_h,
        wyc = case.want_y_c,
    )
}

fn to_tensor(a: &ArrayD<f64>, dt: Dt) -> rnn_run::Tensor {
    match dt {
        Dt::F32 => rnn_run::Tensor::from(a.mapv(|v| v as f32)),
        Dt::F64 => rnn_run::Tensor::from(a.clone()),
    }
}

/// Comparison result of one run.
#[derive(Clone, Debug, Default)]
struct RunStats {
    /// largest |got - want| over all outputs
    max_abs: f64,
    /// largest |got - want| / (atol + rtol |want|) over all outputs (<= 1 passes)
    max_ratio: f64,
}

/// Build, run and compare one case in one dtype. Err carries a full report.
fn run_case(case: &Case, dt: Dt, weights_as_initializers: bool) -> Result<RunStats, String> {
    run_case_on(case, dt, weights_as_initializers, 1).map(|(stats, _)| stats)
}

/// [`run_case`] on a model loaded with `threads`; also returns the outputs.
fn run_case_on(
    case: &Case,
    dt: Dt,
    weights_as_initializers: bool,
    threads: usize,
) -> Result<(RunStats, Vec<rnn_run::Tensor>), String> {
    let desc = || describe(case, dt, weights_as_initializers);
    let i = &case.inputs;
    let opts = BuildOpts {
        opset: case.opset,
        dtype: dt,
        has_b: i.b.is_some(),
        has_seq_lens: i.sequence_lens.is_some(),
        has_h0: i.initial_h.is_some(),
        has_c0: i.initial_c.is_some(),
        has_p: i.p.is_some(),
        want_y: case.want_y,
        want_y_h: case.want_y_h,
        want_y_c: case.want_y_c,
        weights_as_initializers,
    };
    let (bytes, in_names, out_names) = build_node_model(&case.attrs, &opts, i);
    let reference = run_reference(&case.attrs, i);

    let mut tensors = vec![];
    for name in &in_names {
        let t = match name.as_str() {
            "X" => to_tensor(&i.x, dt),
            "W" => to_tensor(&i.w, dt),
            "R" => to_tensor(&i.r, dt),
            "B" => to_tensor(i.b.as_ref().unwrap(), dt),
            "initial_h" => to_tensor(i.initial_h.as_ref().unwrap(), dt),
            "initial_c" => to_tensor(i.initial_c.as_ref().unwrap(), dt),
            "P" => to_tensor(i.p.as_ref().unwrap(), dt),
            "sequence_lens" => {
                let l = i.sequence_lens.clone().unwrap();
                rnn_run::Tensor::from(ArrayD::from_shape_vec(IxDyn(&[l.len()]), l).unwrap())
            }
            other => panic!("unexpected graph input {other}"),
        };
        tensors.push(t);
    }

    let options = rnn_run::LoadOptions {
        threads,
        ..Default::default()
    };
    let model = rnn_run::Model::from_bytes_with(&bytes, &options)
        .map_err(|e| format!("{}\n  Model::from_bytes failed: {e}", desc()))?;
    let outs = model
        .run(tensors)
        .map_err(|e| format!("{}\n  Model::run failed: {e}", desc()))?;
    if outs.len() != out_names.len() {
        return Err(format!(
            "{}\n  expected {} outputs {:?}, got {}",
            desc(),
            out_names.len(),
            out_names,
            outs.len()
        ));
    }
    let (atol, rtol) = match dt {
        Dt::F32 => (F32_ATOL, F32_RTOL),
        Dt::F64 => (F64_ATOL, F64_RTOL),
    };
    let mut stats = RunStats::default();
    for (name, got) in out_names.iter().zip(outs.iter()) {
        let want: &ArrayD<f64> = match name.as_str() {
            "Y" => &reference.y,
            "Y_h" => &reference.y_h,
            "Y_c" => reference.y_c.as_ref().unwrap(),
            other => panic!("unexpected output {other}"),
        };
        let got = got
            .cast_to::<f64>()
            .map_err(|e| format!("{}\n  output {name}: cannot cast to f64: {e:?}", desc()))?;
        let got = got
            .to_plain_array_view::<f64>()
            .map_err(|e| format!("{}\n  output {name}: cannot view: {e:?}", desc()))?;
        if got.shape() != want.shape() {
            return Err(format!(
                "{}\n  output {name}: shape {:?}, expected {:?}",
                desc(),
                got.shape(),
                want.shape()
            ));
        }
        let mut worst: Option<(Vec<usize>, f64, f64, f64)> = None; // (index, got, want, ratio)
        for (idx, &w) in want.indexed_iter() {
            let g = got[&idx];
            let diff = (g - w).abs();
            let ratio = if g.is_finite() {
                diff / (atol + rtol * w.abs())
            } else {
                f64::INFINITY
            };
            if g.is_finite() && diff > stats.max_abs {
                stats.max_abs = diff;
            }
            if worst.as_ref().map(|x| ratio > x.3).unwrap_or(true) {
                worst = Some((idx.slice().to_vec(), g, w, ratio));
            }
        }
        if let Some((idx, g, w, ratio)) = worst {
            stats.max_ratio = stats.max_ratio.max(ratio);
            // Negated on purpose: a NaN ratio must fail too.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let bad = !(ratio <= 1.0);
            if bad {
                return Err(format!(
                    "{}\n  output {name} mismatch: worst at index {idx:?}: got {g:e}, reference {w:e}, \
                     |diff| = {:e} (tolerance atol {atol:e} + rtol {rtol:e}*|ref|)\n  {name} got  = {:?}\n  {name} want = {:?}",
                    desc(),
                    (g - w).abs(),
                    abbreviate(got.iter().copied()),
                    abbreviate(want.iter().copied()),
                ));
            }
        }
    }
    Ok((stats, outs))
}

fn abbreviate(it: impl Iterator<Item = f64>) -> Vec<f64> {
    it.take(24).collect()
}

/// Run a case in f32 and f64 (each with weights both as inputs and as
/// initializers) and panic with the report on failure.
fn check_case(case: &Case) {
    let mut failures = vec![];
    for dt in [Dt::F32, Dt::F64] {
        for wai in [false, true] {
            if let Err(e) = run_case(case, dt, wai) {
                failures.push(e);
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} failing run(s):\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

// ---------------------------------------------------------------------------
// The matrix

#[test]
fn spec_matrix() {
    let (cases, redrawn) = generate_matrix();
    assert!(
        cases.len() >= MIN_MATRIX_CASES,
        "matrix shrank: {} cases < {}",
        cases.len(),
        MIN_MATRIX_CASES
    );

    // coverage bookkeeping: every value of every axis must appear many times
    let mut cov: BTreeMap<String, usize> = BTreeMap::new();
    let mut bump = |k: String| *cov.entry(k).or_insert(0) += 1;
    for c in &cases {
        let a = &c.attrs;
        let op = a.op.op_type();
        bump(format!("op={op}"));
        bump(format!("direction={}", a.direction));
        bump(format!("layout={}", a.layout));
        bump(format!(
            "{op}/activations={}",
            if a.activations.is_some() {
                "custom"
            } else {
                "default"
            }
        ));
        if let Some(names) = &a.activations {
            for n in names {
                bump(format!("{op}/act={n}"));
            }
            let na = names.iter().filter(|n| takes_alpha(n)).count();
            let nb = names.iter().filter(|n| takes_beta(n)).count();
            let mode = |given: usize, users: usize| {
                if users == 0 {
                    "unused"
                } else if given == 0 {
                    "empty"
                } else if given < users {
                    "partial"
                } else {
                    "full"
                }
            };
            bump(format!("alpha_list={}", mode(a.activation_alpha.len(), na)));
            bump(format!("beta_list={}", mode(a.activation_beta.len(), nb)));
        }
        bump(format!("clip={:?}", a.clip));
        bump(format!(
            "{op}/{}/layout{}/seq_lens={}",
            a.direction,
            a.layout,
            c.inputs.sequence_lens.is_some()
        ));
        bump(format!(
            "{op}/{}/layout{}/clip={}",
            a.direction,
            a.layout,
            a.clip.is_some()
        ));
        if a.op == OpKind::Lstm {
            bump(format!("input_forget={}", a.input_forget));
            bump(format!("P={}", c.inputs.p.is_some()));
            bump(format!("initial_c={}", c.inputs.initial_c.is_some()));
            bump(format!("LSTM/want_y_c={}", c.want_y_c));
        }
        if a.op == OpKind::Gru {
            bump(format!("linear_before_reset={}", a.linear_before_reset));
        }
        let seq = match &c.inputs.sequence_lens {
            None => "absent",
            Some(l) if l.iter().all(|&v| v as usize == seq_len(c)) => "full",
            Some(_) => "varied",
        };
        bump(format!("seq_lens={seq}"));
        bump(format!("B={}", c.inputs.b.is_some()));
        bump(format!("initial_h={}", c.inputs.initial_h.is_some()));
        bump(format!("want_y={}", c.want_y));
        bump(format!("want_y_h={}", c.want_y_h));
        bump(format!("hidden={}", a.hidden_size));
        bump(format!("T={}", seq_len(c)));
        bump(format!("batch={}", batch(c)));
        bump(format!("opset={}", c.opset));
    }
    let mut expected_keys: Vec<String> = vec![];
    for op in OPS {
        let o = op.op_type();
        expected_keys.push(format!("op={o}"));
        for n in ALL_ACTIVATIONS {
            expected_keys.push(format!("{o}/act={n}"));
        }
        for d in DIRECTIONS {
            for l in 0..2 {
                for b in [false, true] {
                    expected_keys.push(format!("{o}/{d}/layout{l}/seq_lens={b}"));
                    expected_keys.push(format!("{o}/{d}/layout{l}/clip={b}"));
                }
            }
        }
        expected_keys.push(format!("{o}/activations=custom"));
        expected_keys.push(format!("{o}/activations=default"));
    }
    for k in [
        "alpha_list=full",
        "alpha_list=partial",
        "alpha_list=empty",
        "beta_list=full",
        "beta_list=partial",
        "beta_list=empty",
        "input_forget=true",
        "input_forget=false",
        "linear_before_reset=true",
        "linear_before_reset=false",
        "P=true",
        "P=false",
        "initial_c=true",
        "initial_c=false",
        "LSTM/want_y_c=true",
        "LSTM/want_y_c=false",
        "seq_lens=absent",
        "seq_lens=full",
        "seq_lens=varied",
        "B=true",
        "B=false",
        "initial_h=true",
        "initial_h=false",
        "want_y=true",
        "want_y=false",
        "want_y_h=true",
        "want_y_h=false",
        "T=1",
        "batch=1",
        "hidden=1",
        "hidden=3",
        "hidden=5",
        "hidden=7",
        "hidden=13",
        "hidden=33",
        "opset=7",
        "opset=14",
        "opset=22",
        "clip=None",
        "clip=Some(0.5)",
        "clip=Some(1000.0)",
    ] {
        expected_keys.push(k.to_string());
    }
    let mut missing = vec![];
    for k in &expected_keys {
        let n = cov.get(k).copied().unwrap_or(0);
        if n < 3 {
            missing.push(format!("{k} ({n})"));
        }
    }
    assert!(
        missing.is_empty(),
        "matrix coverage too thin for: {missing:?}"
    );

    // run
    let start = std::time::Instant::now();
    let mut per_op_cases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_op_dt: BTreeMap<(String, String), RunStats> = BTreeMap::new();
    let mut runs = 0usize;
    let mut failures: Vec<String> = vec![];
    for c in &cases {
        *per_op_cases.entry(c.attrs.op.op_type()).or_insert(0) += 1;
        for (dt, wai) in [(Dt::F32, c.init_f32), (Dt::F64, !c.init_f32)] {
            runs += 1;
            match run_case(c, dt, wai) {
                Ok(s) => {
                    let e = per_op_dt
                        .entry((c.attrs.op.op_type().to_string(), format!("{dt:?}")))
                        .or_default();
                    e.max_abs = e.max_abs.max(s.max_abs);
                    e.max_ratio = e.max_ratio.max(s.max_ratio);
                }
                Err(e) => failures.push(e),
            }
        }
    }
    eprintln!(
        "spec_matrix: {} cases, {} runs (f32 + f64), {} failed, {:.1}s \
         ({redrawn} candidates redrawn for |values| > {MAX_REFERENCE_MAGNITUDE})",
        cases.len(),
        runs,
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    for (op, n) in &per_op_cases {
        eprintln!("  {op}: {n} cases");
    }
    for ((op, dt), s) in &per_op_dt {
        eprintln!(
            "  {op} {dt}: largest |error| {:.3e}, largest error/tolerance {:.3}",
            s.max_abs, s.max_ratio
        );
    }
    if !failures.is_empty() {
        let shown = failures.len().min(8);
        panic!(
            "{} of {} runs failed; first {}:\n\n{}",
            failures.len(),
            runs,
            shown,
            failures[..shown].join("\n\n")
        );
    }
}

fn seq_len(c: &Case) -> usize {
    c.inputs.x.shape()[if c.attrs.layout == 0 { 0 } else { 1 }]
}

fn batch(c: &Case) -> usize {
    c.inputs.x.shape()[if c.attrs.layout == 0 { 1 } else { 0 }]
}

// ---------------------------------------------------------------------------
// Named, hand-readable cases (each run in f32 and f64, weights as inputs and
// as initializers).

struct NamedSpec {
    op: OpKind,
    direction: &'static str,
    layout: i64,
    shape: (usize, usize, usize, usize), // T, B, I, H
    has_b: bool,
    seq: SeqMode,
    has_h0: bool,
    has_c0: bool,
    has_p: bool,
    opset: i64,
}

fn named_case(id: &str, spec: NamedSpec, tweak: impl FnOnce(&mut RefAttrs)) -> Case {
    let (t, b, i, h) = spec.shape;
    let s = Shape { t, b, i, h };
    let mut attrs = RefAttrs::new(spec.op, spec.direction, h);
    attrs.layout = spec.layout;
    tweak(&mut attrs);
    let mut rng = Rng::new(
        id.bytes()
            .fold(17u64, |a, c| a.wrapping_mul(31).wrapping_add(c as u64)),
    );
    let inputs = gen_inputs(
        &mut rng,
        &attrs,
        &s,
        spec.has_b,
        spec.seq,
        spec.has_h0,
        spec.has_c0,
        spec.has_p,
    );
    Case {
        id: id.to_string(),
        attrs,
        inputs,
        opset: spec.opset,
        want_y: true,
        want_y_h: true,
        want_y_c: spec.op == OpKind::Lstm,
        init_f32: false,
    }
}

fn spec(op: OpKind, direction: &'static str) -> NamedSpec {
    NamedSpec {
        op,
        direction,
        layout: 0,
        shape: (4, 2, 3, 5),
        has_b: true,
        seq: SeqMode::Absent,
        has_h0: true,
        has_c0: op == OpKind::Lstm,
        has_p: false,
        opset: 14,
    }
}

#[test]
fn named_rnn_defaults_forward() {
    check_case(&named_case(
        "rnn_defaults_forward",
        spec(OpKind::Rnn, "forward"),
        |_| {},
    ));
}

#[test]
fn named_rnn_relu() {
    check_case(&named_case("rnn_relu", spec(OpKind::Rnn, "forward"), |a| {
        a.activations = Some(vec!["Relu".into()]);
    }));
}

#[test]
fn named_rnn_reverse_with_sequence_lens() {
    let mut s = spec(OpKind::Rnn, "reverse");
    s.shape = (5, 3, 2, 3);
    s.seq = SeqMode::Varied;
    let mut c = named_case("rnn_reverse_with_sequence_lens", s, |_| {});
    c.inputs.sequence_lens = Some(vec![2, 5, 1]);
    check_case(&c);
}

#[test]
fn named_rnn_bidirectional_leakyrelu_partial_alpha() {
    // alpha list shorter than the number of alpha-taking functions: the second
    // LeakyRelu keeps its default 0.01; Affine takes its beta from the beta list.
    check_case(&named_case(
        "rnn_bidirectional_leakyrelu_partial_alpha",
        spec(OpKind::Rnn, "bidirectional"),
        |a| {
            a.activations = Some(vec!["LeakyRelu".into(), "LeakyRelu".into()]);
            a.activation_alpha = vec![0.2];
        },
    ));
}

#[test]
fn named_rnn_affine_then_scaledtanh_param_order() {
    // alpha = [a1 (Affine), a2 (ScaledTanh)], beta = [b1 (Affine), b2 (ScaledTanh)]
    check_case(&named_case(
        "rnn_affine_scaledtanh",
        spec(OpKind::Rnn, "bidirectional"),
        |a| {
            a.activations = Some(vec!["Affine".into(), "ScaledTanh".into()]);
            a.activation_alpha = vec![0.7, 1.3];
            a.activation_beta = vec![0.1, 0.8];
        },
    ));
}

#[test]
fn named_rnn_clip_small() {
    check_case(&named_case(
        "rnn_clip_small",
        spec(OpKind::Rnn, "forward"),
        |a| {
            a.activations = Some(vec!["Affine".into()]);
            a.activation_alpha = vec![1.0];
            a.activation_beta = vec![0.0];
            a.clip = Some(0.25);
        },
    ));
}

#[test]
fn named_lstm_defaults_forward() {
    check_case(&named_case(
        "lstm_defaults_forward",
        spec(OpKind::Lstm, "forward"),
        |_| {},
    ));
}

#[test]
fn named_lstm_bidirectional_layout1_peepholes() {
    let mut s = spec(OpKind::Lstm, "bidirectional");
    s.layout = 1;
    s.has_p = true;
    s.shape = (3, 2, 4, 3);
    check_case(&named_case(
        "lstm_bidirectional_layout1_peepholes",
        s,
        |_| {},
    ));
}

#[test]
fn named_lstm_input_forget() {
    let mut s = spec(OpKind::Lstm, "forward");
    s.has_p = true;
    check_case(&named_case("lstm_input_forget", s, |a| {
        a.input_forget = true
    }));
}

#[test]
fn named_lstm_clip() {
    check_case(&named_case(
        "lstm_clip",
        spec(OpKind::Lstm, "reverse"),
        |a| a.clip = Some(0.5),
    ));
}

#[test]
fn named_lstm_custom_activations_all_params() {
    let mut s = spec(OpKind::Lstm, "bidirectional");
    s.has_p = true;
    check_case(&named_case("lstm_custom_activations", s, |a| {
        a.activations = Some(
            [
                "HardSigmoid",
                "Elu",
                "Softsign",
                "ScaledTanh",
                "Softplus",
                "ThresholdedRelu",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        );
        // alpha: HardSigmoid, Elu, ScaledTanh, ThresholdedRelu; beta: HardSigmoid, ScaledTanh
        a.activation_alpha = vec![0.3, 0.8, 1.2, 0.1];
        a.activation_beta = vec![0.45, 0.9];
    }));
}

#[test]
fn named_lstm_only_y_c_output() {
    let mut c = named_case("lstm_only_y_c", spec(OpKind::Lstm, "forward"), |_| {});
    c.want_y = false;
    c.want_y_h = false;
    c.want_y_c = true;
    check_case(&c);
}

#[test]
fn named_lstm_initial_c_without_initial_h() {
    let mut s = spec(OpKind::Lstm, "forward");
    s.has_h0 = false;
    s.has_b = false;
    check_case(&named_case("lstm_c0_without_h0", s, |_| {}));
}

#[test]
fn named_lstm_reverse_sequence_lens_layout1() {
    let mut s = spec(OpKind::Lstm, "reverse");
    s.layout = 1;
    s.shape = (4, 3, 2, 3);
    s.seq = SeqMode::Varied;
    s.has_p = true;
    let mut c = named_case("lstm_reverse_sequence_lens_layout1", s, |_| {});
    c.inputs.sequence_lens = Some(vec![4, 1, 3]);
    check_case(&c);
}

#[test]
fn named_gru_linear_before_reset_0_and_1() {
    let c0 = named_case("gru_lbr", spec(OpKind::Gru, "forward"), |a| {
        a.linear_before_reset = false
    });
    let mut c1 = c0.clone();
    c1.attrs.linear_before_reset = true;
    c1.id = "gru_lbr1".into();
    // sanity: the two modes must actually differ on these inputs
    let r0 = run_reference(&c0.attrs, &c0.inputs);
    let r1 = run_reference(&c1.attrs, &c1.inputs);
    let d = (&r0.y - &r1.y)
        .mapv(f64::abs)
        .fold(0.0f64, |a, &b| a.max(b));
    assert!(d > 1e-3, "lbr 0 and 1 should differ, max diff {d}");
    check_case(&c0);
    check_case(&c1);
}

#[test]
fn named_gru_bidirectional_sequence_lens_layout1() {
    let mut s = spec(OpKind::Gru, "bidirectional");
    s.layout = 1;
    s.shape = (5, 3, 2, 7);
    s.seq = SeqMode::Varied;
    let mut c = named_case("gru_bidirectional_sequence_lens_layout1", s, |a| {
        a.linear_before_reset = true
    });
    c.inputs.sequence_lens = Some(vec![3, 5, 1]);
    check_case(&c);
}

#[test]
fn named_gru_custom_activations_clip() {
    check_case(&named_case(
        "gru_custom_activations_clip",
        spec(OpKind::Gru, "reverse"),
        |a| {
            a.activations = Some(vec!["HardSigmoid".into(), "LeakyRelu".into()]);
            a.activation_alpha = vec![0.25];
            a.activation_beta = vec![];
            a.clip = Some(0.5);
        },
    ));
}

#[test]
fn named_opset7_defaults_all_ops() {
    for op in OPS {
        let mut s = spec(op, "bidirectional");
        s.opset = 7;
        check_case(&named_case(&format!("opset7_{}", op.op_type()), s, |_| {}));
    }
}

/// Old opsets: RNN-1 / LSTM-1 / GRU-1 (no linear_before_reset yet; their
/// `output_sequence` attribute is left unset) and GRU-3 with
/// linear_before_reset = 1. Same equations as opset 7+.
#[test]
fn named_old_opsets_1_and_3() {
    for op in OPS {
        let mut s = spec(op, "bidirectional");
        s.opset = 1;
        check_case(&named_case(&format!("opset1_{}", op.op_type()), s, |_| {}));
    }
    let mut s = spec(OpKind::Gru, "forward");
    s.opset = 3;
    check_case(&named_case("opset3_GRU_lbr1", s, |a| {
        a.linear_before_reset = true
    }));
}

#[test]
fn named_batch1_seq1_hidden1() {
    for op in OPS {
        let mut s = spec(op, "forward");
        s.shape = (1, 1, 1, 1);
        check_case(&named_case(&format!("tiny_{}", op.op_type()), s, |_| {}));
    }
}

/// sequence_lens entries equal to 0: the entry runs no step, its Y rows are 0
/// and Y_h / Y_c equal the initial state. (The spec does not forbid 0;
/// onnxruntime rejects it. Kept separate so it can be judged on its own.)
#[test]
fn named_sequence_lens_zero_entry() {
    for op in OPS {
        let mut s = spec(op, "bidirectional");
        s.shape = (3, 3, 2, 3);
        s.seq = SeqMode::Varied;
        let mut c = named_case(&format!("seq_lens_zero_{}", op.op_type()), s, |_| {});
        c.inputs.sequence_lens = Some(vec![2, 0, 3]);
        check_case(&c);
    }
}

// ---------------------------------------------------------------------------
// Checks of the reference itself (no library involved).

fn arr(shape: &[usize], v: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

fn assert_close(got: &ArrayD<f64>, want: &[f64], what: &str) {
    let g: Vec<f64> = got.iter().copied().collect();
    assert_eq!(g.len(), want.len(), "{what}: length");
    for (k, (a, b)) in g.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() < 1e-14,
            "{what}[{k}]: reference {a} vs hand value {b}"
        );
    }
}

/// H=1, I=1, T=2, B=1 values computed by hand with scalar formulas (python
/// math, see the comments) — independent of the reference's loops.
#[test]
fn reference_hand_rnn() {
    // h1 = tanh(0.5*1 - 0.3*0.4 + 0.1 + 0.2); h2 = tanh(0.5*-2 - 0.3*h1 + 0.3)
    let attrs = RefAttrs::new(OpKind::Rnn, "forward", 1);
    let inputs = RefInputs {
        x: arr(&[2, 1, 1], &[1.0, -2.0]),
        w: arr(&[1, 1, 1], &[0.5]),
        r: arr(&[1, 1, 1], &[-0.3]),
        b: Some(arr(&[1, 2], &[0.1, 0.2])),
        sequence_lens: None,
        initial_h: Some(arr(&[1, 1, 1], &[0.4])),
        initial_c: None,
        p: None,
    };
    let out = run_reference(&attrs, &inputs);
    assert_close(&out.y, &[0.5915193954318164, -0.7051424653354874], "RNN Y");
    assert_close(&out.y_h, &[-0.7051424653354874], "RNN Y_h");
    assert!(out.y_c.is_none());
}

#[test]
fn reference_hand_lstm_peepholes() {
    // gates i,o,f,c: W=[.1,.2,.3,.4] R=[-.1,.25,-.2,.15] Wb=[.01,.02,.03,.04]
    // Rb=[.05,.06,.07,.08] P=[pi .3, po -.4, pf .5], x=[.7,-1.1], h0=.2, c0=-.3
    let attrs = RefAttrs::new(OpKind::Lstm, "forward", 1);
    let inputs = RefInputs {
        x: arr(&[2, 1, 1], &[0.7, -1.1]),
        w: arr(&[1, 4, 1], &[0.1, 0.2, 0.3, 0.4]),
        r: arr(&[1, 4, 1], &[-0.1, 0.25, -0.2, 0.15]),
        b: Some(arr(
            &[1, 8],
            &[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08],
        )),
        sequence_lens: None,
        initial_h: Some(arr(&[1, 1, 1], &[0.2])),
        initial_c: Some(arr(&[1, 1, 1], &[-0.3])),
        p: Some(arr(&[1, 3], &[0.3, -0.4, 0.5])),
    };
    let out = run_reference(&attrs, &inputs);
    assert_close(
        &out.y,
        &[0.025691800934009083, -0.061809355867443044],
        "LSTM Y",
    );
    assert_close(&out.y_h, &[-0.061809355867443044], "LSTM Y_h");
    assert_close(
        out.y_c.as_ref().unwrap(),
        &[-0.12960375471712676],
        "LSTM Y_c",
    );
}

#[test]
fn reference_hand_gru() {
    // gates z,r,h: W=[.3,-.5,.8] R=[.2,.4,-.6] Wb=[.1,-.1,.05] Rb=[.02,.03,-.04]
    // x=[.5,-1.5], h0=.3
    let mut attrs = RefAttrs::new(OpKind::Gru, "forward", 1);
    let inputs = RefInputs {
        x: arr(&[2, 1, 1], &[0.5, -1.5]),
        w: arr(&[1, 3, 1], &[0.3, -0.5, 0.8]),
        r: arr(&[1, 3, 1], &[0.2, 0.4, -0.6]),
        b: Some(arr(&[1, 6], &[0.1, -0.1, 0.05, 0.02, 0.03, -0.04])),
        sequence_lens: None,
        initial_h: Some(arr(&[1, 1, 1], &[0.3])),
        initial_c: None,
        p: None,
    };
    let out = run_reference(&attrs, &inputs);
    assert_close(
        &out.y,
        &[0.30735897726828754, -0.35769162988336456],
        "GRU lbr=0 Y",
    );
    attrs.linear_before_reset = true;
    let out = run_reference(&attrs, &inputs);
    assert_close(
        &out.y,
        &[0.31557098563847924, -0.3524006646004383],
        "GRU lbr=1 Y",
    );
}

#[test]
fn reference_activation_functions() {
    let a = |name: &str, alpha: f64, beta: f64| Activation {
        name: name.into(),
        alpha,
        beta,
    };
    use common::reference::apply_activation as f;
    assert_eq!(f(&a("Relu", 0., 0.), -2.0), 0.0);
    assert_eq!(f(&a("Relu", 0., 0.), 2.0), 2.0);
    assert_eq!(f(&a("Affine", 2.0, 0.5), 3.0), 6.5);
    assert_eq!(f(&a("LeakyRelu", 0.1, 0.), -2.0), -0.2);
    assert_eq!(f(&a("LeakyRelu", 0.1, 0.), 2.0), 2.0);
    assert_eq!(f(&a("ThresholdedRelu", 1.0, 0.), 0.5), 0.0);
    assert_eq!(f(&a("ThresholdedRelu", 1.0, 0.), 1.5), 1.5);
    assert!((f(&a("ScaledTanh", 2.0, 0.5), 1.0) - 2.0 * 0.5f64.tanh()).abs() < 1e-15);
    assert_eq!(f(&a("HardSigmoid", 0.2, 0.5), 1.0), 0.7);
    assert_eq!(f(&a("HardSigmoid", 0.2, 0.5), 10.0), 1.0);
    assert_eq!(f(&a("HardSigmoid", 0.2, 0.5), -10.0), 0.0);
    assert!((f(&a("Elu", 2.0, 0.), -1.0) - 2.0 * ((-1.0f64).exp() - 1.0)).abs() < 1e-15);
    assert_eq!(f(&a("Elu", 2.0, 0.), 1.0), 1.0);
    assert_eq!(f(&a("Softsign", 0., 0.), -3.0), -0.75);
    assert!((f(&a("Softplus", 0., 0.), 0.0) - 2f64.ln()).abs() < 1e-15);
    assert!((f(&a("Sigmoid", 0., 0.), 0.0) - 0.5).abs() < 1e-15);
    assert!((f(&a("Tanh", 0., 0.), 0.3) - 0.3f64.tanh()).abs() < 1e-15);
}

#[test]
fn reference_activation_param_consumption() {
    // bidirectional LSTM: f,g,h forward then f,g,h reverse
    let mut attrs = RefAttrs::new(OpKind::Lstm, "bidirectional", 2);
    attrs.activations = Some(
        [
            "LeakyRelu",
            "Tanh",
            "HardSigmoid",
            "Elu",
            "ScaledTanh",
            "Affine",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    // alpha users: LeakyRelu, HardSigmoid, Elu, ScaledTanh, Affine -> only 3 given
    attrs.activation_alpha = vec![0.5, 0.25, 2.0];
    // beta users: HardSigmoid, ScaledTanh, Affine -> only 1 given
    attrs.activation_beta = vec![0.75];
    let r = resolve_activations(&attrs);
    let got: Vec<(String, f64, f64)> = r
        .iter()
        .flatten()
        .map(|a| (a.name.clone(), a.alpha, a.beta))
        .collect();
    let want = vec![
        ("LeakyRelu".to_string(), 0.5, 0.0),
        ("Tanh".to_string(), 0.0, 0.0),
        ("HardSigmoid".to_string(), 0.25, 0.75),
        ("Elu".to_string(), 2.0, 0.0),
        ("ScaledTanh".to_string(), 1.0, 1.0),
        ("Affine".to_string(), 1.0, 0.0),
    ];
    assert_eq!(got, want);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1][0].name, "Elu");
}

fn random_case_inputs(op: OpKind, dir: &str, layout: i64, seed: u64) -> (RefAttrs, RefInputs) {
    let mut rng = Rng::new(seed);
    let s = Shape {
        t: 4,
        b: 3,
        i: 2,
        h: 3,
    };
    let mut attrs = RefAttrs::new(op, dir, s.h);
    attrs.layout = layout;
    let inputs = gen_inputs(
        &mut rng,
        &attrs,
        &s,
        true,
        SeqMode::Absent,
        true,
        op == OpKind::Lstm,
        op == OpKind::Lstm,
    );
    (attrs, inputs)
}

fn max_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Reverse direction == forward direction on the time-reversed input.
#[test]
fn reference_reverse_is_forward_on_reversed_time() {
    for op in OPS {
        let (mut attrs, inputs) = random_case_inputs(op, "reverse", 0, 11);
        let rev = run_reference(&attrs, &inputs);
        attrs.direction = "forward".into();
        let mut flipped = inputs.clone();
        flipped.x.invert_axis(ndarray::Axis(0));
        let mut fwd = run_reference(&attrs, &flipped);
        fwd.y.invert_axis(ndarray::Axis(0));
        assert!(max_diff(&rev.y, &fwd.y) < 1e-14, "{op:?}");
        assert!(max_diff(&rev.y_h, &fwd.y_h) < 1e-14, "{op:?}");
    }
}

/// Bidirectional == forward and reverse with the matching weight halves.
#[test]
fn reference_bidirectional_is_forward_plus_reverse() {
    use ndarray::{s, Axis};
    for op in OPS {
        let (attrs, inputs) = random_case_inputs(op, "bidirectional", 0, 12);
        let bi = run_reference(&attrs, &inputs);
        for (d, dir) in [(0usize, "forward"), (1, "reverse")] {
            let mut a1 = attrs.clone();
            a1.direction = dir.into();
            let pick = |t: &ArrayD<f64>| t.slice_axis(Axis(0), (d..d + 1).into()).to_owned();
            let one = RefInputs {
                x: inputs.x.clone(),
                w: pick(&inputs.w),
                r: pick(&inputs.r),
                b: inputs.b.as_ref().map(pick),
                sequence_lens: None,
                initial_h: inputs.initial_h.as_ref().map(pick),
                initial_c: inputs.initial_c.as_ref().map(pick),
                p: inputs.p.as_ref().map(pick),
            };
            let o = run_reference(&a1, &one);
            let y_bi = bi.y.slice(s![.., d..d + 1, .., ..]).to_owned().into_dyn();
            assert!(max_diff(&y_bi, &o.y) < 1e-14, "{op:?} {dir} Y");
            assert!(max_diff(&pick(&bi.y_h), &o.y_h) < 1e-14, "{op:?} {dir} Y_h");
        }
    }
}

/// layout 1 == layout 0 with the batch/time (and batch/direction) axes swapped.
#[test]
fn reference_layout1_is_transposed_layout0() {
    for op in OPS {
        let (attrs0, in0) = random_case_inputs(op, "bidirectional", 0, 13);
        let out0 = run_reference(&attrs0, &in0);
        let mut attrs1 = attrs0.clone();
        attrs1.layout = 1;
        let sw = |a: &ArrayD<f64>| {
            a.clone()
                .permuted_axes(IxDyn(&[1, 0, 2]))
                .as_standard_layout()
                .to_owned()
        };
        let in1 = RefInputs {
            x: sw(&in0.x),
            initial_h: in0.initial_h.as_ref().map(sw),
            initial_c: in0.initial_c.as_ref().map(sw),
            ..in0.clone()
        };
        let out1 = run_reference(&attrs1, &in1);
        let y0t = out0
            .y
            .clone()
            .permuted_axes(IxDyn(&[2, 0, 1, 3]))
            .as_standard_layout()
            .to_owned();
        assert!(max_diff(&y0t, &out1.y) < 1e-15, "{op:?} Y");
        assert!(max_diff(&sw(&out0.y_h), &out1.y_h) < 1e-15, "{op:?} Y_h");
    }
}

/// sequence_lens = L for one batch entry == running that entry alone on its
/// first L steps (forward and reverse), zero-padded Y.
#[test]
fn reference_sequence_lens_is_truncation() {
    use ndarray::{s, Axis};
    for op in OPS {
        for dir in ["forward", "reverse", "bidirectional"] {
            let (attrs, mut inputs) = random_case_inputs(op, dir, 0, 14);
            let lens = vec![2, 4, 1];
            inputs.sequence_lens = Some(lens.clone());
            let full = run_reference(&attrs, &inputs);
            for (b, &l) in lens.iter().enumerate() {
                let l = l as usize;
                let pick_b = |t: &ArrayD<f64>| t.slice_axis(Axis(1), (b..b + 1).into()).to_owned();
                let one = RefInputs {
                    x: inputs.x.slice(s![0..l, b..b + 1, ..]).to_owned().into_dyn(),
                    sequence_lens: None,
                    initial_h: inputs.initial_h.as_ref().map(pick_b),
                    initial_c: inputs.initial_c.as_ref().map(pick_b),
                    ..inputs.clone()
                };
                let o = run_reference(&attrs, &one);
                let y_full = full
                    .y
                    .slice(s![0..l, .., b..b + 1, ..])
                    .to_owned()
                    .into_dyn();
                assert!(max_diff(&y_full, &o.y) < 1e-15, "{op:?} {dir} b={b} Y");
                let pad = full.y.slice(s![l.., .., b..b + 1, ..]);
                assert!(pad.iter().all(|&v| v == 0.0), "{op:?} {dir} b={b} padding");
                assert!(
                    max_diff(&pick_b(&full.y_h), &o.y_h) < 1e-15,
                    "{op:?} {dir} b={b} Y_h"
                );
                if let (Some(a), Some(c)) = (&full.y_c, &o.y_c) {
                    assert!(max_diff(&pick_b(a), c) < 1e-15, "{op:?} {dir} b={b} Y_c");
                }
            }
        }
    }
}

/// Builder output parses in tract for every op, direction, layout and
/// optional-input pattern (the models must be well-formed ONNX).
#[test]
fn builder_models_parse_in_tract() {
    use tract_onnx::prelude::Framework as _;
    for op in OPS {
        for dir in DIRECTIONS {
            for layout in [0i64, 1] {
                for (has_opt, wai, dt) in [(false, false, Dt::F32), (true, true, Dt::F64)] {
                    let (attrs, mut inputs) = random_case_inputs(op, dir, layout, 15);
                    if !has_opt {
                        inputs.b = None;
                        inputs.initial_h = None;
                    }
                    let lstm = op == OpKind::Lstm;
                    let opts = BuildOpts {
                        opset: 14,
                        dtype: dt,
                        has_b: has_opt,
                        has_seq_lens: false,
                        has_h0: has_opt,
                        has_c0: lstm,
                        has_p: lstm && has_opt,
                        want_y: true,
                        want_y_h: has_opt,
                        want_y_c: lstm,
                        weights_as_initializers: wai,
                    };
                    let (bytes, ins, outs) = build_node_model(&attrs, &opts, &inputs);
                    let model = tract_onnx::onnx().model_for_read(&mut &bytes[..]);
                    assert!(
                        model.is_ok(),
                        "{op:?} {dir} layout {layout}: {:?}",
                        model.err()
                    );
                    let model = model.unwrap();
                    assert_eq!(model.inputs.len(), ins.len());
                    assert_eq!(model.outputs.len(), outs.len());
                }
            }
        }
    }
}

/// Threads split the products by whole columns (and the projection by rows), and run the
/// directions of a bidirectional node side by side: every output element is computed by the
/// same operations in the same order, so results are bit-identical to one thread. Sizes are
/// large enough that the products really split (over a million multiply-adds per direction) and
/// H is not a multiple of the panel width.
#[test]
fn threads_give_bit_identical_results() {
    let mut checked = 0;
    for (op, direction, seq, lbr) in [
        (OpKind::Lstm, "forward", SeqMode::Absent, false),
        (OpKind::Lstm, "bidirectional", SeqMode::Varied, false),
        (OpKind::Gru, "forward", SeqMode::Absent, false),
        (OpKind::Gru, "reverse", SeqMode::Varied, true),
        (OpKind::Gru, "bidirectional", SeqMode::Absent, true),
        (OpKind::Rnn, "bidirectional", SeqMode::Absent, false),
        (OpKind::Rnn, "forward", SeqMode::Varied, false),
    ] {
        for batch in [1, 3] {
            let id = format!("threads_{op:?}_{direction}_{batch}_{lbr}");
            let h = if op == OpKind::Rnn { 300 } else { 136 };
            let spec = NamedSpec {
                shape: (16, batch, 40, h),
                seq,
                has_p: op == OpKind::Lstm,
                ..spec(op, direction)
            };
            let case = named_case(&id, spec, |a| a.linear_before_reset = lbr);
            for dt in [Dt::F32, Dt::F64] {
                let (_, one) = run_case_on(&case, dt, true, 1).unwrap_or_else(|e| panic!("{e}"));
                for threads in [2, 3] {
                    let (_, many) =
                        run_case_on(&case, dt, true, threads).unwrap_or_else(|e| panic!("{e}"));
                    for (a, b) in one.iter().zip(&many) {
                        assert_eq!(a, b, "{id} {dt:?}: {threads} threads differ from one");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 7 * 2 * 2 * 2);
}

/// Long enough that the input projection runs in several chunks (128 rows each, so 25 steps
/// at batch 5, the last chunk shorter), forwards and backwards.
#[test]
fn named_long_sequences_project_in_chunks() {
    for (op, direction) in [
        (OpKind::Lstm, "bidirectional"),
        (OpKind::Gru, "reverse"),
        (OpKind::Rnn, "bidirectional"),
    ] {
        let spec = NamedSpec {
            shape: (103, 5, 3, 4),
            ..spec(op, direction)
        };
        check_case(&named_case(
            &format!("long_chunks_{op:?}_{direction}"),
            spec,
            |_| {},
        ));
    }
}
