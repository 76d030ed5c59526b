"""Time vocoders with random weights on this machine's CPU: ``python -m comosvc.measure.vocoder_bench``.

Speed does not depend on the weights, so nothing is downloaded: each vocoder is
built by :func:`~comosvc.vocoders.registry.random_vocoder`.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from comosvc.config import AudioConfig
from comosvc.measure.timer import median_of, repeat
from comosvc.vocoders.bigvgan import KNOWN_CONFIGS
from comosvc.vocoders.registry import random_names, random_vocoder


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def benchmark(
    names: list[str] | None = None,
    seconds: float = 10.0,
    runs: int = 3,
    audio: AudioConfig | None = None,
) -> list[dict[str, Any]]:
    """Time vocoding ``seconds`` of random mel with random-weight vocoders on the CPU.

    ``names``: default the known BigVGAN generators. Returns one dict per vocoder:
    name, parameters (inference: weight norm folded), the wall-clock and process CPU
    seconds of each run, their medians, and the real-time factor.
    """
    audio = audio or AudioConfig()
    results = []
    for name in names or list(KNOWN_CONFIGS):
        vocoder = random_vocoder(name, audio, seed=0).to("cpu")
        frames = round(seconds * audio.sample_rate / audio.hop_length)
        audio_seconds = frames * audio.hop_length / audio.sample_rate
        mel = torch.randn(1, frames, audio.n_mels) - 5.0
        vocoder(mel[:, : min(frames, 32)])  # warm-up
        with torch.no_grad():
            times = repeat(lambda: vocoder(mel), runs)
        median = median_of(times)
        results.append(
            {
                "name": name,
                "parameters": count_parameters(vocoder),
                "seconds_of_audio": audio_seconds,
                "threads": torch.get_num_threads(),
                "wall_seconds": [t.wall for t in times],
                "cpu_seconds": [t.cpu for t in times],
                "median_seconds": median.wall,
                "median_cpu_seconds": median.cpu,
                "rtf": median.wall / audio_seconds,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comosvc.measure.vocoder_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=random_names(), help="default: the known BigVGAN generators")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the mel to vocode")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:  # fixed at start-up, for the whole run
        torch.set_num_threads(args.threads)
    for r in benchmark(args.model, args.seconds, args.runs):
        print(
            f"{r['name']}: {r['parameters'] / 1e6:.2f}M parameters; {r['seconds_of_audio']:.2f} s of audio "
            f"in {r['median_seconds']:.2f} s wall (median of {len(r['wall_seconds'])}: "
            f"{', '.join(f'{t:.2f}' for t in r['wall_seconds'])}), {r['median_cpu_seconds']:.2f} s CPU, "
            f"RTF {r['rtf']:.2f} (torch {torch.__version__}, {r['threads']} threads, fp32, batch 1)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
