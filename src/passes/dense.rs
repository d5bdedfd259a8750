//! Float products by a constant `[k, n]` matrix (the dense layers around recurrent nodes) onto
//! rnn-run's packed product, before tract's codegen lowers them.
//!
//! The linear layers of NSNet2 (161 → 400 → … → 600 → 161 over 100 frames) and of the
//! DeepFilterNet-like graphs (64 → 64 → 32 over 200 frames) are `MatMul` + `Add` (+ `Relu`) on
//! a few hundred rows. tract lowers each into an `OptMatMul` that packs its input on every run
//! (and, for some shapes, moves an axis first); its 16×12 kernel measured 33–48 GFLOP/s on
//! these shapes where the kernels of the recurrent input projection reach about 100 on the
//! same machine (AMD EPYC Zen 4). [`PackedMatMul`] packs the matrix once, when the plan is
//! made, and runs those kernels on the input rows as they are.
//!
//! Covered: an f32 `EinSum` that is a plain product over the input's last axis (`…k,kn->…n`)
//! by a constant matrix, axes of one element added or dropped around it; and products over
//! several axes or other ones by a constant `[…, n]` tensor (`abmk,bkn->amn`: tract folds a
//! bidirectional LSTM's `Transpose` and `Reshape` into the classifier after it), whose input
//! is first copied with the contracted axes last, in the weights' order (tract moves the axis
//! too, then packs the rows). A following `Add` of a constant row (`[n]`, leading axes of 1) and a
//! `Max`/`Min` by a constant scalar (ReLU, clip), each read by nothing else, are applied to
//! the output in one pass after the product, in that order, as ONNX computes them: the sums
//! are the product's alone, the bias added to them once. Everything else stays with tract.

use std::sync::Arc;

use ndarray::ArrayView2;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math::Add;
use tract_hir::internal::*;

use crate::conv::Clamp;
use crate::kernels::{gemm_packed, Init, Packed};

/// `y = clamp(x · b + bias)` over the last axis of `x`, `b` packed once.
#[derive(Debug, Clone)]
pub(crate) struct PackedMatMul {
    b: Arc<Packed<f32>>,
    /// `[n]`, or empty for none.
    bias: Arc<Vec<f32>>,
    /// The output's axes before the last: the axis of the permuted input each one is, or
    /// `None` for an axis of one element (the rows are the same, in the same order; only axes
    /// of 1 differ).
    axes: RowAxes,
    /// The input's axes in the order the product reads them: the row axes, then the
    /// contracted ones (`lead ..`), flattened into `k`; identity for `…k,kn->…n`.
    perm: TVec<usize>,
    /// How many of `perm` are row axes.
    lead: usize,
    clamp: Clamp,
}

impl PartialEq for PackedMatMul {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.clamp.lo.map(f32::to_bits) == other.clamp.lo.map(f32::to_bits)
            && self.clamp.hi.map(f32::to_bits) == other.clamp.hi.map(f32::to_bits)
            && self.axes == other.axes
            && self.perm == other.perm
            && self.lead == other.lead
            && (Arc::ptr_eq(&self.b, &other.b) || self.b == other.b)
            && (Arc::ptr_eq(&self.bias, &other.bias) || bits(&self.bias) == bits(&other.bias))
    }
}
impl Eq for PackedMatMul {}

impl PackedMatMul {
    fn k(&self) -> usize {
        self.b.rows()
    }

    fn n(&self) -> usize {
        self.b.cols()
    }

    /// The output's shape for an input of shape `x`.
    fn output_shape<D: Clone>(&self, x: &[D], one: D, n: D) -> TVec<D> {
        let lead = self
            .axes
            .iter()
            .map(|a| a.map_or(one.clone(), |a| x[self.perm[a]].clone()));
        lead.chain([n]).collect()
    }

    fn identity(&self) -> bool {
        self.perm.iter().enumerate().all(|(i, &a)| i == a)
    }

    fn compute(&self, x: &Tensor) -> TractResult<Tensor> {
        let (k, n) = (self.k(), self.n());
        ensure!(x.datum_type() == DatumType::F32 && x.rank() == self.perm.len());
        let contracted: usize = self.perm[self.lead..]
            .iter()
            .map(|&a| x.shape()[a])
            .product();
        ensure!(contracted == k);
        let shape = self.output_shape(x.shape(), 1, n);
        let m: usize = self.perm[..self.lead]
            .iter()
            .map(|&a| x.shape()[a])
            .product();
        ensure!(m * n == shape.iter().product::<usize>());
        // The contracted axes last, each row's values together, in the weights' order.
        let moved;
        let x = if self.identity() {
            x
        } else {
            moved = x.clone().permute_axes(&self.perm)?;
            &moved
        };
        let x = x.try_as_plain_ram()?;
        let a = x.as_slice::<f32>()?;
        let mut y = vec![0f32; m * n];
        if m > 0 && n > 0 {
            gemm_packed(m, a, k, &self.b, &mut y, n, Init::Zero);
        }
        if !self.bias.is_empty() || self.clamp.lo.is_some() || self.clamp.hi.is_some() {
            for row in y.chunks_exact_mut(n.max(1)) {
                if !self.bias.is_empty() {
                    for (v, b) in row.iter_mut().zip(self.bias.iter()) {
                        *v += b;
                    }
                }
                // `f32::max`/`min`: a NaN becomes the bound, as tract's `Max`/`Min` give.
                if let Some(lo) = self.clamp.lo {
                    row.iter_mut().for_each(|v| *v = v.max(lo));
                }
                if let Some(hi) = self.clamp.hi {
                    row.iter_mut().for_each(|v| *v = v.min(hi));
                }
            }
        }
        Ok(tract_ndarray::Array::from_shape_vec(&*shape, y)?.into_tensor())
    }
}

impl Op for PackedMatMul {
    fn name(&self) -> StaticName {
        "PackedMatMul".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "k: {}, n: {}, input axes {:?}, bias: {}, clamp: {:?}",
            self.k(),
            self.n(),
            self.perm,
            !self.bias.is_empty(),
            self.clamp
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PackedMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.compute(&input)?.into_tvalue()))
    }
}

impl TypedOp for PackedMatMul {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == DatumType::F32);
        let x = inputs[0].shape.to_tvec();
        ensure!(x.len() == self.perm.len());
        let contracted: TDim = self.perm[self.lead..]
            .iter()
            .map(|&a| x[a].clone())
            .product();
        ensure!(contracted == self.k().to_dim());
        ensure!(self.axes.iter().flatten().all(|&a| a < self.lead));
        Ok(tvec!(DatumType::F32.fact(self.output_shape(
            &x,
            1.into(),
            self.n().to_dim()
        ))))
    }

    /// The row axes go from input to output as [`PackedMatMul::axes`] says.
    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        let mut axes = AxesMapping::disconnected(inputs, outputs)?;
        for (out, (input, repr)) in self.axes.iter().zip('a'..).enumerate() {
            if let Some(input) = *input {
                axes = axes
                    .renaming((InOut::In(0), self.perm[input]), repr)?
                    .linking(repr, (InOut::Out(0), out))?;
            }
        }
        Ok(axes)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let rows: TDim = inputs[0].shape.iter().product::<TDim>() / self.k() as i64;
        Ok(tvec!((
            Cost::FMA(DatumType::F32),
            rows * self.k() * self.n()
        )))
    }
}

/// [`PackedMatMul::axes`].
type RowAxes = TVec<Option<usize>>;

/// Replaces the products [`PackedMatMul`] covers; returns how many.
pub(crate) fn packed_matmuls(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(einsum) = node.op_as::<EinSum>() else {
            continue;
        };
        let Some(Product {
            w: b,
            axes,
            perm,
            lead,
        }) = plain_product(model, node, einsum)?
        else {
            continue;
        };
        let mut op = PackedMatMul {
            b: Arc::new(Packed::pack(b.view())),
            bias: Arc::new(vec![]),
            axes,
            perm,
            lead,
            clamp: Clamp::default(),
        };
        let mut last = OutletId::new(id, 0);
        if let Some((next, bias)) = fused_bias(model, last, op.n())? {
            op.bias = Arc::new(bias);
            last = next;
        }
        while let Some((next, clamp)) = super::conv::fused_clamp(model, last, op.clamp)? {
            op.clamp = clamp;
            last = next;
        }
        let mut patch = TypedModelPatch::new(format!("packed matmul {}", node.name));
        let input = patch.tap_model(model, node.inputs[0])?;
        let wire = patch.wire_node(&node.name, op, &[input])?[0];
        patch.shunt_outside(model, last, wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    if replaced > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(replaced)
}

/// What [`plain_product`] found: the weights as a `[k, n]` matrix and
/// [`PackedMatMul::axes`], [`PackedMatMul::perm`], [`PackedMatMul::lead`].
struct Product {
    w: tract_ndarray::Array2<f32>,
    axes: RowAxes,
    perm: TVec<usize>,
    lead: usize,
}

/// The product [`PackedMatMul`] computes when `node` computes `…k,kn->…n` in f32 (input 0 a
/// run-time value, input 1 a constant whose last axis is the output's last, `n`; its other
/// axes are contracted with the input's, whose remaining axes of more than one element pass
/// to the output in order).
fn plain_product(
    model: &TypedModel,
    node: &TypedNode,
    einsum: &EinSum,
) -> TractResult<Option<Product>> {
    if einsum.q_params.is_some() || einsum.operating_dt != DatumType::F32 || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let (inputs, outputs) = einsum.axes.to_strs();
    let [x, w] = &inputs[..] else {
        return Ok(None);
    };
    let [y] = &outputs[..] else {
        return Ok(None);
    };
    let (x, w, y): (Vec<char>, Vec<char>, Vec<char>) = (
        x.chars().collect(),
        w.chars().collect(),
        y.chars().collect(),
    );
    let (Some((nc, wk)), Some((&yn, ylead))) = (w.split_last(), y.split_last()) else {
        return Ok(None);
    };
    let distinct = |s: &[char]| s.iter().enumerate().all(|(i, c)| !s[..i].contains(c));
    if wk.is_empty()
        || yn != *nc
        || !distinct(&x)
        || !distinct(&y)
        || !distinct(&w)
        || x.contains(nc)
        || wk.iter().any(|c| !x.contains(c) || y.contains(c))
    {
        return Ok(None);
    }
    // The row axes (the input's others, in order), then the contracted ones in `w`'s order.
    let xlead: Vec<char> = x.iter().filter(|c| !wk.contains(c)).copied().collect();
    let position = |c: &char| x.iter().position(|x| x == c).unwrap();
    let perm: TVec<usize> = xlead.iter().chain(wk).map(position).collect();
    // tract folds reshapes by axes of 1 into the product (`amk,kn->man`, `mbak,kn->mn`):
    // the other axes of more than one element must be the same, in the same order, so that
    // the input's rows and the output's are the same rows, each contiguous.
    let x_fact = model.outlet_fact(node.inputs[0])?;
    let y_fact = &node.outputs[0].fact;
    if x_fact.rank() != x.len() || y_fact.rank() != y.len() {
        return Ok(None);
    }
    let x_lead_dims: Vec<&TDim> = perm[..xlead.len()]
        .iter()
        .map(|&a| &x_fact.shape[a])
        .collect();
    let unit = |d: &TDim| *d == TDim::Val(1);
    let x_rows: Vec<char> = xlead
        .iter()
        .zip(&x_lead_dims)
        .filter(|(_, d)| !unit(d))
        .map(|(c, _)| *c)
        .collect();
    let y_rows: Vec<char> = ylead
        .iter()
        .zip(y_fact.shape.iter())
        .filter(|(_, d)| !unit(d))
        .map(|(c, _)| *c)
        .collect();
    if x_rows != y_rows {
        return Ok(None);
    }
    let mut axes = TVec::new();
    for (c, d) in ylead.iter().zip(y_fact.shape.iter()) {
        match xlead.iter().position(|x| x == c) {
            Some(a) if *x_lead_dims[a] == *d => axes.push(Some(a)),
            None if unit(d) => axes.push(None),
            _ => return Ok(None),
        }
    }
    let facts = model.node_input_facts(node.id)?;
    let f32_plain = |f: &TypedFact| f.datum_type == DatumType::F32 && !f.is_exotic();
    if !facts.iter().all(|f| f32_plain(f)) || facts[0].konst.is_some() {
        return Ok(None);
    }
    let Some(wt) = &facts[1].konst else {
        return Ok(None);
    };
    if wt.rank() != w.len() {
        return Ok(None);
    }
    let (wdims, n) = wt.shape().split_at(wt.rank() - 1);
    let (k, n) = (wdims.iter().product::<usize>(), n[0]);
    // Each contracted axis as long in the input as in the weights.
    let same = perm[xlead.len()..]
        .iter()
        .zip(wdims)
        .all(|(&a, &d)| x_fact.shape[a] == d.to_dim());
    if !same || k == 0 || n == 0 {
        return Ok(None);
    }
    let out = &node.outputs[0].fact;
    if out.datum_type != DatumType::F32 || out.shape.last() != Some(&n.to_dim()) {
        return Ok(None);
    }
    let wt = wt.try_as_plain_ram()?;
    let wt = ArrayView2::from_shape((k, n), wt.as_slice::<f32>()?)?;
    Ok(Some(Product {
        w: wt.to_owned(),
        axes,
        lead: xlead.len(),
        perm,
    }))
}

/// When `outlet` (`[…, n]`) is read only by an `Add` of a constant row (`[n]` or `[1, …, n]`,
/// a scalar included) giving the same shape, that node's output and the row.
fn fused_bias(
    model: &TypedModel,
    outlet: OutletId,
    n: usize,
) -> TractResult<Option<(OutletId, Vec<f32>)>> {
    let Some(succ) = super::only_reader(model, outlet)? else {
        return Ok(None);
    };
    let node = model.node(succ.node);
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if !bin.0.is::<Add>() || node.inputs.len() != 2 || bin.1.is_some_and(|dt| dt != DatumType::F32)
    {
        return Ok(None);
    }
    let other = model.outlet_fact(node.inputs[1 - succ.slot])?;
    let Some(value) = other
        .konst
        .as_ref()
        .filter(|k| k.datum_type() == DatumType::F32)
    else {
        return Ok(None);
    };
    let mine = model.outlet_fact(outlet)?;
    let theirs = &node.outputs[0].fact;
    let shape = value.shape();
    let row_like = shape.len() <= mine.rank()
        && shape.iter().rev().skip(1).all(|&d| d == 1)
        && shape.last().is_none_or(|&d| d == 1 || d == n);
    if !row_like || theirs.datum_type != DatumType::F32 || theirs.shape != mine.shape {
        return Ok(None);
    }
    let values = value.try_as_plain_ram()?;
    let values = values.as_slice::<f32>()?;
    let row = if values.len() == n {
        values.to_vec()
    } else {
        vec![values[0]; n]
    };
    Ok(Some((OutletId::new(succ.node, 0), row)))
}

#[cfg(test)]
#[path = "dense_tests.rs"]
mod tests;
