"""check_export: where a mismatch starts (numpy only), and the whole check on models of the
tests' own (skipped, with the reason, where PyTorch is not installed)."""

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rnn_run
from rnn_run.check import compare, first_divergence, output_seq_axes

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None
needs_torch = pytest.mark.skipif(
    not HAS_TORCH,
    reason="torch is not installed (pip install torch --index-url https://download.pytorch.org/whl/cpu)",
)


def test_compare_follows_the_cli_rule():
    want = np.array([1.0, 2.0, np.nan, 0.0, np.inf], np.float32)
    got = np.array([1.0 + 1e-6, 2.1, np.nan, 0.0, np.inf], np.float32)
    off, max_abs, max_rel = compare(got, want, rtol=1e-4, atol=1e-5)
    assert off.tolist() == [False, True, False, False, False]
    assert max_abs == pytest.approx(0.1, rel=1e-5) and max_rel == pytest.approx(0.05, rel=1e-5)
    off, max_abs, _ = compare(np.array([np.nan]), np.array([1.0]), 1e-4, 1e-5)
    assert off.tolist() == [True] and np.isnan(max_abs)


def test_first_divergence_finds_the_first_step_and_output():
    rng = np.random.default_rng(0)
    want = [rng.standard_normal((2, 50, 8)), rng.standard_normal((1, 2, 8))]
    got = [w.copy() for w in want]
    got[0][1, 37, 3] += 1.0  # batch entry 1, step 37
    got[0][0, 41, 0] += 1.0  # later step, earlier batch entry
    got[1] += 1.0  # the final state is off too, but it is the second output
    d = first_divergence(["y", "h_n"], got, want, 1e-4, 1e-5, [1, None])
    assert (d.output, d.position, d.axis, d.step, d.steps) == ("y", 0, 1, 37, 50)
    assert d.index == (1, 37, 3) and d.off == 2 and d.total == 800
    assert d.want == pytest.approx(want[0][1, 37, 3]) and d.got == pytest.approx(want[0][1, 37, 3] + 1.0)
    assert "from time step 37 of 50 (axis 1)" in str(d)
    # Without a sequence axis: the first element off, in C order.
    d = first_divergence(["y", "h_n"], got, want, 1e-4, 1e-5, [None, None])
    assert d.step is None and d.index == (0, 41, 0)
    assert first_divergence(["y"], want[:1], want[:1], 1e-4, 1e-5, [1]) is None


def test_output_sequence_axes():
    assert output_seq_axes([(3, 50, 16), (1, 3, 16), (3, 50)], seq_len=50, batch=3) == [1, None, 1]
    assert output_seq_axes([(50, 3, 16)], seq_len=50, batch=3) == [0]
    assert output_seq_axes([(4, 4, 16)], seq_len=4, batch=4) == [0]
    assert output_seq_axes([(3, 16)], seq_len=None, batch=3) == [None]


def test_command_usage_errors(tmp_path):
    done = subprocess.run([sys.executable, "-m", "rnn_run.check", str(tmp_path / "nope.py") + ":make"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no such file" in done.stderr
    done = subprocess.run([sys.executable, "-m", "rnn_run.check", "no-colon"], capture_output=True, text=True)
    assert done.returncode == 2 and "FILE.py:FUNCTION" in done.stderr


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed")
def test_without_torch_the_message_says_how_to_install_it():
    with pytest.raises(ImportError, match="download.pytorch.org/whl/cpu"):
        rnn_run.check_export(object(), ())


MODELS = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class GruHead(nn.Module):
        """One input [batch, seq, features]: the shape the old script refused."""

        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(40, 16, batch_first=True)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            y, h = self.gru(x)
            return self.fc(y), h


    class Packed(nn.Module):
        """Token ids and lengths through pack_padded_sequence."""

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.lstm = nn.LSTM(8, 12, batch_first=True)

        def forward(self, ids, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(self.emb(ids), lengths, batch_first=True)
            y, (h, c) = self.lstm(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=ids.shape[1])
            return y, h


    class BadExport(nn.Module):
        """Exports something else than it runs: from step 5 on, the export adds 0.5."""

        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 8, batch_first=True)

        def forward(self, x):
            y, _ = self.lstm(x)
            if torch.onnx.is_in_onnx_export():
                steps = torch.arange(y.shape[1]).reshape(1, -1, 1)
                y = y + (steps >= 5).to(y.dtype) * 0.5
            return y


    def gru_head():
        torch.manual_seed(0)
        return GruHead(), (torch.randn(3, 50, 40),)


    def packed():
        torch.manual_seed(0)
        ids = torch.randint(0, 20, (3, 7))
        return Packed(), (ids, torch.tensor([7, 5, 2]))


    def bad_export():
        torch.manual_seed(0)
        return BadExport(), (torch.randn(2, 9, 6),)
    '''
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "my_models.py"
    path.write_text(MODELS)
    spec = importlib.util.spec_from_file_location("my_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def exporters():
    return ("legacy", "dynamo") if HAS_ONNXSCRIPT else ("legacy",)


@needs_torch
def test_single_input_model_dynamic(models, tmp_path):
    _, m = models
    model, args = m.gru_head()
    result = rnn_run.check_export(model, args, dynamic=True, exporters=exporters(), out=tmp_path)
    print(result)
    assert result.dynamic == "batch 3 -> 4, seq 50 -> 101 (axis 1 of input 0)"
    assert [r.exporter for r in result.rows][:2] == ["legacy", "legacy @ batch 4, seq 101"]
    assert result.ok, str(result)
    assert all(r.max_abs_err is not None and r.max_abs_err < 1e-4 for r in result.rows)
    assert (tmp_path / "summary.json").exists() and (tmp_path / "legacy" / "model.onnx").exists()


@needs_torch
def test_packed_sequence_dynamic_keeps_lengths_valid(models, tmp_path):
    _, m = models
    model, args = m.packed()
    result = rnn_run.check_export(model, args, dynamic=True, exporters=("legacy",), out=tmp_path)
    print(result)
    assert "Length of all samples" not in str(result)
    legacy = {r.exporter: r for r in result.rows}
    assert legacy["legacy"].ok and legacy["legacy @ batch 4, seq 15"].ok, str(result)


@needs_torch
def test_resized_integer_inputs_are_valid(models):
    import torch
    from rnn_run.check import Dynamic

    _, m = models
    model, args = m.packed()
    dyn = Dynamic(model, args)
    ids, lengths = dyn.new_args
    assert ids.shape == (4, 15) and ids.dtype == torch.int64
    assert int(ids.min()) >= int(args[0].min()) and int(ids.max()) <= int(args[0].max())
    assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)
    assert lengths[0] == 15 and int(lengths.min()) >= 1


@needs_torch
def test_a_bad_export_says_where_it_diverges(models, tmp_path):
    _, m = models
    model, args = m.bad_export()
    result = rnn_run.check_export(model, args, exporters=("legacy",), out=tmp_path)
    print(result)
    (row,) = result.rows
    assert not result.ok and row.verdict.startswith("MISMATCH")
    d = row.divergence
    assert (d.output, d.step, d.steps, d.axis) == (row.divergence.output, 5, 9, 1)
    assert "from time step 5 of 9 (axis 1)" in str(result)


@needs_torch
def test_the_command(models):
    path, _ = models
    done = subprocess.run(
        [sys.executable, "-m", "rnn_run.check", f"{path}:gru_head", "--dynamic", "--exporter", "legacy"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "legacy @ batch 4, seq 101" in done.stdout and "all exports match" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "rnn_run.check", f"{path}:bad_export", "--exporter", "legacy"],
        capture_output=True, text=True,
    )
    assert done.returncode == 1 and "diverges from time step 5" in done.stdout
    done = subprocess.run([sys.executable, "-m", "rnn_run.check", f"{path}:nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "no function 'nope'" in done.stderr
