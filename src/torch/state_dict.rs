//! Reading a PyTorch state dict: `.npz`, `.safetensors` or arrays, float tensors converted to
//! the element type, and the parameter names parsed.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::Path;

use ndarray::{ArrayD, ArrayView2, Ix2, IxDyn};
use tract_hir::internal::{f16, DatumType, Tensor};

use super::{TorchConfig, TorchRecurrent};
use crate::error::{Error, Result};
use crate::kernels::Float;

/// A parsed parameter name: `{weight|bias}_{ih|hh|hr}_l{layer}[_reverse]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParamName<'a> {
    pub(super) kind: &'a str,
    pub(super) side: &'a str,
    pub(super) layer: usize,
    pub(super) reverse: bool,
}

impl<'a> ParamName<'a> {
    pub(super) fn parse(name: &'a str) -> Option<ParamName<'a>> {
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

pub(super) fn param_err(key: &str, message: impl Into<String>) -> Error {
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
pub(super) fn as2<T>(a: &ArrayD<T>) -> ArrayView2<'_, T> {
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
}
