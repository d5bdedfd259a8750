//! tract's panics, caught and named, and kept off the host program's stderr.
//!
//! tract panics on some malformed graphs and inputs (an index past an embedding table, a shape
//! its kernels do not expect). A library must return an error instead, and must not print:
//! the default panic hook writes the message (and a backtrace under `RUST_BACKTRACE=1`) to
//! stderr before `catch_unwind` sees the panic. So the first guarded call installs, once, a
//! hook that chains to the one it replaces, and stays silent only on a thread that is inside
//! a guarded call at that moment (a thread-local flag): other threads' panics, and the host's
//! own, print as before.
//!
//! Graphs run node by node here ([`run_plan`]), so that an error or panic names the node, and
//! a `Gather` is checked before it runs: an index past the table is reported with the node,
//! the index and the graph input it comes from, instead of tract's slice-range panic.

use std::cell::{Cell, RefCell};
use std::sync::Once;

use tract_core::ops::array::Gather;
use tract_hir::internal::*;

thread_local! {
    /// Inside a guarded call: panics are caught there, and recorded rather than printed.
    static GUARDED: Cell<usize> = const { Cell::new(0) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) == 0 {
                return previous(info);
            }
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(describe_panic(info)));
        }));
    });
}

/// A panic's message in words a user can act on: an allocation failure says how many bytes
/// (not the `Layout { .. }` it was asked for). Where it was raised (a crate's file and line)
/// is left out: it means nothing to a user, and `RUST_BACKTRACE=1` shows it to whoever
/// debugs tract.
pub fn describe_panic(info: &std::panic::PanicHookInfo) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    plain_panic_message(&message)
}

/// `failed to allocate Layout { size: 4096, align: 128 (1 << 7) }` → `could not allocate
/// 4096 bytes (out of memory)`; other messages unchanged.
fn plain_panic_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("failed to allocate Layout { size: ") {
        let size: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !size.is_empty() {
            return format!("could not allocate {size} bytes (out of memory)");
        }
    }
    message.to_string()
}

/// Runs `f`, turning a panic into its message (and where it was raised), printed nowhere.
pub(crate) fn without_panics<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    install_hook();
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    result.map_err(|_| {
        LAST_PANIC
            .with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Runs a plan's session on `inputs`, node by node: a node's error or panic is reported with
/// the node, and gathers are checked before they run.
pub(crate) fn run_plan(
    state: &mut TypedSimpleState,
    inputs: TVec<TValue>,
) -> TractResult<TVec<TValue>> {
    let plan = state.plan().clone();
    let model = plan.model();
    let outcome = without_panics(|| {
        state.run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
            if let Some(gather) = node.op_as::<Gather>() {
                check_gather(model, node, gather, &inputs)?;
            }
            without_panics(|| tract_core::plan::eval(ctx, op_state, node, inputs)).unwrap_or_else(
                |panic| {
                    bail!(
                        "node '{}' ({}) failed inside tract: {panic}",
                        node.name,
                        node.op.name()
                    )
                },
            )
        })
    });
    match outcome {
        Ok(result) => result,
        Err(panic) => bail!("tract failed while running the graph ({panic})"),
    }
}

/// Every index of a `Gather` within its axis (negative ones count from the end).
fn check_gather(
    model: &TypedModel,
    node: &TypedNode,
    gather: &Gather,
    inputs: &[TValue],
) -> TractResult<()> {
    let (Some(data), Some(indices)) = (inputs.first(), inputs.get(1)) else {
        return Ok(());
    };
    let Some(&size) = data.shape().get(gather.axis) else {
        return Ok(());
    };
    let Ok(indices) = indices.cast_to::<i64>() else {
        return Ok(());
    };
    let Ok(view) = indices.to_plain_array_view::<i64>() else {
        return Ok(());
    };
    let size = size as i64;
    if let Some((at, &index)) = view.indexed_iter().find(|(_, &i)| i < -size || i >= size) {
        bail!(
            "node '{}' (Gather) reads index {index} (at {:?} of its indices) along axis {} of \
             size {size}: the valid indices are {}..{size}{}",
            node.name,
            ndarray::Dimension::slice(&at),
            gather.axis,
            -size,
            feeding_input(model, node.inputs[1])
                .map(|i| format!("; the indices come from input '{i}'"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The graph input a value is computed from, when there is exactly one.
fn feeding_input(model: &TypedModel, outlet: OutletId) -> Option<String> {
    let sources = model.input_outlets().ok()?;
    let mut found = std::collections::BTreeSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![outlet.node];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        if sources.iter().any(|s| s.node == id) {
            found.insert(model.node(id).name.clone());
        }
        todo.extend(model.node(id).inputs.iter().map(|o| o.node));
    }
    match found.len() {
        1 => found.into_iter().next(),
        _ => None,
    }
}
