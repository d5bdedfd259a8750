//! Checks on the ONNX protobuf before tract sees it, for defects tract does not report
//! cleanly: it panics on a graph output nothing produces, loops until memory runs out on a
//! Transpose `perm` that is not a permutation, and names neither the file nor the tensor when
//! an external data file is too short. Each check returns the message for
//! [`crate::Error::InvalidModel`].

use std::path::Path;

use crate::files::OpenError;

use tract_onnx::pb::{tensor_proto::DataLocation, GraphProto, ModelProto, TensorProto};

mod graph;
pub(crate) mod shape_flow;
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
    check_tensor_data(graph)?;
    check_order(graph)?;
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
    // One set of every name, so that the check stays linear in the graph's size.
    let names: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(graph.input.iter().map(|i| i.name.as_str()))
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    let known = |name: &str| names.contains(name);
    // An empty name is not a reference: a node's omitted optional outputs are named '' too,
    // so `known` would find one and let tract panic on the lookup later.
    match graph
        .output
        .iter()
        .find(|o| o.name.is_empty() || !known(&o.name))
    {
        Some(o) if o.name.is_empty() => Err(format!(
            "graph output {} of {} has an empty name (a graph output names the tensor it \
             returns)",
            graph
                .output
                .iter()
                .position(|x| x.name.is_empty())
                .unwrap_or(0)
                + 1,
            graph.output.len()
        )),
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
    // Opened (never blocking) and closed again: tract reads the file itself afterwards.
    let size = match crate::files::open_regular(&path) {
        Ok((_, len)) => len,
        Err(OpenError::NotRegular(kind)) => {
            return Err(format!(
                "tensor '{}': external data {} is not a regular file ({kind})",
                t.name,
                path.display()
            ))
        }
        Err(OpenError::Io(e)) => {
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

/// Every tensor stored in the model (initializers, and tensor attributes such as a Constant's
/// `value`, in subgraphs too) holds as many values as its dims call for. tract's own messages
/// for a short tensor ("incompatible shapes", "out of bounds indexing") name no tensor.
fn check_tensor_data(graph: &GraphProto) -> Result<(), String> {
    for t in &graph.initializer {
        tensor_data_fits(t).map_err(|why| format!("initializer '{}': {why}", t.name))?;
    }
    for node in &graph.node {
        for attr in &node.attribute {
            for t in attr.t.iter().chain(&attr.tensors) {
                tensor_data_fits(t).map_err(|why| {
                    format!(
                        "node {} ({}): attribute '{}': {why}",
                        node_name(node),
                        node.op_type,
                        attr.name
                    )
                })?;
            }
            for g in attr.g.iter().chain(&attr.graphs) {
                check_tensor_data(g)?;
            }
        }
    }
    Ok(())
}

/// A node as messages name it: `'name'`, or `producing 'output'` when it has no name.
pub(crate) fn node_name(node: &tract_onnx::pb::NodeProto) -> String {
    match (
        node.name.as_str(),
        node.output.iter().find(|o| !o.is_empty()),
    ) {
        ("", Some(output)) => format!("producing '{output}'"),
        ("", None) => "(unnamed, no outputs)".into(),
        (name, _) => format!("'{name}'"),
    }
}

/// The values a tensor's dims call for against those it holds (external data is checked
/// against its file by [`check_external_data`]; element types without a fixed size are left
/// to tract).
fn tensor_data_fits(t: &TensorProto) -> Result<(), String> {
    use tract_onnx::pb::tensor_proto::DataType as D;
    if is_external(t) {
        return Ok(());
    }
    if let Some(d) = t.dims.iter().find(|&&d| d < 0) {
        return Err(format!("dims {:?} hold a negative dimension ({d})", t.dims));
    }
    let count = t
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| format!("dims {:?} overflow a 64-bit element count", t.dims))?;
    let Ok(ty) = D::try_from(t.data_type) else {
        return Ok(());
    };
    // (bytes per value in raw_data, values held in the typed field, values per element)
    let (size, typed, per_element): (u64, usize, u64) = match ty {
        D::Float => (4, t.float_data.len(), 1),
        D::Double => (8, t.double_data.len(), 1),
        D::Int64 => (8, t.int64_data.len(), 1),
        D::Uint32 => (4, t.uint64_data.len(), 1),
        D::Uint64 => (8, t.uint64_data.len(), 1),
        D::Int32 => (4, t.int32_data.len(), 1),
        D::Int16 | D::Uint16 | D::Float16 | D::Bfloat16 => (2, t.int32_data.len(), 1),
        D::Int8 | D::Uint8 | D::Bool => (1, t.int32_data.len(), 1),
        D::Complex64 => (8, t.float_data.len(), 2),
        D::Complex128 => (16, t.double_data.len(), 2),
        _ => return Ok(()),
    };
    let ty_name = match ty {
        D::Float => "float32".to_string(),
        D::Double => "float64".to_string(),
        D::Float16 => "float16".to_string(),
        other => other.as_str_name().to_lowercase(),
    };
    let values = |n: u64| format!("{n} value{}", if n == 1 { "" } else { "s" });
    if !t.raw_data.is_empty() {
        let needed = count.checked_mul(size);
        if needed != Some(t.raw_data.len() as u64) {
            return Err(format!(
                "dims {:?} call for {} of {ty_name} ({} bytes), its raw_data holds {} bytes",
                t.dims,
                values(count),
                needed.map_or("too many".to_string(), |n| n.to_string()),
                t.raw_data.len()
            ));
        }
    } else if count.checked_mul(per_element) != Some(typed as u64) {
        return Err(format!(
            "dims {:?} call for {} of {ty_name}, it holds {}",
            t.dims,
            values(count),
            values(typed as u64 / per_element)
        ));
    }
    Ok(())
}

/// No node writes a graph input or an initializer, and no node depends on its own output
/// (ONNX graphs are acyclic). tract says "Loop detected" for both, naming no node. Checked in
/// each subgraph too, where names from the enclosing graphs are inputs.
fn check_order(graph: &GraphProto) -> Result<(), String> {
    use std::collections::HashMap;
    let given: std::collections::HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            if given.contains(o.as_str()) {
                let what = if graph.input.iter().any(|i| &i.name == o) {
                    "a graph input"
                } else {
                    "an initializer"
                };
                return Err(format!(
                    "node {} ({}) writes '{o}', which is {what}: a tensor is written once",
                    node_name(node),
                    node.op_type
                ));
            }
            producer.insert(o, i);
        }
    }
    // Kahn's algorithm: a node is ready once every input produced in this graph is.
    let inputs_of = |node: &tract_onnx::pb::NodeProto| -> Vec<usize> {
        node.input
            .iter()
            .filter_map(|name| producer.get(name.as_str()).copied())
            .collect()
    };
    let mut waiting: Vec<usize> = graph.node.iter().map(|n| inputs_of(n).len()).collect();
    let mut readers: Vec<Vec<usize>> = vec![vec![]; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate() {
        for p in inputs_of(node) {
            readers[p].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..graph.node.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &r in &readers[i] {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.push(r);
            }
        }
    }
    if done < graph.node.len() {
        // Walk back from a node still waiting, through producers still waiting, until one
        // repeats: that stretch is a cycle.
        let start = (0..graph.node.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
        let mut path = vec![start];
        let mut at = start;
        let cycle = loop {
            let next = inputs_of(&graph.node[at])
                .into_iter()
                .find(|&p| waiting[p] > 0)
                .unwrap_or(start);
            if let Some(k) = path.iter().position(|&p| p == next) {
                break path[k..].to_vec();
            }
            path.push(next);
            at = next;
        };
        let names: Vec<String> = cycle
            .iter()
            .rev()
            .chain(cycle.last())
            .map(|&i| format!("{} ({})", node_name(&graph.node[i]), graph.node[i].op_type))
            .collect();
        return Err(format!(
            "the graph has a cycle: node {} (each node reads what the one before it writes; \
             ONNX graphs are acyclic)",
            names.join(" → ")
        ));
    }
    for node in &graph.node {
        for attr in &node.attribute {
            for g in attr.g.iter().chain(&attr.graphs) {
                check_order(g)?;
            }
        }
    }
    Ok(())
}
