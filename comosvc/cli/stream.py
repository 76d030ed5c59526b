"""``python -m comosvc stream INPUT --model M --singer S``: convert a file as a live stream would, and time it.

The file is fed to a :class:`~comosvc.streaming.StreamingConverter` one block at a
time at real-time pace (each block is pushed when it would have arrived from a
microphone), or as fast as possible with ``--no-pace``. The report gives the
latency, the per-block compute time (mean, p95, max), its real-time factor
(compute seconds per second of audio; below 1 keeps up) and the underruns: blocks
whose compute took longer than the block lasts (a live player would run dry).

With ``--input-device``/``--output-device`` (needs the optional ``sounddevice``
package) it converts a sound card's input live and/or plays the output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from comosvc.vocoders import GRIFFINLIM


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "stream",
        help="convert live with the one-step student (a file at real-time pace, or a sound device)",
        description="Stream a recording (or a sound device) through the distilled student block by block; "
        "reports latency, compute time per block, real-time factor and underruns.",
    )
    parser.add_argument("input", nargs="?", metavar="INPUT", help="audio file to stream (or use --input-device)")
    parser.add_argument("--model", required=True, help="Hugging Face Hub id or local folder of a distilled ComoSVC model")
    parser.add_argument("--singer", required=True, help='target singer: "<dataset>_<singer>" or a bare singer name, '
                        'or a mix of singers, "alice:0.7,opencpop_female1:0.3"')
    parser.add_argument("--block", type=float, default=0.5, help="block length in seconds (default 0.5)")
    parser.add_argument("--context", type=float, default=1.0, help="past context per block in seconds (default 1.0)")
    parser.add_argument("--lookahead", type=float, default=0.1, help="future context per block in seconds (default 0.1)")
    parser.add_argument("--key", default="0", help="key shift in semitones, or 'auto' (running median of the source F0)")
    parser.add_argument("--steps", type=int, default=None, help="student steps (default: inference.student_steps)")
    parser.add_argument("--vocoder", default=None, help=f"vocoder Hub id or folder, or '{GRIFFINLIM}' (default: inference.vocoder)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--out", default=None, help="output wav (default: <input stem>_<singer>_stream.wav)")
    parser.add_argument("--no-pace", action="store_true", help="feed the file as fast as possible, not at real-time pace")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument("--index-ratio", type=float, default=0.0, metavar="R",
                        help="0-1: pull each block's content towards the singer's timbre index "
                        "(`python -m comosvc index`; default: 0, no index)")
    parser.add_argument("--input-device", default=None, help="sound device to record from (needs sounddevice)")
    parser.add_argument("--output-device", default=None, help="sound device to play the output on (needs sounddevice)")
    parser.add_argument("--seconds", type=float, default=30.0, help="with --input-device: how long to record (default 30)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="config override, e.g. --set f0.method=fcpe (repeatable)",
    )
    parser.set_defaults(func=run)


def block_report(converter) -> dict[str, float]:
    """Per-block compute seconds (mean, p95, max), real-time factor and underruns of a finished stream."""
    seconds = np.array([t.seconds for t in converter.timings], dtype=np.float64)
    durations = np.array([t.n_samples for t in converter.timings], dtype=np.float64) / converter.sample_rate
    if not len(seconds):
        return {"blocks": 0, "mean": 0.0, "p95": 0.0, "max": 0.0, "rtf": 0.0, "underruns": 0}
    return {
        "blocks": len(seconds),
        "mean": float(seconds.mean()),
        "p95": float(np.percentile(seconds, 95)),
        "max": float(seconds.max()),
        "rtf": float(seconds.sum() / durations.sum()),
        "underruns": int((seconds > converter.block_seconds).sum()),  # a block arrives every block_seconds
    }


def format_report(converter, report: dict[str, float], audio_seconds: float, wall: float) -> str:
    return "\n".join([
        f"latency {converter.latency_seconds * 1000:.0f} ms (block {converter.block_seconds * 1000:.0f} ms + "
        f"lookahead {converter.lookahead_seconds * 1000:.0f} ms; compute comes on top)",
        f"blocks {report['blocks']}: compute per block mean {report['mean'] * 1000:.0f} ms, "
        f"p95 {report['p95'] * 1000:.0f} ms, max {report['max'] * 1000:.0f} ms",
        f"real-time factor {report['rtf']:.2f} ({'keeps up' if report['rtf'] < 1 else 'slower than real time'})",
        f"underruns {report['underruns']} of {report['blocks']} blocks (compute longer than the block)",
        f"{audio_seconds:.1f} s of audio in {wall:.1f} s",
    ])


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as err:  # OSError: the package is there but PortAudio is not
        raise SystemExit(
            f"error: --input-device/--output-device need the optional sounddevice package ({err}). "
            "Install it with `pip install sounddevice` (and PortAudio, e.g. `apt install libportaudio2`), "
            "or stream a file instead."
        ) from None
    return sounddevice


def _device(name: str | None):
    return int(name) if name is not None and name.isdigit() else name


def feed_file(converter, wav: np.ndarray, pace: bool, play=None) -> np.ndarray:
    """Push ``wav`` ``(N,)`` one block at a time (sleeping to the wall clock with ``pace``); the converted ``(N,)``."""
    out, step, started = [], converter.block, time.perf_counter()
    for k, position in enumerate(range(0, len(wav), step)):
        if pace:  # the block has "arrived" once its last sample would have been recorded
            delay = started + (position + step) / converter.sample_rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        piece = converter.push(wav[position : position + step])
        if play is not None and len(piece):
            play(piece)
        out.append(piece)
    tail = converter.flush()
    if play is not None and len(tail):
        play(tail)
    out.append(tail)
    return np.concatenate(out)


def record_live(converter, sounddevice, device, seconds: float, play=None) -> tuple[np.ndarray, np.ndarray]:
    """Convert ``seconds`` of a sound card's input as it comes; ``(input, converted)`` ``(N,)`` each."""
    import queue

    pieces: queue.Queue = queue.Queue()
    recorded, out = [], []

    def callback(indata, frames, when, status):  # runs on PortAudio's thread: only hand the samples over
        pieces.put(indata[:, 0].copy())

    with sounddevice.InputStream(samplerate=converter.sample_rate, channels=1, dtype="float32",
                                 blocksize=converter.block, device=device, callback=callback):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            piece = pieces.get()
            recorded.append(piece)
            converted = converter.push(piece)
            if play is not None and len(converted):
                play(converted)
            out.append(converted)
    out.append(converter.flush())
    return np.concatenate(recorded or [np.zeros(0, np.float32)]), np.concatenate(out)


def run(args: argparse.Namespace) -> int:
    from comosvc.audio import AudioError, load_audio, save_audio
    from comosvc.pipeline import ConversionPipeline, UnknownSingerError
    from comosvc.streaming import StreamingConverter

    if not args.input and args.input_device is None:
        print("error: give an INPUT file to stream, or --input-device to record from a sound card", file=sys.stderr)
        return 2
    sounddevice = _sounddevice() if (args.input_device is not None or args.output_device is not None) else None
    try:
        wav = None
        if args.input:
            wav = load_audio(args.input, 24000)
        pipe = ConversionPipeline.from_pretrained(args.model, vocoder=args.vocoder, device=args.device,
                                                  overrides=args.overrides)
        converter = StreamingConverter(pipe, args.singer, block_seconds=args.block, context_seconds=args.context,
                                       lookahead_seconds=args.lookahead, key=args.key, seed=args.seed,
                                       steps=args.steps, index_ratio=args.index_ratio)
    except (AudioError, UnknownSingerError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if wav is not None and pipe.sample_rate != 24000:  # pragma: no cover - every config is 24 kHz today
        wav = load_audio(args.input, pipe.sample_rate)

    player = None
    if args.output_device is not None:
        player = sounddevice.OutputStream(samplerate=pipe.sample_rate, channels=1, dtype="float32",
                                          device=_device(args.output_device))
        player.start()
    play = (lambda piece: player.write(piece.reshape(-1, 1))) if player is not None else None
    print(f"streaming to {converter.request.singer}: latency {converter.latency_seconds * 1000:.0f} ms", file=sys.stderr)
    started = time.perf_counter()
    try:
        if wav is not None:
            out = feed_file(converter, wav, pace=not args.no_pace, play=play)
        else:
            wav, out = record_live(converter, sounddevice, _device(args.input_device), args.seconds, play=play)
    finally:
        if player is not None:
            player.stop()
            player.close()
    wall = time.perf_counter() - started
    stem = Path(args.input).stem if args.input else "live"
    target = Path(args.out) if args.out else Path(f"{stem}_{converter.request.singer.label}_stream.wav")
    save_audio(target, out, pipe.sample_rate)
    for warning in converter.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_report(converter, block_report(converter), len(wav) / pipe.sample_rate, wall))
    print(f"wrote {target}", file=sys.stderr)
    return 0
