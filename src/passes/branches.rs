//! ONNX `If`: only the branch taken.
//!
//! tract's own `If` analyses and types both branches and requires their outputs to agree. Real
//! exports break that: PyTorch's Silero VAD picks between `[batch, 1, seq+192]` and `[batch, 1,
//! 1, seq+192]` on the input's rank, and its spox export nests `If`s on the sample rate whose
//! untaken branches cannot even be analysed for the actual inputs. onnxruntime runs only the
//! branch taken; so does this op:
//!
//! - when the condition is known once the graph is specialized to its inputs (a shape, a rank,
//!   a sample-rate input), only the taken branch is analysed, and typing inlines its nodes in
//!   place of the `If` (recurrent nodes inside stay native: the same parsers serve subgraphs);
//! - when it truly depends on data, both branches are typed, and if their outputs agree the
//!   branch is chosen at run time ([`RuntimeIf`], each branch planned once); if they do not,
//!   the model is refused with the `If` named and what its condition depends on.

use std::sync::Arc;

use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParseResult, ParsingContext};
use tract_onnx::pb::NodeProto;

/// Replaces tract's parser for `If`.
pub fn register(onnx: &mut Onnx) {
    onnx.op_register.insert("If", parse_if);
}

fn parse_if(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let graph = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.g.as_ref())
            .with_context(|| format!("If node '{}' has no {name} graph", node.name))
    };
    let ParseResult {
        model: mut then_body,
        unresolved_inputs: then_outer,
        ..
    } = ctx.parse_graph(graph("then_branch")?)?;
    let ParseResult {
        model: mut else_body,
        unresolved_inputs: else_outer,
        ..
    } = ctx.parse_graph(graph("else_branch")?)?;
    super::names::make_unique(&mut then_body);
    super::names::make_unique(&mut else_body);
    // The If node's inputs: the condition, then every outer value either branch reads.
    let mut outer: Vec<String> = then_outer.iter().chain(&else_outer).cloned().collect();
    outer.sort();
    outer.dedup();
    let position = |name: &String| outer.iter().position(|o| o == name).unwrap() + 1;
    let op = BranchIf {
        name: node.name.clone(),
        then_branch: Branch {
            mapping: then_outer.iter().map(position).collect(),
            body: then_body,
        },
        else_branch: Branch {
            mapping: else_outer.iter().map(position).collect(),
            body: else_body,
        },
    };
    if op.then_branch.body.outputs.len() != op.else_branch.body.outputs.len() {
        bail!(
            "If node '{}': then_branch has {} outputs, else_branch {}",
            node.name,
            op.then_branch.body.outputs.len(),
            op.else_branch.body.outputs.len()
        );
    }
    Ok((Box::new(op), outer))
}

/// One branch: its graph, and for each of its inputs the If node's input that feeds it.
#[derive(Debug, Clone)]
struct Branch {
    body: InferenceModel,
    mapping: Vec<usize>,
}

impl Branch {
    /// Unifies the branch's inputs with the If node's; true when anything changed.
    fn unify_inputs(&mut self, inputs: &mut [InferenceFact]) -> TractResult<bool> {
        let mut changed = false;
        for (body_ix, &outer_ix) in self.mapping.iter().enumerate() {
            changed |= self
                .body
                .input_fact_mut(body_ix)?
                .unify_with_mut(&mut inputs[outer_ix])?;
        }
        Ok(changed)
    }
}

/// The inference-time `If`.
#[derive(Debug, Clone)]
struct BranchIf {
    name: String,
    then_branch: Branch,
    else_branch: Branch,
}

impl BranchIf {
    fn branch(&self, cond: bool) -> &Branch {
        if cond {
            &self.then_branch
        } else {
            &self.else_branch
        }
    }
}

impl PartialEq for BranchIf {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for BranchIf {}

impl Op for BranchIf {
    fn name(&self) -> StaticName {
        "If".into()
    }

    not_a_typed_op!();
}

impl EvalOp for BranchIf {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let cond = inputs[0].cast_to_scalar::<bool>()?;
        let branch = self.branch(cond);
        let inputs: TVec<TValue> = branch.mapping.iter().map(|&i| inputs[i].clone()).collect();
        branch.body.clone().into_runnable()?.run(inputs)
    }
}

impl InferenceOp for BranchIf {
    fn infer_facts(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<(
        TVec<InferenceFact>,
        TVec<InferenceFact>,
        TVec<InferenceFact>,
    )> {
        let mut inputs: TVec<InferenceFact> = inputs.into_iter().cloned().collect();
        let mut outputs: TVec<InferenceFact> = outputs.into_iter().cloned().collect();
        inputs[0]
            .datum_type
            .unify_with(&bool::datum_type().into())?;
        let cond = inputs[0]
            .value
            .concretize()
            .map(|c| c.cast_to_scalar::<bool>())
            .transpose()?;
        loop {
            let mut changed = false;
            match cond {
                Some(cond) => {
                    // Only the branch taken is analysed: the other may not even be valid for
                    // these inputs (it was written for another rank or sample rate).
                    let branch = if cond {
                        &mut self.then_branch
                    } else {
                        &mut self.else_branch
                    };
                    changed |= branch.unify_inputs(&mut inputs)?;
                    changed |= branch.body.analyse(false)?;
                    for ix in 0..outputs.len() {
                        changed |= branch
                            .body
                            .output_fact_mut(ix)?
                            .unify_with_mut(&mut outputs[ix])?;
                    }
                }
                None => {
                    // Not known yet (or known only when the graph runs): analyse both as far
                    // as they go, and tell the outputs only what both branches agree on.
                    for branch in [&mut self.then_branch, &mut self.else_branch] {
                        changed |= branch.unify_inputs(&mut inputs)?;
                        changed |= branch.body.analyse(true).unwrap_or(false);
                    }
                    for (ix, output) in outputs.iter_mut().enumerate() {
                        let then_fact = self.then_branch.body.output_fact(ix)?;
                        let else_fact = self.else_branch.body.output_fact(ix)?;
                        if let Ok(both) = then_fact.unify(else_fact) {
                            if both == *then_fact && both == *else_fact {
                                changed |= output.unify_with(&both)?;
                            }
                        }
                    }
                }
            }
            if !changed {
                return Ok((inputs, outputs, observed.into_iter().cloned().collect()));
            }
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.then_branch.body.outputs.len())
    }

    fn to_typed(
        &self,
        source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let outer: TVec<OutletId> = node.inputs.iter().map(|o| mapping[o]).collect();
        let known = source
            .outlet_fact(node.inputs[0])?
            .value
            .concretize()
            .or_else(|| {
                target
                    .outlet_fact(outer[0])
                    .ok()
                    .and_then(|f| f.konst.clone())
            });
        if let Some(cond) = known {
            let branch = self.branch(cond.cast_to_scalar::<bool>()?);
            let body =
                branch.body.clone().into_typed().with_context(|| {
                    format!("typing the branch taken by If node '{}'", self.name)
                })?;
            let inputs: TVec<OutletId> = branch.mapping.iter().map(|&i| outer[i]).collect();
            return inline(&body, &inputs, target);
        }
        let typed = |branch: &Branch, which: &str| {
            branch.body.clone().into_typed().with_context(|| {
                format!(
                    "If node '{}' {}: its {which} branch cannot be typed",
                    self.name,
                    depends_on(source, node.inputs[0])
                )
            })
        };
        let then_body = typed(&self.then_branch, "then")?;
        let else_body = typed(&self.else_branch, "else")?;
        for ix in 0..then_body.outputs.len() {
            let (a, b) = (then_body.output_fact(ix)?, else_body.output_fact(ix)?);
            if a.datum_type != b.datum_type || a.shape != b.shape {
                bail!(
                    "If node '{}' {}, and its branches produce different outputs ({:?} {} \
                     against {:?} {}), so the graph cannot be typed before it runs",
                    self.name,
                    depends_on(source, node.inputs[0]),
                    a.datum_type,
                    crate::error::shape_string(a.shape.iter()),
                    b.datum_type,
                    crate::error::shape_string(b.shape.iter()),
                );
            }
        }
        let op = RuntimeIf::new(
            &self.name,
            (then_body, self.then_branch.mapping.clone()),
            (else_body, self.else_branch.mapping.clone()),
        )?;
        target.wire_node(&node.name, op, &outer)
    }

    as_op!();
}

/// Wires `body`'s nodes into `target`, its inputs fed by `inputs`; returns its outputs.
fn inline(
    body: &TypedModel,
    inputs: &[OutletId],
    target: &mut TypedModel,
) -> TractResult<TVec<OutletId>> {
    let mut wired: HashMap<OutletId, OutletId> = HashMap::default();
    for (outlet, &feed) in body.input_outlets()?.iter().zip(inputs) {
        wired.insert(*outlet, feed);
    }
    for id in body.eval_order()? {
        let node = body.node(id);
        if TypedModel::is_source(&node.op) {
            continue;
        }
        let node_inputs: TVec<OutletId> = node.inputs.iter().map(|o| wired[o]).collect();
        let name = target.unique_name(&*node.name).into_owned();
        let outputs = target.wire_node(name, node.op.clone(), &node_inputs)?;
        for (slot, outlet) in outputs.into_iter().enumerate() {
            wired.insert(OutletId::new(id, slot), outlet);
        }
    }
    body.outputs.iter().map(|o| Ok(wired[o])).collect()
}

/// "whose condition depends on input 'x' (through 'Less')": the graph inputs upstream of the
/// condition, and the nearest node that computes it.
fn depends_on(model: &InferenceModel, cond: OutletId) -> String {
    let mut inputs = vec![];
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![cond.node];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let node = model.node(id);
        if InferenceModel::is_source(&node.op) {
            inputs.push(format!("'{}'", node.name));
        }
        todo.extend(node.inputs.iter().map(|o| o.node));
    }
    inputs.sort();
    let by = &model.node(cond.node).name;
    match inputs.len() {
        0 => format!("has a condition computed by '{by}' that is not known before running"),
        _ => format!(
            "has a condition computed by '{by}' from the values of {}, known only when the \
             graph runs",
            inputs.join(", ")
        ),
    }
}

/// An `If` chosen at run time, when its condition depends on data; both branches are planned
/// once, here, rather than on every evaluation.
#[derive(Debug, Clone)]
pub struct RuntimeIf {
    name: String,
    branches: [(Arc<TypedSimplePlan>, Vec<usize>); 2],
}

impl RuntimeIf {
    fn new(
        name: &str,
        then_branch: (TypedModel, Vec<usize>),
        else_branch: (TypedModel, Vec<usize>),
    ) -> TractResult<RuntimeIf> {
        let plan = |(body, mapping): (TypedModel, Vec<usize>)| -> TractResult<_> {
            let body = body
                .clone()
                .into_optimized()
                .or_else(|_| Ok::<_, TractError>(body))?;
            Ok((SimplePlan::new(body)?, mapping))
        };
        Ok(RuntimeIf {
            name: name.to_string(),
            branches: [plan(then_branch)?, plan(else_branch)?],
        })
    }

    fn then_body(&self) -> &TypedModel {
        self.branches[0].0.model()
    }
}

impl PartialEq for RuntimeIf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.branches[0].0, &other.branches[0].0)
            && Arc::ptr_eq(&self.branches[1].0, &other.branches[1].0)
    }
}
impl Eq for RuntimeIf {}

impl Op for RuntimeIf {
    fn name(&self) -> StaticName {
        "If".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("'{}', branch chosen at run time", self.name)])
    }

    op_as_typed_op!();
}

impl EvalOp for RuntimeIf {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let cond = inputs[0].cast_to_scalar::<bool>()?;
        let (plan, mapping) = &self.branches[if cond { 0 } else { 1 }];
        let inputs: TVec<TValue> = mapping.iter().map(|&i| inputs[i].clone()).collect();
        plan.run(inputs)
    }
}

impl TypedOp for RuntimeIf {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let body = self.then_body();
        (0..body.outputs.len())
            .map(|ix| Ok(body.output_fact(ix)?.without_value()))
            .collect()
    }

    as_op!();
}
