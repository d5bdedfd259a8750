//! Memory as ort sees it: one CPU memory info, and an allocator whose blocks ort frees (the
//! input and output names the session hands out are allocated with it).

#![allow(non_snake_case)]
#![allow(clippy::missing_safety_doc)]

use std::alloc::{alloc, dealloc, Layout};
use std::ffi::{c_char, c_int, c_void};

use ort_sys::*;

use crate::api::text;
use crate::error::{not_implemented, status, Error};

/// The only memory rnn-run computes in. Every `OrtMemoryInfo` points here.
pub static CPU: u8 = 0;

pub fn cpu_memory_info() -> *mut OrtMemoryInfo {
    (&CPU as *const u8).cast_mut().cast()
}

/// An `OrtAllocator`: ort-sys's table of functions, first so that the pointer is both.
#[repr(C)]
pub struct Allocator {
    table: OrtAllocator,
}

// SAFETY: the table holds only function pointers and a version number.
unsafe impl Sync for Allocator {}

pub static DEFAULT: Allocator = Allocator::new();

impl Allocator {
    pub const fn new() -> Allocator {
        Allocator {
            table: OrtAllocator {
                version: ort_sys::ORT_API_VERSION,
                Alloc: Some(allocate),
                Free: Some(free),
                Info: Some(info),
                Reserve: Some(reserve),
            },
        }
    }

    pub fn as_sys(&'static self) -> *mut OrtAllocator {
        (self as *const Allocator).cast_mut().cast()
    }
}

/// Each block starts with a header holding its size, so that `free` can rebuild its layout.
const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// A block of `size` bytes, or null.
pub fn allocate_bytes(size: usize) -> *mut c_void {
    let Some(layout) = layout(size) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout is non-zero in size (it holds the header).
    unsafe {
        let block = alloc(layout);
        if block.is_null() {
            return std::ptr::null_mut();
        }
        block.cast::<usize>().write(size);
        block.add(HEADER).cast()
    }
}

/// A NUL-terminated copy of `text` in a block ort frees with [`free`].
pub fn allocate_c_string(text: &str) -> *mut std::ffi::c_char {
    let block = allocate_bytes(text.len() + 1).cast::<u8>();
    if !block.is_null() {
        // SAFETY: the block holds text.len() + 1 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), block, text.len());
            block.add(text.len()).write(0);
        }
    }
    block.cast()
}

unsafe extern "system" fn allocate(_this: *mut OrtAllocator, size: usize) -> *mut c_void {
    allocate_bytes(size)
}

unsafe extern "system" fn free(_this: *mut OrtAllocator, p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: p came from allocate_bytes, which put the size HEADER bytes before it.
    unsafe {
        let block = p.cast::<u8>().sub(HEADER);
        let size = block.cast::<usize>().read();
        dealloc(block, layout(size).unwrap());
    }
}

unsafe extern "system" fn info(_this: *const OrtAllocator) -> *const OrtMemoryInfo {
    cpu_memory_info()
}

unsafe extern "system" fn reserve(this: *const OrtAllocator, size: usize) -> *mut c_void {
    unsafe { allocate(this.cast_mut(), size) }
}

// ---- the OrtApi functions ---------------------------------------------------------------

pub unsafe extern "system" fn CreateMemoryInfo(
    name: *const c_char,
    _kind: OrtAllocatorType,
    _id: c_int,
    _mem_type: OrtMemType,
    out: *mut *mut OrtMemoryInfo,
) -> OrtStatusPtr {
    status(|| {
        let device = unsafe { text(name) }?;
        if device != "Cpu" {
            return Err(not_implemented(format!(
                "rnn-run computes on the CPU only, not on the '{device}' device"
            )));
        }
        unsafe { *out = cpu_memory_info() };
        Ok(())
    })
}

pub unsafe extern "system" fn CreateCpuMemoryInfo(
    _kind: OrtAllocatorType,
    _mem_type: OrtMemType,
    out: *mut *mut OrtMemoryInfo,
) -> OrtStatusPtr {
    unsafe { *out = cpu_memory_info() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn CompareMemoryInfo(
    _a: *const OrtMemoryInfo,
    _b: *const OrtMemoryInfo,
    out: *mut c_int,
) -> OrtStatusPtr {
    unsafe { *out = 0 };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn MemoryInfoGetName(
    _ptr: *const OrtMemoryInfo,
    out: *mut *const c_char,
) -> OrtStatusPtr {
    unsafe { *out = c"Cpu".as_ptr() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn MemoryInfoGetId(
    _ptr: *const OrtMemoryInfo,
    out: *mut c_int,
) -> OrtStatusPtr {
    unsafe { *out = 0 };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn MemoryInfoGetMemType(
    _ptr: *const OrtMemoryInfo,
    out: *mut OrtMemType,
) -> OrtStatusPtr {
    unsafe { *out = OrtMemType::OrtMemTypeDefault };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn MemoryInfoGetType(
    _ptr: *const OrtMemoryInfo,
    out: *mut OrtAllocatorType,
) -> OrtStatusPtr {
    unsafe { *out = OrtAllocatorType::OrtDeviceAllocator };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn GetAllocatorWithDefaultOptions(
    out: *mut *mut OrtAllocator,
) -> OrtStatusPtr {
    unsafe { *out = DEFAULT.as_sys() };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn CreateAllocator(
    _session: *const OrtSession,
    _info: *const OrtMemoryInfo,
    out: *mut *mut OrtAllocator,
) -> OrtStatusPtr {
    unsafe { *out = DEFAULT.as_sys() };
    OrtStatusPtr::default()
}

/// Every allocator is the one static [`DEFAULT`].
pub unsafe extern "system" fn ReleaseAllocator(_ptr: *mut OrtAllocator) {}

pub unsafe extern "system" fn AllocatorAlloc(
    allocator: *mut OrtAllocator,
    size: usize,
    out: *mut *mut c_void,
) -> OrtStatusPtr {
    let alloc = unsafe { (*allocator).Alloc }.expect("our allocator has Alloc");
    let block = unsafe { alloc(allocator, size) };
    if block.is_null() {
        return Error::new_sys(
            OrtErrorCode::ORT_RUNTIME_EXCEPTION,
            format!("could not allocate {size} bytes"),
        );
    }
    unsafe { *out = block };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn AllocatorFree(
    allocator: *mut OrtAllocator,
    p: *mut c_void,
) -> OrtStatusPtr {
    let free = unsafe { (*allocator).Free }.expect("our allocator has Free");
    unsafe { free(allocator, p) };
    OrtStatusPtr::default()
}

pub unsafe extern "system" fn AllocatorGetInfo(
    _allocator: *const OrtAllocator,
    out: *mut *const OrtMemoryInfo,
) -> OrtStatusPtr {
    unsafe { *out = cpu_memory_info() };
    OrtStatusPtr::default()
}
