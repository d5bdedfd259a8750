//! Specialization: the graph typed and optimized for the inputs it is actually given.
//!
//! tract's shape inference gives up on many real graphs while dimensions are symbolic or
//! undetermined (tf2onnx zero states, Reshape targets computed from shapes, TopK on a shape
//! value, a `Squeeze` without axes), and it optimizes convolutions over a symbolic axis far
//! less well. With every dimension concrete, the same graphs type, constant-fold and optimize.
//! So each run is served by a plan made for its *signature*: the element type and shape of
//! every input and, where the shapes alone leave the graph untypable or leave an `If` to choose
//! its branch at run time, the values of its small integer scalar inputs (a sample rate
//! choosing an `If` branch). Plans are cached by
//! signature, least recently used first out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tract_hir::internal::*;

/// Element type and shape of each input.
type Shapes = Vec<(DatumType, Vec<usize>)>;

/// What a plan is specialized to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Signature {
    shapes: Shapes,
    /// The values of the scalar integer inputs, when the plan depends on them.
    values: Option<Vec<Option<i64>>>,
}

/// A plan made for one signature.
#[derive(Debug)]
pub(crate) struct Specialized {
    pub plan: Arc<TypedSimplePlan>,
    /// The model's input positions the plan takes, in order (inputs folded into the graph
    /// as constants are not fed again).
    pub fed: Vec<usize>,
    /// How long typing and optimizing took.
    pub build_time: Duration,
}

/// How the plan cache has been used, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Plans held now.
    pub cached: usize,
    /// The most plans held at once before the least recently used is dropped.
    pub capacity: usize,
    /// Plans built since the model was loaded.
    pub built: usize,
    /// Runs served by a cached plan.
    pub hits: usize,
    /// Plans dropped to make room.
    pub evicted: usize,
}

/// Plans by signature, bounded, shared by every clone of a model and every thread.
#[derive(Debug)]
pub(crate) struct PlanCache {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Most recently used last.
    plans: VecDeque<(Signature, Arc<Specialized>)>,
    /// Shapes for which the graph types only once scalar input values are folded in, or
    /// for which folding them settles an `If` that would otherwise choose at run time.
    needs_values: HashSet<Shapes>,
    /// Of the latter, how many plans per value have been built ([`GAVE_UP`]: too many, the
    /// `If` chooses at run time).
    by_choice: HashMap<Shapes, usize>,
    stats: PlanStats,
}

/// Plans per value built for one signature of shapes where shapes alone would do, before a
/// scalar that keeps changing (a step counter, not a sample rate) is left to the run-time
/// `If` instead of costing a plan per call.
const VALUE_PLANS: usize = 4;
const GAVE_UP: usize = usize::MAX;

impl PlanCache {
    pub fn new(capacity: usize) -> PlanCache {
        PlanCache {
            inner: Mutex::new(Inner {
                plans: VecDeque::new(),
                needs_values: HashSet::new(),
                by_choice: HashMap::new(),
                stats: PlanStats {
                    capacity: capacity.max(1),
                    ..PlanStats::default()
                },
            }),
        }
    }

    pub fn stats(&self) -> PlanStats {
        let inner = self.lock();
        PlanStats {
            cached: inner.plans.len(),
            ..inner.stats
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves nothing half-done (entries are pushed whole).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plan for `inputs`, built by `build` when no cached plan fits. `build` receives the
    /// parsed model specialized to the inputs (see [`specialize`]) and returns the typed,
    /// optimized graph; `ready`, when given, builds it instead from a graph typed already for
    /// exactly these inputs (tried first, with every input fed). The second value is true
    /// when the plan was built by this call.
    pub fn get_or_build(
        &self,
        inference: &InferenceModel,
        inputs: &[Tensor],
        build: impl Fn(InferenceModel) -> TractResult<TypedModel>,
        ready: Option<impl Fn() -> TractResult<TypedModel>>,
    ) -> TractResult<(Arc<Specialized>, bool)> {
        let shapes: Shapes = inputs
            .iter()
            .map(|t| (t.datum_type(), t.shape().to_vec()))
            .collect();
        let (with_values, by_choice) = {
            let mut inner = self.lock();
            if let Some(n) = inner.by_choice.get_mut(&shapes) {
                if *n != GAVE_UP && *n >= VALUE_PLANS {
                    *n = GAVE_UP;
                    inner.needs_values.remove(&shapes);
                }
            }
            let by_choice = inner.by_choice.get(&shapes).copied();
            (inner.needs_values.contains(&shapes), by_choice)
        };
        let signature = signature(&shapes, inputs, with_values);
        if let Some(plan) = self.lookup(&signature) {
            return Ok((plan, false));
        }
        let start = Instant::now();
        let attempt = |fold: bool| -> TractResult<(TypedModel, Vec<usize>)> {
            if let (false, Some(ready)) = (fold, &ready) {
                if let Ok(typed) = ready() {
                    return Ok((typed, (0..inputs.len()).collect()));
                }
            }
            let (model, fed) = specialize(inference, inputs, fold)?;
            Ok((build(model)?, fed))
        };
        let (typed, fed, signature) = match with_values {
            true => {
                let (typed, fed) = attempt(true)?;
                if let Some(n) = self.lock().by_choice.get_mut(&shapes) {
                    *n = n.saturating_add(1);
                }
                (typed, fed, signature)
            }
            false => match attempt(false) {
                // Typed on shapes, but an `If` is left to choose its branch on every run
                // (Silero v4 on its sample rate): when the scalar inputs' values settle it,
                // plan for those values instead, so the branch taken is inlined and
                // optimized with the rest (the run-time `If` ran its whole body as a
                // separate plan, without rnn-run's passes: 1.19x onnxruntime).
                Ok((typed, fed))
                    if has_runtime_if(&typed)
                        && inputs.iter().any(is_scalar_integer)
                        && by_choice != Some(GAVE_UP) =>
                {
                    match attempt(true) {
                        Ok((folded, fed)) if !has_runtime_if(&folded) => {
                            let mut inner = self.lock();
                            inner.needs_values.insert(shapes.clone());
                            inner.by_choice.insert(shapes.clone(), 1);
                            (folded, fed, self::signature(&shapes, inputs, true))
                        }
                        _ => (typed, fed, signature),
                    }
                }
                Ok((typed, fed)) => (typed, fed, signature),
                // Shapes alone were not enough: fold the scalar inputs' values in (an `If` on
                // the sample rate), and remember that these shapes need them.
                Err(_) if inputs.iter().any(is_scalar_integer) => {
                    let (typed, fed) = attempt(true)?;
                    self.lock().needs_values.insert(shapes.clone());
                    (typed, fed, self::signature(&shapes, inputs, true))
                }
                Err(e) => return Err(e),
            },
        };
        let plan = Arc::new(Specialized {
            plan: SimplePlan::new(typed)?,
            fed,
            build_time: start.elapsed(),
        });
        let mut inner = self.lock();
        inner.stats.built += 1;
        if let Some(pos) = inner.plans.iter().position(|(s, _)| *s == signature) {
            // Another thread built it meanwhile: keep one.
            inner.plans.remove(pos);
        }
        inner.plans.push_back((signature, plan.clone()));
        while inner.plans.len() > inner.stats.capacity {
            inner.plans.pop_front();
            inner.stats.evicted += 1;
        }
        Ok((plan, true))
    }

    fn lookup(&self, signature: &Signature) -> Option<Arc<Specialized>> {
        let mut inner = self.lock();
        let pos = inner.plans.iter().position(|(s, _)| s == signature)?;
        let entry = inner.plans.remove(pos)?;
        let plan = entry.1.clone();
        inner.plans.push_back(entry);
        inner.stats.hits += 1;
        Some(plan)
    }
}

/// Whether `model` chooses an `If` branch at run time.
fn has_runtime_if(model: &TypedModel) -> bool {
    model
        .nodes()
        .iter()
        .any(|n| n.op_is::<super::branches::RuntimeIf>())
}

fn signature(shapes: &Shapes, inputs: &[Tensor], with_values: bool) -> Signature {
    Signature {
        shapes: shapes.clone(),
        values: with_values.then(|| inputs.iter().map(scalar_integer).collect()),
    }
}

/// A rank-0 integer or boolean input: a sample rate, a mode switch.
fn is_scalar_integer(t: &Tensor) -> bool {
    scalar_integer(t).is_some()
}

pub(crate) fn scalar_integer(t: &Tensor) -> Option<i64> {
    if t.rank() != 0 || !(t.datum_type().is_integer() || t.datum_type() == DatumType::Bool) {
        return None;
    }
    t.cast_to_scalar::<i64>().ok()
}

/// The parsed model with every input's type and shape set to those of `inputs`, and, with
/// `fold_scalars`, its scalar integer inputs replaced by their values as constants. Returns
/// the model and the input positions it still takes.
pub(crate) fn specialize(
    inference: &InferenceModel,
    inputs: &[Tensor],
    fold_scalars: bool,
) -> TractResult<(InferenceModel, Vec<usize>)> {
    let mut model = inference.clone();
    let mut fed = vec![];
    for (ix, t) in inputs.iter().enumerate() {
        let outlet = inference.input_outlets()?[ix];
        if fold_scalars && is_scalar_integer(t) {
            let value = Arc::new(t.clone());
            model.node_mut(outlet.node).op =
                Box::new(tract_core::ops::konst::Const::new(value.clone())?);
            model.set_outlet_fact(outlet, InferenceFact::from(t.clone()))?;
        } else {
            model.set_input_fact(ix, InferenceFact::dt_shape(t.datum_type(), t.shape()))?;
            fed.push(ix);
        }
    }
    model.inputs = fed
        .iter()
        .map(|&ix| inference.input_outlets().map(|o| o[ix]))
        .collect::<TractResult<_>>()?;
    Ok((model, fed))
}
