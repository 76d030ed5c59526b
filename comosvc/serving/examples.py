"""The example clips the app offers: short synthetic sung phrases, written once."""

from __future__ import annotations

from pathlib import Path

from comosvc.audio import save_audio

EXAMPLES = (
    # file name, notes (Hz), synthetic voice index, label
    ("phrase_low.wav", [146.8, 164.8, 174.6, 196.0, 220.0], 1, "low phrase (D3-A3)"),
    ("phrase_high.wav", [392.0, 440.0, 523.3, 440.0, 392.0], 2, "high phrase (G4-C5)"),
)


def write_examples(folder: Path) -> list[tuple[Path, str]]:
    """Synthesise the example clips (a few seconds each) into ``folder``, each unless it is there;
    returns ``(path, label)`` per clip."""
    from comosvc.data.songs import singer_voice, sung_phrase

    out = []
    for name, notes, voice, label in EXAMPLES:
        path = Path(folder) / name
        if not path.exists():
            wav, _ = sung_phrase(notes, note_seconds=0.5, gap_seconds=0.12, voice=singer_voice(voice), seed=voice)
            save_audio(path, wav)
        out.append((path, label))
    return out
