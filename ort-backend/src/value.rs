//! What an `OrtValue` and an `OrtTypeInfo` point to here: an rnn-run tensor (with its shape
//! as ONNX's `i64`s, which ort borrows), and an element type with a shape, and the mapping
//! between ONNX's element type codes and rnn-run's.

use ort_sys::ONNXTensorElementDataType as Onnx;
use ort_sys::OrtErrorCode;
use rnn_run::{DatumType, Dim, Tensor};

use crate::error::Error;

/// An `OrtValue`: always a tensor (rnn-run has no sequences or maps).
pub struct Value {
    pub tensor: Tensor,
    /// The tensor's shape, kept because `GetTensorElementTypeAndShapeDataReference` hands out
    /// a pointer to it.
    pub shape: Vec<i64>,
}

impl From<Tensor> for Value {
    fn from(tensor: Tensor) -> Value {
        let shape = tensor.shape().iter().map(|&d| d as i64).collect();
        Value { tensor, shape }
    }
}

impl Value {
    pub fn into_sys(self) -> *mut ort_sys::OrtValue {
        Box::into_raw(Box::new(self)).cast()
    }
}

/// An `OrtTypeInfo`, which is also its `OrtTensorTypeAndShapeInfo` (every value is a tensor).
#[derive(Clone)]
pub struct TypeInfo {
    pub dtype: DatumType,
    /// -1 for a dimension chosen at run time.
    pub shape: Vec<i64>,
    /// The names of symbolic dimensions ("" for fixed ones), NUL-terminated for
    /// `GetSymbolicDimensions`.
    pub symbols: Vec<std::ffi::CString>,
}

impl TypeInfo {
    pub fn of_dims(dtype: DatumType, dims: &[Dim]) -> TypeInfo {
        let (shape, symbols) = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => (*n as i64, std::ffi::CString::default()),
                // A symbol never holds a NUL: it came from a protobuf string through tract.
                Dim::Symbol(s) => (-1, std::ffi::CString::new(s.as_str()).unwrap_or_default()),
            })
            .unzip();
        TypeInfo {
            dtype,
            shape,
            symbols,
        }
    }

    pub fn of_value(value: &Value) -> TypeInfo {
        TypeInfo {
            dtype: value.tensor.datum_type(),
            shape: value.shape.clone(),
            symbols: vec![Default::default(); value.shape.len()],
        }
    }

    pub fn into_sys(self) -> *mut ort_sys::OrtTypeInfo {
        Box::into_raw(Box::new(self)).cast()
    }
}

/// The element types rnn-run's tensors hold, by ONNX code.
pub fn datum_type(code: Onnx) -> Result<DatumType, Error> {
    Ok(match code {
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL => DatumType::Bool,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 => DatumType::U8,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16 => DatumType::U16,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32 => DatumType::U32,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64 => DatumType::U64,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 => DatumType::I8,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16 => DatumType::I16,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 => DatumType::I32,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 => DatumType::I64,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 => DatumType::F16,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT => DatumType::F32,
        Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE => DatumType::F64,
        other => {
            return Err(Error::new(
                OrtErrorCode::ORT_NOT_IMPLEMENTED,
                format!(
                    "rnn-run does not run tensors of element type {other:?}: it takes bool, \
                     the integer types, float16, float and double"
                ),
            ))
        }
    })
}

/// The ONNX code of an element type (UNDEFINED for those ONNX has no code for).
pub fn onnx_type(dtype: DatumType) -> Onnx {
    match dtype {
        DatumType::Bool => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL,
        DatumType::U8 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
        DatumType::U16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16,
        DatumType::U32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32,
        DatumType::U64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64,
        DatumType::I8 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
        DatumType::I16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16,
        DatumType::I32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
        DatumType::I64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
        DatumType::F16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
        DatumType::F32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
        DatumType::F64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
        DatumType::String => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING,
        _ => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED,
    }
}

/// A shape from ort: every dimension a size (ort passes -1 only for type infos, never for a
/// tensor it asks us to make).
pub fn tensor_shape(dims: &[i64]) -> Result<Vec<usize>, Error> {
    dims.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                Error::new(
                    OrtErrorCode::ORT_INVALID_ARGUMENT,
                    format!("a tensor's dimensions must be sizes, found {d} in {dims:?}"),
                )
            })
        })
        .collect()
}
