#!/usr/bin/env bash
# The Python package as a user gets it: builds the wheel (the extension module and the native
# `rnn-run` program), installs it with pip into a fresh virtual environment, and runs the pytest
# suite (python/tests) and the CLI from there with cargo and rustc hidden from the PATH.
#
#   python/test.sh            # from anywhere; CARGO_TARGET_DIR is honoured
#   RNN_RUN_WHEEL_OUT=dist python/test.sh   # also keeps the wheel in dist/
#
# Reuses `cargo test --release`'s build: the binary and the core library are built with the
# same profile in the same target directory. The suite's check_export tests are skipped (with
# the reason) unless torch is installed in the environment: set RNN_RUN_PIP_EXTRA, e.g.
# RNN_RUN_PIP_EXTRA="torch onnxscript --extra-index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
target=$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export CARGO_TARGET_DIR=$target

work=$(mktemp -d "${TMPDIR:-/tmp}/rnn-run-python.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== building the rnn-run binary and the wheel"
cargo build --release --bin rnn-run
rm -rf python/wheel-data
mkdir -p python/wheel-data/scripts
cp "$target/release/rnn-run" python/wheel-data/scripts/rnn-run
# Symbols off (the release profile keeps them): a third of the size.
if command -v strip >/dev/null; then strip python/wheel-data/scripts/rnn-run; fi
"$python" -m venv "$work/build"
"$work/build/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.7,<2"
# The interpreter at a stable path: pyo3's build depends on it, so a per-run venv's python
# would rebuild pyo3 each time (the wheel is abi3 either way).
"$work/build/bin/maturin" build --release --strip --manifest-path python/Cargo.toml --out "$work/wheels" \
    --interpreter "$(command -v "$python")"
wheel=$(ls "$work"/wheels/rnn_run-*.whl)
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))"
if [ -n "${RNN_RUN_WHEEL_OUT:-}" ]; then mkdir -p "$RNN_RUN_WHEEL_OUT" && cp "$wheel" "$RNN_RUN_WHEEL_OUT/"; fi

echo "== installing it into a fresh virtual environment"
"$python" -m venv "$work/venv"
# shellcheck disable=SC2086 # RNN_RUN_PIP_EXTRA is a list of pip arguments
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$wheel" pytest ${RNN_RUN_PIP_EXTRA:-}

# The PATH the tests see: the venv first, then every directory of ours without cargo or rustc.
path="$work/venv/bin"
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ] && path="$path:$d"
done
if PATH=$path command -v cargo >/dev/null || PATH=$path command -v rustc >/dev/null; then
    echo "error: could not hide cargo/rustc from the PATH" >&2
    exit 1
fi

echo "== the CLI from the virtual environment (no Rust toolchain on the PATH)"
case=fixtures/tutorial/lstm_legacy
(cd "$root" && env -u CARGO_TARGET_DIR PATH="$path" rnn-run $case/model.onnx \
    $case/input_0.npy $case/input_1.npy $case/input_2.npy \
    --expect $case/expected_0.npy $case/expected_1.npy $case/expected_2.npy)
env -u CARGO_TARGET_DIR PATH="$path" python -c "import rnn_run; m = rnn_run.Model('$root/$case/model.onnx'); print('import rnn_run:', rnn_run.__version__, [i.name for i in m.inputs])"

echo "== pytest against the installed wheel"
# From outside the source tree, so that `import rnn_run` is the installed package.
status=0
(cd "$work" && env -u CARGO_TARGET_DIR PATH="$path" RNN_RUN_REPO="$root" \
    python -m pytest "$root/python/tests" -q -rs -p no:cacheprovider) || status=$?
# pytest: 0 all passed, 1 failures, 5 no test collected (a broken suite); any non-zero fails.
if [ "$status" -ne 0 ]; then
    echo "python tests failed (pytest exit code $status)" >&2
    exit "$status"
fi
