//! Decoding a model file, and telling what a file is when it is not an ONNX model: a PyTorch
//! checkpoint, a pickle, safetensors, numpy arrays. The model loader says so instead of
//! "protobuf decoding failed", with what to do: export to ONNX, or load an
//! `nn.RNN`/`nn.LSTM`/`nn.GRU` state dict with [`crate::torch`].

use std::io::{Cursor, Read};

use prost::Message;
use tract_onnx::pb::ModelProto;

/// Decodes an ONNX model with a graph, or says in a sentence what the bytes are instead (the
/// message of [`crate::Error::InvalidModel`]). Shared by `Model` and `ModelInfo`.
pub(crate) fn decode_model(bytes: &[u8]) -> Result<ModelProto, String> {
    if bytes.is_empty() {
        return Err("the file is empty, expected an ONNX model".into());
    }
    let proto = ModelProto::decode(bytes).map_err(|e| {
        describe_non_onnx(bytes).unwrap_or_else(|| describe_decode_error(&e.to_string()))
    })?;
    match &proto.graph {
        None => Err("not an ONNX model: no graph in the protobuf".into()),
        Some(g) if g.node.is_empty() && g.output.is_empty() => {
            Err("not an ONNX model: the graph has no nodes and no outputs".into())
        }
        Some(_) => Ok(proto),
    }
}

/// Gives each unnamed node (subgraphs too) its first output's name, the name tract gives it
/// in its graph. For tract's eyes only: its messages name a node by the name in the file
/// ("Building node  (Constant)" for an unnamed one), and ours look nodes up by name.
pub(crate) fn name_unnamed_nodes(proto: &mut ModelProto) {
    if let Some(graph) = proto.graph.as_mut() {
        name_unnamed_in(graph);
    }
}

fn name_unnamed_in(graph: &mut tract_onnx::pb::GraphProto) {
    for node in &mut graph.node {
        if node.name.is_empty() {
            if let Some(first) = node.output.first().filter(|o| !o.is_empty()) {
                node.name = first.clone();
            }
        }
        for attr in &mut node.attribute {
            for g in attr.g.iter_mut().chain(&mut attr.graphs) {
                name_unnamed_in(g);
            }
        }
    }
}

/// prost's message ("failed to decode Protobuf message: ModelProto.graph: GraphProto.node:
/// …: invalid wire type") in a line: where in the model the bytes stop making sense. Nesting
/// deeper than prost's recursion limit (subgraph in subgraph, a hundred levels) repeats the
/// path a hundred times; it is said in words instead.
fn describe_decode_error(text: &str) -> String {
    let text = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(text);
    if text.ends_with("recursion limit reached") {
        let levels = text.matches("AttributeProto.g").count()
            + text.matches("AttributeProto.graphs").count();
        return format!(
            "not a usable ONNX model: its subgraphs (bodies of If, Loop or Scan nodes) are \
             nested {levels} or more levels deep, deeper than the ONNX protobuf can be decoded"
        );
    }
    // The path of fields (`ModelProto.graph: GraphProto.node: `), then what went wrong.
    let mut place = vec![];
    let mut reason = text;
    while let Some((head, rest)) = reason.split_once(": ") {
        let is_field = head.contains('.') && !head.contains(' ');
        if !is_field {
            break;
        }
        place.push(head);
        reason = rest;
    }
    if place.is_empty() {
        format!("not an ONNX model (protobuf decoding failed: {reason})")
    } else {
        format!(
            "not an ONNX model (protobuf decoding failed in {}: {reason})",
            place.join(" > ")
        )
    }
}

/// How PyTorch exports a model to ONNX, for the messages.
const EXPORT: &str =
    "export it with torch.onnx.export(model, example, \"model.onnx\", dynamo=False)";

/// How a recurrent module's state dict is loaded without ONNX, for the messages.
const TORCH_LOADER: &str = "the state dict of an nn.RNN, nn.LSTM or nn.GRU can be run without \
    ONNX by rnn_run::torch::TorchRecurrent: save it with \
    safetensors.torch.save_file(module.state_dict(), \"weights.safetensors\")";

/// Most bytes of a checkpoint's `data.pkl` looked at (parameter names are near its start).
const PICKLE_PEEK: u64 = 1 << 20;

/// What `bytes` are, with what to do, when they are recognisably not an ONNX model: a
/// PyTorch checkpoint (`torch.save`, a ZIP archive holding `<name>/data.pkl`), a TorchScript
/// archive, a legacy `torch.save` file or another Python pickle (protocol 2 to 5), a
/// safetensors file, a `.npy` or `.npz`. `None` for anything else: call it where decoding the
/// bytes as an ONNX protobuf failed, never on a model that decoded.
///
/// ```
/// let bytes = std::fs::read("fixtures/robustness/torch_lstm_state_dict.pt").unwrap();
/// let what = rnn_run::sniff::describe_non_onnx(&bytes).unwrap();
/// assert!(what.starts_with("not an ONNX model: a PyTorch checkpoint"));
/// assert!(what.contains("torch.onnx.export"));
/// ```
pub fn describe_non_onnx(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return describe_zip(bytes);
    }
    if let [0x80, protocol @ 2..=5, ..] = bytes {
        // torch.save's legacy format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
        const TORCH_MAGIC: &[u8] = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
        let legacy_torch = bytes[2..].starts_with(TORCH_MAGIC);
        let head = &bytes[..bytes.len().min(PICKLE_PEEK as usize)];
        return Some(if legacy_torch {
            format!(
                "not an ONNX model: a PyTorch checkpoint in torch.save's legacy format (a \
                 pickle){}",
                checkpoint_advice(head)
            )
        } else {
            format!(
                "not an ONNX model: a Python pickle (protocol {protocol}); for a PyTorch model, \
                 {EXPORT}"
            )
        });
    }
    if bytes.starts_with(b"\x93NUMPY") {
        return Some(
            "not an ONNX model: a numpy .npy array (inputs and references go after the model \
             on the command line)"
                .into(),
        );
    }
    if is_safetensors(bytes) {
        return Some(format!(
            "not an ONNX model: a safetensors file (weights, no graph); the state dict of an \
             nn.RNN, nn.LSTM or nn.GRU runs without ONNX with \
             rnn_run::torch::TorchRecurrent::from_safetensors; for another model, {EXPORT}"
        ));
    }
    None
}

/// A ZIP archive: a PyTorch checkpoint or TorchScript module, an `.npz`, or some other ZIP.
fn describe_zip(bytes: &[u8]) -> Option<String> {
    // The zip crate refuses some archives PyTorch writes (its central directory records say
    // "version 0"); the names are then read straight from the central directory's records,
    // and the pickle from the file's start, where torch.save puts data.pkl.
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).ok();
    let names: Vec<String> = match &archive {
        Some(a) => a
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect(),
        None => central_directory_names(bytes),
    };
    if names.is_empty() {
        return Some("not an ONNX model: a ZIP archive, and a damaged one".into());
    }
    let data_pkl = names
        .iter()
        .position(|n| n.ends_with("/data.pkl") || n == "data.pkl");
    if let Some(i) = data_pkl {
        let torchscript = names
            .iter()
            .any(|n| n.ends_with("/constants.pkl") || n.contains("/code/"));
        if torchscript {
            return Some(format!(
                "not an ONNX model: a TorchScript module (torch.jit.save: a ZIP archive holding \
                 {}); load it in Python with torch.jit.load and {EXPORT}",
                names[i]
            ));
        }
        let mut head = Vec::new();
        match archive.as_mut().map(|a| a.by_index(i)) {
            // Only the start is read: parameter names come first. A broken member reads as
            // nothing, which only loses the hint.
            Some(Ok(file)) => {
                let _ = file.take(PICKLE_PEEK).read_to_end(&mut head);
            }
            _ => head.extend_from_slice(&bytes[..bytes.len().min(PICKLE_PEEK as usize)]),
        }
        return Some(format!(
            "not an ONNX model: a PyTorch checkpoint (torch.save: a ZIP archive holding {}){}",
            names[i],
            checkpoint_advice(&head)
        ));
    }
    if !names.is_empty() && names.iter().all(|n| n.ends_with(".npy")) {
        return Some(
            "not an ONNX model: a numpy .npz archive (inputs and references go after the model \
             on the command line)"
                .into(),
        );
    }
    Some(format!(
        "not an ONNX model: a ZIP archive ({} member{})",
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    ))
}

/// The member names of a ZIP archive's central directory records (`PK\x01\x02`, the name's
/// length at offset 28, the name at 46), found by their signature; for naming what the file
/// is, not for reading it.
fn central_directory_names(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(4).position(|w| w == b"PK\x01\x02") {
        let p = at + found;
        let name = bytes
            .get(p + 28..p + 30)
            .map(|n| u16::from_le_bytes([n[0], n[1]]) as usize)
            .and_then(|len| bytes.get(p + 46..p + 46 + len))
            .and_then(|n| std::str::from_utf8(n).ok());
        if let Some(name) = name {
            names.push(name.to_string());
        }
        at = p + 4;
    }
    names
}

/// Whether a pickle's start names the parameters of a recurrent module.
fn has_recurrent_params(pickle: &[u8]) -> bool {
    contains(pickle, b"weight_ih_l0") && contains(pickle, b"weight_hh_l0")
}

/// What a checkpoint holds, when its pickle tells, and what to do with it: ` holding a state
/// dict (weights only); build the model, ... export it ...; it holds weight_ih_l0 ...`.
fn checkpoint_advice(pickle: &[u8]) -> String {
    // What the pickle builds first: an OrderedDict (a state dict), or a module (a class whose
    // instance carries `_parameters` and `_modules`; its own parameters sit in OrderedDicts
    // further on, so the first OrderedDict alone does not tell).
    let root = root_class(pickle);
    let is_module = contains(pickle, b"_parameters") && contains(pickle, b"_modules");
    let recurrent: Vec<&str> = ["RNN", "LSTM", "GRU"]
        .into_iter()
        .filter(|kind| {
            contains(pickle, format!("torch.nn.modules.rnn\n{kind}\n").as_bytes())
                || contains(pickle, &{
                    // Protocol 4: SHORT_BINUNICODE module, MEMOIZE, SHORT_BINUNICODE name.
                    let mut b = b"torch.nn.modules.rnn\x94\x8c".to_vec();
                    b.push(kind.len() as u8);
                    b.extend_from_slice(kind.as_bytes());
                    b
                })
        })
        .collect();
    match root.as_deref() {
        Some(class) if is_module && class != "collections.OrderedDict" => {
            return module_advice(class, &recurrent, pickle)
        }
        _ => {}
    }
    let state_dict = match root.as_deref() {
        Some(class) => class == "collections.OrderedDict",
        None => {
            let dict = find(pickle, b"collections\nOrderedDict")
                .into_iter()
                .chain(find(pickle, b"collections\x94\x8c\x0bOrderedDict"))
                .min();
            let module = find(pickle, b"torch.nn.modules");
            match (dict, module) {
                (Some(d), Some(m)) => d < m,
                (d, _) => d.is_some(),
            }
        }
    };
    let mut text = if state_dict {
        format!(
            " holding a state dict (weights only); build the model in Python, \
             model.load_state_dict(torch.load(path)), then {EXPORT}"
        )
    } else if is_module || contains(pickle, b"torch.nn.modules") {
        format!(" holding a whole module; {EXPORT}")
    } else {
        format!("; {EXPORT}")
    };
    if has_recurrent_params(pickle) {
        text.push_str(&format!(
            "; it holds weight_ih_l0 and weight_hh_l0{}: {TORCH_LOADER}",
            proj_note(pickle)
        ));
    }
    text
}

/// A whole pickled module (`torch.save(model)`): its class, what to do with it, and whether
/// [`crate::torch`] can run it (only when the module is itself an `nn.RNN`/`nn.LSTM`/`nn.GRU`).
fn module_advice(class: &str, recurrent: &[&str], pickle: &[u8]) -> String {
    let short = class.rsplit('.').next().unwrap_or(class);
    if let Some(kind) = class.strip_prefix("torch.nn.modules.rnn.") {
        return format!(
            " holding a whole module, an nn.{kind} (torch.save(model), not its state dict); \
             {EXPORT}; or run it without ONNX: an nn.{kind}{} runs on \
             rnn_run::torch::TorchRecurrent from its state dict, saved with \
             safetensors.torch.save_file(module.state_dict(), \"weights.safetensors\")",
            proj_note(pickle)
        );
    }
    let inside = match recurrent {
        [] => String::new(),
        kinds => format!(
            ", with {} inside",
            kinds
                .iter()
                .map(|k| format!("an nn.{k}"))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    let mut text = format!(
        " holding a whole pickled module, a {class}{inside} (torch.save(model), not a state \
         dict); rnn-run runs ONNX models: in Python, load it with torch.load(path, \
         weights_only=False) where the class {short} can be imported, then {EXPORT}; or save \
         its weights alone with torch.save(model.state_dict(), path)"
    );
    if !recurrent.is_empty() {
        text.push_str(&format!(
            "; rnn_run::torch::TorchRecurrent runs a lone nn.RNN, nn.LSTM or nn.GRU from its \
             state dict, so it would run only the recurrent part of {short}, not the whole model"
        ));
    }
    text
}

/// " (and weight_hr_l0: proj_size, ...)" when the pickle holds an LSTM projection.
fn proj_note(pickle: &[u8]) -> &'static str {
    if contains(pickle, b"weight_hr_l0") {
        " (and weight_hr_l0: proj_size, which ONNX cannot express)"
    } else {
        ""
    }
}

/// The class of the object a pickle builds first (`module.name`), when it opens with one: the
/// GLOBAL opcode of protocol 2 (`c` module `\n` name `\n`, what torch.save writes), or the two
/// short strings and STACK_GLOBAL of protocols 4 and 5. torch.save's legacy format pickles a
/// magic number, a version and a dict first: the first pickle that opens with a class is taken.
fn root_class(pickle: &[u8]) -> Option<String> {
    let ident = |b: &[u8]| -> Option<String> {
        let ok = !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.');
        ok.then(|| String::from_utf8_lossy(b).into_owned())
    };
    let mut at = 0;
    while let Some(found) = pickle
        .get(at..)?
        .windows(2)
        .position(|w| w[0] == 0x80 && (2..=5).contains(&w[1]))
    {
        let p = at + found + 2;
        let mut body = &pickle[p..];
        if body.first() == Some(&0x95) {
            body = body.get(9..)?; // FRAME and its 8-byte length
        }
        if let Some(rest) = body.strip_prefix(b"c") {
            let mut parts = rest.splitn(3, |c| *c == b'\n');
            if let (Some(m), Some(n), Some(_)) = (parts.next(), parts.next(), parts.next()) {
                if let (Some(m), Some(n)) = (ident(m), ident(n)) {
                    return Some(format!("{m}.{n}"));
                }
            }
        }
        let short = |b: &[u8]| -> Option<(String, usize)> {
            let len = *b.get(1)? as usize;
            if b.first() != Some(&0x8c) {
                return None;
            }
            let s = ident(b.get(2..2 + len)?)?;
            let skip = 2 + len + usize::from(b.get(2 + len) == Some(&0x94));
            Some((s, skip))
        };
        if let Some((m, skip)) = short(body) {
            if let Some((n, skip2)) = body.get(skip..).and_then(short) {
                if body.get(skip + skip2) == Some(&0x93) {
                    return Some(format!("{m}.{n}"));
                }
            }
        }
        at = p;
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A safetensors file: an 8-byte little-endian header length, then a JSON object that fits.
fn is_safetensors(bytes: &[u8]) -> bool {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return false;
    };
    let len = u64::from_le_bytes(*len);
    len >= 2 && len <= rest.len() as u64 && rest.first() == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn pytorch_checkpoints() {
        let what = describe_non_onnx(&fixture("robustness/torch_lstm_state_dict.pt")).unwrap();
        assert_eq!(
            what,
            "not an ONNX model: a PyTorch checkpoint (torch.save: a ZIP archive holding \
             torch_lstm_state_dict/data.pkl) holding a state dict (weights only); build the \
             model in Python, model.load_state_dict(torch.load(path)), then export it with \
             torch.onnx.export(model, example, \"model.onnx\", dynamo=False); it holds \
             weight_ih_l0 and weight_hh_l0: the state dict of an nn.RNN, nn.LSTM or nn.GRU can \
             be run without ONNX by rnn_run::torch::TorchRecurrent: save it with \
             safetensors.torch.save_file(module.state_dict(), \"weights.safetensors\")"
        );

        let what = describe_non_onnx(&fixture("robustness/torch_lstm_module.pt")).unwrap();
        assert!(what.contains("holding a whole module"), "{what}");
        assert!(what.contains("torch.onnx.export"), "{what}");

        // torch.save(model) of a Conv1d -> GRU -> Linear module: its pickle opens with the
        // class, and OrderedDicts (its hooks) come before any torch.nn class name.
        let what = describe_non_onnx(&fixture("robustness/torch_conv_gru_module.pt")).unwrap();
        assert!(
            what.contains(
                "holding a whole pickled module, a __main__.Denoiser, with an nn.GRU inside"
            ),
            "{what}"
        );
        assert!(!what.contains("state dict (weights only)"), "{what}");
        assert!(
            what.contains("only the recurrent part of Denoiser"),
            "{what}"
        );

        let what = describe_non_onnx(&fixture("robustness/torch_lstm_legacy.pt")).unwrap();
        assert!(
            what.starts_with(
                "not an ONNX model: a PyTorch checkpoint in torch.save's legacy format (a \
                 pickle) holding a state dict (weights only);"
            ),
            "{what}"
        );
        assert!(what.contains("rnn_run::torch::TorchRecurrent"), "{what}");
    }

    #[test]
    fn other_files() {
        let pickle = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.";
        assert!(describe_non_onnx(pickle)
            .unwrap()
            .contains("a Python pickle (protocol 4)"));
        let npz = fixture("npz/tutorial_lstm_inputs_compressed.npz");
        assert!(describe_non_onnx(&npz).unwrap().contains("numpy .npz"));
        let npy = fixture("tutorial/lstm_legacy/input_0.npy");
        assert!(describe_non_onnx(&npy).unwrap().contains("numpy .npy"));
        let st = fixture("torch_weights/lstm_l1/state_dict.safetensors");
        let what = describe_non_onnx(&st).unwrap();
        assert!(
            what.starts_with("not an ONNX model: a safetensors file"),
            "{what}"
        );
        assert!(what.contains("rnn_run::torch::TorchRecurrent"), "{what}");
        // An ONNX model, text, nothing: not recognised.
        let onnx = fixture("tutorial/lstm_legacy/model.onnx");
        assert_eq!(describe_non_onnx(&onnx), None);
        assert_eq!(describe_non_onnx(b"hello"), None);
        assert_eq!(describe_non_onnx(b""), None);
        // A damaged checkpoint is still said to be a ZIP archive, never a panic.
        let pt = fixture("robustness/torch_lstm_state_dict.pt");
        for cut in [4, 100, pt.len() / 2, pt.len() - 1] {
            assert!(describe_non_onnx(&pt[..cut]).is_some());
        }
    }
}
