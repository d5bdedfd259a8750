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
//!
//! The files: the module's types and accessors (here); reading a state dict (`state_dict`:
//! `.npz`, `.safetensors`, arrays; parameter names); mapping its parameters to ONNX-equivalent
//! layers (`mapping`); and running them (`forward`, with the projected LSTM's own loop).

mod forward;
mod mapping;
mod state_dict;
#[cfg(test)]
mod tests;

use ndarray::Array3;

use crate::attrs::OpKind;
use crate::kernels::Float;
use crate::layer::Layer;

use forward::ProjectedLayer;
use state_dict::ParamName;

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

impl<T: Float> TorchRecurrent<T> {
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
}
