//! The `OrtApi` table: the C functions an `ort` application calls, answered by rnn-run. This
//! file holds the table, the environment, session options and sessions; values and type infos
//! are in [`crate::tensors`], memory in [`crate::memory`], refusals in [`crate::refuse`].
//!
//! Each function unpacks ort's pointers into this crate's types ([`Session`], [`Value`],
//! [`TypeInfo`]), does its work inside [`status`] (an error or a panic becomes an `OrtStatus`)
//! and writes its result through the out-pointer. What rnn-run does not do (execution
//! providers, I/O binding, custom ops, sequences and maps, string tensors, training) returns
//! ORT_NOT_IMPLEMENTED naming what was asked; the rest of the table is ort-sys's stub, whose
//! setters of logging and memory options succeed and do nothing.
//!
//! Pointer contract: ort passes pointers that this table made (sessions, values, type infos,
//! options) or valid buffers of the given lengths; every `unsafe` block below relies on that.

#![allow(non_snake_case)]
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;

use ort_sys::*;
use rnn_run::Tensor;

use crate::error::{invalid_argument, status, Error};
use crate::memory::*;
use crate::refuse::*;
use crate::session::{Session, SessionOptions};
use crate::tensors::*;
use crate::value::{TypeInfo, Value};

/// The environment holds nothing: rnn-run has no global state to set up. Every `OrtEnv`
/// points here.
static ENV: u8 = 0;

/// Text from ort, for names and paths.
pub(crate) unsafe fn text<'a>(ptr: *const c_char) -> Result<&'a str, Error> {
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| invalid_argument("a name or path is not UTF-8"))
}

unsafe fn session<'a>(ptr: *const OrtSession) -> &'a Session {
    unsafe { &*ptr.cast::<Session>() }
}

unsafe fn value<'a>(ptr: *const OrtValue) -> &'a Value {
    unsafe { &*ptr.cast::<Value>() }
}

unsafe fn options<'a>(ptr: *const OrtSessionOptions) -> &'a SessionOptions {
    unsafe { &*ptr.cast::<SessionOptions>() }
}

unsafe fn options_mut<'a>(ptr: *mut OrtSessionOptions) -> &'a mut SessionOptions {
    unsafe { &mut *ptr.cast::<SessionOptions>() }
}

// ---- environment -------------------------------------------------------------------------

unsafe extern "system" fn CreateEnv(
    _level: OrtLoggingLevel,
    _logid: *const c_char,
    out: *mut *mut OrtEnv,
) -> OrtStatusPtr {
    unsafe { *out = (&ENV as *const u8).cast_mut().cast() };
    OrtStatusPtr::default()
}

unsafe extern "system" fn CreateEnvWithCustomLogger(
    _logger: OrtLoggingFunction,
    _param: *mut c_void,
    level: OrtLoggingLevel,
    logid: *const c_char,
    out: *mut *mut OrtEnv,
) -> OrtStatusPtr {
    unsafe { CreateEnv(level, logid, out) }
}

unsafe extern "system" fn CreateEnvWithGlobalThreadPools(
    level: OrtLoggingLevel,
    logid: *const c_char,
    _threading: *const OrtThreadingOptions,
    out: *mut *mut OrtEnv,
) -> OrtStatusPtr {
    unsafe { CreateEnv(level, logid, out) }
}

unsafe extern "system" fn ReleaseEnv(_env: *mut OrtEnv) {}

unsafe extern "system" fn GetBuildInfoString() -> *const c_char {
    concat!(
        "ORT Build Info: backend=rnn-run-ort, version=",
        env!("CARGO_PKG_VERSION"),
        "\0"
    )
    .as_ptr()
    .cast()
}

// ---- session options ---------------------------------------------------------------------

unsafe extern "system" fn CreateSessionOptions(out: *mut *mut OrtSessionOptions) -> OrtStatusPtr {
    unsafe { *out = Box::into_raw(Box::new(SessionOptions::default())).cast() };
    OrtStatusPtr::default()
}

unsafe extern "system" fn CloneSessionOptions(
    options_in: *const OrtSessionOptions,
    out: *mut *mut OrtSessionOptions,
) -> OrtStatusPtr {
    let copy = unsafe { options(options_in) }.clone();
    unsafe { *out = Box::into_raw(Box::new(copy)).cast() };
    OrtStatusPtr::default()
}

unsafe extern "system" fn ReleaseSessionOptions(ptr: *mut OrtSessionOptions) {
    drop(unsafe { Box::from_raw(ptr.cast::<SessionOptions>()) });
}

unsafe extern "system" fn SetIntraOpNumThreads(
    ptr: *mut OrtSessionOptions,
    threads: c_int,
) -> OrtStatusPtr {
    status(|| {
        let threads = usize::try_from(threads).map_err(|_| {
            invalid_argument(format!(
                "intra-op threads must be 0 or more, found {threads}"
            ))
        })?;
        unsafe { options_mut(ptr) }.intra_threads = threads;
        Ok(())
    })
}

/// rnn-run runs a graph's nodes one after another; there are no inter-op threads to set.
unsafe extern "system" fn SetInterOpNumThreads(
    _ptr: *mut OrtSessionOptions,
    _threads: c_int,
) -> OrtStatusPtr {
    OrtStatusPtr::default()
}

/// Every level gives the same numbers: rnn-run always optimizes the plan it specializes.
unsafe extern "system" fn SetSessionGraphOptimizationLevel(
    _ptr: *mut OrtSessionOptions,
    _level: GraphOptimizationLevel,
) -> OrtStatusPtr {
    OrtStatusPtr::default()
}

// ---- sessions ----------------------------------------------------------------------------

unsafe extern "system" fn CreateSession(
    _env: *const OrtEnv,
    model_path: *const os_char,
    opts: *const OrtSessionOptions,
    out: *mut *mut OrtSession,
) -> OrtStatusPtr {
    status(|| {
        let path = unsafe { os_path(model_path) }?;
        let session = Session::from_file(&path, unsafe { options(opts) })?;
        unsafe { *out = Box::into_raw(Box::new(session)).cast() };
        Ok(())
    })
}

#[cfg(not(windows))]
unsafe fn os_path(ptr: *const os_char) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(windows)]
unsafe fn os_path(ptr: *const os_char) -> Result<PathBuf, Error> {
    use std::os::windows::ffi::OsStringExt;
    let len = (0..).take_while(|&i| unsafe { *ptr.add(i) } != 0).count();
    let wide = unsafe { std::slice::from_raw_parts(ptr, len) };
    Ok(PathBuf::from(std::ffi::OsString::from_wide(wide)))
}

unsafe extern "system" fn CreateSessionFromArray(
    _env: *const OrtEnv,
    data: *const c_void,
    len: usize,
    opts: *const OrtSessionOptions,
    out: *mut *mut OrtSession,
) -> OrtStatusPtr {
    status(|| {
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        let session = Session::from_bytes(bytes, unsafe { options(opts) })?;
        unsafe { *out = Box::into_raw(Box::new(session)).cast() };
        Ok(())
    })
}

unsafe extern "system" fn ReleaseSession(ptr: *mut OrtSession) {
    drop(unsafe { Box::from_raw(ptr.cast::<Session>()) });
}

unsafe extern "system" fn SessionGetInputCount(
    ptr: *const OrtSession,
    out: *mut usize,
) -> OrtStatusPtr {
    unsafe { *out = session(ptr).inputs.len() };
    OrtStatusPtr::default()
}

unsafe extern "system" fn SessionGetOutputCount(
    ptr: *const OrtSession,
    out: *mut usize,
) -> OrtStatusPtr {
    unsafe { *out = session(ptr).outputs.len() };
    OrtStatusPtr::default()
}

/// Initializers are constants here: none can be overridden at run time.
unsafe extern "system" fn SessionGetOverridableInitializerCount(
    _ptr: *const OrtSession,
    out: *mut usize,
) -> OrtStatusPtr {
    unsafe { *out = 0 };
    OrtStatusPtr::default()
}

fn io_type_info(infos: &[TypeInfo], index: usize, what: &str) -> Result<TypeInfo, Error> {
    infos.get(index).cloned().ok_or_else(|| {
        invalid_argument(format!(
            "the model has {} {what}s, there is no {what} {index}",
            infos.len()
        ))
    })
}

unsafe extern "system" fn SessionGetInputTypeInfo(
    ptr: *const OrtSession,
    index: usize,
    out: *mut *mut OrtTypeInfo,
) -> OrtStatusPtr {
    status(|| {
        let info = io_type_info(&unsafe { session(ptr) }.inputs, index, "input")?;
        unsafe { *out = info.into_sys() };
        Ok(())
    })
}

unsafe extern "system" fn SessionGetOutputTypeInfo(
    ptr: *const OrtSession,
    index: usize,
    out: *mut *mut OrtTypeInfo,
) -> OrtStatusPtr {
    status(|| {
        let info = io_type_info(&unsafe { session(ptr) }.outputs, index, "output")?;
        unsafe { *out = info.into_sys() };
        Ok(())
    })
}

fn io_name(ios: &[rnn_run::IoInfo], index: usize, what: &str) -> Result<*mut c_char, Error> {
    let io = ios.get(index).ok_or_else(|| {
        invalid_argument(format!(
            "the model has {} {what}s, there is no {what} {index}",
            ios.len()
        ))
    })?;
    let name = allocate_c_string(&io.name);
    if name.is_null() {
        return Err(Error::new(
            OrtErrorCode::ORT_RUNTIME_EXCEPTION,
            "out of memory",
        ));
    }
    Ok(name)
}

/// The name is allocated with this crate's allocator, whatever `_allocator` ort passes: ort
/// only ever passes the one [`GetAllocatorWithDefaultOptions`] gave it, which frees it.
unsafe extern "system" fn SessionGetInputName(
    ptr: *const OrtSession,
    index: usize,
    _allocator: *mut OrtAllocator,
    out: *mut *mut c_char,
) -> OrtStatusPtr {
    status(|| {
        let name = io_name(unsafe { session(ptr) }.model.inputs(), index, "input")?;
        unsafe { *out = name };
        Ok(())
    })
}

unsafe extern "system" fn SessionGetOutputName(
    ptr: *const OrtSession,
    index: usize,
    _allocator: *mut OrtAllocator,
    out: *mut *mut c_char,
) -> OrtStatusPtr {
    status(|| {
        let name = io_name(unsafe { session(ptr) }.model.outputs(), index, "output")?;
        unsafe { *out = name };
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "system" fn Run(
    ptr: *mut OrtSession,
    _run_options: *const OrtRunOptions,
    input_names: *const *const c_char,
    inputs: *const *const OrtValue,
    input_len: usize,
    output_names: *const *const c_char,
    output_len: usize,
    outputs: *mut *mut OrtValue,
) -> OrtStatusPtr {
    status(|| {
        let (input_names, inputs, output_names) = unsafe {
            (
                std::slice::from_raw_parts(input_names, input_len),
                std::slice::from_raw_parts(inputs, input_len),
                std::slice::from_raw_parts(output_names, output_len),
            )
        };
        let named = input_names
            .iter()
            .zip(inputs)
            .map(|(&name, &v)| Ok((unsafe { text(name) }?, &unsafe { value(v) }.tensor)))
            .collect::<Result<Vec<(&str, &Tensor)>, Error>>()?;
        let wanted = output_names
            .iter()
            .map(|&name| unsafe { text(name) })
            .collect::<Result<Vec<&str>, Error>>()?;
        let results = unsafe { session(ptr) }.run(named, &wanted)?;
        let outputs = unsafe { std::slice::from_raw_parts_mut(outputs, output_len) };
        for (slot, tensor) in outputs.iter_mut().zip(results) {
            *slot = Value::from(tensor).into_sys();
        }
        Ok(())
    })
}

/// The table `ort::set_api` takes: `ort::set_api(rnn_run_ort::api())`.
pub const fn api() -> OrtApi {
    OrtApi {
        CreateEnv,
        CreateEnvWithCustomLogger,
        CreateEnvWithGlobalThreadPools,
        ReleaseEnv,
        GetBuildInfoString,
        CreateSessionOptions,
        CloneSessionOptions,
        ReleaseSessionOptions,
        SetIntraOpNumThreads,
        SetInterOpNumThreads,
        SetSessionGraphOptimizationLevel,
        CreateSession,
        CreateSessionFromArray,
        ReleaseSession,
        SessionGetInputCount,
        SessionGetOutputCount,
        SessionGetOverridableInitializerCount,
        SessionGetInputTypeInfo,
        SessionGetOutputTypeInfo,
        SessionGetInputName,
        SessionGetOutputName,
        Run,
        CreateTensorAsOrtValue,
        CreateTensorWithDataAsOrtValue,
        ReleaseValue,
        IsTensor,
        HasValue,
        GetValueType,
        GetTensorMutableData,
        GetTensorData,
        GetTensorSizeInBytes,
        GetTensorMemoryInfo,
        GetTensorTypeAndShape,
        GetTypeInfo,
        GetTensorElementTypeAndShapeDataReference,
        CastTypeInfoToTensorInfo,
        GetOnnxTypeFromTypeInfo,
        CreateTensorTypeAndShapeInfo,
        SetTensorElementType,
        SetDimensions,
        GetTensorElementType,
        GetDimensionsCount,
        GetDimensions,
        GetSymbolicDimensions,
        GetTensorShapeElementCount,
        ReleaseTypeInfo,
        ReleaseTensorTypeAndShapeInfo,
        CreateMemoryInfo,
        CreateCpuMemoryInfo,
        CompareMemoryInfo,
        MemoryInfoGetName,
        MemoryInfoGetId,
        MemoryInfoGetMemType,
        MemoryInfoGetType,
        GetAllocatorWithDefaultOptions,
        CreateAllocator,
        ReleaseAllocator,
        AllocatorAlloc,
        AllocatorFree,
        AllocatorGetInfo,
        SessionOptionsAppendExecutionProvider,
        SessionOptionsAppendExecutionProvider_CUDA_V2,
        CreateIoBinding,
        AddCustomOpDomain,
        RegisterCustomOpsLibrary_V2,
        AddInitializer,
        CreateValue,
        FillStringTensor,
        SessionGetModelMetadata,
        ..ort_sys::stub::api()
    }
}
