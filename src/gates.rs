//! Gate order and layout: the one place that knows how each framework stacks gates and orders
//! axes, and converts between them.
//!
//! - ONNX stacks gates as LSTM `i, o, f, c`, GRU `z, r, h`; PyTorch as LSTM `i, f, g, o`,
//!   GRU `r, z, n`. The cells compute in ONNX order.
//! - ONNX stores W as `[dirs, gates·hidden, input]` (one row per gate unit); the cells multiply
//!   row vectors, so they keep the transpose, `[input, gates·hidden]`.
//! - `layout = 0` is sequence-major (`[T, B, ·]`), `layout = 1` batch-major (`[B, T, ·]`); the
//!   cells always run sequence-major.

use ndarray::{
    Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2,
    ArrayViewMut3, ArrayViewMut4, Axis,
};

use crate::attrs::{Layout, OpKind};

/// A framework's gate order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOrder {
    /// LSTM i, o, f, c; GRU z, r, h.
    Onnx,
    /// LSTM i, f, g, o; GRU r, z, n.
    PyTorch,
}

/// For each ONNX gate block, the index of the same gate in PyTorch's order.
fn onnx_from_torch(op: OpKind) -> &'static [usize] {
    match op {
        OpKind::Rnn => &[0],
        // ONNX i, o, f, c  <-  PyTorch i(0), f(1), g(2), o(3)
        OpKind::Lstm => &[0, 3, 1, 2],
        // ONNX z, r, h  <-  PyTorch r(0), z(1), n(2)
        OpKind::Gru => &[1, 0, 2],
    }
}

/// Reorders gate blocks along axis 0 of `a` (whose length is `gates · hidden`) from one
/// framework's order to the other's. Works for weights (`[G·H, n]`) and biases (`[G·H]`) alike.
pub fn reorder_gates<A: Clone, D: ndarray::RemoveAxis>(
    op: OpKind,
    a: ndarray::ArrayView<A, D>,
    from: GateOrder,
    to: GateOrder,
) -> ndarray::Array<A, D> {
    if from == to {
        return a.to_owned();
    }
    let g = op.gates();
    let h = a.len_of(Axis(0)) / g;
    let perm = onnx_from_torch(op);
    let blocks: Vec<_> = (0..g)
        .map(|k| {
            // Going to ONNX, block k comes from PyTorch's perm[k]; the way back inverts it.
            let src = if to == GateOrder::Onnx {
                perm[k]
            } else {
                perm.iter().position(|&p| p == k).unwrap_or(k)
            };
            a.slice_axis(Axis(0), (src * h..(src + 1) * h).into())
        })
        .collect();
    ndarray::concatenate(Axis(0), &blocks).unwrap_or_else(|_| a.to_owned())
}

/// ONNX rows (`[G·H, n]`, one row per gate unit) to the cells' columns (`[n, G·H]`).
///
/// A transpose in blocks of 16 × 16: copied in the output's order, the source is read a column
/// at a time, one cache line (and at large sizes one page) per element, which made packing
/// weights that arrive at run time cost as much as a dozen steps (LSTM H=512: 28 ms a run).
pub fn onnx_rows_to_cell_columns<T: Clone>(w: ArrayView2<T>) -> Array2<T> {
    const BLOCK: usize = 16;
    let w = w.as_standard_layout();
    let (rows, cols) = w.dim();
    let Some(src) = w.as_slice().filter(|s| !s.is_empty()) else {
        return w.t().to_owned();
    };
    let mut out = vec![src[0].clone(); rows * cols];
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                let row = &src[r * cols..(r + 1) * cols];
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = row[c].clone();
                }
            }
        }
    }
    Array2::from_shape_vec((cols, rows), out).expect("cols × rows elements")
}

/// Splits ONNX's `B = [Wb, Rb]` (`[2·G·H]`) into its input-side and recurrent-side halves.
pub fn split_onnx_bias<T: Clone>(b: ArrayView1<T>) -> (Array1<T>, Array1<T>) {
    let half = b.len() / 2;
    (
        b.slice(ndarray::s![..half]).to_owned(),
        b.slice(ndarray::s![half..]).to_owned(),
    )
}

/// `[B, T, n]` to `[T, B, n]` (and back: the swap is its own inverse).
pub fn swap_batch_and_seq<T: Clone>(x: ArrayView3<T>) -> Array3<T> {
    x.permuted_axes([1, 0, 2]).as_standard_layout().into_owned()
}

/// The axis of Y (`[T, D, B, H]` or `[B, T, D, H]`) that holds the directions.
fn y_dirs_axis(layout: Layout) -> Axis {
    match layout {
        Layout::SeqMajor => Axis(1),
        Layout::BatchMajor => Axis(2),
    }
}

/// The axis of a state (`[D, B, H]` or `[B, D, H]`) that holds the directions.
fn state_dirs_axis(layout: Layout) -> Axis {
    match layout {
        Layout::SeqMajor => Axis(0),
        Layout::BatchMajor => Axis(1),
    }
}

/// Each direction of a node's Y, seen as the cells' `[T, B, H]` whatever the node's layout,
/// so the cells write straight into the output (no transposed copy afterwards).
pub fn y_directions_as_seq_major<'a, T>(
    y: &'a mut ArrayViewMut4<'_, T>,
    layout: Layout,
) -> Vec<ArrayViewMut3<'a, T>> {
    y.axis_iter_mut(y_dirs_axis(layout))
        .map(|d| match layout {
            Layout::SeqMajor => d,
            Layout::BatchMajor => d.permuted_axes([1, 0, 2]),
        })
        .collect()
}

/// Direction `d` of a state input or output (`initial_h`, `Y_h`, ...) as the cells' `[B, H]`.
pub fn state_direction<'a, T>(s: ArrayView3<'a, T>, layout: Layout, d: usize) -> ArrayView2<'a, T> {
    s.index_axis_move(state_dirs_axis(layout), d)
}

/// Mutable [`state_direction`].
pub fn state_direction_mut<'a, T>(
    s: ArrayViewMut3<'a, T>,
    layout: Layout,
    d: usize,
) -> ArrayViewMut2<'a, T> {
    s.index_axis_move(state_dirs_axis(layout), d)
}

/// Joins the input-side and recurrent-side biases into ONNX's `B = [Wb, Rb]` (`[2·G·H]`): the
/// inverse of [`split_onnx_bias`]. PyTorch's `bias_ih` and `bias_hh` (once reordered with
/// [`reorder_gates`]) are exactly `Wb` and `Rb`.
pub fn join_onnx_bias<T: Clone>(wb: ArrayView1<T>, rb: ArrayView1<T>) -> Array1<T> {
    ndarray::concatenate(Axis(0), &[wb, rb]).expect("1-D arrays always concatenate")
}

/// Y: the cells' `[T, D, B, H]` (layout 0) to PyTorch's `output`, `[T, B, D·H]` (each step's
/// forward hidden state, then the reverse one), which is also what the next layer of a
/// stacked PyTorch module takes as input.
pub fn seq_major_y_to_torch<T: Clone>(y: ArrayView4<T>) -> Array3<T> {
    let (t, d, b, h) = y.dim();
    y.permuted_axes([0, 2, 1, 3])
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((t, b, d * h))
        .expect("standard layout reshapes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_transpose_equals_the_plain_one() {
        for (rows, cols) in [
            (0, 3),
            (3, 0),
            (1, 1),
            (16, 16),
            (17, 5),
            (40, 33),
            (64, 100),
        ] {
            let a = Array2::from_shape_fn((rows, cols), |(r, c)| (r * 1000 + c) as u32);
            assert_eq!(onnx_rows_to_cell_columns(a.view()), a.t().to_owned());
            // Views that are not in standard layout: transposed, and every other column.
            assert_eq!(onnx_rows_to_cell_columns(a.t()), a.to_owned());
            let strided = a.slice(ndarray::s![.., ..;2]);
            assert_eq!(onnx_rows_to_cell_columns(strided), strided.t().to_owned());
        }
    }
}
