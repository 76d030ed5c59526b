"""Audio I/O: any file soundfile reads, to mono float32 at the rate you ask for.

soundfile (libsndfile) reads wav, flac, ogg/vorbis, opus and mp3 without FFmpeg;
resampling uses torchaudio's band-limited sinc resampler. Every way a file can be
unusable raises its own :class:`AudioError` subclass with a message that names
the file and says what to do, so no caller ever gets garbage silently.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

AudioSource = Union[str, Path, bytes, BinaryIO]

# One analysis frame of the BigVGAN mel: n_fft = 1024 samples at 24 kHz.
MIN_SECONDS = 1024 / 24000


class AudioError(ValueError):
    """Base class: the input cannot be used as audio. The message says why."""


class NotAudioError(AudioError):
    """The file does not exist or is not in a format soundfile can decode."""


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""


class TooShortError(AudioError):
    """Shorter than one analysis frame of the mel."""


class TooLongError(AudioError):
    """Longer than the configured maximum duration."""


class NonFiniteAudioError(AudioError):
    """The samples contain NaN or infinity."""


def _name(source: AudioSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", None) or "<in-memory audio>"


def load_audio(
    source: AudioSource,
    sample_rate: int = 24000,
    max_seconds: float | None = None,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Read ``source`` and return mono float32 samples at ``sample_rate`` Hz, shape ``(N,)``.

    ``source`` is a path, the file's bytes, or a binary file object. Channels are
    averaged. Raises :class:`NotAudioError`, :class:`EmptyAudioError`,
    :class:`TooShortError`, :class:`TooLongError` or :class:`NonFiniteAudioError`.
    """
    name = _name(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise NotAudioError(f"{name}: no such file. Check the path.")
        if path.is_dir():
            raise NotAudioError(f"{name} is a folder, not an audio file.")
        if path.stat().st_size == 0:
            raise EmptyAudioError(f"{name} is an empty file (0 bytes). Re-export or remove it.")
    elif isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise EmptyAudioError(f"{name} is empty (0 bytes).")
        source = io.BytesIO(source)

    try:
        info = sf.info(source)
        if hasattr(source, "seek"):
            source.seek(0)
        if max_seconds is not None and info.frames > 0 and info.duration > max_seconds:
            raise TooLongError(
                f"{name} lasts {info.duration:.1f} s, more than the maximum of {max_seconds:.0f} s. "
                "Cut it into shorter files or raise the limit (audio.max_duration)."
            )
        data, file_rate = sf.read(source, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise NotAudioError(
            f"{name} is not a readable audio file ({err}). "
            "Use wav, flac, ogg or mp3."
        ) from err

    if data.shape[0] == 0:
        raise EmptyAudioError(f"{name} holds no samples. Re-export or remove it.")
    if not np.isfinite(data).all():
        raise NonFiniteAudioError(
            f"{name} contains NaN or infinite samples; the file is corrupt. Re-export it."
        )
    duration = data.shape[0] / file_rate
    if duration < min_seconds:
        raise TooShortError(
            f"{name} lasts {duration * 1000:.1f} ms, shorter than one analysis frame "
            f"({min_seconds * 1000:.1f} ms). Use a longer clip."
        )
    if max_seconds is not None and duration > max_seconds:
        raise TooLongError(
            f"{name} lasts {duration:.1f} s, more than the maximum of {max_seconds:.0f} s. "
            "Cut it into shorter files or raise the limit (audio.max_duration)."
        )

    wav = data.mean(axis=1)
    return resample(wav, file_rate, sample_rate)


def resample(wav: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample mono float32 ``(N,)`` samples from ``orig_rate`` to ``new_rate`` Hz."""
    wav = np.asarray(wav, dtype=np.float32)
    if orig_rate == new_rate:
        return wav
    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wav)), orig_rate, new_rate)
    return out.numpy().astype(np.float32, copy=False)


def save_audio(path: str | Path, wav: np.ndarray | torch.Tensor, sample_rate: int = 24000) -> Path:
    """Write mono samples in [-1, 1] to ``path`` (format from the suffix; 16-bit PCM for wav)."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16" if path.suffix.lower() == ".wav" else None
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0), sample_rate, subtype=subtype)
    return path


__all__ = [
    "AudioError",
    "EmptyAudioError",
    "MIN_SECONDS",
    "NonFiniteAudioError",
    "NotAudioError",
    "TooLongError",
    "TooShortError",
    "load_audio",
    "resample",
    "save_audio",
]
