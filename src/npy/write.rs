//! Writing a tensor as a `.npy`, as `np.save` does.

use std::path::Path;

use tract_hir::internal::{f16, DatumType, Tensor};

use super::header::shape_tuple;
use super::{invalid, io_err, MAGIC};
use crate::error::Result;

/// The `descr` numpy writes for an element type.
pub(super) fn descr_of(dt: DatumType) -> Option<&'static str> {
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
