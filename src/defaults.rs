//! Graph inputs that are initializers too: since ONNX IR version 4, the initializer is a
//! default the caller may override.
//!
//! The model's own graph keeps them as constants, so that weights exported this way
//! (`keep_initializers_as_inputs`) are still prepared once, and streams and pools see them
//! constant. A run that overrides some of them gets a graph where those are inputs, made once
//! per set of overridden defaults and planned by shapes like the model's own graph.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tract_hir::internal::*;

use crate::io_info::IoInfo;
use crate::passes::specialize::PlanCache;

/// The graph with some defaults turned into inputs (after the model's own inputs, in the
/// order of [`crate::Model::defaults`]), and its plans.
#[derive(Debug)]
pub(crate) struct Overriding {
    pub inference: InferenceModel,
    pub plans: PlanCache,
}

/// One [`Overriding`] per set of overridden defaults, shared by a model's clones.
#[derive(Debug)]
pub(crate) struct Overridable {
    graphs: Mutex<HashMap<Vec<usize>, Arc<Overriding>>>,
    plan_capacity: usize,
}

impl Overridable {
    pub fn new(plan_capacity: usize) -> Overridable {
        Overridable {
            graphs: Mutex::new(HashMap::new()),
            plan_capacity,
        }
    }

    /// The graph of `model` in which the defaults at positions `which` (ascending) are inputs.
    pub fn graph(
        &self,
        model: &InferenceModel,
        defaults: &[IoInfo],
        which: &[usize],
    ) -> TractResult<Arc<Overriding>> {
        let mut graphs = self.graphs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = graphs.get(which) {
            return Ok(g.clone());
        }
        let mut inference = model.clone();
        for &ix in which {
            let name = &defaults[ix].name;
            // tract-onnx makes an initializer listed as an input a constant node of its name.
            let id = inference
                .node_by_name(name)
                .with_context(|| format!("the constant for input '{name}'"))?
                .id;
            ensure!(
                inference.node(id).op_is::<tract_core::ops::konst::Const>(),
                "input '{name}' is not a constant of the graph"
            );
            inference.node_mut(id).op = Box::new(tract_hir::ops::source::Source::new());
            inference.set_outlet_fact(OutletId::new(id, 0), InferenceFact::default())?;
            inference.inputs.push(OutletId::new(id, 0));
        }
        let g = Arc::new(Overriding {
            inference,
            plans: PlanCache::new(self.plan_capacity),
        });
        // A handful of override sets at most in practice; keep memory bounded regardless.
        if graphs.len() >= 16 {
            graphs.clear();
        }
        graphs.insert(which.to_vec(), g.clone());
        Ok(g)
    }
}
