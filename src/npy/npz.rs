//! Reading `.npz` archives (stored or deflated), checked against hostile contents before
//! anything is decompressed.

use std::io::{Read, Seek};
use std::path::Path;

use tract_hir::internal::Tensor;

use super::read::read_npy_from;
use super::{invalid, open_regular};
use crate::error::Result;

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
    pub(super) name: String,
    pub(super) key: String,
    pub(super) size: u64,
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
