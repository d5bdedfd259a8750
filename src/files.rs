//! The one way rnn-run opens a file to read (model, external data, `.npy`/`.npz` inputs and
//! references, PyTorch weights) and the one way it writes one (outputs).
//!
//! Reading: only regular files. A device (`/dev/zero`) would be read until memory runs out,
//! and a FIFO blocks `open()` itself until a writer comes, so the file is opened without
//! blocking (`O_NONBLOCK`, which changes nothing for a regular file) and its type checked on
//! the open descriptor: no window between a check and the open.
//!
//! Writing: to a fresh temporary file in the destination's folder, then renamed over the
//! name. A symbolic link planted at the name is replaced, not followed, and a reader never
//! sees a half-written file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why [`open_regular`] refused a path.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The operating system's error (missing file, no permission, ...).
    Io(std::io::Error),
    /// The path exists but is not a regular file: what it is ("a FIFO (named pipe)", ...).
    NotRegular(&'static str),
}

/// Opens `path` for reading if it is a regular file (symbolic links followed), without ever
/// blocking; returns the file and its length.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), OpenError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(OpenError::Io)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    match kind_of(&meta) {
        None => Ok((file, meta.len())),
        Some(kind) => Err(OpenError::NotRegular(kind)),
    }
}

impl OpenError {
    /// The error for `path`, as [`crate::Error::Io`]: `expected` says what the file should
    /// have been ("a .npy or .npz file").
    pub(crate) fn into_error(self, path: &Path, expected: &str) -> crate::Error {
        crate::Error::Io {
            path: path.to_path_buf(),
            source: match self {
                OpenError::Io(e) => e,
                OpenError::NotRegular(kind) => std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    not_regular_message(kind, expected),
                ),
            },
        }
    }
}

/// "not a regular file (a FIFO (named pipe)), expected an ONNX model".
pub(crate) fn not_regular_message(kind: &str, expected: &str) -> String {
    format!("not a regular file ({kind}), expected {expected}")
}

/// What a file is when it is not a regular file (`None` when it is one).
fn kind_of(meta: &std::fs::Metadata) -> Option<&'static str> {
    if meta.is_file() {
        return None;
    }
    if meta.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_socket() {
            return Some("a socket");
        }
        if t.is_char_device() || t.is_block_device() {
            return Some("a device");
        }
    }
    Some("a device, pipe or socket")
}

/// Writes `bytes` to `path` by way of a new temporary file beside it, renamed over `path`.
/// Whatever `path` was (a file, a symbolic link to anywhere) is replaced; on failure it is
/// left as it was and the temporary file removed.
pub(crate) fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (tmp, mut file) = create_temporary_beside(path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A file of a new name in `path`'s folder, created exclusively (`O_EXCL`: never through an
/// existing name or link).
fn create_temporary_beside(path: &Path) -> std::io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{pid}.{n}.tmp"));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads a model file, which must be a regular file.
pub(crate) fn read_model_file(path: &Path) -> crate::Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let (file, len) = open_regular(path).map_err(|e| match e {
        OpenError::Io(source) => io(source),
        OpenError::NotRegular(kind) => crate::Error::InvalidModel {
            what: path.display().to_string(),
            message: not_regular_message(kind, "an ONNX model"),
        },
    })?;
    let mut bytes = Vec::new();
    // The length is only a hint (the file may change under us); `take` bounds the read.
    file.take(len).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}
