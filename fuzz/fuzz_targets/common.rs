//! Shared by the fuzz targets: a panic hook that records where each panic happened.
//!
//! libfuzzer-sys installs a hook that aborts on *every* panic, even one the library catches
//! on purpose (`Model::from_bytes` wraps tract's graph preparation in `catch_unwind`). This
//! hook prints each panic once per source location (with a backtrace) and remembers whether
//! the last one was raised in rnn-run's own code; a panic that escapes a target still aborts,
//! because libfuzzer-sys aborts on an unwound panic.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Mutex, Once};

static INIT: Once = Once::new();
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

thread_local! {
    static LAST_IN_OUR_CODE: Cell<bool> = const { Cell::new(false) };
}

pub fn install_panic_hook() {
    INIT.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            // Dependencies live in the cargo registry, the standard library under /rustc/.
            let ours = !location.contains("/.cargo/") && !location.starts_with("/rustc/");
            LAST_IN_OUR_CODE.with(|c| c.set(ours));
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            if seen.get_or_insert_with(HashSet::new).insert(location) {
                let bt = std::backtrace::Backtrace::force_capture();
                eprintln!(
                    "[fuzz] panic ({}): {info}\n{bt}",
                    if ours {
                        "in rnn-run"
                    } else {
                        "in a dependency"
                    }
                );
            }
        }));
    });
}

/// Whether the last panic on this thread was raised in rnn-run's code (not tract's).
pub fn last_panic_was_ours() -> bool {
    LAST_IN_OUR_CODE.with(|c| c.get())
}
