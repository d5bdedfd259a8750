//! Checks on the ONNX protobuf before tract sees it, for defects tract does not report
//! cleanly: it panics on a graph output nothing produces, loops until memory runs out on a
//! Transpose `perm` that is not a permutation, and names neither the file nor the tensor when
//! an external data file is too short. Each check returns the message for
//! [`crate::Error::InvalidModel`].

use std::path::Path;

use tract_onnx::pb::{tensor_proto::DataLocation, GraphProto, ModelProto, TensorProto};

mod graph;
mod shapes;

/// Runs every check; `dir` is where external data files are looked up (without one, external
/// data is refused).
pub(crate) fn check_model(
    proto: &ModelProto,
    graph: &GraphProto,
    dir: Option<&Path>,
) -> Result<(), String> {
    if !proto
        .opset_import
        .iter()
        .any(|o| o.domain.is_empty() || o.domain == "ai.onnx")
    {
        return Err(
            "no opset_import for the default ONNX domain (every ONNX model declares one; \
             a file cut short loses it first)"
                .into(),
        );
    }
    check_outputs(graph)?;
    check_transposes(graph)?;
    for t in &graph.initializer {
        match dir {
            Some(dir) => check_external_data(t, dir)?,
            None if is_external(t) => {
                return Err(format!(
                    "tensor '{}' is stored in an external data file, and a model loaded from \
                     bytes has no directory to find it in: use Model::load(path) or \
                     Model::from_bytes_in(bytes, dir)",
                    t.name
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// What loading refuses in a graph that can still be described (`inspect` shows these as the
/// reason it cannot be loaded): two writers of a tensor, an attribute given twice, an opset
/// newer than rnn-run knows, shape values tract would narrow to 32 bits.
pub(crate) fn check_graph(proto: &ModelProto, graph: &GraphProto) -> Result<(), String> {
    graph::check_graph(proto, graph)?;
    shapes::check_shape_values(graph)
}

/// Every graph output is produced by a node, or is a graph input or an initializer.
fn check_outputs(graph: &GraphProto) -> Result<(), String> {
    let known = |name: &str| {
        graph
            .node
            .iter()
            .any(|n| n.output.iter().any(|o| o == name))
            || graph.input.iter().any(|i| i.name == name)
            || graph.initializer.iter().any(|t| t.name == name)
    };
    // An empty name is not a reference: a node's omitted optional outputs are named '' too,
    // so `known` would find one and let tract panic on the lookup later.
    match graph
        .output
        .iter()
        .find(|o| o.name.is_empty() || !known(&o.name))
    {
        Some(o) => Err(format!(
            "graph output '{}' is not produced by any node, nor is it an input or an initializer",
            o.name
        )),
        None => Ok(()),
    }
}

/// Every Transpose `perm` (in subgraphs too) is a permutation of `0..len`.
fn check_transposes(graph: &GraphProto) -> Result<(), String> {
    for node in &graph.node {
        for attr in &node.attribute {
            if node.op_type == "Transpose" && attr.name == "perm" && !is_permutation(&attr.ints) {
                return Err(format!(
                    "node '{}' (Transpose): perm {:?} is not a permutation of 0..{}",
                    node.name,
                    attr.ints,
                    attr.ints.len()
                ));
            }
            for g in attr.g.iter().chain(&attr.graphs) {
                check_transposes(g)?;
            }
        }
    }
    Ok(())
}

fn is_permutation(perm: &[i64]) -> bool {
    let mut seen = vec![false; perm.len()];
    perm.iter().all(|&p| {
        usize::try_from(p)
            .ok()
            .and_then(|p| seen.get_mut(p))
            .is_some_and(|s| !std::mem::replace(s, true))
    })
}

/// An initializer stored in an external file: the file exists and holds the byte range the
/// tensor declares (`offset` + `length`, or its element count times its element size).
fn check_external_data(t: &TensorProto, dir: &Path) -> Result<(), String> {
    if !is_external(t) {
        return Ok(());
    }
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let number = |key: &str| -> Result<Option<u64>, String> {
        entry(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    format!(
                        "tensor '{}': external data {key} '{v}' is not a number",
                        t.name
                    )
                })
            })
            .transpose()
    };
    let Some(location) = entry("location") else {
        return Err(format!(
            "tensor '{}' is stored as external data but names no location",
            t.name
        ));
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = match number("length")? {
        Some(n) => Some(n),
        None => byte_size(t),
    };
    let path = inside_model_dir(dir, location).map_err(|why| {
        format!(
            "tensor '{}': external data location '{location}' {why}; ONNX requires a \
             relative path inside the model's directory",
            t.name
        )
    })?;
    let size = match std::fs::metadata(&path) {
        Ok(m) => match crate::error::not_a_regular_file(&m) {
            None => m.len(),
            Some(kind) => {
                return Err(format!(
                    "tensor '{}': external data {} is not a regular file ({kind})",
                    t.name,
                    path.display()
                ))
            }
        },
        Err(e) => {
            return Err(format!(
                "tensor '{}': external data file {} cannot be read ({e})",
                t.name,
                path.display()
            ))
        }
    };
    let Some(length) = length else { return Ok(()) };
    match offset.checked_add(length) {
        Some(end) if end <= size => Ok(()),
        _ => Err(format!(
            "tensor '{}': external data file {} holds {size} bytes, the tensor needs bytes \
             {offset}..{} (the file is shorter than the model says)",
            t.name,
            path.display(),
            offset as u128 + length as u128
        )),
    }
}

/// Whether a tensor's data is in an external file.
fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32) && t.raw_data.is_empty()
}

/// Resolves an external-data `location` against the model's directory, refusing anything
/// that could reach outside it. The checks come before any metadata is read, so a crafted
/// model cannot probe the size or existence of files elsewhere through our error messages.
fn inside_model_dir(dir: &Path, location: &str) -> Result<std::path::PathBuf, &'static str> {
    use std::path::Component;
    let rel = Path::new(location);
    if location.is_empty() {
        return Err("is empty");
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    let path = dir.join(rel);
    // A symlink inside the directory may still point outside it; when both resolve, compare.
    if let (Ok(real_dir), Ok(real)) = (dir.canonicalize(), path.canonicalize()) {
        if !real.starts_with(&real_dir) {
            return Err("resolves (through a symbolic link) outside the model's directory");
        }
    }
    Ok(path)
}

/// The bytes a tensor's dims and element type call for; `None` for types without a fixed
/// size (strings) or for sizes that overflow.
fn byte_size(t: &TensorProto) -> Option<u64> {
    let item: u64 = match t.data_type {
        2 | 3 | 9 => 1,       // uint8, int8, bool
        4 | 5 | 10 | 16 => 2, // uint16, int16, float16, bfloat16
        1 | 6 | 12 => 4,      // float, int32, uint32
        7 | 11 | 13 => 8,     // int64, double, uint64
        _ => return None,
    };
    t.dims.iter().try_fold(item, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}
