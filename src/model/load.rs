//! Loading: the protobuf decoded and checked, rewritten where tract would misread it, parsed by
//! tract, typed with the declared shapes and described.

use std::path::PathBuf;
use std::sync::Arc;

use tract_hir::internal::*;
use tract_onnx::pb::GraphProto;

use super::plan::{check_tensor_sizes, describe_io, type_graph, Native};
use super::*;

impl Model {
    /// What every constructor comes down to: `bytes` read from `source`, external data
    /// looked up in `dir`.
    pub(super) fn from_parts(
        bytes: &[u8],
        source: String,
        dir: Option<PathBuf>,
        options: &LoadOptions,
    ) -> Result<Model> {
        let invalid = |message: String| Error::InvalidModel {
            what: source.clone(),
            message,
        };
        let mut proto = crate::sniff::decode_model(bytes).map_err(invalid)?;
        crate::passes::slice_bounds::normalize(&mut proto);
        let info = ModelInfo::from_proto(&proto)?;

        let mut onnx = tract_onnx::onnx();
        // Exporters write symbolic shapes into value_info that can contradict the concrete
        // facts tract derives; the graph's own inputs and ops are the truth.
        onnx.ignore_value_info = true;
        if options.engine == Engine::Native {
            crate::op::register(&mut onnx);
            crate::qlstm::register(&mut onnx);
            crate::qint::register(&mut onnx);
        }
        crate::passes::branches::register(&mut onnx);
        crate::passes::pad::register(&mut onnx);
        crate::passes::slice_clamp::register(&mut onnx);
        let graph = proto.graph.as_ref().expect("decode_model checks the graph");
        crate::precheck::check_model(&proto, graph, dir.as_deref()).map_err(invalid)?;
        crate::sniff::name_unnamed_nodes(&mut proto);
        crate::passes::identity::remove_identities(&mut proto);
        crate::passes::unrolled_dense::rejoin(&mut proto);
        let graph = proto.graph.as_ref().expect("decode_model checks the graph");
        let dir_str = dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        let mut parsed = without_panics(|| onnx.parse(&proto, dir_str.as_deref()))
            .map_err(|what| invalid(format!("tract failed while reading the graph ({what})")))?
            .map_err(|e| Error::from_tract(e, |m| invalid(plain_build_message(&m))))?;
        // ONNX does not require node names to be unique; tract's graphs do.
        crate::passes::names::make_unique(&mut parsed.model);
        if !parsed.unresolved_inputs.is_empty() {
            return Err(invalid(format!(
                "nodes refer to tensors no node produces: {}",
                parsed.unresolved_inputs.join(", ")
            )));
        }
        refuse_unknown_ops(&parsed.model, graph).map_err(invalid)?;
        // Before typing, where tract would narrow shape values and pick among duplicates.
        crate::precheck::check_graph(&proto, graph).map_err(invalid)?;
        let shape_flow = Arc::new(ShapeFlow::of(graph));
        let inference = Arc::new(parsed.model);
        let native = Native {
            threads: match options.threads {
                0 | 1 => None,
                n => Some(Arc::new(Threads::new(n).map_err(Error::Run)?)),
            },
            recurrent_weights: options.recurrent_weights,
        };

        // Typing with the declared shapes checks the recurrent nodes against their inputs
        // (a refusal there is the model's fault, reported now) and describes the inputs and
        // outputs; where tract gives up for want of concrete shapes, runs specialize anyway.
        let symbolic = match without_panics(|| {
            shape_flow.check(&inference)?;
            type_graph(InferenceModel::clone(&inference), &native)
        }) {
            Ok(Ok(typed)) => {
                check_tensor_sizes(&typed).map_err(invalid)?;
                Ok(Arc::new(typed))
            }
            Ok(Err(e)) => match Error::from_tract(e, Error::Run) {
                Error::Run(why) => Err(why),
                node_error => return Err(node_error),
            },
            Err(panic) => Err(format!("tract failed while typing the graph ({panic})")),
        };

        let recurrent = info
            .recurrent
            .iter()
            .map(|found| {
                let typed = symbolic.as_ref().ok().and_then(|typed| {
                    typed.nodes().iter().find_map(|n| {
                        n.op_as::<NativeRecurrent>()
                            .filter(|op| op.spec().name == found.spec.name)
                    })
                });
                RecurrentNode {
                    engine: options.engine,
                    weights_prepared: options.engine == Engine::Native
                        && typed.map_or(found.constant_weights, |op| op.weights_prepared()),
                    spec: found.spec.clone(),
                    subgraph: found.subgraph.clone(),
                    quantized: found.quantized,
                }
            })
            .collect();

        let (mut inputs, mut outputs) = match &symbolic {
            Ok(typed) => describe_io(typed).map_err(|e| invalid(chain_message(&e)))?,
            Err(_) => (info.inputs.clone(), info.outputs.clone()),
        };
        // tract's clean-up can move a label from a no-op node onto a graph input (a dynamo
        // export's `h0` showed up as `val_4`); the ONNX graph's own names are the contract.
        for (infos, declared) in [(&mut inputs, &info.inputs), (&mut outputs, &info.outputs)] {
            if infos.len() == declared.len() {
                for (info, declared) in infos.iter_mut().zip(declared) {
                    info.name = declared.name.clone();
                }
            }
        }
        let capacity = match options.plan_cache {
            0 => DEFAULT_PLAN_CACHE,
            n => n,
        };
        Ok(Model {
            source,
            engine: options.engine,
            info,
            inputs,
            outputs,
            recurrent,
            inference,
            symbolic,
            plans: Arc::new(PlanCache::new(capacity)),
            overridable: Arc::new(crate::defaults::Overridable::new(capacity)),
            native,
            shape_flow,
        })
    }
}

/// Refuses a graph whose outputs need an operator that neither tract nor rnn-run implements,
/// naming the node and its domain, now rather than at the first run. (Branches of an `If`
/// are not checked: an unknown op in a branch never taken does no harm.)
fn refuse_unknown_ops(
    model: &InferenceModel,
    graph: &GraphProto,
) -> std::result::Result<(), String> {
    for id in model.eval_order().map_err(|e| chain_message(&e))? {
        let node = &model.nodes()[id];
        let name = node.op.name();
        let Some(op) = name
            .strip_prefix("Unimplemented(")
            .and_then(|n| n.strip_suffix(')'))
        else {
            continue;
        };
        let domain = graph
            .node
            .iter()
            .find(|n| n.name == node.name)
            .map(|n| n.domain.as_str())
            .filter(|d| !d.is_empty() && *d != "ai.onnx");
        let what = match domain {
            Some(d) => format!("{d} {op}"),
            None => op.to_string(),
        };
        let hint = match domain {
            Some("com.microsoft") => {
                ", an onnxruntime-only operator (the model was probably optimized or \
                 quantized for onnxruntime: run rnn-run on the float model it came from)"
            }
            _ => "",
        };
        return Err(format!(
            "node '{}' ({what}) is not an operator rnn-run or tract can run{hint}",
            node.name
        ));
    }
    Ok(())
}

/// tract's "Building node k (Cast): Node k (Cast): expected attribute 'to'" as "node 'k'
/// (Cast): expected attribute 'to'", as our own messages name nodes.
fn plain_build_message(text: &str) -> String {
    let Some(rest) = text.strip_prefix("Building node ") else {
        return text.to_string();
    };
    let Some((head, tail)) = rest.split_once("): ") else {
        return text.to_string();
    };
    let Some((name, op)) = head.rsplit_once(" (") else {
        return text.to_string();
    };
    let tail = tail
        .strip_prefix(&format!("Node {name} ({op}): "))
        .unwrap_or(tail);
    format!("node '{name}' ({op}): {tail}")
}
