//! numpy arrays in, numpy arrays out: Python values to rnn-run tensors for a run, and the
//! run's tensors back to numpy without copying them.
//!
//! A C-contiguous input is copied once, as one block, straight from numpy's buffer into the
//! tensor tract runs on (tract owns its tensors' memory, so that one copy cannot be avoided);
//! other layouts are first put in C order. An output is not copied at all:
//! the numpy array views the tensor's memory and keeps the tensor alive as its base object.

use ndarray::ArrayViewD;
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use rnn_run::{DatumType, IoInfo, Tensor};

use crate::errors::input_error;

/// Element types accepted in and given out, as numpy names them.
const SUPPORTED: &str =
    "float32, float64, float16, int64, int32, int16, int8, uint64, uint32, uint16, uint8, bool";

/// Owns an output tensor; the numpy arrays made from it view its memory and hold it alive.
#[pyclass(frozen, module = "rnn_run._native")]
pub struct TensorBuffer {
    tensor: Tensor,
}

/// One numpy array (or anything `numpy.asarray` takes) to a tensor; `name` is the graph
/// input it is for, in error messages.
pub fn tensor_from_py(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Tensor> {
    let py = value.py();
    let array = match value.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => {
            let numpy = py.import("numpy")?;
            let converted = numpy.call_method1("asarray", (value,)).map_err(|e| {
                input_error(
                    py,
                    format!(
                        "input '{name}': expected a numpy array, found {} ({e})",
                        type_name(value)
                    ),
                )
            })?;
            converted.cast_into::<PyUntypedArray>()?
        }
    };
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(
                if let Ok(a) = array.cast::<PyArrayDyn<$t>>() {
                    return Ok(from_array::<$t>(a));
                }
            )*
        };
    }
    try_types!(
        f32,
        f64,
        half::f16,
        i64,
        i32,
        i16,
        i8,
        u64,
        u32,
        u16,
        u8,
        bool
    );
    Err(input_error(
        py,
        format!(
            "input '{name}': numpy element type {} is not supported ({SUPPORTED})",
            array.dtype()
        ),
    ))
}

fn from_array<T: numpy::Element + rnn_run::Element + Copy>(a: &Bound<'_, PyArrayDyn<T>>) -> Tensor {
    let ro = a.readonly();
    // rust-numpy's `as_slice` also takes Fortran-ordered memory: C order is checked first.
    match ro.as_slice() {
        Ok(slice) if a.is_c_contiguous() => {
            Tensor::from_shape(ro.shape(), slice).expect("shape and length agree")
        }
        // Another layout (Fortran order, strides): copied into C order, the only one a
        // tensor has (ndarray's `to_owned` would keep the source's memory order).
        _ => Tensor::from(ro.as_array().as_standard_layout().into_owned()),
    }
}

/// The inputs of a run (or a chunk, or a frame): a dict by name, a list or tuple in order, or
/// a single array when one input is expected. Tensors come back in `expected`'s order; the
/// count, types and shapes are checked by rnn-run afterwards.
pub fn tensors_from_py(value: &Bound<'_, PyAny>, expected: &[IoInfo]) -> PyResult<Vec<Tensor>> {
    let py = value.py();
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut out = Vec::with_capacity(expected.len());
        for info in expected {
            match dict.get_item(&info.name)? {
                Some(v) => out.push(tensor_from_py(&v, &info.name)?),
                None => {
                    return Err(input_error(
                        py,
                        format!(
                            "input '{}': missing (expected {})",
                            info.name,
                            names(expected)
                        ),
                    ))
                }
            }
        }
        for key in dict.keys() {
            let key: String = key.str()?.extract()?;
            if !expected.iter().any(|i| i.name == key) {
                return Err(input_error(
                    py,
                    format!(
                        "input '{key}': not an input here (expected {})",
                        names(expected)
                    ),
                ));
            }
        }
        return Ok(out);
    }
    if value.cast::<PyUntypedArray>().is_ok() {
        let name = expected.first().map(|i| i.name.as_str()).unwrap_or("?");
        return Ok(vec![tensor_from_py(value, name)?]);
    }
    let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = value.cast::<PyList>() {
        list.iter().collect()
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        tuple.iter().collect()
    } else {
        return Err(input_error(
            py,
            format!(
                "expected a dict of arrays by input name, a list of arrays in input order, \
                 or one array; found {}",
                type_name(value)
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(k, v)| {
            let name = expected
                .get(k)
                .map(|i| i.name.clone())
                .unwrap_or_else(|| format!("#{k}"));
            tensor_from_py(v, &name)
        })
        .collect()
}

/// `a, b, c` (or `no inputs`).
pub fn names(infos: &[IoInfo]) -> String {
    if infos.is_empty() {
        return "no inputs".into();
    }
    infos
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A tensor as a numpy array viewing its memory (no copy).
pub fn tensor_to_py(py: Python<'_>, tensor: Tensor) -> PyResult<Bound<'_, PyAny>> {
    let owner = Bound::new(py, TensorBuffer { tensor })?;
    let t = &owner.get().tensor;
    macro_rules! view {
        ($t:ty) => {{
            let view: ArrayViewD<'_, $t> = t
                .to_plain_array_view::<$t>()
                .map_err(|e| crate::errors::run_error(py, format!("{e}")))?;
            // SAFETY: `owner` becomes the array's base object, and its tensor is never
            // modified or moved (the class is frozen), so the memory outlives the array.
            let array =
                unsafe { PyArrayDyn::<$t>::borrow_from_array(&view, owner.clone().into_any()) };
            Ok(array.into_any())
        }};
    }
    match t.datum_type() {
        DatumType::F32 => view!(f32),
        DatumType::F64 => view!(f64),
        DatumType::F16 => view!(half::f16),
        DatumType::I64 => view!(i64),
        DatumType::I32 => view!(i32),
        DatumType::I16 => view!(i16),
        DatumType::I8 => view!(i8),
        DatumType::U64 => view!(u64),
        DatumType::U32 => view!(u32),
        DatumType::U16 => view!(u16),
        DatumType::U8 => view!(u8),
        DatumType::Bool => view!(bool),
        other => Err(crate::errors::run_error(
            py,
            format!(
                "an output of element type {} cannot be given to numpy ({SUPPORTED})",
                rnn_run::dtype_name(other)
            ),
        )),
    }
}

/// Outputs by name, in the model's order.
pub fn outputs_to_py<'py>(
    py: Python<'py>,
    infos: &[IoInfo],
    tensors: Vec<Tensor>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, tensor) in tensors.into_iter().enumerate() {
        let name = infos
            .get(k)
            .map(|i| i.name.clone())
            .unwrap_or_else(|| format!("output_{k}"));
        dict.set_item(name, tensor_to_py(py, tensor)?)?;
    }
    Ok(dict)
}
