//! PyTorch weights straight into the native cells, without ONNX.
//!
//! [`TorchRecurrent`] builds an `nn.RNN`, `nn.LSTM` or `nn.GRU` from its parameters as PyTorch
//! names and lays them out in a `state_dict()`: `weight_ih_l{k}` (`[G·H, I]`), `weight_hh_l{k}`
//! (`[G·H, H]`), `bias_ih_l{k}` and `bias_hh_l{k}` (`[G·H]`), and their `_reverse` twins for
//! the second direction of a bidirectional module. They are read from a `.safetensors` file
//! (`safetensors.torch.save_file(model.state_dict(), ...)`), an `.npz`
//! (`np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})`, or
//! `np.savez_compressed`), or a map of
//! arrays; float16, bfloat16, float32 and float64 tensors are converted to the element type
//! asked for.
//!
//! Each layer is turned into exactly what PyTorch's (legacy) ONNX exporter would write, one
//! ONNX node per layer: gates reordered to ONNX's order by [`crate::gates::reorder_gates`],
//! `B = [bias_ih, bias_hh]`, `linear_before_reset = 1` for GRU, `Relu` activations for
//! `nonlinearity='relu'`. It then runs on the same [`Layer`] code as an ONNX model does, so
//! both paths compute the same numbers. Between layers the output `[T, D, B, H]` becomes
//! PyTorch's `[T, B, D·H]`, as in PyTorch.
//!
//! [`TorchRecurrent::forward`] has PyTorch's calling convention: `input` `[T, B, I]` (or
//! `[B, T, I]` with `batch_first`), `h0`/`c0` `[num_layers·D, B, H]` (never batch-first), and
//! returns `output`, `h_n` and (LSTM) `c_n` shaped as PyTorch returns them. Modules in eval mode
//! only: dropout between layers is not applied.
//!
//! An `nn.LSTM(proj_size=P)` is recognised by its `weight_hr_l{k}` (`[P, H]`): its hidden state
//! is projected after every step, `h_t = W_hr · (o_t ⊙ tanh(c_t))`, so `h` is `P` wide
//! (`weight_hh_l{k}` is `[4·H, P]`, the next layer's input is `D·P`, `h0`/`h_n` are
//! `[num_layers·D, B, P]`, `output` is `[T, B, D·P]`) while `c` stays `H` wide. ONNX's LSTM has
//! no projection, so these layers are no [`Layer`]: they run on a loop of their own that uses
//! the cells' packed product for the input projection, the recurrent product and the
//! projection, and PyTorch's gate order.
//!
//! ```
//! use rnn_run::torch::{TorchConfig, TorchKind, TorchRecurrent};
//!
//! # fn main() -> Result<(), rnn_run::Error> {
//! // nn.LSTM(4, 5, num_layers=2), its state_dict saved with safetensors.
//! let config = TorchConfig { num_layers: 2, ..TorchConfig::new(TorchKind::Lstm) };
//! let lstm = TorchRecurrent::<f32>::from_safetensors(
//!     "fixtures/torch_weights/lstm_l2/state_dict.safetensors",
//!     config,
//! )?;
//! let x = ndarray::Array3::<f32>::zeros((7, 3, lstm.input_size())); // [seq, batch, input]
//! let out = lstm.forward(x.view(), None, None)?;
//! assert_eq!(out.output.dim(), (7, 3, 5));
//! assert_eq!(out.h_n.dim(), (2, 3, 5));
//! assert!(out.c_n.is_some());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::Path;

use ndarray::{
    s, Array1, Array2, Array3, ArrayD, ArrayView1, ArrayView2, ArrayView3, Axis, Ix1, Ix2, IxDyn,
};
use tract_hir::internal::{f16, DatumType, Tensor};

use crate::attrs::{Activation, Direction, Layout, NodeSpec, OpKind, Slots};
use crate::error::{shape_string, Error, Result};
use crate::gates::{
    join_onnx_bias, reorder_gates, seq_major_y_to_torch, swap_batch_and_seq, GateOrder,
};
use crate::kernels::{gemm_packed, Float, Init, Packed};
use crate::layer::{Layer, RunInputs};

/// `nn.RNN`'s `nonlinearity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Nonlinearity {
    /// `'tanh'` (PyTorch's default).
    #[default]
    Tanh,
    /// `'relu'`.
    Relu,
}

/// Which PyTorch module the parameters belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TorchKind {
    /// `nn.RNN`.
    Rnn {
        /// `nonlinearity='tanh'` or `'relu'`.
        nonlinearity: Nonlinearity,
    },
    /// `nn.LSTM` (with or without `proj_size`: see the module documentation).
    Lstm,
    /// `nn.GRU`.
    Gru,
}

impl TorchKind {
    /// The ONNX op one layer becomes.
    pub fn op(self) -> OpKind {
        match self {
            TorchKind::Rnn { .. } => OpKind::Rnn,
            TorchKind::Lstm => OpKind::Lstm,
            TorchKind::Gru => OpKind::Gru,
        }
    }

    /// `nn.RNN`, `nn.LSTM` or `nn.GRU`.
    pub fn module_name(self) -> &'static str {
        match self {
            TorchKind::Rnn { .. } => "nn.RNN",
            TorchKind::Lstm => "nn.LSTM",
            TorchKind::Gru => "nn.GRU",
        }
    }
}

/// The module's constructor arguments that the parameters alone do not tell (or that are
/// checked against them), and where its parameters sit in the state dict.
///
/// `input_size` and `hidden_size` are read from the parameters' shapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TorchConfig {
    /// Module kind (and `nonlinearity` for `nn.RNN`).
    pub kind: TorchKind,
    /// `num_layers` (default 1).
    pub num_layers: usize,
    /// `bidirectional` (default false).
    pub bidirectional: bool,
    /// `batch_first` (default false): `input` and `output` are `[B, T, ·]`. `h0`, `c0`, `h_n`
    /// and `c_n` stay `[num_layers·D, B, H]`, as in PyTorch.
    pub batch_first: bool,
    /// `bias` (default true): whether `bias_ih_l{k}` / `bias_hh_l{k}` exist.
    pub bias: bool,
    /// Prepended to every key: `"lstm."` for the `self.lstm` of a bigger module's
    /// `state_dict()`; `""` (default) for the module's own. Keys outside the prefix are ignored.
    pub prefix: String,
}

impl TorchConfig {
    /// PyTorch's defaults for `kind`: one layer, unidirectional, sequence-first, with biases,
    /// no prefix.
    pub fn new(kind: TorchKind) -> TorchConfig {
        TorchConfig {
            kind,
            num_layers: 1,
            bidirectional: false,
            batch_first: false,
            bias: true,
            prefix: String::new(),
        }
    }

    /// 1, or 2 when bidirectional.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Whether `key` is, after the prefix, named like a recurrent module's parameter
    /// (`weight_ih_l0`, `bias_hh_l1_reverse`, `weight_hr_l0`, ...), whether or not this
    /// configuration expects it.
    pub fn is_param_key(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .and_then(ParamName::parse)
            .is_some()
    }
}

/// A parsed parameter name: `{weight|bias}_{ih|hh|hr}_l{layer}[_reverse]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParamName<'a> {
    kind: &'a str,
    side: &'a str,
    layer: usize,
    reverse: bool,
}

impl<'a> ParamName<'a> {
    fn parse(name: &'a str) -> Option<ParamName<'a>> {
        let (kind, rest) = name.split_once('_')?;
        if kind != "weight" && kind != "bias" {
            return None;
        }
        let (side, rest) = rest.split_once("_l")?;
        if !matches!(side, "ih" | "hh" | "hr") {
            return None;
        }
        let (digits, reverse) = match rest.strip_suffix("_reverse") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(ParamName {
            kind,
            side,
            layer: digits.parse().ok()?,
            reverse,
        })
    }
}

/// What [`TorchRecurrent::forward`] returns, shaped as PyTorch returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchOutput<T> {
    /// `output`: `[T, B, D·H]` (`[B, T, D·H]` with `batch_first`): the last layer's hidden
    /// state at every step, forward direction then reverse.
    pub output: Array3<T>,
    /// `h_n`: `[num_layers·D, B, H]`, layer-major (layer 0 forward, layer 0 reverse, ...).
    pub h_n: Array3<T>,
    /// `c_n` (LSTM): same shape as `h_n`.
    pub c_n: Option<Array3<T>>,
}

/// An `nn.RNN` / `nn.LSTM` / `nn.GRU` built from PyTorch parameters, running on the native
/// cells: one [`Layer`] (one ONNX-equivalent node) per PyTorch layer.
#[derive(Debug)]
pub struct TorchRecurrent<T> {
    config: TorchConfig,
    input_size: usize,
    hidden_size: usize,
    /// `proj_size` of an LSTM with projections.
    proj_size: Option<usize>,
    /// One ONNX-equivalent node per layer; empty for an LSTM with projections.
    layers: Vec<Layer<T>>,
    /// An LSTM with projections: one per layer (no ONNX node expresses them).
    projected: Vec<ProjectedLayer<T>>,
}

fn param_err(key: &str, message: impl Into<String>) -> Error {
    Error::Parameter {
        key: key.to_string(),
        message: message.into(),
    }
}

/// What is wrong with a safetensors file, in a line: an unknown element type is named, not
/// followed by serde's list of every type the crate knows.
fn safetensors_problem(e: &safetensors::SafeTensorError) -> String {
    let text = e.to_string();
    if let Some(rest) = text.split("unknown variant `").nth(1) {
        if let Some(dtype) = rest.split('`').next() {
            return format!(
                "its header gives a tensor the element type '{dtype}', which safetensors does \
                 not define (F16, BF16, F32 and F64 hold weights)"
            );
        }
    }
    match text.find(", expected one of") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The whole of a regular file (see [`crate::files`]).
fn read_regular(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let (file, len) =
        crate::files::open_regular(path).map_err(|e| e.into_error(path, "a .safetensors file"))?;
    let mut bytes = Vec::new();
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

fn invalid_file(path: &Path, message: String) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidData, message),
    }
}

fn cast<T: Float>(v: f64) -> T {
    // Every Float converts from f64 (rounding when narrower).
    num_traits::cast::<f64, T>(v).unwrap_or_else(T::nan)
}

/// A parameter of checked rank 2 as a 2-D view.
fn as2<T>(a: &ArrayD<T>) -> ArrayView2<'_, T> {
    a.view().into_dimensionality::<Ix2>().expect("rank checked")
}

/// A numpy tensor of floats as an array of `T`.
fn tensor_to_array<T: Float>(key: &str, t: &Tensor) -> Result<ArrayD<T>> {
    match t.datum_type() {
        DatumType::F16 | DatumType::F32 | DatumType::F64 => {
            let t64 = t
                .cast_to::<f64>()
                .map_err(|e| param_err(key, e.to_string()))?;
            let view = t64
                .to_plain_array_view::<f64>()
                .map_err(|e| param_err(key, e.to_string()))?;
            Ok(view.mapv(cast::<T>))
        }
        other => Err(param_err(
            key,
            format!(
                "expected a floating-point tensor (float16, float32 or float64), found {other:?}"
            ),
        )),
    }
}

/// A safetensors tensor of floats as an array of `T` (safetensors stores little-endian).
fn safetensor_to_array<T: Float>(
    key: &str,
    v: &safetensors::tensor::TensorView,
) -> Result<ArrayD<T>> {
    use safetensors::Dtype;
    let data = v.data();
    let values: Vec<T> = match v.dtype() {
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| cast(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
            .collect(),
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| cast(f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| cast(f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64()))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| cast(f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64))
            .collect(),
        other => {
            return Err(param_err(
                key,
                format!(
                    "expected a floating-point tensor (F16, BF16, F32 or F64), found {other:?}"
                ),
            ))
        }
    };
    ArrayD::from_shape_vec(IxDyn(v.shape()), values).map_err(|e| param_err(key, e.to_string()))
}

impl<T: Float> TorchRecurrent<T> {
    /// Reads the parameters from an `.npz` archive (`np.savez` or `np.savez_compressed`) keyed by
    /// state-dict name. Entries outside `config.prefix`, or not named like a recurrent
    /// module's parameter, are ignored.
    pub fn from_npz(path: impl AsRef<Path>, config: TorchConfig) -> Result<TorchRecurrent<T>> {
        let arrays = crate::npy::read_npz(path)?;
        let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
        let mut map = HashMap::new();
        for (name, tensor) in &arrays {
            if config.is_param_key(name) {
                map.insert(name.clone(), tensor_to_array::<T>(name, tensor)?);
            }
        }
        Self::build(&map, &names, config)
    }

    /// Reads the parameters from a `.safetensors` file
    /// (`safetensors.torch.save_file(model.state_dict(), path)`). Entries outside
    /// `config.prefix`, or not named like a recurrent module's parameter, are ignored.
    pub fn from_safetensors(
        path: impl AsRef<Path>,
        config: TorchConfig,
    ) -> Result<TorchRecurrent<T>> {
        let path = path.as_ref();
        let bytes = read_regular(path)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            invalid_file(
                path,
                format!(
                    "not a usable .safetensors file: {}",
                    safetensors_problem(&e)
                ),
            )
        })?;
        let names = st.names();
        let mut map = HashMap::new();
        for name in &names {
            if config.is_param_key(name) {
                let view = st
                    .tensor(name)
                    .map_err(|e| param_err(name, e.to_string()))?;
                map.insert(name.to_string(), safetensor_to_array::<T>(name, &view)?);
            }
        }
        Self::build(&map, &names, config)
    }

    /// Builds the module from arrays keyed by state-dict name (prefix included). Input and
    /// hidden sizes are read from the shapes and every parameter is checked: a missing key,
    /// a wrong shape, or a key that this configuration does not expect (another layer,
    /// `_reverse` on a unidirectional module, biases with `bias: false`, `weight_hr` on
    /// another module than `nn.LSTM`) is an [`Error::Parameter`] naming the key, with
    /// expected versus found. `weight_hr_l0` makes an LSTM one with projections.
    pub fn from_tensors(
        map: &HashMap<String, ArrayD<T>>,
        config: TorchConfig,
    ) -> Result<TorchRecurrent<T>> {
        let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        Self::build(map, &names, config)
    }

    fn build(
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

    /// The configuration the module was built with.
    pub fn config(&self) -> &TorchConfig {
        &self.config
    }

    /// `input_size`, from `weight_ih_l0`.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// `hidden_size`, from `weight_hh_l0`.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// `proj_size` of an LSTM with projections (from `weight_hr_l0`), `None` otherwise.
    pub fn proj_size(&self) -> Option<usize> {
        self.proj_size
    }

    /// The layers, each one ONNX-equivalent node (its [`Layer::spec`] says which). Empty for
    /// an LSTM with projections, which no ONNX node expresses: those layers run on their own
    /// loop (see [`TorchRecurrent::forward`]).
    pub fn layers(&self) -> &[Layer<T>] {
        &self.layers
    }

    /// Runs the module as PyTorch's `forward` does in eval mode: `input` is `[T, B, I]`
    /// (`[B, T, I]` with `batch_first`), `h0` and `c0` are `[num_layers·D, B, H]` (zeros when
    /// absent; `c0` for LSTM only).
    pub fn forward(
        &self,
        input: ArrayView3<T>,
        h0: Option<ArrayView3<T>>,
        c0: Option<ArrayView3<T>>,
    ) -> Result<TorchOutput<T>> {
        let cfg = &self.config;
        let bf = cfg.batch_first;
        let order = if bf {
            "[batch, seq, input_size]"
        } else {
            "[seq, batch, input_size]"
        };
        if input.dim().2 != self.input_size {
            return Err(Error::Input {
                name: "input".into(),
                message: format!(
                    "expected {order} with input_size {}, found shape {}",
                    self.input_size,
                    shape_string(input.shape())
                ),
            });
        }
        let x = if bf {
            swap_batch_and_seq(input)
        } else {
            input.as_standard_layout().into_owned()
        };
        let (_, batch, _) = x.dim();
        let dirs = cfg.num_directions();
        let h = self.hidden_size;
        let state_shape = [cfg.num_layers * dirs, batch, h];
        // With projections the hidden state is proj_size wide, the cell state hidden_size.
        let h_shape = [cfg.num_layers * dirs, batch, self.proj_size.unwrap_or(h)];
        let check_state =
            |name: &str, s: &Option<ArrayView3<T>>, want: [usize; 3], what: &str| match s {
                Some(s) if s.shape() != want => Err(Error::Input {
                    name: name.into(),
                    message: format!(
                        "expected shape {} ([num_layers·num_directions, batch, {what}]), found {}",
                        shape_string(want),
                        shape_string(s.shape())
                    ),
                }),
                _ => Ok(()),
            };
        let h_what = if self.proj_size.is_some() {
            "proj_size"
        } else {
            "hidden_size"
        };
        check_state("h0", &h0, h_shape, h_what)?;
        check_state("c0", &c0, state_shape, "hidden_size")?;
        let lstm = cfg.kind == TorchKind::Lstm;
        if c0.is_some() && !lstm {
            return Err(Error::Input {
                name: "c0".into(),
                message: format!(
                    "a cell state is for nn.LSTM only, this is {}",
                    cfg.kind.module_name()
                ),
            });
        }

        if self.proj_size.is_some() {
            let (output, h_n, c_n) = self.forward_projected(x, h0, c0, h_shape, state_shape);
            let output = if bf {
                swap_batch_and_seq(output.view())
            } else {
                output
            };
            return Ok(TorchOutput {
                output,
                h_n,
                c_n: Some(c_n),
            });
        }

        let mut h_n = Array3::<T>::zeros(state_shape);
        let mut c_n = lstm.then(|| Array3::<T>::zeros(state_shape));
        let mut x = x;
        for (k, layer) in self.layers.iter().enumerate() {
            let rows = s![k * dirs..(k + 1) * dirs, .., ..];
            let inputs = RunInputs {
                sequence_lens: None,
                initial_h: h0.as_ref().map(|a| a.slice(rows).into_dyn()),
                initial_c: c0.as_ref().map(|a| a.slice(rows).into_dyn()),
                threads: None,
            };
            let out = layer.run(x.view().into_dyn(), inputs, None)?;
            h_n.slice_mut(rows).assign(&out.y_h);
            if let (Some(c_n), Some(y_c)) = (c_n.as_mut(), out.y_c.as_ref()) {
                c_n.slice_mut(rows).assign(y_c);
            }
            x = seq_major_y_to_torch(out.y.view());
        }
        let output = if bf { swap_batch_and_seq(x.view()) } else { x };
        Ok(TorchOutput { output, h_n, c_n })
    }

    /// [`TorchRecurrent::forward`] of an LSTM with projections, sequence-first: `x` is
    /// `[T, B, I]`, shapes checked. Returns `output` `[T, B, D·P]`, `h_n`, `c_n`.
    fn forward_projected(
        &self,
        x: Array3<T>,
        h0: Option<ArrayView3<T>>,
        c0: Option<ArrayView3<T>>,
        h_shape: [usize; 3],
        c_shape: [usize; 3],
    ) -> (Array3<T>, Array3<T>, Array3<T>) {
        let (t_len, batch, _) = x.dim();
        let p = h_shape[2];
        let dirs = self.config.num_directions();
        let mut h_n = Array3::<T>::zeros(h_shape);
        let mut c_n = Array3::<T>::zeros(c_shape);
        let mut x = x;
        for (k, layer) in self.projected.iter().enumerate() {
            let mut y = Array3::<T>::zeros((t_len, batch, dirs * p));
            for (d, dir) in layer.dirs.iter().enumerate() {
                let row = k * dirs + d;
                let h = h0.as_ref().map_or_else(
                    || Array2::zeros((batch, p)),
                    |h0| h0.index_axis(Axis(0), row).to_owned(),
                );
                let c = c0.as_ref().map_or_else(
                    || Array2::zeros((batch, self.hidden_size)),
                    |c0| c0.index_axis(Axis(0), row).to_owned(),
                );
                let y_d = y.slice_mut(s![.., .., d * p..(d + 1) * p]);
                let (h, c) = dir.run(x.view(), h, c, d == 1, y_d);
                h_n.index_axis_mut(Axis(0), row).assign(&h);
                c_n.index_axis_mut(Axis(0), row).assign(&c);
            }
            x = y;
        }
        (x, h_n, c_n)
    }
}

/// One layer of an LSTM with projections: one [`ProjectedDir`] per direction.
#[derive(Debug, Clone)]
struct ProjectedLayer<T> {
    dirs: Vec<ProjectedDir<T>>,
}

/// One direction of an LSTM layer with projections, as PyTorch computes it (gates in
/// PyTorch's order i, f, g, o):
///
/// ```text
/// gates = x_t·W_ihᵀ + b_ih + b_hh + h_{t-1}·W_hhᵀ      (h is proj_size wide)
/// c_t   = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)             (c is hidden_size wide)
/// h_t   = (σ(o) ⊙ tanh(c_t))·W_hrᵀ                     (the projection)
/// ```
///
/// Each product runs on the cells' packed kernel ([`gemm_packed`]): the input projection of
/// the whole sequence at once, then per step the recurrent product and the projection.
#[derive(Debug, Clone)]
struct ProjectedDir<T> {
    /// W_ihᵀ `[input, 4·hidden]`.
    w_ih: Packed<T>,
    /// W_hhᵀ `[proj, 4·hidden]`.
    w_hh: Packed<T>,
    /// W_hrᵀ `[hidden, proj]`.
    w_hr: Packed<T>,
    /// `b_ih + b_hh` (zeros without biases), `[4·hidden]`.
    bias: Array1<T>,
}

impl<T: Float> ProjectedDir<T> {
    /// From PyTorch's `weight_ih` `[4H, I]`, `weight_hh` `[4H, P]`, `weight_hr` `[P, H]`.
    fn new(
        w_ih: ArrayView2<T>,
        w_hh: ArrayView2<T>,
        w_hr: ArrayView2<T>,
        bias: Array1<T>,
    ) -> ProjectedDir<T> {
        ProjectedDir {
            w_ih: Packed::pack(w_ih.t()),
            w_hh: Packed::pack(w_hh.t()),
            w_hr: Packed::pack(w_hr.t()),
            bias,
        }
    }

    /// Runs over `x` (`[T, B, I]`, backwards when `reverse`) from `h` `[B, P]` and `c`
    /// `[B, H]`, writing each step's `h` into `y` (`[T, B, P]`); returns the last `h` and `c`.
    fn run(
        &self,
        x: ArrayView3<T>,
        mut h: Array2<T>,
        mut c: Array2<T>,
        reverse: bool,
        mut y: ndarray::ArrayViewMut3<T>,
    ) -> (Array2<T>, Array2<T>) {
        let (t_len, batch, input) = x.dim();
        let hs = self.w_hr.rows();
        let (p, width) = (self.w_hr.cols(), 4 * hs);
        let x = x.as_standard_layout();
        let x = x.as_slice().expect("standard layout");
        let bias = self.bias.as_slice().expect("owned, contiguous");
        let mut gx = vec![T::zero(); t_len * batch * width];
        gemm_packed(
            t_len * batch,
            x,
            input,
            &self.w_ih,
            &mut gx,
            width,
            Init::Row(bias),
        );
        let mut gates = vec![T::zero(); batch * width];
        let mut m = vec![T::zero(); batch * hs];
        let h_rows = h.as_slice_mut().expect("owned, standard layout");
        let c_rows = c.as_slice_mut().expect("owned, standard layout");
        for step in 0..t_len {
            let t = if reverse { t_len - 1 - step } else { step };
            let gx_t = &gx[t * batch * width..(t + 1) * batch * width];
            gemm_packed(
                batch,
                h_rows,
                p,
                &self.w_hh,
                &mut gates,
                width,
                Init::Rows(gx_t, width),
            );
            for ((row, c_b), m_b) in gates
                .chunks_exact_mut(width)
                .zip(c_rows.chunks_exact_mut(hs))
                .zip(m.chunks_exact_mut(hs))
            {
                let (gi, rest) = row.split_at_mut(hs);
                let (gf, rest) = rest.split_at_mut(hs);
                let (gg, go) = rest.split_at_mut(hs);
                T::sigmoid_slice(gi);
                T::sigmoid_slice(gf);
                T::tanh_slice(gg);
                T::sigmoid_slice(go);
                for (((cv, &i), &f), &g) in c_b.iter_mut().zip(&*gi).zip(&*gf).zip(&*gg) {
                    *cv = f * *cv + i * g;
                }
                m_b.copy_from_slice(c_b);
                T::tanh_slice(m_b);
                for (mv, &o) in m_b.iter_mut().zip(&*go) {
                    *mv = o * *mv;
                }
            }
            gemm_packed(batch, &m, hs, &self.w_hr, h_rows, p, Init::Zero);
            y.index_axis_mut(Axis(0), t)
                .assign(&ArrayView2::from_shape((batch, p), &*h_rows).expect("[batch, proj] rows"));
        }
        (h, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_names() {
        let p = ParamName::parse("bias_hh_l12_reverse").unwrap();
        assert_eq!(
            (p.kind, p.side, p.layer, p.reverse),
            ("bias", "hh", 12, true)
        );
        assert!(ParamName::parse("weight_hr_l0").is_some());
        for bad in [
            "weight_ih_l",
            "weight_ih_lx",
            "weight_xx_l0",
            "weights_ih_l0",
            "weight_ih_l0_rev",
            "fc.weight",
        ] {
            assert!(ParamName::parse(bad).is_none(), "{bad}");
        }
        let cfg = TorchConfig {
            prefix: "enc.".into(),
            ..TorchConfig::new(TorchKind::Gru)
        };
        assert!(cfg.is_param_key("enc.weight_ih_l0"));
        assert!(!cfg.is_param_key("weight_ih_l0"));
        assert!(!cfg.is_param_key("enc.fc.weight"));
    }
}
