//! tract's failures while typing or planning a stream's or a pool's graph (and a model's plan
//! that needs a shape from input values), said in the model's words: the node by its ONNX name
//! and what it does, never tract's analyser trace (`Failed analyse for node #18 ... Infering
//! facts: Applying rule ...`).

/// `text` (an error chain, outermost first) as one plain refusal: the innermost node tract
/// names, and the reason its last cause gives, on the `axis` ("time" or "batch").
pub(crate) fn plain(text: &str, axis: &str) -> String {
    let cause = text.rsplit(": ").next().unwrap_or(text).trim();
    let reason = reason(text, cause, axis);
    match innermost_node(text) {
        Some((name, op)) => format!("node '{name}' ({op}) {reason}"),
        None => reason,
    }
}

/// tract's refusal to plan an op whose shape (or repeats) is computed from input values, said
/// in words; `None` for other failures. tract types a graph before it runs, so every shape
/// must follow from the inputs' shapes and the constants.
pub(crate) fn variable_shape(text: &str) -> Option<String> {
    if !text.contains("shape input is variable") {
        return None;
    }
    let (name, op) = innermost_node(text)?;
    let (op, what) = match op.as_str() {
        "MultiBroadcastTo" => ("Expand", "shape depends"),
        "Tile" => ("Tile", "repeats depend"),
        other => (other, "shape depends"),
    };
    Some(format!(
        "node '{name}' ({op}): its {what} on the values of the graph's inputs, known \
         only when it runs; rnn-run (through tract) needs every shape when it plans the graph, \
         from the inputs' shapes and the constants (a scalar integer input counts as a \
         constant)"
    ))
}

/// tract's failure to type a node for the shapes of the inputs given (an input too short for
/// the steps a graph unrolls, a reshape written for other sizes), said as the node and the
/// sizes that disagree; `None` when tract's text names no node.
pub(crate) fn for_inputs(text: &str) -> Option<String> {
    if !text.contains("Failed analyse for node") {
        return None;
    }
    let (name, op) = innermost_node(text)?;
    let cause = text.rsplit(": ").next().unwrap_or(text).trim();
    // tract-onnx's op names carry the opset they follow (`Squeeze13`).
    let op = op.trim_end_matches(|c: char| c.is_ascii_digit());
    let cause = match unify(cause) {
        Some((a, b)) => format!("gets {a} where it needs {b}"),
        None if text.contains("volume mismatch") => {
            plain_values(&scrub(cause)).replace("(vol=", "(volume ")
        }
        // Other causes are tract's own terms: the node and the input shapes must do.
        None => {
            return Some(format!(
                "node '{name}' ({op}) cannot take inputs of these shapes"
            ))
        }
    };
    Some(format!(
        "node '{name}' ({op}) cannot take these inputs: {cause}"
    ))
}

/// `[(3), (2)]` as `[3, 2]`: the parentheses [`scrub`] leaves around plain numbers.
fn plain_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('(') {
        out.push_str(&rest[..at]);
        let inner = &rest[at + 1..];
        match inner.find(')') {
            Some(end)
                if !inner[..end].is_empty() && inner[..end].chars().all(|c| c.is_ascii_digit()) =>
            {
                out.push_str(&inner[..end]);
                rest = &inner[end + 1..];
            }
            _ => {
                out.push('(');
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The last `node #N "name" Op` in tract's text.
fn innermost_node(text: &str) -> Option<(String, String)> {
    let at = text.rfind("node #")?;
    let rest = &text[at + "node #".len()..];
    let rest = rest
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let name = &rest[..end];
    let op: String = rest[end + 1..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '<' || *c == '>' || *c == '_')
        .collect();
    // tract's op names where the ONNX one differs.
    let op = match op.strip_prefix("Native").unwrap_or(&op) {
        "StridedSlice" => "Slice".to_string(),
        "ConvHir" => "Conv".to_string(),
        other => other.to_string(),
    };
    if name.is_empty() {
        return None;
    }
    Some((
        name.to_string(),
        if op.is_empty() { "op".into() } else { op },
    ))
}

/// [`plain`], when tract's text shows an op that mixes the steps of an axis of no fixed
/// length (a flip, a size computed from the length, a reshape written for one length); typing
/// a graph with its declared dimensions free fails so.
pub(crate) fn mixes_steps(text: &str, axis: &str) -> Option<String> {
    [
        "with strides are not supported",
        "Undetermined symbol",
        "volume mismatch",
    ]
    .iter()
    .any(|k| text.contains(k))
    .then(|| plain(text, axis))
}

fn reason(text: &str, cause: &str, axis: &str) -> String {
    if text.contains("with strides are not supported") {
        return format!(
            "reverses or strides the {axis} axis (a Slice with a step other than 1, as a flip is \
             written), which needs the whole sequence"
        );
    }
    let op = innermost_node(text).map(|(_, op)| op).unwrap_or_default();
    let free = text.contains("Undetermined symbol")
        || text.contains(crate::symbols::STREAM_SEQ)
        || text.contains(crate::symbols::POOL_BATCH);
    if matches!(op.as_str(), "Conv" | "ConvTranspose") && free {
        // Its weights are sized by the channel count, which is the axis of free length.
        return format!(
            "takes the {axis} axis as its channel axis (its weights are written for the \
             exported length), and a convolution mixes its channels: it mixes the steps of the \
             {axis} axis, which needs the whole sequence"
        );
    }
    let pool = ["MaxPool", "AveragePool", "LpPool", "SumPool"].contains(&op.as_str());
    if text.contains("Undetermined symbol") && pool {
        // tract sizes a pool by its channel count, which must be a number: the axis of free
        // length is the channel axis (a 1-D MaxPool or AveragePool is typed over a channel of
        // one instead, src/passes/channel_pools.rs; this is the rest).
        return format!(
            "takes the {axis} axis as its channel axis, and tract can only build this pool for \
             a fixed number of channels, so it cannot be streamed; pooling the features with \
             F.max_pool2d(x.unsqueeze(1), (1, k)).squeeze(1) computes the same and streams"
        );
    }
    if text.contains("Undetermined symbol") {
        return format!(
            "needs the length of the whole {axis} axis (a size computed from it), which a \
             stream sees only a chunk of"
        );
    }
    if text.contains("Reshape volume mismatch") || text.contains("volume mismatch") {
        return format!(
            "reshapes with sizes written for one length of the {axis} axis (a length folded \
             into another dimension, or written into the reshape's target), which a stream \
             cannot split into chunks"
        );
    }
    if let Some((a, b)) = unify(cause) {
        return if text.contains("rank") {
            format!("gets an input of rank {a} where it takes rank {b} (with the {axis} axis free)")
        } else {
            format!("gets a size of {a} where it needs {b} (with the {axis} axis free)")
        };
    }
    if text.contains("Clashing resolution") {
        return format!("gets sizes that disagree once the {axis} axis is free");
    }
    format!(
        "cannot be typed with the {axis} axis free ({})",
        scrub(cause)
    )
}

/// `A` and `B` of tract's "Impossible to unify A with B".
fn unify(cause: &str) -> Option<(String, String)> {
    let rest = &cause[cause.find("Impossible to unify ")? + "Impossible to unify ".len()..];
    let (a, b) = rest.split_once(" with ")?;
    Some((scrub(a), scrub(b.trim_end_matches('.'))))
}

/// tract's symbolic-dimension spellings (`Sym(S)`, `Val(3)`) and node numbers (`#18`) as a
/// user reads them.
fn scrub(text: &str) -> String {
    let mut out = text.replace("Sym(", "(").replace("Val(", "(");
    while let Some(at) = out.find('#') {
        let end = out[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .map(|e| at + 1 + e)
            .unwrap_or(out.len());
        out.replace_range(at..end, "");
    }
    out.replace(crate::symbols::STREAM_SEQ, "the chunk's length")
        .replace(crate::symbols::POOL_BATCH, "the number of streams")
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn a_node_that_cannot_take_the_inputs_is_named_with_the_sizes() {
        let text = "Failed analyse for node #13 \"td/stack.rejoined.reshape\" Reshape: Infering \
                    facts: Applying rule GivenRule { (inputs[0].shape, inputs[1]) }: Reshaping \
                    [Val(3), Val(2), Val(6)] to [Val(5), Val(0), Val(0)]: Reshape volume \
                    mismatch: input [Val(3), Val(2), Val(6)] (vol=36) vs shape [Val(5), \
                    Val(2), Val(6)] (vol=60)";
        assert_eq!(
            super::for_inputs(text).unwrap(),
            "node 'td/stack.rejoined.reshape' (Reshape) cannot take these inputs: input [3, 2, \
             6] (volume 36) vs shape [5, 2, 6] (volume 60)"
        );
        assert_eq!(super::for_inputs("some other failure"), None);
        let text = "Failed analyse for node #9 \"td/squeeze_3\" Squeeze13: Infering facts: \
                    Applying rule GivenRule { axes: Some([0]) }, [0, 2, 6]";
        assert_eq!(
            super::for_inputs(text).unwrap(),
            "node 'td/squeeze_3' (Squeeze) cannot take inputs of these shapes"
        );
    }

    #[test]
    fn tract_analyser_text_becomes_a_node_and_a_reason() {
        let text = "the graph does not type with a free time axis (Failed analyse for node #7 \
                    \"/Slice\" StridedSlice: Infering facts: Applying rule GivenAllRule { .. }: \
                    Streaming dimensions with strides are not supported for now)";
        assert_eq!(
            plain(text, "time"),
            "node '/Slice' (Slice) reverses or strides the time axis (a Slice with a \
             step other than 1, as a flip is written), which needs the whole sequence"
        );
        let text = "Failed analyse for node #114 \"/model/decoder/If_1\" If: Infering facts: \
                    Failed analyse for node #76 \"/model/decoder/rnn/LSTM\" NativeLSTM: \
                    Applying rule inputs[0].rank == 3: Impossible to unify 5 with 3.";
        assert_eq!(
            plain(text, "batch"),
            "node '/model/decoder/rnn/LSTM' (LSTM) gets an input of rank 5 where it takes rank \
             3 (with the batch axis free)"
        );
        let text = "Reshape volume mismatch: input [Val(2), Sym(stream_seq), Val(3)]";
        assert!(!plain(text, "time").contains("Sym("));
    }
}
