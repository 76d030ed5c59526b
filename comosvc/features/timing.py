"""Time each feature for a clip of synthetic singing: ``python -m comosvc.features.timing``.

Content encoders get random weights built in memory (``--size tiny`` like the
tests, or ``--size default`` = whisper-medium's encoder and HuBERT-base), so no
download is needed: speed does not depend on trained weights. Each number is the
median of ``--repeats`` runs after one warm-up run (just the warm-up run when it
takes over 20 s, e.g. CREPE "full" on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch

from comosvc.audio import resample
from comosvc.config import AudioConfig, F0Config
from comosvc.features.content import ContentVecEncoder, WhisperContentEncoder, align_to_mel
from comosvc.features.energy import energy_from_mel
from comosvc.features.f0 import F0_METHODS, extract_f0
from comosvc.features.mel import log_mel
from comosvc.synthetic import sung_phrase


def _median_seconds(fn: Callable[[], object], repeats: int, slow: float = 20.0) -> float:
    start = time.perf_counter()
    fn()  # warm-up: model loading, caches
    if time.perf_counter() - start > slow:  # e.g. CREPE full on a CPU: one run says enough
        return time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_features(seconds: float = 10.0, size: str = "tiny", repeats: int = 3, device: str = "cpu") -> dict[str, float]:
    """Seconds to extract each feature of ``seconds`` of 24 kHz audio on ``device``."""
    audio = AudioConfig()
    n_notes = max(1, int(seconds / 0.75))
    wav, _ = sung_phrase(list(np.linspace(180, 520, n_notes)), note_seconds=0.6, gap_seconds=0.15, seed=0)
    wav = np.resize(wav, int(seconds * audio.sample_rate)).astype(np.float32)
    wav_16k = resample(wav, audio.sample_rate, 16000)
    n_frames = len(wav) // audio.hop_length

    results: dict[str, float] = {}
    results["mel"] = _median_seconds(lambda: log_mel(wav, audio), repeats)
    mel = log_mel(wav, audio)
    results["energy (from mel)"] = _median_seconds(lambda: energy_from_mel(mel), repeats)
    for method in F0_METHODS:
        models = ("tiny", "full") if method == "crepe" else (None,)
        for model in models:
            cfg = F0Config(method=method, crepe_model=model or "full")
            name = f"f0 {method}" + (f" ({model})" if model else "")
            results[name] = _median_seconds(lambda: extract_f0(wav, cfg, audio, device=device), repeats)
    for mode in ("padded", "unpadded"):
        enc = WhisperContentEncoder.random(size, mode=mode, device=device)
        results[f"whisper {mode}"] = _median_seconds(
            lambda: align_to_mel(enc([wav_16k])[0], n_frames), repeats
        )
        del enc
    cv = ContentVecEncoder.random(size, device=device)
    results["contentvec"] = _median_seconds(lambda: align_to_mel(cv([wav_16k])[0], n_frames), repeats)
    results["resample 24k->16k"] = _median_seconds(lambda: resample(wav, audio.sample_rate, 16000), repeats)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--size", choices=["tiny", "default"], default="tiny", help="content encoder size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(f"{args.seconds:g} s of audio, {args.size} content encoders, {args.device}, "
          f"{torch.get_num_threads()} torch threads, median of {args.repeats}")
    results = time_features(args.seconds, args.size, args.repeats, args.device)
    for name, sec in results.items():
        print(f"  {name:<22} {sec * 1000:9.1f} ms")
    ratio = results["whisper padded"] / results["whisper unpadded"]
    print(f"  whisper padded / unpadded: {ratio:.1f}x")


if __name__ == "__main__":
    main()
