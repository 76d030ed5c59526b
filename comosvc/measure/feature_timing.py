"""Time each feature for a clip of synthetic singing: ``python -m comosvc.measure.feature_timing``.

Content encoders get random weights built in memory (``--size tiny`` like the
tests, or ``--size default`` = whisper-medium's encoder and HuBERT-base), so no
download is needed: speed does not depend on trained weights. After one warm-up run,
each feature is run ``--repeats`` times: the fastest wall time and the median
CPU time are reported (just the warm-up run when it takes over 20 s, e.g. CREPE
"full" on a CPU): :func:`comosvc.measure.timer.best_of`.
"""

from __future__ import annotations

import argparse

import torch

from comosvc.audio import resample
from comosvc.config import AudioConfig, F0Config
from comosvc.features.content import ContentVecEncoder, WhisperContentEncoder, align_to_mel
from comosvc.features.energy import energy_from_mel
from comosvc.features.f0 import F0_METHODS, extract_f0
from comosvc.features.mel import log_mel
from comosvc.data.songs import synthetic_song
from comosvc.measure.tables import markdown_table
from comosvc.measure.timer import best_of


def time_features(
    seconds: float = 10.0, size: str = "tiny", repeats: int = 3, device: str = "cpu", f0: bool = True
) -> dict[str, tuple[float, float]]:
    """``(wall, cpu)`` seconds to extract each feature of ``seconds`` of 24 kHz audio on ``device``."""
    audio = AudioConfig()
    wav = synthetic_song(seconds, sample_rate=audio.sample_rate)
    wav_16k = resample(wav, audio.sample_rate, 16000)
    n_frames = len(wav) // audio.hop_length

    results: dict[str, tuple[float, float]] = {}
    results["mel"] = best_of(lambda: log_mel(wav, audio), repeats)
    mel = log_mel(wav, audio)
    results["energy (from mel)"] = best_of(lambda: energy_from_mel(mel), repeats)
    for method in F0_METHODS if f0 else ():
        models = ("tiny", "full") if method == "crepe" else (None,)
        for model in models:
            cfg = F0Config(method=method, crepe_model=model or "full")
            name = f"f0 {method}" + (f" ({model})" if model else "")
            results[name] = best_of(lambda: extract_f0(wav, cfg, audio, device=device), repeats)
    for mode in ("padded", "unpadded"):
        enc = WhisperContentEncoder.random(size, mode=mode, device=device)
        results[f"whisper {mode}"] = best_of(lambda: align_to_mel(enc([wav_16k])[0], n_frames), repeats)
        del enc
    cv = ContentVecEncoder.random(size, device=device)
    results["contentvec"] = best_of(lambda: align_to_mel(cv([wav_16k])[0], n_frames), repeats)
    results["resample 24k->16k"] = best_of(lambda: resample(wav, audio.sample_rate, 16000), repeats)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--size", choices=["tiny", "default"], default="tiny", help="content encoder size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-f0", action="store_true", help="time mel, energy and content only")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 is steadier on a busy shared machine)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.seconds:g} s of audio, {args.size} content encoders, {args.device}, "
          f"{torch.get_num_threads()} torch threads, {args.repeats} runs each")
    results = time_features(args.seconds, args.size, args.repeats, args.device, f0=not args.skip_f0)
    rows = [[name, f"{wall * 1000:.1f}", f"{cpu * 1000:.1f}"] for name, (wall, cpu) in results.items()]
    print(markdown_table(["feature", "wall ms", "cpu ms"], rows, align="lrr"))
    (pw, pc), (uw, uc) = results["whisper padded"], results["whisper unpadded"]
    print(f"  whisper padded / unpadded: {pw / uw:.1f}x wall, {pc / uc:.1f}x cpu")


if __name__ == "__main__":
    main()
