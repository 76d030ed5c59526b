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

    return audio_from_samples(data, file_rate, sample_rate, max_seconds=max_seconds, min_seconds=min_seconds, name=name)


def audio_from_samples(
    samples: np.ndarray,
    rate: int,
    target_rate: int = 24000,
    max_seconds: float | None = None,
    min_seconds: float = MIN_SECONDS,
    name: str = "The audio",
) -> np.ndarray:
    """Decoded samples -> mono float32 ``(N,)`` at ``target_rate`` Hz, checked like a file.

    ``samples`` ``(N,)`` or ``(N, channels)`` (channels are averaged), float in
    [-1, 1] or integer PCM (scaled by the type's maximum), at ``rate`` Hz. Raises
    :class:`EmptyAudioError`, :class:`NonFiniteAudioError`, :class:`TooShortError` or
    :class:`TooLongError` (``name`` starts the message), and :class:`ValueError` for
    any other shape.
    """
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise ValueError(f"audio samples must be mono (N,) or (N, channels), got shape {samples.shape}")
    samples = samples.astype(np.float32, copy=False)
    check_samples(samples, rate, max_seconds=max_seconds, min_seconds=min_seconds, name=name)
    return resample(samples, rate, target_rate)


def check_samples(
    samples: np.ndarray, rate: int, max_seconds: float | None = None, min_seconds: float = MIN_SECONDS, name: str = "The audio"
) -> None:
    """Raise the :class:`AudioError` that says why ``samples`` ``(N, ...)`` at ``rate`` Hz cannot be converted."""
    if samples.shape[0] == 0:
        raise EmptyAudioError(f"{name} holds no samples. Re-export or remove it.")
    if not np.isfinite(samples).all():
        raise NonFiniteAudioError(f"{name} contains NaN or infinite samples; the file is corrupt. Re-export it.")
    duration = samples.shape[0] / rate
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


def audio_duration(path: str | Path) -> float:
    """Seconds of audio in the file at ``path``, from its header (nothing is decoded); :class:`NotAudioError`
    when soundfile cannot read it."""
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise NotAudioError(f"{path} is not a readable audio file ({err}). Use wav, flac, ogg or mp3.") from err


def to_mono_float32(samples: np.ndarray) -> np.ndarray:
    """Samples ``(N,)`` or ``(N, channels)``, float in [-1, 1] or integer PCM (scaled by the type's maximum),
    -> mono float32 ``(N,)``, channels averaged. Nothing is checked or resampled (:func:`audio_from_samples`
    does both)."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    samples = samples.astype(np.float32, copy=False)
    return samples.reshape(len(samples), -1).mean(axis=1, dtype=np.float32) if samples.ndim > 1 else samples


def to_pcm16(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    """Samples in [-1, 1] -> 16-bit PCM (clipped, rounded), e.g. for players that would otherwise rescale floats."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    return np.round(np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)


__all__ = [
    "AudioError",
    "EmptyAudioError",
    "MIN_SECONDS",
    "NonFiniteAudioError",
    "NotAudioError",
    "TooLongError",
    "TooShortError",
    "audio_duration",
    "audio_from_samples",
    "check_samples",
    "load_audio",
    "resample",
    "save_audio",
    "to_mono_float32",
    "to_pcm16",
]
