//! One recurrent node evaluated on arrays: every direction, both layouts, `sequence_lens`,
//! initial states. It checks the node's tensors against each other and against the spec, so
//! both the tract op and library users get the same messages.

use ndarray::{
    Array3, Array4, ArrayView1, ArrayView2, ArrayViewD, ArrayViewMut3, ArrayViewMut4, Axis,
    CowArray, Ix1, Ix2, Ix3,
};

use crate::attrs::{Direction, Layout, NodeSpec, OpKind};
use crate::cells::{
    run_sequence_in, shares_steps, Cell, DirWeights, Gru, Lstm, Rnn, Scratch, State, Walk,
};
use crate::error::{shape_string, NodeError};
use crate::gates::{
    state_direction, state_direction_mut, swap_batch_and_seq, y_directions_as_seq_major,
};
use crate::kernels::{Float, WeightFormat};

/// A node's cells, one per direction, built once from its weights.
pub struct Layer<T> {
    spec: NodeSpec,
    hidden: usize,
    input: usize,
    cells: Vec<Box<dyn Cell<T>>>,
}

impl<T> std::fmt::Debug for Layer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Layer({} {}, hidden {})",
            self.spec.op.op_type(),
            self.spec.name,
            self.hidden
        )
    }
}

/// The node's outputs, in the node's own layout.
#[derive(Debug, Clone)]
pub struct LayerOutputs<T> {
    /// Y: `[T, D, B, H]` (layout 0) or `[B, T, D, H]` (layout 1).
    pub y: Array4<T>,
    /// Y_h: `[D, B, H]` or `[B, D, H]`.
    pub y_h: Array3<T>,
    /// Y_c (LSTM): same shape as Y_h.
    pub y_c: Option<Array3<T>>,
}

/// Where [`Layer::run_into`] writes the node's outputs, each in the node's own layout and
/// with the shape [`Layer::output_shapes`] gives; an output left `None` is not computed.
#[derive(Debug, Default)]
pub struct OutputViews<'a, T> {
    /// Y, zero-filled by the caller.
    pub y: Option<ArrayViewMut4<'a, T>>,
    /// Y_h.
    pub y_h: Option<ArrayViewMut3<'a, T>>,
    /// Y_c (LSTM only).
    pub y_c: Option<ArrayViewMut3<'a, T>>,
}

/// What a run needs besides X: the optional inputs, as given to the node.
#[derive(Debug, Clone, Default)]
pub struct RunInputs<'a, T> {
    /// `sequence_lens`, `[B]`.
    pub sequence_lens: Option<&'a [i64]>,
    /// `initial_h`, `[D, B, H]` or `[B, D, H]`.
    pub initial_h: Option<ArrayViewD<'a, T>>,
    /// `initial_c`, same shape.
    pub initial_c: Option<ArrayViewD<'a, T>>,
    /// Threads to run on (one when `None`).
    pub threads: Option<&'a Threads>,
}

/// What a stream keeps of a node from one call of [`Layer::run`] to the next: each
/// direction's final state, and the buffers the next call reuses.
#[derive(Debug, Clone)]
pub struct Carry<T> {
    states: Vec<State<T>>,
    scratch: Vec<Option<Scratch<T>>>,
}

impl<T> Default for Carry<T> {
    fn default() -> Self {
        Carry {
            states: vec![],
            scratch: vec![],
        }
    }
}

impl<T> Carry<T> {
    /// The final states of the last call, one per direction (none before the first call).
    pub fn states(&self) -> &[State<T>] {
        &self.states
    }

    /// Drops the states and keeps the buffers: the next call starts from its initial states.
    pub fn forget_states(&mut self) {
        self.states.clear();
    }
}

/// The largest tensor rnn-run makes or lets a graph make: more than any recurrent model
/// needs, less than an allocation would survive on a common machine.
pub(crate) const MAX_TENSOR_BYTES: u64 = 4 << 30;

/// Multiply-adds per direction under which [`Layer::run`] stays on the calling thread: below
/// about a million (tens of µs), waking other threads costs more than they save.
const THREADS_MIN_MACS: usize = 1 << 20;

/// A pool of worker threads for [`Layer::run`]: the directions of a bidirectional node run
/// side by side, and each direction's time steps are cut into pieces of hidden units among
/// the threads it gets (each thread the same piece every step: its columns of Rᵀ and its
/// gates stay in its own core's cache).
#[derive(Debug)]
pub struct Threads {
    pool: rayon::ThreadPool,
    count: usize,
}

impl Threads {
    /// A pool of `count` threads (at least one).
    pub fn new(count: usize) -> Result<Threads, String> {
        let count = count.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|i| format!("rnn-run-{i}"))
            .build()
            .map_err(|e| format!("cannot start {count} threads: {e}"))?;
        Ok(Threads { pool, count })
    }

    /// How many threads the pool has.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl<T: Float> Layer<T> {
    /// Builds the cells from the node's W `[D, G·H, I]`, R `[D, G·H, H]`, B `[D, 2·G·H]` and
    /// P `[D, 3·H]`, after checking their shapes against each other and the attributes.
    pub fn from_onnx(
        spec: &NodeSpec,
        w: ArrayViewD<T>,
        r: ArrayViewD<T>,
        b: Option<ArrayViewD<T>>,
        p: Option<ArrayViewD<T>>,
    ) -> Result<Layer<T>, NodeError> {
        Layer::from_onnx_with(spec, w, r, b, p, WeightFormat::Full)
    }

    /// [`Layer::from_onnx`] with the recurrent weights Rᵀ stored as `recurrent` (see
    /// [`WeightFormat`]: a 16-bit format halves the bytes every time step reads, at the cost
    /// of rounding the weights; the products still accumulate in `T`).
    pub fn from_onnx_with(
        spec: &NodeSpec,
        w: ArrayViewD<T>,
        r: ArrayViewD<T>,
        b: Option<ArrayViewD<T>>,
        p: Option<ArrayViewD<T>>,
        recurrent: WeightFormat,
    ) -> Result<Layer<T>, NodeError> {
        let dirs = spec.direction.num_directions();
        let g = spec.op.gates();
        let r_shape = r.shape().to_vec();
        if r_shape.len() != 3 {
            return Err(spec.error(format!(
                "input R: expected rank 3 [num_directions, {g}·hidden_size, hidden_size], found shape {}",
                shape_string(&r_shape)
            )));
        }
        let hidden = spec.hidden_size.unwrap_or(r_shape[2]);
        let w_shape = w.shape().to_vec();
        if w_shape.len() != 3 {
            return Err(spec.error(format!(
                "input W: expected rank 3 [num_directions, {g}·hidden_size, input_size], found shape {}",
                shape_string(&w_shape)
            )));
        }
        let input = w_shape[2];
        let gh = g
            .checked_mul(hidden)
            .ok_or_else(|| spec.error("hidden_size overflows"))?;
        let expect = |name: &str, found: &[usize], want: &[usize], what: &str| {
            if found == want {
                Ok(())
            } else {
                Err(spec.error(format!(
                    "input {name}: expected shape {} ({what}), found {}",
                    shape_string(want),
                    shape_string(found)
                )))
            }
        };
        let h_from = if spec.hidden_size.is_some() {
            "hidden_size attribute"
        } else {
            "R"
        };
        expect(
            "W",
            &w_shape,
            &[dirs, gh, input],
            &format!(
                "direction '{}', hidden_size {hidden} from {h_from}",
                spec.direction.as_str()
            ),
        )?;
        expect(
            "R",
            &r_shape,
            &[dirs, gh, hidden],
            &format!("hidden_size {hidden} from {h_from}"),
        )?;
        if let Some(b) = &b {
            expect(
                "B",
                b.shape(),
                &[dirs, 2 * gh],
                "[num_directions, 2·gates·hidden_size]",
            )?;
        }
        if let Some(p) = &p {
            if spec.op != OpKind::Lstm {
                return Err(spec.error("input P (peepholes) exists for LSTM only"));
            }
            expect(
                "P",
                p.shape(),
                &[dirs, 3 * hidden],
                "[num_directions, 3·hidden_size]",
            )?;
        }
        fn view2<'a, T>(a: &ArrayViewD<'a, T>, d: usize) -> ArrayView2<'a, T> {
            a.clone()
                .index_axis_move(Axis(0), d)
                .into_dimensionality::<Ix2>()
                .expect("rank checked above")
        }
        fn view1<'a, T>(a: &ArrayViewD<'a, T>, d: usize) -> ArrayView1<'a, T> {
            a.clone()
                .index_axis_move(Axis(0), d)
                .into_dimensionality::<Ix1>()
                .expect("rank checked above")
        }
        let cells = (0..dirs)
            .map(|d| {
                let weights = DirWeights::from_onnx(
                    view2(&w, d),
                    view2(&r, d),
                    b.as_ref().map(|b| view1(b, d)),
                    p.as_ref().map(|p| view1(p, d)),
                );
                let acts = spec.activations_of(d);
                let clip = spec.clip();
                let cell: Box<dyn Cell<T>> = match spec.op {
                    OpKind::Rnn => {
                        Box::new(Rnn::new(weights, acts, clip).with_recurrent_weights(recurrent))
                    }
                    OpKind::Lstm => Box::new(
                        Lstm::new(weights, acts, clip, spec.input_forget)
                            .with_recurrent_weights(recurrent),
                    ),
                    OpKind::Gru => Box::new(
                        Gru::new(weights, acts, clip, spec.linear_before_reset)
                            .with_recurrent_weights(recurrent),
                    ),
                };
                cell
            })
            .collect();
        Ok(Layer {
            spec: spec.clone(),
            hidden,
            input,
            cells,
        })
    }

    /// Hidden size.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Input size.
    pub fn input_size(&self) -> usize {
        self.input
    }

    /// The node description the layer was built from.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Runs the node on X (in the node's layout). With `carry`, the states it holds (one per
    /// direction) replace the initial states, and the final states are left in it: that is
    /// how a stream continues a sequence across calls.
    pub fn run(
        &self,
        x: ArrayViewD<T>,
        inputs: RunInputs<T>,
        carry: Option<&mut Carry<T>>,
    ) -> Result<LayerOutputs<T>, NodeError> {
        let (y_shape, state_shape) = self.output_shapes(x.shape())?;
        let mut y = Array4::zeros(y_shape);
        let mut y_h = Array3::zeros(state_shape);
        let mut y_c = (self.spec.op == OpKind::Lstm).then(|| Array3::zeros(state_shape));
        self.run_into(
            x,
            inputs,
            carry,
            OutputViews {
                y: Some(y.view_mut()),
                y_h: Some(y_h.view_mut()),
                y_c: y_c.as_mut().map(|c| c.view_mut()),
            },
        )?;
        Ok(LayerOutputs { y, y_h, y_c })
    }

    /// The shapes of Y and of Y_h/Y_c for an X of shape `x_shape`, after checking X's rank
    /// and input size, and that Y (and the work space the run needs) stays under the 4 GiB
    /// limit: X's sequence length is data, so nothing may be allocated from it unchecked.
    pub fn output_shapes(&self, x_shape: &[usize]) -> Result<([usize; 4], [usize; 3]), NodeError> {
        let spec = &self.spec;
        let batch_major = spec.layout == Layout::BatchMajor;
        let &[a, b, input] = x_shape else {
            return Err(spec.error(format!(
                "input X: expected rank 3 ({}), found shape {}",
                if batch_major {
                    "[batch, seq, input]"
                } else {
                    "[seq, batch, input]"
                },
                shape_string(x_shape)
            )));
        };
        if input != self.input {
            return Err(spec.error(format!(
                "input X: expected input size {} (from W), found {input} in shape {}",
                self.input,
                shape_string(x_shape)
            )));
        }
        let (t_len, batch) = if batch_major { (b, a) } else { (a, b) };
        let (dirs, h) = (self.cells.len(), self.hidden);
        let largest = [dirs * h, self.cells[0].gate_width()]
            .iter()
            .map(|&w| {
                [t_len, batch, w, std::mem::size_of::<T>()]
                    .iter()
                    .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            })
            .try_fold(0u64, |acc, b| b.map(|b| acc.max(b)));
        if largest.is_none_or(|b| b > MAX_TENSOR_BYTES) {
            return Err(spec.error(format!(
                "input X: shape {} asks for an output Y of {} (over {} bytes), more than the \
                 {} GiB limit",
                shape_string(x_shape),
                shape_string([t_len, dirs, batch, h]),
                largest.map_or("2^64".into(), |b| b.to_string()),
                MAX_TENSOR_BYTES >> 30
            )));
        }
        Ok(if batch_major {
            ([batch, t_len, dirs, h], [batch, dirs, h])
        } else {
            ([t_len, dirs, batch, h], [dirs, batch, h])
        })
    }

    /// [`Layer::run`] writing into the caller's arrays (shaped by [`Layer::output_shapes`];
    /// Y zero-filled, since steps past an entry's `sequence_lens` are left as they are).
    /// Outputs left `None` are not written, and Y is not even kept when absent: a stream that
    /// only needs the final state pays for nothing else.
    pub fn run_into(
        &self,
        x: ArrayViewD<T>,
        inputs: RunInputs<T>,
        carry: Option<&mut Carry<T>>,
        mut out: OutputViews<T>,
    ) -> Result<(), NodeError> {
        let spec = &self.spec;
        let layout = spec.layout;
        let (y_shape, state_shape) = self.output_shapes(x.shape())?;
        let wrong_output = |name: &str, found: &[usize], want: &[usize]| {
            (found != want).then(|| {
                spec.error(format!(
                    "output {name}: expected an array of shape {}, found {}",
                    shape_string(want),
                    shape_string(found)
                ))
            })
        };
        let given = [
            ("Y", out.y.as_ref().map(|a| a.shape()), &y_shape[..]),
            ("Y_h", out.y_h.as_ref().map(|a| a.shape()), &state_shape[..]),
            ("Y_c", out.y_c.as_ref().map(|a| a.shape()), &state_shape[..]),
        ];
        for (name, found, want) in given {
            if let Some(e) = found.and_then(|f| wrong_output(name, f, want)) {
                return Err(e);
            }
        }
        if out.y_c.is_some() && spec.op != OpKind::Lstm {
            return Err(spec.error("output Y_c exists for LSTM only"));
        }
        let x = x.into_dimensionality::<Ix3>().expect("rank checked");
        // The cells run sequence-major.
        let x_seq: CowArray<T, Ix3> = match layout {
            Layout::BatchMajor => swap_batch_and_seq(x).into(),
            Layout::SeqMajor => x.as_standard_layout(),
        };
        let (t_len, batch, _) = x_seq.dim();
        let dirs = self.cells.len();

        let lens = match inputs.sequence_lens {
            None => None,
            Some(l) => {
                if l.len() != batch {
                    return Err(spec.error(format!(
                        "input sequence_lens: expected {batch} values (batch size), found {}",
                        l.len()
                    )));
                }
                if let Some((b, &bad)) = l
                    .iter()
                    .enumerate()
                    .find(|(_, &n)| n < 0 || n as u64 > t_len as u64)
                {
                    return Err(spec.error(format!(
                        "input sequence_lens: entry {b} is {bad}, expected 0 ≤ length ≤ {t_len} (sequence length)"
                    )));
                }
                Some(l.iter().map(|&n| n as usize).collect::<Vec<_>>())
            }
        };

        let check_state = |name: &str, found: &[usize]| {
            if found == state_shape {
                return Ok(());
            }
            Err(spec.error(format!(
                "input {name}: expected shape {} ({}), found {}",
                shape_string(state_shape),
                match layout {
                    Layout::BatchMajor => "[batch, num_directions, hidden]",
                    Layout::SeqMajor => "[num_directions, batch, hidden]",
                },
                shape_string(found)
            )))
        };
        let [h0, c0] = [
            ("initial_h", inputs.initial_h),
            ("initial_c", inputs.initial_c),
        ]
        .map(|(name, given)| {
            given
                .map(|a| {
                    check_state(name, a.shape())?;
                    Ok(a.into_dimensionality::<Ix3>().expect("shape checked"))
                })
                .transpose()
        });
        let (h0, c0) = (h0?, c0?);
        if c0.is_some() && spec.op != OpKind::Lstm {
            return Err(spec.error("input initial_c exists for LSTM only"));
        }

        let mut carry = carry;
        let mut scratch = carry
            .as_deref_mut()
            .map(|c| std::mem::take(&mut c.scratch))
            .unwrap_or_default();
        scratch.resize_with(dirs, || None);
        let mut states: Vec<State<T>> = match carry.as_deref_mut() {
            Some(c) if c.states.len() == dirs && c.states.iter().all(|s| s.batch() == batch) => {
                std::mem::take(&mut c.states)
            }
            _ => (0..dirs)
                .map(|d| {
                    let s = self.cells[d].zero_state(batch);
                    let h = h0.map(|a| state_direction(a, layout, d).to_owned());
                    let c = c0.map(|a| state_direction(a, layout, d).to_owned());
                    if h.is_none() && c.is_none() {
                        return s;
                    }
                    let c = c.or_else(|| s.c().map(|c| c.to_owned()));
                    State::new(h.unwrap_or_else(|| s.h().to_owned()), c)
                })
                .collect(),
        };

        let mut y = out.y.take();
        let mut y_dirs: Vec<Option<ArrayViewMut3<T>>> = match y.as_mut() {
            Some(y) => y_directions_as_seq_major(y, layout)
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..dirs).map(|_| None).collect(),
        };
        let macs = t_len * batch * self.cells[0].gate_width() * (self.input + self.hidden);
        // One direction whose steps are too small to share stays on the calling thread:
        // handing it to a pool thread would only add the wake-up and that core's cold cache.
        let one_small_direction = dirs == 1 && !shares_steps(self.cells[0].as_ref(), batch);
        let threads = if macs < THREADS_MIN_MACS || one_small_direction {
            1
        } else {
            inputs.threads.map_or(1, Threads::count)
        };
        let mut run_dirs = || {
            let x = x_seq.view();
            let lens = lens.as_deref();
            let run = |d: usize,
                       state: &mut State<T>,
                       y_d: Option<ArrayViewMut3<T>>,
                       scratch: &mut Option<Scratch<T>>,
                       parts| {
                let walk = Walk {
                    lens,
                    reverse: spec.direction.is_reverse(d),
                    parts,
                };
                run_sequence_in(self.cells[d].as_ref(), x, state, walk, y_d, scratch);
            };
            if dirs == 2 && threads >= 2 {
                // The directions are independent: one per half of the threads.
                let (s0, s1) = states.split_at_mut(1);
                let (y0, y1) = y_dirs.split_at_mut(1);
                let (k0, k1) = scratch.split_at_mut(1);
                rayon::join(
                    || run(0, &mut s0[0], y0[0].take(), &mut k0[0], threads / 2),
                    || {
                        run(
                            1,
                            &mut s1[0],
                            y1[0].take(),
                            &mut k1[0],
                            threads - threads / 2,
                        )
                    },
                );
            } else {
                let per_dir = states.iter_mut().zip(&mut y_dirs).zip(&mut scratch);
                for (d, ((state, y_d), k)) in per_dir.enumerate() {
                    run(d, state, y_d.take(), k, threads);
                }
            }
        };
        match inputs.threads {
            Some(t) if threads > 1 => t.pool.install(run_dirs),
            _ => run_dirs(),
        }

        for (d, state) in states.iter().enumerate() {
            if let Some(y_h) = out.y_h.as_mut() {
                state_direction_mut(y_h.view_mut(), layout, d).assign(&state.h());
            }
            if let Some(y_c) = out.y_c.as_mut() {
                let c = state.c().unwrap_or_else(|| state.h());
                state_direction_mut(y_c.view_mut(), layout, d).assign(&c);
            }
        }
        if let Some(c) = carry {
            c.states = states;
            c.scratch = scratch;
        }
        Ok(())
    }

    /// Whether the node runs any direction backwards in time.
    pub fn has_reverse(&self) -> bool {
        self.spec.direction != Direction::Forward
    }
}
