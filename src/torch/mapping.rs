//! From a state dict's parameters to layers: each PyTorch layer checked and turned into the
//! node PyTorch's ONNX exporter writes (gates reordered, biases joined), or into a projected
//! LSTM layer.

use std::collections::HashMap;

use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayView2, Axis, Ix1, Ix2};

use super::forward::{ProjectedDir, ProjectedLayer};
use super::state_dict::{as2, param_err, ParamName};
use super::{Nonlinearity, TorchConfig, TorchKind, TorchRecurrent};
use crate::attrs::{Activation, Direction, Layout, NodeSpec, OpKind, Slots};
use crate::error::{shape_string, Result};
use crate::gates::{join_onnx_bias, reorder_gates, GateOrder};
use crate::kernels::Float;
use crate::layer::Layer;

impl<T: Float> TorchRecurrent<T> {
    pub(super) fn build(
        map: &HashMap<String, ArrayD<T>>,
        all_keys: &[&str],
        config: TorchConfig,
    ) -> Result<TorchRecurrent<T>> {
        let op = config.kind.op();
        let g = op.gates();
        let dirs = config.num_directions();
        let module = config.kind.module_name();
        let key = |name: String| format!("{}{name}", config.prefix);
        if config.num_layers == 0 {
            return Err(param_err(
                &key("weight_ih_l0".into()),
                "num_layers must be at least 1",
            ));
        }

        // Keys named like parameters but not expected by this configuration.
        let mut unexpected: Vec<&str> = map
            .keys()
            .map(|k| k.as_str())
            .filter(|k| config.is_param_key(k))
            .collect();
        unexpected.sort_unstable();
        for k in unexpected {
            let p = ParamName::parse(&k[config.prefix.len()..]).expect("filtered above");
            let why = if p.side == "hr" && config.kind != TorchKind::Lstm {
                Some(format!(
                    "unexpected key: projections (proj_size) exist for nn.LSTM only, the \
                     configuration is {module}"
                ))
            } else if p.side == "hr" && p.kind == "bias" {
                Some("unexpected key: LSTM projections have no bias".to_string())
            } else if p.layer >= config.num_layers {
                Some(format!(
                    "unexpected key: the configuration has num_layers = {}",
                    config.num_layers
                ))
            } else if p.reverse && !config.bidirectional {
                Some("unexpected key: the configuration is not bidirectional".to_string())
            } else if p.kind == "bias" && !config.bias {
                Some("unexpected key: the configuration has bias = false".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(param_err(k, why));
            }
        }

        let get = |name: String| -> Result<(String, &ArrayD<T>)> {
            let k = key(name.clone());
            match map.get(&k) {
                Some(a) => Ok((k, a)),
                None => {
                    let mut message = format!("missing (expected for {module}");
                    if name.starts_with("bias") {
                        message.push_str(
                            " with bias = true; set bias: false for a module built with bias=False",
                        );
                    }
                    message.push(')');
                    // Suggest the prefix under which the key does exist.
                    let mut prefixes: Vec<&str> = all_keys
                        .iter()
                        .filter_map(|other| other.strip_suffix(name.as_str()))
                        .filter(|p| p.is_empty() || p.ends_with('.'))
                        .collect();
                    prefixes.sort_unstable();
                    if !prefixes.is_empty() {
                        let list: Vec<String> = prefixes.iter().map(|p| format!("'{p}'")).collect();
                        message.push_str(&format!(
                            "; found '{name}' under prefix {}: set prefix accordingly",
                            list.join(", ")
                        ));
                    }
                    Err(param_err(&k, message))
                }
            }
        };

        // An LSTM with projections (proj_size > 0) has weight_hr_l0, [proj_size, hidden_size].
        let k_hr0 = key("weight_hr_l0".into());
        let proj = match map.get(&k_hr0) {
            None => None,
            Some(a) => match a.shape() {
                [p, h] if *p > 0 && p < h => Some((*p, *h)),
                found => {
                    return Err(param_err(
                        &k_hr0,
                        format!(
                            "expected shape [proj_size, hidden_size] with 0 < proj_size < \
                             hidden_size (as nn.LSTM requires), found {}",
                            shape_string(found)
                        ),
                    ))
                }
            },
        };
        if proj.is_none() {
            if let Some(k) = map
                .keys()
                .filter(|k| {
                    k.strip_prefix(config.prefix.as_str())
                        .and_then(ParamName::parse)
                        .is_some_and(|p| p.side == "hr")
                })
                .min()
            {
                return Err(param_err(
                    k,
                    format!("unexpected key: {k_hr0} is missing, so the module has no projections"),
                ));
            }
        }

        // Hidden and input sizes from layer 0's forward weights.
        let (k_hh, w_hh0) = get("weight_hh_l0".into())?;
        let hidden = match w_hh0.shape() {
            // With projections, weight_hh is [4·hidden_size, proj_size]: checked below.
            _ if proj.is_some() => proj.map(|(_, h)| h).expect("matched"),
            // Checked: a zero-row array may declare any column count.
            [rows, h] if *h > 0 && g.checked_mul(*h) == Some(*rows) => *h,
            found => {
                let mut message = format!(
                    "expected shape [{g}·hidden_size, hidden_size] ({module}: {g} gate{}), found {}",
                    if g == 1 { "" } else { "s" },
                    shape_string(found)
                );
                if let [rows, h] = found {
                    let other = [(1, "nn.RNN"), (4, "nn.LSTM"), (3, "nn.GRU")]
                        .into_iter()
                        .find(|(og, _)| *og != g && *h > 0 && og.checked_mul(*h) == Some(*rows));
                    if let Some((_, name)) = other {
                        message.push_str(&format!("; the shape is that of an {name}"));
                    }
                }
                return Err(param_err(&k_hh, message));
            }
        };
        let gh = g * hidden;
        let (k_ih, w_ih0) = get("weight_ih_l0".into())?;
        let input = match w_ih0.shape() {
            [rows, i] if *rows == gh => *i,
            found => {
                return Err(param_err(
                    &k_ih,
                    format!(
                        "expected shape [{gh}, input_size] ({module}: {g} gate{} × hidden_size {hidden} from {k_hh}), found {}",
                        if g == 1 { "" } else { "s" },
                        shape_string(found)
                    ),
                ))
            }
        };

        let check = |k: &str, a: &ArrayD<T>, want: &[usize], what: &str| -> Result<()> {
            if a.shape() == want {
                Ok(())
            } else {
                Err(param_err(
                    k,
                    format!(
                        "expected shape {} ({what}), found {}",
                        shape_string(want),
                        shape_string(a.shape())
                    ),
                ))
            }
        };
        let reorder = |a: &ArrayD<T>| -> ArrayD<T> {
            reorder_gates(op, a.view(), GateOrder::PyTorch, GateOrder::Onnx)
        };

        // The size of the hidden state each layer feeds back and passes on: proj_size with
        // projections, hidden_size otherwise.
        let rec = proj.map_or(hidden, |(p, _)| p);
        let rec_what = if proj.is_some() {
            "proj_size"
        } else {
            "hidden_size"
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        let mut projected = Vec::new();
        for layer in 0..config.num_layers {
            let layer_input = if layer == 0 { input } else { dirs * rec };
            let input_what = if layer == 0 {
                format!("{g}·{hidden} gate rows × input_size {input}")
            } else {
                format!("{g}·{hidden} gate rows × {dirs}·{rec}, the previous layer's output")
            };
            let mut dirs_projected = Vec::new();
            let mut w = Vec::with_capacity(dirs);
            let mut r = Vec::with_capacity(dirs);
            let mut b = Vec::with_capacity(dirs);
            for d in 0..dirs {
                let sfx = if d == 1 { "_reverse" } else { "" };
                let (k, w_ih) = get(format!("weight_ih_l{layer}{sfx}"))?;
                check(&k, w_ih, &[gh, layer_input], &input_what)?;
                let (k, w_hh) = get(format!("weight_hh_l{layer}{sfx}"))?;
                check(
                    &k,
                    w_hh,
                    &[gh, rec],
                    &format!("{g}·{hidden} gate rows × {rec_what} {rec}"),
                )?;
                if proj.is_some() {
                    let (k, w_hr) = get(format!("weight_hr_l{layer}{sfx}"))?;
                    check(
                        &k,
                        w_hr,
                        &[rec, hidden],
                        &format!("proj_size {rec} × hidden_size {hidden}, from {k_hr0}"),
                    )?;
                    let mut bias = Array1::<T>::zeros(gh);
                    if config.bias {
                        for side in ["ih", "hh"] {
                            let (k, b) = get(format!("bias_{side}_l{layer}{sfx}"))?;
                            check(&k, b, &[gh], &format!("{g}·{hidden} gate rows"))?;
                            let b = b.view().into_dimensionality::<Ix1>().expect("rank checked");
                            bias.zip_mut_with(&b, |acc, &v| *acc = *acc + v);
                        }
                    }
                    dirs_projected.push(ProjectedDir::new(as2(w_ih), as2(w_hh), as2(w_hr), bias));
                    continue;
                }
                w.push(
                    reorder(w_ih)
                        .into_dimensionality::<Ix2>()
                        .expect("rank checked"),
                );
                r.push(
                    reorder(w_hh)
                        .into_dimensionality::<Ix2>()
                        .expect("rank checked"),
                );
                if config.bias {
                    let mut halves = Vec::with_capacity(2);
                    for side in ["ih", "hh"] {
                        let (k, bias) = get(format!("bias_{side}_l{layer}{sfx}"))?;
                        check(&k, bias, &[gh], &format!("{g}·{hidden} gate rows"))?;
                        halves.push(
                            reorder(bias)
                                .into_dimensionality::<Ix1>()
                                .expect("rank checked"),
                        );
                    }
                    b.push(join_onnx_bias(halves[0].view(), halves[1].view()));
                }
            }
            if proj.is_some() {
                projected.push(ProjectedLayer {
                    dirs: dirs_projected,
                });
                continue;
            }
            let stack2 = |a: &[Array2<T>]| {
                let views: Vec<ArrayView2<T>> = a.iter().map(|a| a.view()).collect();
                ndarray::stack(Axis(0), &views)
                    .expect("same shapes")
                    .into_dyn()
            };
            let w = stack2(&w);
            let r = stack2(&r);
            let b = (!b.is_empty()).then(|| {
                let views: Vec<ArrayView1<T>> = b.iter().map(|a: &Array1<T>| a.view()).collect();
                ndarray::stack(Axis(0), &views)
                    .expect("same shapes")
                    .into_dyn()
            });
            let spec = Self::node_spec(&config, layer, hidden);
            let built = Layer::from_onnx(
                &spec,
                w.view(),
                r.view(),
                b.as_ref().map(|b| b.view()),
                None,
            )?;
            layers.push(built);
        }
        Ok(TorchRecurrent {
            config,
            input_size: input,
            hidden_size: hidden,
            proj_size: proj.map(|(p, _)| p),
            layers,
            projected,
        })
    }

    /// The ONNX node PyTorch's legacy exporter writes for one layer.
    fn node_spec(config: &TorchConfig, layer: usize, hidden: usize) -> NodeSpec {
        let op = config.kind.op();
        let dirs = config.num_directions();
        let (activations, given) = match config.kind {
            TorchKind::Rnn {
                nonlinearity: Nonlinearity::Relu,
            } => (vec![Activation::Relu; dirs], true),
            TorchKind::Rnn {
                nonlinearity: Nonlinearity::Tanh,
            } => (vec![Activation::Tanh; dirs], true),
            TorchKind::Lstm => (
                [Activation::Sigmoid, Activation::Tanh, Activation::Tanh].repeat(dirs),
                false,
            ),
            TorchKind::Gru => ([Activation::Sigmoid, Activation::Tanh].repeat(dirs), false),
        };
        // X, W, R, [B], initial_h, [initial_c]; Y, Y_h, [Y_c].
        let b = config.bias.then_some(3);
        let initial_h = 3 + config.bias as usize;
        let lstm = op == OpKind::Lstm;
        NodeSpec {
            name: format!("{}l{layer}", config.prefix),
            op,
            opset: 14,
            direction: if config.bidirectional {
                Direction::Bidirectional
            } else {
                Direction::Forward
            },
            hidden_size: Some(hidden),
            layout: Layout::SeqMajor,
            activations,
            activations_given: given,
            clip: None,
            input_forget: false,
            linear_before_reset: op == OpKind::Gru,
            slots: Slots {
                b,
                sequence_lens: None,
                initial_h: Some(initial_h),
                initial_c: lstm.then_some(initial_h + 1),
                p: None,
                y: Some(0),
                y_h: Some(1),
                y_c: lstm.then_some(2),
            },
        }
    }
}
