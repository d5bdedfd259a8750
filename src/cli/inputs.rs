//! Binding the command line's INPUT arguments to the graph's inputs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use rnn_run::{dtype_name, npy, Error, Model, Tensor};

/// One graph input's value and where it came from (for messages).
pub struct Bound {
    pub tensor: Tensor,
    pub source: String,
}

enum Arg {
    Positional(PathBuf),
    Named(String, PathBuf),
    Npz(PathBuf),
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}

fn takes(names: &[&str]) -> String {
    format!(
        "the model takes {} input{} ({})",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        list(names)
    )
}

fn is_npz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"))
}

fn classify(raw: &OsString, names: &[&str]) -> Result<Arg> {
    let path = PathBuf::from(raw);
    // `name=file`, unless the whole argument is an existing file whose name holds `=`.
    if let Some(text) = raw.to_str() {
        if let Some((name, file)) = text.split_once('=') {
            if !path.exists() {
                if !names.contains(&name) {
                    bail!(
                        "unknown input name '{name}' in '{text}': the model's inputs are {}",
                        list(names)
                    );
                }
                if file.is_empty() {
                    bail!("'{text}' names no file after '='");
                }
                return Ok(Arg::Named(name.to_string(), PathBuf::from(file)));
            }
        }
    }
    Ok(if is_npz(&path) {
        Arg::Npz(path)
    } else {
        Arg::Positional(path)
    })
}

/// Reads the INPUT arguments and checks them against the model: count, names, element types,
/// ranks and fixed dimensions. Every error names the input and the file.
/// With `free_dims` (a chunked run, whose stream finds the time axes and checks the chunks
/// itself), every dimension may have any size: only element types and ranks are checked.
pub fn bind(model: &Model, raw: &[OsString], free_dims: bool) -> Result<Vec<Bound>> {
    let infos = model.inputs();
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let args = raw
        .iter()
        .map(|r| classify(r, &names))
        .collect::<Result<Vec<_>>>()?;

    let positional = args
        .iter()
        .filter(|a| matches!(a, Arg::Positional(_)))
        .count();
    if positional > names.len() {
        bail!(
            "too many inputs: {}, found {positional} files",
            takes(&names)
        );
    }

    let mut slots: Vec<Option<Bound>> = (0..names.len()).map(|_| None).collect();
    let mut next = 0;
    let mut npz_files: Vec<(PathBuf, Vec<String>)> = vec![];
    let put = |slots: &mut Vec<Option<Bound>>, i: usize, bound: Bound| -> Result<()> {
        if let Some(previous) = &slots[i] {
            bail!(
                "input '{}' is given twice ({} and {})",
                names[i],
                previous.source,
                bound.source
            );
        }
        slots[i] = Some(bound);
        Ok(())
    };
    for arg in args {
        let (i, path) = match arg {
            Arg::Positional(path) => {
                next += 1;
                (next - 1, path)
            }
            Arg::Named(name, path) => (
                names.iter().position(|n| *n == name).unwrap_or_default(),
                path,
            ),
            Arg::Npz(path) => {
                let arrays = npy::read_npz(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read inputs from {e}"))?;
                let keys: Vec<String> = arrays.iter().map(|(k, _)| k.clone()).collect();
                for (key, tensor) in arrays {
                    // By name; `arr_<i>` (np.savez's names for positional arrays) by position.
                    let by_position = || {
                        key.strip_prefix("arr_")
                            .and_then(|i| i.parse::<usize>().ok())
                            .filter(|&i| i < names.len())
                    };
                    let Some(i) = names.iter().position(|n| *n == key).or_else(by_position) else {
                        bail!(
                            "{}: array '{key}' is not an input of the model; the model's inputs \
                             are {}",
                            path.display(),
                            list(&names)
                        );
                    };
                    let source = format!("{}[{key}]", path.display());
                    put(&mut slots, i, Bound { tensor, source })?;
                }
                npz_files.push((path, keys));
                continue;
            }
        };
        let tensor = read(&path, names[i])?;
        let source = path.display().to_string();
        put(&mut slots, i, Bound { tensor, source })?;
    }

    let missing: Vec<&str> = names
        .iter()
        .zip(&slots)
        .filter(|(_, s)| s.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        let plural = if missing.len() == 1 { "" } else { "s" };
        let given = slots.iter().filter(|s| s.is_some()).count();
        let mut message = format!(
            "missing input{plural} {}: {}, found {given}",
            quoted(&missing),
            takes(&names)
        );
        for (path, keys) in &npz_files {
            message.push_str(&format!(
                "; {} holds {}",
                path.display(),
                if keys.is_empty() {
                    "no arrays".to_string()
                } else {
                    quoted_strings(keys)
                }
            ));
        }
        bail!(message);
    }
    let bound: Vec<Bound> = slots.into_iter().flatten().collect();

    for (info, b) in infos.iter().zip(&bound) {
        if b.tensor.datum_type() != info.dtype {
            bail!(
                "input '{}' ({}): expected element type {}, found {}",
                info.name,
                b.source,
                dtype_name(info.dtype),
                dtype_name(b.tensor.datum_type())
            );
        }
    }
    let tensors: Vec<Tensor> = bound.iter().map(|b| b.tensor.clone()).collect();
    let mut declared = infos.to_vec();
    if free_dims {
        for info in declared.iter_mut() {
            for dim in info.shape.iter_mut() {
                *dim = rnn_run::Dim::Symbol("any".into());
            }
        }
    }
    if let Err(e) = rnn_run::model::check_inputs(&declared, &tensors) {
        match e {
            Error::Input { name, message } => {
                let source = names
                    .iter()
                    .position(|n| *n == name)
                    .map(|i| format!(" ({})", bound[i].source))
                    .unwrap_or_default();
                bail!("input '{name}'{source}: {message}");
            }
            other => return Err(other.into()),
        }
    }
    Ok(bound)
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted_strings(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read(path: &Path, input: &str) -> Result<Tensor> {
    npy::read_npy(path).map_err(|e| anyhow::anyhow!("input '{input}': {e}"))
}
