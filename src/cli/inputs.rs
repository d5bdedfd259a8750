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
///
/// Inputs with a default ([`Model::defaults`]) may be given by name (`name=x.npy`, or a key of
/// an `.npz`); the tensors returned are the model's inputs, then the defaults up to the last
/// one given, those not given holding their default value.
pub fn bind(model: &Model, raw: &[OsString], free_dims: bool) -> Result<Vec<Bound>> {
    let infos = model.inputs();
    let required: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut all = required.clone();
    all.extend(model.defaults().iter().map(|i| i.name.as_str()));
    let args = raw
        .iter()
        .map(|r| classify(r, &all))
        .collect::<Result<Vec<_>>>()?;
    let mut bound = bind_required(model, args, free_dims)?;
    let overrides: Vec<Bound> = bound.split_off(required.len());
    let Some(last) = overrides.iter().rposition(|b| !b.source.is_empty()) else {
        return Ok(bound);
    };
    for (info, b) in model.defaults().iter().zip(overrides).take(last + 1) {
        if b.source.is_empty() {
            let tensor = model
                .default_value(&info.name)
                .ok_or_else(|| anyhow::anyhow!("no value for default '{}'", info.name))?;
            bound.push(Bound {
                tensor,
                source: "default".into(),
            });
            continue;
        }
        if let Err(e) = rnn_run::model::check_inputs(
            std::slice::from_ref(info),
            std::slice::from_ref(&b.tensor),
        ) {
            match e {
                Error::Input { name, message } => {
                    bail!("input '{name}' ({}): {message}", b.source)
                }
                other => return Err(other.into()),
            }
        }
        bound.push(b);
    }
    Ok(bound)
}

/// Binds `args` to the model's inputs and defaults: the model's inputs checked and all
/// present, then one entry per default (an empty source where none is given).
fn bind_required(model: &Model, args: Vec<Arg>, free_dims: bool) -> Result<Vec<Bound>> {
    let infos = model.inputs();
    let required: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut names = required.clone();
    names.extend(model.defaults().iter().map(|i| i.name.as_str()));
    let names = &names[..];

    let positional = args
        .iter()
        .filter(|a| matches!(a, Arg::Positional(_)))
        .count();
    if positional > required.len() {
        let mut message = format!(
            "too many inputs: {}, found {positional} files",
            takes(&required)
        );
        if !model.defaults().is_empty() {
            message.push_str(&format!(
                "; inputs with a default ({}) are given by name, name=file",
                list(&names[required.len()..])
            ));
        }
        bail!(message);
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
                            .filter(|&i| i < required.len())
                    };
                    let Some(i) = names.iter().position(|n| *n == key).or_else(by_position) else {
                        bail!(
                            "{}: array '{key}' is not an input of the model; the model's inputs \
                             are {}",
                            path.display(),
                            list(names)
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

    let missing: Vec<&str> = required
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
            takes(&required)
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
    let mut bound: Vec<Bound> = vec![];
    let mut defaults: Vec<Bound> = vec![];
    for (i, slot) in slots.into_iter().enumerate() {
        match slot {
            Some(b) if i < required.len() => bound.push(b),
            Some(b) => defaults.push(b),
            None => defaults.push(Bound {
                tensor: Tensor::default(),
                source: String::new(),
            }),
        }
    }

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
                let source = required
                    .iter()
                    .position(|n| *n == name)
                    .map(|i| format!(" ({})", bound[i].source))
                    .unwrap_or_default();
                bail!("input '{name}'{source}: {message}");
            }
            other => return Err(other.into()),
        }
    }
    bound.extend(defaults);
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
