//! Reading and writing numpy's `.npy` and `.npz` files, whatever their element type.
//!
//! The header is parsed here rather than by `ndarray-npy`, so that one reader handles every
//! element type the models take (`float32`, `float64`, `float16`, `int64`, `int32`, and the
//! small integer and boolean types) and so that a file is checked *before* anything is
//! allocated: the element count declared by the header, times the element size, must equal
//! the number of data bytes actually present. A corrupt or hostile header claiming 2^40 rows
//! is therefore an error naming the file, never an allocation.
//!
//! `.npz` archives, stored (`np.savez`) or deflated (`np.savez_compressed`), are read with the
//! `zip` crate, after checks against hostile archives that come before anything is
//! decompressed (member count, duplicate names, sizes declared against the archive's size and
//! against what DEFLATE can expand to); while reading, no member yields more than it declares.
//! Each member is parsed as it is decompressed, straight into its tensor. See [`read_npz`].
//!
//! Every failure is an [`Error::Io`] naming the file; format problems carry an
//! [`std::io::ErrorKind::InvalidData`] error whose text says what is wrong.
//!
//! The files: the header (`header`), reading `.npy` (`read`), writing it (`write`) and `.npz`
//! archives (`npz`); here what they share: the magic, the limits, the errors.

mod header;
mod npz;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use crate::error::{Error, Result};

pub use header::NpyHeader;
pub use npz::{parse_npz, read_npz, DEFLATE_MAX_RATIO, NPZ_MAX_BYTES, NPZ_MAX_MEMBERS};
pub use read::{parse_npy, parse_npy_header, read_npy};
pub use write::{npy_bytes, write_npy};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Longest header we accept (numpy itself refuses more than 10 000 bytes by default).
const MAX_HEADER_LEN: usize = 1 << 20;

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidData, message.into()),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens a file that must be a regular file, and returns its length (see [`crate::files`]).
fn open_regular(path: &Path) -> Result<(File, u64)> {
    crate::files::open_regular(path).map_err(|e| e.into_error(path, "a .npy or .npz file"))
}
