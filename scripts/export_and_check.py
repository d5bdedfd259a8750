#!/usr/bin/env python3
"""Export a PyTorch model with both ONNX exporters and check each export with rnn-run.

    python scripts/export_and_check.py MODULE.py FUNCTION [options]

The same as `python -m rnn_run.check MODULE.py:FUNCTION [options]`, kept for the command
lines written before the Python package: the check itself lives in the package
(python/rnn_run/check.py), which needs the rnn_run wheel installed (see the README's Python
section: `python/test.sh` builds it) and torch (the CPU build:
`pip install torch --index-url https://download.pytorch.org/whl/cpu`).
"""

import sys

try:
    from rnn_run.check import main
except ImportError:
    print(
        "error: the rnn_run package is not installed: build and install its wheel (README, "
        "section Python), then run python -m rnn_run.check MODULE.py:FUNCTION",
        file=sys.stderr,
    )
    sys.exit(2)

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1].startswith("-") or sys.argv[2].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main([f"{sys.argv[1]}:{sys.argv[2]}", *sys.argv[3:]]))
