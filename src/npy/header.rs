//! The `.npy` header: its preamble, its Python-literal text, its element types, and the check
//! of its declared size against the data present.

use std::path::Path;

use tract_hir::internal::DatumType;

use super::{invalid, MAGIC, MAX_HEADER_LEN};
use crate::error::Result;

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
pub(super) fn shape_tuple(shape: &[usize]) -> String {
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
pub(super) fn parse_preamble(bytes: &[u8]) -> std::result::Result<(u8, usize, usize), String> {
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
pub(super) fn parse_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
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
    pub(super) s: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> PyParser<'a> {
    pub(super) fn new(s: &'a str) -> Self {
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

    pub(super) fn dict(&mut self) -> std::result::Result<Vec<(String, PyValue)>, String> {
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

    pub(super) fn value(&mut self) -> std::result::Result<PyValue, String> {
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
pub(super) fn check_size(path: &Path, header: &NpyHeader, present: u64) -> Result<usize> {
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
