// Written as plain loops over indices and explicit comparisons on purpose: it must read like
// the spec's equations, not like the optimized cells.
#![allow(clippy::needless_range_loop, clippy::manual_clamp)]
//! Independent float64 reference implementation of the ONNX RNN, LSTM and GRU
//! operators, written plainly from the operator specification
//! (onnx/docs/Operators.md, opsets 7/14/22) with plain loops.
//!
//! Everything is computed in f64. Tensors are in ONNX layout as given to the
//! node:
//! * layout 0: X [T,B,I], Y [T,D,B,H], Y_h/Y_c/initial_h/initial_c [D,B,H]
//! * layout 1: X [B,T,I], Y [B,T,D,H], Y_h/Y_c/initial_h/initial_c [B,D,H]
//! * W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H], P [D, 3*H]
//!
//! Gate order is ONNX's: LSTM i,o,f,c; GRU z,r,h; RNN i. P = [Pi, Po, Pf].
#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Rnn,
    Lstm,
    Gru,
}

impl OpKind {
    /// ONNX op_type.
    pub fn op_type(self) -> &'static str {
        match self {
            OpKind::Rnn => "RNN",
            OpKind::Lstm => "LSTM",
            OpKind::Gru => "GRU",
        }
    }
    /// Number of gates G (rows of W are G*H).
    pub fn gates(self) -> usize {
        match self {
            OpKind::Rnn => 1,
            OpKind::Lstm => 4,
            OpKind::Gru => 3,
        }
    }
    /// Number of activation functions per direction.
    pub fn acts_per_direction(self) -> usize {
        match self {
            OpKind::Rnn => 1,
            OpKind::Lstm => 3,
            OpKind::Gru => 2,
        }
    }
    /// Spec default activations for one direction.
    pub fn default_activations(self) -> &'static [&'static str] {
        match self {
            OpKind::Rnn => &["Tanh"],
            OpKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            OpKind::Gru => &["Sigmoid", "Tanh"],
        }
    }
}

#[derive(Clone, Debug)]
pub struct RefAttrs {
    pub op: OpKind,
    /// "forward" | "reverse" | "bidirectional"
    pub direction: String,
    pub hidden_size: usize,
    /// 0 or 1
    pub layout: i64,
    /// None = spec defaults; else names exactly as written in ONNX (e.g. "LeakyRelu")
    pub activations: Option<Vec<String>>,
    pub activation_alpha: Vec<f32>,
    pub activation_beta: Vec<f32>,
    pub clip: Option<f32>,
    /// LSTM only
    pub input_forget: bool,
    /// GRU only
    pub linear_before_reset: bool,
}

impl RefAttrs {
    /// Attributes with spec defaults for everything but op/direction/hidden_size.
    pub fn new(op: OpKind, direction: &str, hidden_size: usize) -> RefAttrs {
        RefAttrs {
            op,
            direction: direction.to_string(),
            hidden_size,
            layout: 0,
            activations: None,
            activation_alpha: vec![],
            activation_beta: vec![],
            clip: None,
            input_forget: false,
            linear_before_reset: false,
        }
    }
    pub fn num_directions(&self) -> usize {
        match self.direction.as_str() {
            "forward" | "reverse" => 1,
            "bidirectional" => 2,
            other => panic!("reference: bad direction {other:?}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RefInputs {
    pub x: ArrayD<f64>,
    pub w: ArrayD<f64>,
    pub r: ArrayD<f64>,
    pub b: Option<ArrayD<f64>>,
    pub sequence_lens: Option<Vec<i32>>,
    pub initial_h: Option<ArrayD<f64>>,
    pub initial_c: Option<ArrayD<f64>>,
    pub p: Option<ArrayD<f64>>,
}

#[derive(Clone, Debug)]
pub struct RefOutputs {
    pub y: ArrayD<f64>,
    pub y_h: ArrayD<f64>,
    pub y_c: Option<ArrayD<f64>>,
}

/// One activation function with its resolved alpha/beta.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    pub name: String,
    pub alpha: f64,
    pub beta: f64,
}

/// Does the named function take an `alpha` parameter?
pub fn takes_alpha(name: &str) -> bool {
    matches!(
        name,
        "Affine" | "LeakyRelu" | "ThresholdedRelu" | "ScaledTanh" | "HardSigmoid" | "Elu"
    )
}

/// Does the named function take a `beta` parameter?
pub fn takes_beta(name: &str) -> bool {
    matches!(name, "Affine" | "ScaledTanh" | "HardSigmoid")
}

/// Default (alpha, beta) of the corresponding ONNX operators. Functions without
/// a parameter get 0.0 there (unused).
///
/// Those defaults are values of FLOAT attributes (LeakyRelu's alpha, ...), so
/// they are f32 numbers, exactly like values given in activation_alpha/beta:
/// 0.01 and 0.2 are `0.01f32` and `0.2f32` widened to f64 (this matters only
/// for the f64 comparisons, at the 1e-9 level).
pub fn default_alpha_beta(name: &str) -> (f64, f64) {
    match name {
        "Affine" => (1.0, 0.0),
        "LeakyRelu" => (0.01f32 as f64, 0.0),
        "ThresholdedRelu" => (1.0, 0.0),
        "ScaledTanh" => (1.0, 1.0),
        "HardSigmoid" => (0.2f32 as f64, 0.5),
        "Elu" => (1.0, 0.0),
        "Relu" | "Tanh" | "Sigmoid" | "Softsign" | "Softplus" => (0.0, 0.0),
        other => panic!("reference: unknown activation {other:?}"),
    }
}

/// All eleven activation names as ONNX writes them.
pub const ALL_ACTIVATIONS: [&str; 11] = [
    "Relu",
    "Tanh",
    "Sigmoid",
    "Affine",
    "LeakyRelu",
    "ThresholdedRelu",
    "ScaledTanh",
    "HardSigmoid",
    "Elu",
    "Softsign",
    "Softplus",
];

/// Apply one activation function in f64.
pub fn apply_activation(a: &Activation, x: f64) -> f64 {
    let (alpha, beta) = (a.alpha, a.beta);
    match a.name.as_str() {
        "Relu" => {
            if x > 0.0 {
                x
            } else {
                0.0
            }
        }
        "Tanh" => x.tanh(),
        "Sigmoid" => 1.0 / (1.0 + (-x).exp()),
        "Affine" => alpha * x + beta,
        "LeakyRelu" => {
            if x >= 0.0 {
                x
            } else {
                alpha * x
            }
        }
        "ThresholdedRelu" => {
            if x > alpha {
                x
            } else {
                0.0
            }
        }
        "ScaledTanh" => alpha * (beta * x).tanh(),
        "HardSigmoid" => {
            let v = alpha * x + beta;
            if v < 0.0 {
                0.0
            } else if v > 1.0 {
                1.0
            } else {
                v
            }
        }
        "Elu" => {
            if x >= 0.0 {
                x
            } else {
                alpha * (x.exp() - 1.0)
            }
        }
        "Softsign" => x / (1.0 + x.abs()),
        // The spec's ln(e^x + 1), rearranged so that e^x cannot overflow for large x (the
        // plain form gives inf past x = 709, where the value is x).
        "Softplus" => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        other => panic!("reference: unknown activation {other:?}"),
    }
}

/// Resolve the activation list of the whole node: returns, per direction, the
/// per-direction functions (RNN: [f]; GRU: [f, g]; LSTM: [f, g, h]).
///
/// activation_alpha and activation_beta are two independent lists consumed in
/// activation order (forward's functions first, then reverse's); a value is
/// consumed only by a function that takes that parameter. When a list runs
/// short, the function keeps its ONNX default.
pub fn resolve_activations(attrs: &RefAttrs) -> Vec<Vec<Activation>> {
    let nd = attrs.num_directions();
    let per = attrs.op.acts_per_direction();
    let names: Vec<String> = match &attrs.activations {
        None => {
            let mut v = vec![];
            for _ in 0..nd {
                for n in attrs.op.default_activations() {
                    v.push(n.to_string());
                }
            }
            v
        }
        Some(list) => {
            assert_eq!(
                list.len(),
                per * nd,
                "reference: activations must list {} functions, got {:?}",
                per * nd,
                list
            );
            list.clone()
        }
    };
    let mut alpha_pos = 0;
    let mut beta_pos = 0;
    let mut all = vec![];
    for name in &names {
        let (mut alpha, mut beta) = default_alpha_beta(name);
        if takes_alpha(name) && alpha_pos < attrs.activation_alpha.len() {
            alpha = attrs.activation_alpha[alpha_pos] as f64;
            alpha_pos += 1;
        }
        if takes_beta(name) && beta_pos < attrs.activation_beta.len() {
            beta = attrs.activation_beta[beta_pos] as f64;
            beta_pos += 1;
        }
        all.push(Activation {
            name: name.clone(),
            alpha,
            beta,
        });
    }
    let mut per_dir = vec![];
    for d in 0..nd {
        per_dir.push(all[d * per..(d + 1) * per].to_vec());
    }
    per_dir
}

/// Read element of a [T,B,I] (layout 0) or [B,T,I] (layout 1) tensor.
fn x_at(x: &ArrayD<f64>, layout: i64, t: usize, b: usize, i: usize) -> f64 {
    if layout == 0 {
        x[[t, b, i]]
    } else {
        x[[b, t, i]]
    }
}

/// Read element of a state tensor: [D,B,H] (layout 0) or [B,D,H] (layout 1).
fn state_at(s: &ArrayD<f64>, layout: i64, d: usize, b: usize, j: usize) -> f64 {
    if layout == 0 {
        s[[d, b, j]]
    } else {
        s[[b, d, j]]
    }
}

fn state_set(s: &mut ArrayD<f64>, layout: i64, d: usize, b: usize, j: usize, v: f64) {
    if layout == 0 {
        s[[d, b, j]] = v;
    } else {
        s[[b, d, j]] = v;
    }
}

fn y_set(y: &mut ArrayD<f64>, layout: i64, t: usize, d: usize, b: usize, j: usize, v: f64) {
    if layout == 0 {
        y[[t, d, b, j]] = v;
    } else {
        y[[b, t, d, j]] = v;
    }
}

fn clip_value(clip: Option<f32>, v: f64) -> f64 {
    match clip {
        None => v,
        Some(c) => {
            let c = c as f64;
            if v < -c {
                -c
            } else if v > c {
                c
            } else {
                v
            }
        }
    }
}

/// Run the operator. Panics on malformed inputs (it is a test oracle).
pub fn run_reference(attrs: &RefAttrs, inputs: &RefInputs) -> RefOutputs {
    let op = attrs.op;
    let layout = attrs.layout;
    assert!(layout == 0 || layout == 1, "reference: bad layout {layout}");
    let nd = attrs.num_directions();
    let h_size = attrs.hidden_size;
    let g = op.gates();
    let x = &inputs.x;
    assert_eq!(x.ndim(), 3, "reference: X must be rank 3");
    let (seq_len, batch) = if layout == 0 {
        (x.shape()[0], x.shape()[1])
    } else {
        (x.shape()[1], x.shape()[0])
    };
    let in_size = x.shape()[2];
    let w = &inputs.w;
    let r = &inputs.r;
    assert_eq!(w.shape(), &[nd, g * h_size, in_size], "reference: W shape");
    assert_eq!(r.shape(), &[nd, g * h_size, h_size], "reference: R shape");
    if let Some(b) = &inputs.b {
        assert_eq!(b.shape(), &[nd, 2 * g * h_size], "reference: B shape");
    }
    if let Some(p) = &inputs.p {
        assert_eq!(p.shape(), &[nd, 3 * h_size], "reference: P shape");
    }
    let state_shape: Vec<usize> = if layout == 0 {
        vec![nd, batch, h_size]
    } else {
        vec![batch, nd, h_size]
    };
    if let Some(h0) = &inputs.initial_h {
        assert_eq!(h0.shape(), &state_shape[..], "reference: initial_h shape");
    }
    if let Some(c0) = &inputs.initial_c {
        assert_eq!(c0.shape(), &state_shape[..], "reference: initial_c shape");
    }
    let lens: Vec<usize> = match &inputs.sequence_lens {
        None => vec![seq_len; batch],
        Some(l) => {
            assert_eq!(l.len(), batch, "reference: sequence_lens length");
            l.iter()
                .map(|&v| {
                    assert!(
                        v >= 0 && (v as usize) <= seq_len,
                        "reference: bad length {v}"
                    );
                    v as usize
                })
                .collect()
        }
    };

    let acts = resolve_activations(attrs);

    let y_shape: Vec<usize> = if layout == 0 {
        vec![seq_len, nd, batch, h_size]
    } else {
        vec![batch, seq_len, nd, h_size]
    };
    let mut y = ArrayD::<f64>::zeros(IxDyn(&y_shape));
    let mut y_h = ArrayD::<f64>::zeros(IxDyn(&state_shape));
    let mut y_c = ArrayD::<f64>::zeros(IxDyn(&state_shape));

    for d in 0..nd {
        let reverse =
            attrs.direction == "reverse" || (attrs.direction == "bidirectional" && d == 1);
        let f = &acts[d][0];
        // Bias Wb (first G*H) and Rb (next G*H) for gate k, unit j.
        let wb = |k: usize, j: usize| -> f64 {
            match &inputs.b {
                None => 0.0,
                Some(b) => b[[d, k * h_size + j]],
            }
        };
        let rb = |k: usize, j: usize| -> f64 {
            match &inputs.b {
                None => 0.0,
                Some(b) => b[[d, g * h_size + k * h_size + j]],
            }
        };
        // Peephole: P = [Pi, Po, Pf], index 0 = i, 1 = o, 2 = f.
        let peep = |k: usize, j: usize| -> f64 {
            match &inputs.p {
                None => 0.0,
                Some(p) => p[[d, k * h_size + j]],
            }
        };

        for b in 0..batch {
            let mut h_prev = vec![0.0f64; h_size];
            let mut c_prev = vec![0.0f64; h_size];
            for j in 0..h_size {
                if let Some(h0) = &inputs.initial_h {
                    h_prev[j] = state_at(h0, layout, d, b, j);
                }
                if let Some(c0) = &inputs.initial_c {
                    c_prev[j] = state_at(c0, layout, d, b, j);
                }
            }
            let len = lens[b];
            let steps: Vec<usize> = if reverse {
                (0..len).rev().collect()
            } else {
                (0..len).collect()
            };
            for &t in &steps {
                // x_t . W_k^T for gate k, unit j
                let xw = |k: usize, j: usize| -> f64 {
                    let mut s = 0.0;
                    for i in 0..in_size {
                        s += x_at(x, layout, t, b, i) * w[[d, k * h_size + j, i]];
                    }
                    s
                };
                // v . R_k^T for gate k, unit j, with an arbitrary vector v of size H
                let vr = |v: &[f64], k: usize, j: usize| -> f64 {
                    let mut s = 0.0;
                    for m in 0..h_size {
                        s += v[m] * r[[d, k * h_size + j, m]];
                    }
                    s
                };
                let mut h_new = vec![0.0f64; h_size];
                let mut c_new = vec![0.0f64; h_size];
                match op {
                    OpKind::Rnn => {
                        for j in 0..h_size {
                            let pre = xw(0, j) + vr(&h_prev, 0, j) + wb(0, j) + rb(0, j);
                            h_new[j] = apply_activation(f, clip_value(attrs.clip, pre));
                        }
                    }
                    OpKind::Gru => {
                        let gg = &acts[d][1];
                        // gate indices: z = 0, r = 1, h = 2
                        let mut z = vec![0.0f64; h_size];
                        let mut rr = vec![0.0f64; h_size];
                        for j in 0..h_size {
                            let pz = xw(0, j) + vr(&h_prev, 0, j) + wb(0, j) + rb(0, j);
                            z[j] = apply_activation(f, clip_value(attrs.clip, pz));
                            let pr = xw(1, j) + vr(&h_prev, 1, j) + wb(1, j) + rb(1, j);
                            rr[j] = apply_activation(f, clip_value(attrs.clip, pr));
                        }
                        let r_h: Vec<f64> = (0..h_size).map(|m| rr[m] * h_prev[m]).collect();
                        for j in 0..h_size {
                            let ph = if attrs.linear_before_reset {
                                xw(2, j) + rr[j] * (vr(&h_prev, 2, j) + rb(2, j)) + wb(2, j)
                            } else {
                                xw(2, j) + vr(&r_h, 2, j) + rb(2, j) + wb(2, j)
                            };
                            let ht = apply_activation(gg, clip_value(attrs.clip, ph));
                            h_new[j] = (1.0 - z[j]) * ht + z[j] * h_prev[j];
                        }
                    }
                    OpKind::Lstm => {
                        let gg = &acts[d][1];
                        let hh = &acts[d][2];
                        // gate indices: i = 0, o = 1, f = 2, c = 3; peepholes Pi = 0, Po = 1, Pf = 2
                        for j in 0..h_size {
                            let pi = xw(0, j)
                                + vr(&h_prev, 0, j)
                                + peep(0, j) * c_prev[j]
                                + wb(0, j)
                                + rb(0, j);
                            let it = apply_activation(f, clip_value(attrs.clip, pi));
                            let ft = if attrs.input_forget {
                                1.0 - it
                            } else {
                                let pf = xw(2, j)
                                    + vr(&h_prev, 2, j)
                                    + peep(2, j) * c_prev[j]
                                    + wb(2, j)
                                    + rb(2, j);
                                apply_activation(f, clip_value(attrs.clip, pf))
                            };
                            let pc = xw(3, j) + vr(&h_prev, 3, j) + wb(3, j) + rb(3, j);
                            let ct = apply_activation(gg, clip_value(attrs.clip, pc));
                            let cell = ft * c_prev[j] + it * ct;
                            let po = xw(1, j)
                                + vr(&h_prev, 1, j)
                                + peep(1, j) * cell
                                + wb(1, j)
                                + rb(1, j);
                            let ot = apply_activation(f, clip_value(attrs.clip, po));
                            c_new[j] = cell;
                            h_new[j] = ot * apply_activation(hh, cell);
                        }
                    }
                }
                for j in 0..h_size {
                    y_set(&mut y, layout, t, d, b, j, h_new[j]);
                }
                h_prev = h_new;
                if op == OpKind::Lstm {
                    c_prev = c_new;
                }
            }
            for j in 0..h_size {
                state_set(&mut y_h, layout, d, b, j, h_prev[j]);
                state_set(&mut y_c, layout, d, b, j, c_prev[j]);
            }
        }
    }
    RefOutputs {
        y,
        y_h,
        y_c: if op == OpKind::Lstm { Some(y_c) } else { None },
    }
}
