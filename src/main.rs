//! `rnn-run`: run an ONNX model exported from PyTorch, or describe it.
//!
//! ```text
//! rnn-run MODEL [INPUT ...] [--json] [--output DIR] [--expect REF ...] [--rtol R] [--atol A]
//!               [--bench N] [--engine native|tract] [--threads N]
//! rnn-run inspect MODEL [--json]
//! ```
//!
//! Exit codes: 0 when all went well, 1 when `--expect` found a mismatch, 2 for every error
//! (usage, loading, inputs, running).

mod cli;

fn main() {
    std::process::exit(cli::main(std::env::args_os().collect()));
}
