"""Small fake corpora in the official layouts, filled with synthetic singing.

For tests, smoke runs and throughput measurements: every reader of
:mod:`comosvc.data.corpora` gets a folder laid out like the real release, with
:func:`comosvc.data.songs.synthetic_song` audio (a distinct timbre per singer).

    >>> files = write_corpus("m4singer", "/tmp/m4", n_singers=2, files_per_singer=2)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from comosvc.audio import save_audio
from comosvc.data.songs import synthetic_song


def _paths(corpus: str, root: Path, singer: int, index: int) -> tuple[str, str, Path]:
    """(singer name as the reader reports it, utterance id, file path) of file ``index`` of ``singer``."""
    if corpus == "m4singer":
        name, song = ["Alto-1", "Tenor-2", "Soprano-3", "Bass-4"][singer % 4] + ("" if singer < 4 else f"x{singer}"), "newboy"
        return name, f"{song}#{index:04d}", root / f"{name}#{song}" / f"{index:04d}.wav"
    if corpus == "opencpop":
        stem = f"2001{index:06d}"
        return "female1", stem, root / "segments" / "wavs" / f"{stem}.wav"
    if corpus == "opensinger":
        gender, sid = ("Man", singer) if singer % 2 == 0 else ("Woman", singer)
        song = "song"
        return f"{gender}_{sid}", f"{song}_{index}", root / f"{gender}Raw" / f"{sid}_{song}" / f"{sid}_{song}_{index}.wav"
    if corpus == "svcc":
        name = ["IDF1", "IDM1", "CDF1", "CDM1"][singer % 4]
        stem = f"1{index + 1:04d}"
        return name, stem, root / "Data" / name / f"{stem}.wav"
    if corpus == "vctk":
        name = f"p{225 + singer}"
        stem = f"{name}_{index + 1:03d}"
        return name, stem, root / "wav48_silence_trimmed" / name / f"{stem}_mic1.flac"
    if corpus == "generic":
        name = f"singer{singer}"
        return name, f"songs/take{index}", root / name / "songs" / f"take{index}.wav"
    raise ValueError(f"no fake layout for corpus {corpus!r}")


def write_corpus(
    corpus: str,
    root: str | Path,
    n_singers: int = 2,
    files_per_singer: int = 2,
    seconds: float | tuple[float, float] = (0.7, 1.4),
    seed: int = 0,
    sample_rate: int = 24000,
) -> list[tuple[str, str, Path]]:
    """Write a fake ``corpus`` under ``root``; returns ``(singer, utterance, path)`` per file.

    ``seconds``: a duration, or a ``(min, max)`` range drawn per file. Opencpop has
    one singer whatever ``n_singers`` says. VCTK files are FLAC and also get a
    ``mic2`` twin (which the reader must ignore); M4Singer gets a ``meta.json``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    if corpus == "opencpop":
        n_singers = 1
    written = []
    for s in range(n_singers):
        for i in range(files_per_singer):
            singer, utt, path = _paths(corpus, root, s, s * files_per_singer + i if corpus == "opencpop" else i)
            dur = float(rng.uniform(*seconds)) if isinstance(seconds, tuple) else float(seconds)
            wav = synthetic_song(dur, s, seed=int(rng.integers(1 << 30)), sample_rate=sample_rate)
            save_audio(path, wav, sample_rate)
            if corpus == "vctk":
                save_audio(path.with_name(path.name.replace("_mic1", "_mic2")), wav, sample_rate)
            written.append((singer, utt, path))
    if corpus == "m4singer":
        meta = [{"item_name": f"{p.parent.name}#{p.stem}"} for _, _, p in written]
        (root / "meta.json").write_text(json.dumps(meta))
    if corpus == "opencpop":
        (root / "segments" / "transcriptions.txt").write_text(
            "".join(f"{p.stem}|la|l a|0|0|0|0\n" for _, _, p in written)
        )
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m comosvc.data.synthetic CORPUS ROOT [--singers N] [--files N] [--seconds MIN MAX]``."""
    import argparse

    from comosvc.data.corpora import CORPORA

    parser = argparse.ArgumentParser(prog="python -m comosvc.data.synthetic", description="Write a fake corpus of synthetic singing.")
    parser.add_argument("corpus", choices=sorted(CORPORA))
    parser.add_argument("root")
    parser.add_argument("--singers", type=int, default=2)
    parser.add_argument("--files", type=int, default=2, help="files per singer")
    parser.add_argument("--seconds", type=float, nargs=2, default=(0.7, 1.4), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = write_corpus(args.corpus, args.root, args.singers, args.files, tuple(args.seconds), args.seed)
    print(f"wrote {len(written)} files under {args.root}")
    return 0


__all__ = ["main", "write_corpus"]

if __name__ == "__main__":
    raise SystemExit(main())
