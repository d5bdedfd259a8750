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

use std::fs::File;
use std::io::{ErrorKind, Read, Seek};
use std::path::Path;

use tract_hir::internal::{f16, DatumType, Tensor};

use crate::error::{Error, Result};

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

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DatumType,
    /// Whether the element bytes are big-endian.
    pub big_endian: bool,
    /// Whether the data is stored in column-major (Fortran) order.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Where the data starts, from the beginning of the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Size in bytes of one element.
    pub fn item_size(&self) -> usize {
        self.dtype.size_of()
    }

    /// Number of data bytes the header declares, or `None` when that overflows `usize`.
    pub fn data_len(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.item_size(), |acc, &d| acc.checked_mul(d))
    }

    fn shape_string(&self) -> String {
        shape_tuple(&self.shape)
    }
}

/// `(3,)`, `(2, 3)`, `()`: the shape as numpy writes it.
fn shape_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Parses the fixed preamble: returns `(version, header length, offset of the header text)`.
fn parse_preamble(bytes: &[u8]) -> std::result::Result<(u8, usize, usize), String> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (it does not start with the \\x93NUMPY magic string)".into());
    }
    let major = bytes[6];
    match major {
        1 => {
            if bytes.len() < 10 {
                return Err("truncated .npy header (the file ends inside the preamble)".into());
            }
            Ok((1, u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10))
        }
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header (the file ends inside the preamble)".into());
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
            Ok((major, len, 12))
        }
        v => Err(format!(
            "unsupported .npy format version {v}.{} (expected 1, 2 or 3)",
            bytes[7]
        )),
    }
}

/// Parses a whole header (`bytes` holds at least the preamble and the header text).
fn parse_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
    let (version, len, start) = parse_preamble(bytes)?;
    if len > MAX_HEADER_LEN {
        return Err(format!(
            "the .npy header claims to be {len} bytes long, which is not plausible"
        ));
    }
    let end = start + len;
    if bytes.len() < end {
        return Err(format!(
            "truncated .npy header: it declares {len} bytes of header text, the file holds {}",
            bytes.len() - start
        ));
    }
    let raw = &bytes[start..end];
    let text = if version >= 3 {
        std::str::from_utf8(raw).map_err(|_| "the .npy header is not valid UTF-8".to_string())?
    } else {
        if !raw.is_ascii() {
            return Err("the .npy header is not ASCII".into());
        }
        std::str::from_utf8(raw).map_err(|_| "the .npy header is not ASCII".to_string())?
    };
    let dict = PyParser::new(text)
        .dict()
        .map_err(|e| format!("cannot parse the .npy header {:?}: {e}", text.trim_end()))?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (key, value) in dict {
        match (key.as_str(), value) {
            ("descr", PyValue::Str(s)) => descr = Some(s),
            ("descr", _) => {
                return Err(
                    "structured arrays (a list 'descr' in the header) are not supported".into(),
                )
            }
            ("fortran_order", PyValue::Bool(b)) => fortran = Some(b),
            ("shape", PyValue::Tuple(t)) => shape = Some(t),
            ("fortran_order", _) | ("shape", _) => {
                return Err(format!("the .npy header has a malformed '{key}' entry"))
            }
            _ => {}
        }
    }
    let descr = descr.ok_or("the .npy header has no 'descr' entry")?;
    let fortran_order = fortran.ok_or("the .npy header has no 'fortran_order' entry")?;
    let shape = shape.ok_or("the .npy header has no 'shape' entry")?;
    let (dtype, big_endian) = parse_descr(&descr)?;
    Ok(NpyHeader {
        dtype,
        big_endian,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// `'<f4'` and friends: element type and byte order.
fn parse_descr(descr: &str) -> std::result::Result<(DatumType, bool), String> {
    let unsupported = || {
        format!(
            "unsupported element type '{descr}' (supported: float16, float32, float64, int8, \
             int16, int32, int64, uint8, uint16, uint32, uint64, bool)"
        )
    };
    let mut chars = descr.chars();
    let (order, kind) = match chars.next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => (' ', descr),
    };
    let dtype = match kind {
        "f2" | "e" => DatumType::F16,
        "f4" | "f" => DatumType::F32,
        "f8" | "d" => DatumType::F64,
        "i1" | "b" => DatumType::I8,
        "i2" | "h" => DatumType::I16,
        "i4" | "i" => DatumType::I32,
        "i8" | "q" => DatumType::I64,
        "u1" | "B" => DatumType::U8,
        "u2" | "H" => DatumType::U16,
        "u4" | "I" => DatumType::U32,
        "u8" | "Q" => DatumType::U64,
        "b1" | "?" => DatumType::Bool,
        _ => return Err(unsupported()),
    };
    let big_endian = order == '>' || (order == '=' && cfg!(target_endian = "big"));
    Ok((dtype, big_endian))
}

/// A value of the tiny subset of Python literals numpy writes in headers.
#[derive(Debug)]
enum PyValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    Other,
}

struct PyParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> PyParser<'a> {
    fn new(s: &'a str) -> Self {
        PyParser {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "expected '{}' at offset {}, found '{}'",
                c as char, self.pos, x as char
            )),
            None => Err(format!(
                "expected '{}', found the end of the header",
                c as char
            )),
        }
    }

    fn dict(&mut self) -> std::result::Result<Vec<(String, PyValue)>, String> {
        self.expect(b'{')?;
        let mut entries = vec![];
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            entries.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                Some(c) => {
                    return Err(format!("unexpected '{}' at offset {}", c as char, self.pos))
                }
                None => return Err("the header dict is not closed".into()),
            }
        }
        Ok(entries)
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at offset {}", self.pos)),
        };
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos] != quote {
            self.pos += 1;
        }
        if self.pos >= self.s.len() {
            return Err("unterminated string".into());
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(text)
    }

    fn word(&mut self) -> &'a [u8] {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_')
        {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn value(&mut self) -> std::result::Result<PyValue, String> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(PyValue::Str(self.string()?)),
            Some(b'(') => self.tuple(b'(', b')'),
            Some(b'[') => {
                // A list: either a structured descr or something we do not use. Skip it.
                self.skip_brackets()?;
                Ok(PyValue::Other)
            }
            Some(b'{') => {
                self.skip_brackets()?;
                Ok(PyValue::Other)
            }
            Some(_) => match self.word() {
                b"True" => Ok(PyValue::Bool(true)),
                b"False" => Ok(PyValue::Bool(false)),
                b"" => Err(format!("unexpected character at offset {}", self.pos)),
                _ => Ok(PyValue::Other),
            },
            None => Err("the header ends where a value was expected".into()),
        }
    }

    fn skip_brackets(&mut self) -> std::result::Result<(), String> {
        let mut depth = 0usize;
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b'[' | b'(' | b'{' => depth += 1,
                b']' | b')' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err("unbalanced brackets".into())
    }

    fn tuple(&mut self, open: u8, close: u8) -> std::result::Result<PyValue, String> {
        self.expect(open)?;
        let mut dims = vec![];
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(PyValue::Tuple(dims));
            }
            let word = self.word();
            // Python 2 wrote long integers with an `L` suffix.
            let digits = word.strip_suffix(b"L").unwrap_or(word);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(format!(
                    "the shape holds '{}', expected a non-negative integer",
                    String::from_utf8_lossy(word)
                ));
            }
            let text = std::str::from_utf8(digits).unwrap_or("");
            let dim: usize = text
                .parse()
                .map_err(|_| format!("the shape holds {text}, which does not fit in usize"))?;
            dims.push(dim);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err("malformed shape tuple".into()),
            }
        }
    }
}

/// Checks that the header's declared data size equals the bytes present.
fn check_size(path: &Path, header: &NpyHeader, present: u64) -> Result<usize> {
    let dtype = crate::model::dtype_name(header.dtype);
    let Some(needed) = header.data_len() else {
        return Err(invalid(
            path,
            format!(
                "the header declares shape {} of {dtype}, whose size in bytes overflows; \
                 the file holds {present} bytes of data",
                header.shape_string()
            ),
        ));
    };
    if needed as u64 != present {
        let elems = if header.item_size() > 0 {
            needed / header.item_size()
        } else {
            0
        };
        return Err(invalid(
            path,
            format!(
                "the header declares shape {} of {dtype} ({elems} elements, {needed} bytes), \
                 but the file holds {present} bytes of data{}",
                header.shape_string(),
                if (needed as u64) > present {
                    " (truncated or corrupt file)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(needed)
}

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
fn read_npy_from(reader: &mut impl Read, len: u64, path: &Path, overflow: &str) -> Result<Tensor> {
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

/// The `descr` numpy writes for an element type.
fn descr_of(dt: DatumType) -> Option<&'static str> {
    Some(match dt {
        DatumType::F16 => "<f2",
        DatumType::F32 => "<f4",
        DatumType::F64 => "<f8",
        DatumType::I8 => "|i1",
        DatumType::I16 => "<i2",
        DatumType::I32 => "<i4",
        DatumType::I64 => "<i8",
        DatumType::U8 => "|u1",
        DatumType::U16 => "<u2",
        DatumType::U32 => "<u4",
        DatumType::U64 => "<u8",
        DatumType::Bool => "|b1",
        _ => return None,
    })
}

/// Encodes a tensor as the bytes of a `.npy` file (format 1.0, or 2.0 for huge headers),
/// little-endian and in C order, as `np.save` writes it.
pub fn npy_bytes(tensor: &Tensor) -> std::result::Result<Vec<u8>, String> {
    let dt = tensor.datum_type();
    let descr = descr_of(dt).ok_or_else(|| {
        format!(
            "cannot write element type {} to .npy",
            crate::model::dtype_name(dt)
        )
    })?;
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_tuple(tensor.shape())
    );
    // Pad with spaces and a final newline so that the data starts on a multiple of 64.
    let (version, prefix) = if dict.len() + 11 <= u16::MAX as usize {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    dict.push_str(&" ".repeat(total - prefix - dict.len() - 1));
    dict.push('\n');
    let mut out = Vec::with_capacity(total + tensor.len() * dt.size_of());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    macro_rules! put {
        ($t:ty) => {{
            let view = tensor
                .to_plain_array_view::<$t>()
                .map_err(|e| e.to_string())?;
            for v in view.iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }};
    }
    match dt {
        DatumType::F16 => {
            let view = tensor
                .to_plain_array_view::<f16>()
                .map_err(|e| e.to_string())?;
            for v in view.iter() {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        DatumType::F32 => put!(f32),
        DatumType::F64 => put!(f64),
        DatumType::I8 => put!(i8),
        DatumType::I16 => put!(i16),
        DatumType::I32 => put!(i32),
        DatumType::I64 => put!(i64),
        DatumType::U8 => put!(u8),
        DatumType::U16 => put!(u16),
        DatumType::U32 => put!(u32),
        DatumType::U64 => put!(u64),
        DatumType::Bool => {
            let view = tensor
                .to_plain_array_view::<bool>()
                .map_err(|e| e.to_string())?;
            out.extend(view.iter().map(|&b| b as u8));
        }
        _ => unreachable!("descr_of accepted {dt:?}"),
    }
    Ok(out)
}

/// Writes a tensor as a `.npy` file (float16/32/64, signed and unsigned integers, bool).
/// The bytes go to a new temporary file in the same folder, renamed over `path`: whatever
/// was at `path` (a file, a symbolic link) is replaced, never written through.
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let bytes = npy_bytes(tensor).map_err(|m| invalid(path, m))?;
    crate::files::write_replacing(path, &bytes).map_err(|e| io_err(path, e))
}

/// At most this many members in a `.npz` archive.
pub const NPZ_MAX_MEMBERS: usize = 10_000;

/// At most this many bytes of arrays in a `.npz` archive, all members together, once
/// decompressed (the size of the largest tensor a model may hold).
pub const NPZ_MAX_BYTES: u64 = 4 << 30;

/// DEFLATE expands at most 1032-fold (a 258-byte match coded in about two bits): a deflated
/// member declaring more than this many bytes per compressed byte (plus a small allowance) is
/// corrupt or hostile.
pub const DEFLATE_MAX_RATIO: u64 = 1032;

/// Reads every array of a `.npz` archive (`np.savez` or `np.savez_compressed`), in archive
/// order. Names lose one `.npy` suffix, as numpy's `np.load` does.
///
/// Before anything is decompressed the archive is checked against hostile contents: at most
/// [`NPZ_MAX_MEMBERS`] members, no two members of the same name (or holding the same array
/// name), only stored or deflated members, compressed sizes that fit in the archive without
/// overlapping, declared sizes within [`DEFLATE_MAX_RATIO`] of the compressed ones and, all
/// together, within [`NPZ_MAX_BYTES`]. While reading, a member never yields more than its
/// declared size (one byte more is an error), so a member that declares little and inflates
/// to much is refused after reading its declared size. Errors name the archive, and the member
/// (`archive.npz/x.npy`) when one is at fault.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let (file, len) = open_regular(path)?;
    read_npz_from(std::io::BufReader::new(file), len, path)
}

/// Opens a file that must be a regular file, and returns its length (see [`crate::files`]).
fn open_regular(path: &Path) -> Result<(File, u64)> {
    crate::files::open_regular(path).map_err(|e| e.into_error(path, "a .npy or .npz file"))
}

/// Parses a whole `.npz` archive held in memory; `path` only names it in errors. The same
/// checks as [`read_npz`].
pub fn parse_npz(bytes: &[u8], path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    read_npz_from(
        std::io::Cursor::new(bytes),
        bytes.len() as u64,
        path.as_ref(),
    )
}

/// One member as the central directory declares it.
struct Member {
    name: String,
    key: String,
    size: u64,
}

/// The array name numpy gives a member: its name without one `.npy` suffix.
fn npz_key(member: &str) -> String {
    member.strip_suffix(".npy").unwrap_or(member).to_string()
}

/// The archive's members, checked before anything is decompressed (see [`read_npz`]).
fn npz_members<R: Read + Seek>(
    archive: &zip::ZipArchive<R>,
    archive_len: u64,
    path: &Path,
) -> Result<Vec<Member>> {
    let not_usable = |m: String| invalid(path, format!("not a usable .npz: {m}"));
    let count = archive.len();
    if count > NPZ_MAX_MEMBERS {
        return Err(not_usable(format!(
            "it has {count} members, more than the {NPZ_MAX_MEMBERS} accepted"
        )));
    }
    // The zip crate keeps one entry per name; it notes whether the directory had more.
    if archive.has_duplicate_names() {
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.map(|n| format!("'{n}'")).unwrap_or_else(|_| "?".into()))
            .take(5)
            .collect();
        return Err(not_usable(format!(
            "its central directory lists a member name more than once (names: {}{})",
            names.join(", "),
            if count > names.len() { ", ..." } else { "" }
        )));
    }
    let mut members: Vec<Member> = Vec::with_capacity(count);
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    let (mut compressed_total, mut total) = (0u64, 0u64);
    for i in 0..count {
        let entry = archive
            .by_index_data(i)
            .map_err(|e| not_usable(format!("member {i}: {e}")))?;
        let name = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(_) => String::from_utf8_lossy(entry.name_raw()).into_owned(),
        };
        let member_err = |m: String| invalid(&path.join(&name), m);
        if entry.is_dir() {
            return Err(member_err(
                "a directory, expected a .npy member (np.savez writes no directories)".into(),
            ));
        }
        if entry.encrypted() {
            return Err(member_err(
                "encrypted archive members are not supported".into(),
            ));
        }
        let (size, compressed) = (entry.size(), entry.compressed_size());
        match entry.compression() {
            zip::CompressionMethod::Stored if size != compressed => {
                return Err(member_err(format!(
                    "a stored member whose sizes disagree ({compressed} bytes stored, {size} \
                     declared): corrupt archive"
                )))
            }
            zip::CompressionMethod::Stored => {}
            zip::CompressionMethod::Deflated => {
                let most = compressed
                    .saturating_mul(DEFLATE_MAX_RATIO)
                    .saturating_add(1024);
                if size > most {
                    return Err(member_err(format!(
                        "declares {size} bytes from {compressed} deflated bytes, more than \
                         DEFLATE can expand to ({most} bytes): corrupt or hostile archive"
                    )));
                }
            }
            other => {
                return Err(member_err(format!(
                    "compression method {other} is not supported (np.savez stores members, \
                     np.savez_compressed deflates them)"
                )))
            }
        }
        let key = npz_key(&name);
        // Names are unique by now; `a` and `a.npy` would still both be array `a`.
        if let Some(first) = seen.insert(key.clone(), name.clone()) {
            return Err(not_usable(format!(
                "members '{first}' and '{name}' both hold array '{key}'"
            )));
        }
        compressed_total = compressed_total.saturating_add(compressed);
        total = total.saturating_add(size);
        members.push(Member { name, key, size });
    }
    // Members lie side by side in the archive: their data cannot add up to more than it. A
    // central directory listing one member under many names would otherwise decode it again
    // and again (a few-kilobyte file asking for gigabytes).
    if compressed_total > archive_len {
        return Err(not_usable(format!(
            "its members declare {compressed_total} bytes of (compressed) data, more than the \
             archive's {archive_len} bytes (corrupt, or members that overlap)"
        )));
    }
    if total > NPZ_MAX_BYTES {
        return Err(not_usable(format!(
            "its members declare {total} bytes of arrays, more than the {NPZ_MAX_BYTES} \
             accepted"
        )));
    }
    Ok(members)
}

fn read_npz_from<R: Read + Seek>(
    reader: R,
    archive_len: u64,
    path: &Path,
) -> Result<Vec<(String, Tensor)>> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| invalid(path, format!("not a usable .npz: {e}")))?;
    let members = npz_members(&archive, archive_len, path)?;
    let mut out = Vec::with_capacity(members.len());
    for (i, m) in members.into_iter().enumerate() {
        let member_path = path.join(&m.name);
        let options = zip::read::ZipReadOptions::new().enforce_header_consistency(true);
        let mut file = archive
            .by_index_with_options(i, options)
            .map_err(|e| invalid(&member_path, format!("unreadable archive member: {e}")))?;
        let tensor = read_npy_from(
            &mut file,
            m.size,
            &member_path,
            "the member holds more data than its archive entry declares (corrupt or hostile \
             archive)",
        )?;
        out.push((m.key, tensor));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_hir::internal::tract_ndarray::arr2;

    #[test]
    fn round_trip_all_types() {
        let tensors = vec![
            Tensor::from(arr2(&[[1.5f32, -2.0], [3.25, 4.0]])),
            Tensor::from(arr2(&[[1.5f64, -2.0, 7.0]])),
            Tensor::from(arr2(&[[1i64], [-2]])),
            Tensor::from(arr2(&[[1i32, 2, 3]])),
            Tensor::from(arr2(&[[f16::from_f32(0.5), f16::from_f32(-1.0)]])),
            Tensor::from(arr2(&[[true, false]])),
            Tensor::from(arr2(&[[7u8, 8]])),
            tensor0(3.0f32),
        ];
        for t in tensors {
            let bytes = npy_bytes(&t).unwrap();
            assert_eq!(bytes.len() % 64, (t.len() * t.datum_type().size_of()) % 64);
            let back = parse_npy(&bytes, "t.npy").unwrap();
            assert_eq!(back, t);
        }
    }

    fn tensor0<T: tract_hir::internal::Datum>(v: T) -> Tensor {
        Tensor::from(tract_hir::internal::tract_ndarray::arr0(v))
    }

    fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn fortran_order_and_big_endian() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major: 1 4 2 5 3 6.
        let data: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let bytes = npy_with_header(
            "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 3), }",
            &data,
        );
        let t = parse_npy(&bytes, "f.npy").unwrap();
        assert_eq!(t, Tensor::from(arr2(&[[1f32, 2., 3.], [4., 5., 6.]])));
    }

    /// The file reader fills the tensor in place; a 3-D Fortran-order, big-endian file read
    /// from disk must come out as numpy would load it.
    #[test]
    fn read_npy_fortran_3d_from_a_file() {
        let (d0, d1, d2) = (2, 3, 4);
        let mut stored = vec![0i32; d0 * d1 * d2];
        for i in 0..d0 {
            for j in 0..d1 {
                for k in 0..d2 {
                    stored[i + d0 * j + d0 * d1 * k] = (100 * i + 10 * j + k) as i32;
                }
            }
        }
        let data: Vec<u8> = stored.iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = npy_with_header(
            "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3, 4), }",
            &data,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.npy");
        std::fs::write(&path, &bytes).unwrap();
        let t = read_npy(&path).unwrap();
        let want =
            ndarray::Array3::from_shape_fn((d0, d1, d2), |(i, j, k)| (100 * i + 10 * j + k) as i32);
        assert_eq!(t, Tensor::from(want));
        assert_eq!(t, parse_npy(&bytes, "f.npy").unwrap());
    }

    #[test]
    fn huge_shape_is_refused_before_allocating() {
        let bytes = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 3), }",
            &[0u8; 48],
        );
        let err = parse_npy(&bytes, "big.npy").unwrap_err().to_string();
        assert!(err.contains("big.npy"), "{err}");
        assert!(err.contains("(1099511627776, 3)"), "{err}");
        assert!(err.contains("48 bytes"), "{err}");
        let overflow = npy_with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
            &[0u8; 16],
        );
        let err = parse_npy(&overflow, "o.npy").unwrap_err().to_string();
        assert!(err.contains("overflows"), "{err}");
    }

    #[test]
    fn bad_headers_are_errors() {
        for bytes in [
            &b""[..],
            b"hello",
            b"\x93NUMPY\x01\x00\xff\x00{",
            b"\x93NUMPY\x09\x00\x10\x00{}",
            &npy_with_header(
                "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
                &[0; 8],
            ),
            &npy_with_header("{'descr': '<f4', 'shape': (1,), }", &[0; 4]),
            &npy_with_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
                &[0; 4],
            ),
            &npy_with_header(
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                &[0; 4],
            ),
            &npy_with_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",
                &[0; 4],
            ),
            &npy_with_header(
                "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }",
                &[7],
            ),
        ] {
            assert!(
                parse_npy(bytes, "x.npy").is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn python2_long_suffix_and_empty_shape() {
        let bytes = npy_with_header(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2L,), }",
            &[0; 16],
        );
        assert_eq!(parse_npy(&bytes, "x.npy").unwrap().shape(), &[2]);
        let bytes = npy_with_header(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (0, 3), }",
            &[],
        );
        assert_eq!(parse_npy(&bytes, "x.npy").unwrap().shape(), &[0, 3]);
    }

    /// `np.savez(f, a=np.arange(3, dtype=np.int64), b=np.float32(2.5))` as numpy 2.4 writes it
    /// (ZIP64 extra fields in the local headers).
    const NUMPY_NPZ: &[u8] = b"\x50\x4b\x03\x04\x2d\x00\x00\x00\x00\x00\x00\x00\x21\x00\xf7\x40\x12\xea\xff\xff\xff\xff\xff\xff\
        \xff\xff\x05\x00\x14\x00\x61\x2e\x6e\x70\x79\x01\x00\x10\x00\x98\x00\x00\x00\x00\x00\x00\x00\x98\
        \x00\x00\x00\x00\x00\x00\x00\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00\x7b\x27\x64\x65\x73\x63\x72\
        \x27\x3a\x20\x27\x3c\x69\x38\x27\x2c\x20\x27\x66\x6f\x72\x74\x72\x61\x6e\x5f\x6f\x72\x64\x65\x72\
        \x27\x3a\x20\x46\x61\x6c\x73\x65\x2c\x20\x27\x73\x68\x61\x70\x65\x27\x3a\x20\x28\x33\x2c\x29\x2c\
        \x20\x7d\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
        \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
        \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x01\
        \x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x50\x4b\x03\x04\x2d\x00\x00\x00\x00\
        \x00\x00\x00\x21\x00\x64\x8c\x22\xc3\xff\xff\xff\xff\xff\xff\xff\xff\x05\x00\x14\x00\x62\x2e\x6e\
        \x70\x79\x01\x00\x10\x00\x84\x00\x00\x00\x00\x00\x00\x00\x84\x00\x00\x00\x00\x00\x00\x00\x93\x4e\
        \x55\x4d\x50\x59\x01\x00\x76\x00\x7b\x27\x64\x65\x73\x63\x72\x27\x3a\x20\x27\x3c\x66\x34\x27\x2c\
        \x20\x27\x66\x6f\x72\x74\x72\x61\x6e\x5f\x6f\x72\x64\x65\x72\x27\x3a\x20\x46\x61\x6c\x73\x65\x2c\
        \x20\x27\x73\x68\x61\x70\x65\x27\x3a\x20\x28\x29\x2c\x20\x7d\x20\x20\x20\x20\x20\x20\x20\x20\x20\
        \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
        \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
        \x20\x20\x20\x20\x20\x0a\x00\x00\x20\x40\x50\x4b\x01\x02\x2d\x03\x2d\x00\x00\x00\x00\x00\x00\x00\
        \x21\x00\xf7\x40\x12\xea\x98\x00\x00\x00\x98\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\
        \x00\x00\x80\x01\x00\x00\x00\x00\x61\x2e\x6e\x70\x79\x50\x4b\x01\x02\x2d\x03\x2d\x00\x00\x00\x00\
        \x00\x00\x00\x21\x00\x64\x8c\x22\xc3\x84\x00\x00\x00\x84\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\
        \x00\x00\x00\x00\x00\x80\x01\xcf\x00\x00\x00\x62\x2e\x6e\x70\x79\x50\x4b\x05\x06\x00\x00\x00\x00\
        \x02\x00\x02\x00\x66\x00\x00\x00\x8a\x01\x00\x00\x00\x00";

    #[test]
    fn numpy_written_npz() {
        let bytes = NUMPY_NPZ;
        let arrays = parse_npz(bytes, "n.npz").unwrap();
        let names: Vec<_> = arrays.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            arrays[0].1,
            Tensor::from(tract_hir::internal::tract_ndarray::arr1(&[0i64, 1, 2]))
        );
        assert_eq!(arrays[1].1, tensor0(2.5f32));
    }

    #[test]
    fn mutated_files_never_panic() {
        let npy = npy_bytes(&Tensor::from(arr2(&[[1.5f32, -2.0], [3.25, 4.0]]))).unwrap();
        for (bytes, npz) in [(NUMPY_NPZ, true), (&npy[..], false)] {
            for pos in 0..bytes.len() {
                for value in [0x00, 0x7F, 0xFF] {
                    let mut m = bytes.to_vec();
                    m[pos] = value;
                    // Ok or Err, but never a panic or a huge allocation.
                    let _ = if npz {
                        parse_npz(&m, "m.npz").map(|_| ())
                    } else {
                        parse_npy(&m, "m.npy").map(|_| ())
                    };
                }
            }
        }
    }

    #[test]
    fn corrupt_npz_is_an_error() {
        let bytes = NUMPY_NPZ;
        let mut bad = bytes.to_vec();
        // Flip a data byte of the first member: the CRC check must catch it.
        let pos = bad.windows(6).position(|w| w == MAGIC).unwrap() + 130;
        bad[pos] ^= 0xFF;
        assert!(parse_npz(&bad, "n.npz").is_err());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(parse_npz(&bytes[..cut], "n.npz").is_err());
        }
    }

    // --------------------------------------------------------------------------------------
    // .npz archives written with the zip crate's writer

    /// A ZIP archive of `members`, each stored or deflated.
    fn zip_bytes(members: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
        use std::io::Write as _;
        let method = if deflate {
            ::zip::CompressionMethod::Deflated
        } else {
            ::zip::CompressionMethod::Stored
        };
        let options = ::zip::write::SimpleFileOptions::default().compression_method(method);
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in members {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn sample() -> (Tensor, Tensor) {
        let a = Tensor::from(ndarray::Array2::from_shape_fn((64, 3), |(i, j)| {
            (i * 3 + j) as f32 * 0.5
        }));
        let b = Tensor::from(tract_hir::internal::tract_ndarray::arr1(&[1i64, -2, 3]));
        (a, b)
    }

    #[test]
    fn stored_and_deflated_npz() {
        let (a, b) = sample();
        let (na, nb) = (npy_bytes(&a).unwrap(), npy_bytes(&b).unwrap());
        for deflate in [false, true] {
            let bytes = zip_bytes(&[("a.npy", &na), ("b", &nb)], deflate);
            if deflate {
                assert!(bytes.len() < na.len(), "the zeros-rich array compresses");
            }
            let arrays = parse_npz(&bytes, "x.npz").unwrap();
            assert_eq!(
                arrays,
                vec![("a".to_string(), a.clone()), ("b".into(), b.clone())]
            );
            // The file reader takes the same path.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.npz");
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read_npz(&path).unwrap(), arrays);
        }
    }

    /// Every occurrence of `sig` in `bytes` gets `value` written `at` bytes after it.
    fn patch(bytes: &mut [u8], sig: u32, at: usize, value: &[u8]) {
        let sig = sig.to_le_bytes();
        let spots: Vec<usize> = (0..bytes.len() - 4)
            .filter(|&i| bytes[i..i + 4] == sig)
            .collect();
        assert!(!spots.is_empty());
        for i in spots {
            bytes[i + at..i + at + value.len()].copy_from_slice(value);
        }
    }
    const LOCAL: u32 = 0x0403_4b50;
    const CENTRAL: u32 = 0x0201_4b50;

    /// A member whose entry declares a small array but whose deflate stream inflates to a
    /// megabyte more: refused once the declared size is read, naming archive and member.
    #[test]
    fn member_inflating_past_its_declared_size_is_refused() {
        let small = npy_bytes(&Tensor::from(ndarray::Array1::<f32>::zeros(16))).unwrap();
        let mut data = small.clone();
        data.extend(std::iter::repeat_n(0u8, 1 << 20));
        let mut bytes = zip_bytes(&[("x.npy", &data)], true);
        assert!(bytes.len() < 4096, "{}", bytes.len());
        let declared = (small.len() as u32).to_le_bytes();
        patch(&mut bytes, LOCAL, 22, &declared);
        patch(&mut bytes, CENTRAL, 24, &declared);
        let err = parse_npz(&bytes, "bomb.npz").unwrap_err().to_string();
        assert!(err.contains("bomb.npz/x.npy"), "{err}");
        // The zip crate's own size check, or ours one byte past the declared size.
        assert!(
            err.contains("larger than its declared") || err.contains("more data than"),
            "{err}"
        );
    }

    /// Declared sizes no DEFLATE stream of that length can reach, sizes that disagree for a
    /// stored member, compression methods numpy never writes: refused before decompressing.
    #[test]
    fn implausible_entries_are_refused_up_front() {
        let (a, _) = sample();
        let na = npy_bytes(&a).unwrap();
        let mut huge = zip_bytes(&[("a.npy", &na)], true);
        patch(&mut huge, LOCAL, 22, &0x7FFF_FFFFu32.to_le_bytes());
        patch(&mut huge, CENTRAL, 24, &0x7FFF_FFFFu32.to_le_bytes());
        let err = parse_npz(&huge, "huge.npz").unwrap_err().to_string();
        assert!(err.contains("huge.npz/a.npy"), "{err}");
        assert!(err.contains("more than DEFLATE can expand to"), "{err}");

        let mut stored = zip_bytes(&[("a.npy", &na)], false);
        patch(&mut stored, LOCAL, 22, &1u32.to_le_bytes());
        patch(&mut stored, CENTRAL, 24, &1u32.to_le_bytes());
        let err = parse_npz(&stored, "s.npz").unwrap_err().to_string();
        assert!(
            err.contains("s.npz/a.npy") && err.contains("sizes disagree"),
            "{err}"
        );

        let mut bzip = zip_bytes(&[("a.npy", &na)], true);
        patch(&mut bzip, LOCAL, 8, &12u16.to_le_bytes());
        patch(&mut bzip, CENTRAL, 10, &12u16.to_le_bytes());
        let err = parse_npz(&bzip, "b.npz").unwrap_err().to_string();
        assert!(
            err.contains("b.npz/a.npy") && err.contains("not supported"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_arrays_and_too_many_members_are_refused() {
        let (_, b) = sample();
        let nb = npy_bytes(&b).unwrap();
        let bytes = zip_bytes(&[("b.npy", &nb), ("b", &nb)], false);
        let err = parse_npz(&bytes, "d.npz").unwrap_err().to_string();
        assert!(err.contains("d.npz"), "{err}");
        assert!(err.contains("'b.npy' and 'b' both hold array 'b'"), "{err}");

        let names: Vec<String> = (0..=NPZ_MAX_MEMBERS).map(|i| format!("{i}")).collect();
        let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
        let bytes = zip_bytes(&members, false);
        let err = parse_npz(&bytes, "many.npz").unwrap_err().to_string();
        assert!(
            err.contains("many.npz") && err.contains("10001 members"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_deflated_member_is_an_error() {
        let (a, _) = sample();
        let bytes = zip_bytes(&[("a.npy", &npy_bytes(&a).unwrap())], true);
        // Every byte of the deflate stream flipped in turn: an error (CRC, inflate or size),
        // or the same array, never a panic or another array.
        let start = 30 + "a.npy".len();
        let end = bytes
            .windows(4)
            .position(|w| w == CENTRAL.to_le_bytes())
            .unwrap();
        for pos in start..end {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x55;
            match parse_npz(&bad, "c.npz") {
                Err(e) => assert!(e.to_string().contains("c.npz"), "{e}"),
                Ok(arrays) => assert_eq!(arrays[0].1, a, "byte {pos}"),
            }
        }
    }
}
