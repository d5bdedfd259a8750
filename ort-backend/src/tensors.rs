//! The `OrtApi` functions on values and type infos: making tensors from ort's buffers, handing
//! ort their data, element types and shapes (with the names of symbolic dimensions).
//!
//! Pointer contract as in [`crate::api`]: ort passes pointers this crate made, or buffers of
//! the lengths it gives.

#![allow(non_snake_case)]
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_void};

use ort_sys::*;
use rnn_run::Tensor;

use crate::error::{invalid_argument, status};
use crate::memory::cpu_memory_info;
use crate::value::{datum_type, onnx_type, tensor_shape, TypeInfo, Value};

unsafe fn value<'a>(ptr: *const OrtValue) -> &'a Value {
    unsafe { &*ptr.cast::<Value>() }
}

unsafe fn type_info<'a>(ptr: *const OrtTensorTypeAndShapeInfo) -> &'a TypeInfo {
    unsafe { &*ptr.cast::<TypeInfo>() }
}

unsafe fn type_info_mut<'a>(ptr: *mut OrtTensorTypeAndShapeInfo) -> &'a mut TypeInfo {
    unsafe { &mut *ptr.cast::<TypeInfo>() }
}

// ---- values ------------------------------------------------------------------------------

unsafe fn dims<'a>(shape: *const i64, len: usize) -> &'a [i64] {
    if len == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(shape, len) }
    }
}

/// A tensor of zeros; ort writes into it through [`GetTensorMutableData`].
pub unsafe extern "system" fn CreateTensorAsOrtValue(
    _allocator: *mut OrtAllocator,
    shape: *const i64,
    shape_len: usize,
    element: ONNXTensorElementDataType,
    out: *mut *mut OrtValue,
) -> OrtStatusPtr {
    status(|| {
        let dt = datum_type(element)?;
        let shape = tensor_shape(unsafe { dims(shape, shape_len) })?;
        let tensor = Tensor::zero_dt(dt, &shape)
            .map_err(|e| invalid_argument(format!("cannot make a tensor of {shape:?}: {e}")))?;
        unsafe { *out = Value::from(tensor).into_sys() };
        Ok(())
    })
}

/// ort hands over the caller's buffer; rnn-run's tensors own their data, so it is copied.
/// (A `TensorRefMut` therefore does not see what a run would write into it: rnn-run writes
/// no inputs, and outputs are new values.)
pub unsafe extern "system" fn CreateTensorWithDataAsOrtValue(
    _info: *const OrtMemoryInfo,
    data: *mut c_void,
    data_len: usize,
    shape: *const i64,
    shape_len: usize,
    element: ONNXTensorElementDataType,
    out: *mut *mut OrtValue,
) -> OrtStatusPtr {
    status(|| {
        let dt = datum_type(element)?;
        let shape = tensor_shape(unsafe { dims(shape, shape_len) })?;
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let expected = count.and_then(|n| n.checked_mul(dt.size_of()));
        if expected != Some(data_len) {
            return Err(invalid_argument(format!(
                "a tensor of {shape:?} {} needs {} bytes, the buffer holds {data_len}",
                rnn_run::dtype_name(dt),
                expected.map_or("more than usize::MAX".into(), |n| n.to_string())
            )));
        }
        let bytes: &[u8] = if data_len == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), data_len) }
        };
        // SAFETY: the length was checked against the shape and element type just above.
        let tensor = unsafe { Tensor::from_raw_dt(dt, &shape, bytes) }
            .map_err(|e| invalid_argument(format!("cannot make a tensor of {shape:?}: {e}")))?;
        unsafe { *out = Value::from(tensor).into_sys() };
        Ok(())
    })
}

pub unsafe extern "system" fn ReleaseValue(ptr: *mut OrtValue) {
    drop(unsafe { Box::from_raw(ptr.cast::<Value>()) });
}

pub unsafe extern "system" fn IsTensor(_ptr: *const OrtValue, out: *mut c_int) -> OrtStatusPtr {
    unsafe { *out = 1 };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn HasValue(_ptr: *const OrtValue, out: *mut c_int) -> OrtStatusPtr {
    unsafe { *out = 1 };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetValueType(
    _ptr: *const OrtValue,
    out: *mut ONNXType,
) -> OrtStatusPtr {
    unsafe { *out = ONNXType::ONNX_TYPE_TENSOR };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTensorMutableData(
    ptr: *mut OrtValue,
    out: *mut *mut c_void,
) -> OrtStatusPtr {
    let value = unsafe { &mut *ptr.cast::<Value>() };
    unsafe { *out = value.tensor.as_bytes_mut().as_mut_ptr().cast() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTensorData(
    ptr: *const OrtValue,
    out: *mut *const c_void,
) -> OrtStatusPtr {
    unsafe { *out = value(ptr).tensor.as_bytes().as_ptr().cast() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTensorSizeInBytes(
    ptr: *const OrtValue,
    out: *mut usize,
) -> OrtStatusPtr {
    unsafe { *out = value(ptr).tensor.as_bytes().len() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTensorMemoryInfo(
    _ptr: *const OrtValue,
    out: *mut *const OrtMemoryInfo,
) -> OrtStatusPtr {
    unsafe { *out = cpu_memory_info() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTensorTypeAndShape(
    ptr: *const OrtValue,
    out: *mut *mut OrtTensorTypeAndShapeInfo,
) -> OrtStatusPtr {
    unsafe { *out = TypeInfo::of_value(value(ptr)).into_sys().cast() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTypeInfo(
    ptr: *const OrtValue,
    out: *mut *mut OrtTypeInfo,
) -> OrtStatusPtr {
    unsafe { *out = TypeInfo::of_value(value(ptr)).into_sys() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTensorElementTypeAndShapeDataReference(
    ptr: *const OrtValue,
    element: *mut ONNXTensorElementDataType,
    shape: *mut *const i64,
    shape_len: *mut usize,
) -> OrtStatusPtr {
    let value = unsafe { value(ptr) };
    unsafe {
        *element = onnx_type(value.tensor.datum_type());
        *shape = value.shape.as_ptr();
        *shape_len = value.shape.len();
    }
    OrtStatusPtr::default()
}

// ---- type infos --------------------------------------------------------------------------

pub unsafe extern "system" fn CastTypeInfoToTensorInfo(
    ptr: *const OrtTypeInfo,
    out: *mut *const OrtTensorTypeAndShapeInfo,
) -> OrtStatusPtr {
    unsafe { *out = ptr.cast() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetOnnxTypeFromTypeInfo(
    _ptr: *const OrtTypeInfo,
    out: *mut ONNXType,
) -> OrtStatusPtr {
    unsafe { *out = ONNXType::ONNX_TYPE_TENSOR };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn CreateTensorTypeAndShapeInfo(
    out: *mut *mut OrtTensorTypeAndShapeInfo,
) -> OrtStatusPtr {
    let info = TypeInfo::of_dims(rnn_run::DatumType::F32, &[]);
    unsafe { *out = info.into_sys().cast() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn SetTensorElementType(
    ptr: *mut OrtTensorTypeAndShapeInfo,
    element: ONNXTensorElementDataType,
) -> OrtStatusPtr {
    status(|| {
        unsafe { type_info_mut(ptr) }.dtype = datum_type(element)?;
        Ok(())
    })
}

pub unsafe extern "system" fn SetDimensions(
    ptr: *mut OrtTensorTypeAndShapeInfo,
    values: *const i64,
    count: usize,
) -> OrtStatusPtr {
    let info = unsafe { type_info_mut(ptr) };
    info.shape = unsafe { dims(values, count) }.to_vec();
    info.symbols = vec![Default::default(); count];
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetTensorElementType(
    ptr: *const OrtTensorTypeAndShapeInfo,
    out: *mut ONNXTensorElementDataType,
) -> OrtStatusPtr {
    unsafe { *out = onnx_type(type_info(ptr).dtype) };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetDimensionsCount(
    ptr: *const OrtTensorTypeAndShapeInfo,
    out: *mut usize,
) -> OrtStatusPtr {
    unsafe { *out = type_info(ptr).shape.len() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetDimensions(
    ptr: *const OrtTensorTypeAndShapeInfo,
    out: *mut i64,
    len: usize,
) -> OrtStatusPtr {
    for (i, &d) in unsafe { type_info(ptr) }.shape.iter().take(len).enumerate() {
        unsafe { *out.add(i) = d };
    }
    OrtStatusPtr::default()
}

/// The names of symbolic dimensions (`batch`, `seq`), "" for fixed ones; they live as long
/// as the type info.
pub unsafe extern "system" fn GetSymbolicDimensions(
    ptr: *const OrtTensorTypeAndShapeInfo,
    out: *mut *const c_char,
    len: usize,
) -> OrtStatusPtr {
    for (i, name) in unsafe { type_info(ptr) }
        .symbols
        .iter()
        .take(len)
        .enumerate()
    {
        unsafe { *out.add(i) = name.as_ptr() };
    }
    OrtStatusPtr::default()
}

/// The element count; -1 (unknown) dimensions count as 0, as in ONNX Runtime.
pub unsafe extern "system" fn GetTensorShapeElementCount(
    ptr: *const OrtTensorTypeAndShapeInfo,
    out: *mut usize,
) -> OrtStatusPtr {
    let shape = &unsafe { type_info(ptr) }.shape;
    let count = shape.iter().map(|&d| d.max(0) as usize).product();
    unsafe { *out = count };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn ReleaseTypeInfo(ptr: *mut OrtTypeInfo) {
    drop(unsafe { Box::from_raw(ptr.cast::<TypeInfo>()) });
}

pub unsafe extern "system" fn ReleaseTensorTypeAndShapeInfo(ptr: *mut OrtTensorTypeAndShapeInfo) {
    drop(unsafe { Box::from_raw(ptr.cast::<TypeInfo>()) });
}
