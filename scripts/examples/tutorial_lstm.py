"""The PyTorch tutorial's LSTM, for rnn-run's export check:

    python -m rnn_run.check scripts/examples/tutorial_lstm.py:make_model [--dynamic]
"""

import torch
import torch.nn as nn


def make_model():
    """Returns (model, example_inputs): nn.LSTM(5, 6, 2) called as lstm(input1, (h0, c0))."""
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 6, 2)
    input1 = torch.randn(1, 3, 5)
    h0 = torch.randn(2, 3, 6)
    c0 = torch.randn(2, 3, 6)
    return lstm, (input1, (h0, c0))
