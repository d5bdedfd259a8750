//! The `OrtApi` functions for what rnn-run does not do: each returns ORT_NOT_IMPLEMENTED with a
//! message saying what is missing and, where there is one, what to do instead. (ort-sys's stub
//! would answer "Unimplemented" without saying what.)

#![allow(non_snake_case)]
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, CStr};

use ort_sys::*;

use crate::error::not_implemented;

/// The status for a feature rnn-run does not have.
fn refuse(what: &str) -> OrtStatusPtr {
    not_implemented(format!("rnn-run-ort: {what}")).into_sys()
}

pub unsafe extern "system" fn SessionOptionsAppendExecutionProvider(
    _options: *mut OrtSessionOptions,
    name: *const c_char,
    _keys: *const *const c_char,
    _values: *const *const c_char,
    _count: usize,
) -> OrtStatusPtr {
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    refuse(&format!(
        "rnn-run runs on the CPU only; the '{name}' execution provider is not available"
    ))
}

pub unsafe extern "system" fn SessionOptionsAppendExecutionProvider_CUDA_V2(
    _options: *mut OrtSessionOptions,
    _cuda: *const OrtCUDAProviderOptionsV2,
) -> OrtStatusPtr {
    refuse("rnn-run runs on the CPU only; the CUDA execution provider is not available")
}

pub unsafe extern "system" fn CreateIoBinding(
    _session: *mut OrtSession,
    _out: *mut *mut OrtIoBinding,
) -> OrtStatusPtr {
    refuse("I/O binding is not supported: pass inputs to `Session::run` and read its outputs")
}

pub unsafe extern "system" fn AddCustomOpDomain(
    _options: *mut OrtSessionOptions,
    _domain: *mut OrtCustomOpDomain,
) -> OrtStatusPtr {
    refuse("custom operators are not supported")
}

pub unsafe extern "system" fn RegisterCustomOpsLibrary_V2(
    _options: *mut OrtSessionOptions,
    _library: *const os_char,
) -> OrtStatusPtr {
    refuse("custom operator libraries are not supported")
}

pub unsafe extern "system" fn AddInitializer(
    _options: *mut OrtSessionOptions,
    name: *const c_char,
    _value: *const OrtValue,
) -> OrtStatusPtr {
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    refuse(&format!(
        "initializers cannot be replaced ('{name}'): rnn-run uses the model's own"
    ))
}

pub unsafe extern "system" fn CreateValue(
    _values: *const *const OrtValue,
    _count: usize,
    kind: ONNXType,
    _out: *mut *mut OrtValue,
) -> OrtStatusPtr {
    refuse(&format!(
        "only tensors are supported, not {kind:?} values (sequences, maps)"
    ))
}

pub unsafe extern "system" fn FillStringTensor(
    _value: *mut OrtValue,
    _s: *const *const c_char,
    _len: usize,
) -> OrtStatusPtr {
    refuse("string tensors are not supported")
}

pub unsafe extern "system" fn SessionGetModelMetadata(
    _session: *const OrtSession,
    _out: *mut *mut OrtModelMetadata,
) -> OrtStatusPtr {
    refuse("model metadata is not available (rnn_run::Model::info describes the model)")
}
