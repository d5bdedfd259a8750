//! Reading a `.npy` (from a file, a reader or memory) straight into a tensor.

use std::io::{ErrorKind, Read};
use std::path::Path;

use tract_hir::internal::{DatumType, Tensor};

use super::header::{check_size, parse_header, parse_preamble, NpyHeader};
use super::write::descr_of;
use super::{invalid, io_err, open_regular, MAX_HEADER_LEN};
use crate::error::{Error, Result};

/// Reads a `.npy` file into a tensor of the element type it declares.
///
/// The header is checked against the file's size before the data is read: a header that
/// declares more (or fewer) bytes than the file holds is an error naming the file, the
/// declared shape and the actual data size.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let (mut file, file_len) = open_regular(path)?;
    read_npy_from(
        &mut file,
        file_len,
        path,
        "the file changed size while it was being read",
    )
}

/// Reads a `.npy` of `len` bytes from `reader`, straight into the tensor: the preamble, then
/// exactly the header text, then the data, whose size the header must declare exactly. At
/// most `len + 1` bytes are read; `overflow` is the message when the reader holds more than
/// `len` bytes (a file that grew, a member that inflates past its declared size).
pub(super) fn read_npy_from(
    reader: &mut impl Read,
    len: u64,
    path: &Path,
    overflow: &str,
) -> Result<Tensor> {
    let mut reader = reader.take(len.saturating_add(1));
    // The preamble is at most 12 bytes; read it, then exactly the header text.
    let mut head = vec![0u8; (len.min(12)) as usize];
    reader
        .read_exact(&mut head)
        .map_err(|e| read_err(path, e))?;
    let (_, text_len, start) = parse_preamble(&head).map_err(|m| invalid(path, m))?;
    if text_len > MAX_HEADER_LEN || (start + text_len) as u64 > len {
        return Err(invalid(
            path,
            format!(
                "truncated or corrupt .npy header: it declares {text_len} bytes of header text, \
                 the file holds {}",
                len.saturating_sub(start as u64)
            ),
        ));
    }
    // The preamble read may already hold the first header bytes (format 1's is 10 bytes).
    let (have, end) = (head.len(), start + text_len);
    if have < end {
        head.resize(end, 0);
        reader
            .read_exact(&mut head[have..])
            .map_err(|e| read_err(path, e))?;
    } else {
        // A header text shorter than two bytes, which cannot hold the dict: refused below.
        head.truncate(end);
    }
    let header = parse_header(&head).map_err(|m| invalid(path, m))?;
    let present = len - header.data_offset as u64;
    check_size(path, &header, present)?;
    // The data goes straight into the tensor: a long input is never held twice.
    build_tensor(&header, |bytes| {
        reader.read_exact(bytes).map_err(|e| read_message(&e))?;
        // One byte more than declared tells a file that grew meanwhile, or a member that
        // inflates to more than its archive says; reading to the end also makes a ZIP reader
        // check the member's CRC.
        match reader.read(&mut [0u8]) {
            Ok(0) => Ok(()),
            Ok(_) => Err(overflow.to_string()),
            Err(e) => Err(read_message(&e)),
        }
    })
    .map_err(|m| invalid(path, m))
}

/// An I/O error while reading: the OS's error as is, an early end said plainly.
fn read_err(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::UnexpectedEof {
        invalid(path, read_message(&e))
    } else {
        io_err(path, e)
    }
}

fn read_message(e: &std::io::Error) -> String {
    if e.kind() == ErrorKind::UnexpectedEof {
        "the data ends before the size its header declares (truncated or corrupt)".into()
    } else {
        e.to_string()
    }
}

/// Parses a whole `.npy` file held in memory; `path` only names it in errors.
pub fn parse_npy(bytes: &[u8], path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let header = parse_header(bytes).map_err(|m| invalid(path, m))?;
    let data = &bytes[header.data_offset..];
    check_size(path, &header, data.len() as u64)?;
    build_tensor(&header, |bytes| {
        bytes.copy_from_slice(&data[..bytes.len()]);
        Ok(())
    })
    .map_err(|m| invalid(path, m))
}

/// Reads only the header of a `.npy` file held in memory.
pub fn parse_npy_header(bytes: &[u8], path: impl AsRef<Path>) -> Result<NpyHeader> {
    parse_header(bytes).map_err(|m| invalid(path.as_ref(), m))
}

/// The tensor a header describes, its bytes as stored filled in by `fill` (from the file or
/// from memory, with no staging buffer), then put in the host's byte order and in C order.
fn build_tensor(
    header: &NpyHeader,
    fill: impl FnOnce(&mut [u8]) -> std::result::Result<(), String>,
) -> std::result::Result<Tensor, String> {
    let dt = header.dtype;
    if descr_of(dt).is_none() {
        return Err(format!("unsupported element type {dt:?}"));
    }
    // Fortran order is C order of the reversed shape, transposed.
    let stored: Vec<usize> = if header.fortran_order {
        header.shape.iter().rev().copied().collect()
    } else {
        header.shape.clone()
    };
    let mut t = Tensor::zero_dt(dt, &stored).map_err(|e| e.to_string())?;
    fill(t.as_bytes_mut())?;
    let size = dt.size_of();
    if header.big_endian != cfg!(target_endian = "big") && size > 1 {
        t.as_bytes_mut()
            .chunks_exact_mut(size)
            .for_each(<[u8]>::reverse);
    }
    if dt == DatumType::Bool {
        if let Some(pos) = t.as_bytes().iter().position(|&b| b > 1) {
            return Err(format!(
                "invalid boolean byte {} at element {pos}",
                t.as_bytes()[pos]
            ));
        }
    }
    if header.fortran_order && stored.len() > 1 {
        let reverse: Vec<usize> = (0..stored.len()).rev().collect();
        t = t.permute_axes(&reverse).map_err(|e| e.to_string())?;
    }
    Ok(t)
}
