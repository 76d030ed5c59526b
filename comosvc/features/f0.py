"""F0 extractors behind one interface: Hz at the mel frame rate, 0 = unvoiced.

Every method returns ``(T,)`` float32 Hz with ``T = len(wav) // hop``, frame ``i``
centred on sample ``i * hop + hop / 2`` of the 24 kHz clip (the centre of mel
frame ``i``). Each extractor reports F0 at its own frame times; one shared step
(:func:`to_mel_frames`) samples that track at the mel frame centres.

Methods (``F0Config.method``):

- ``parselmouth`` (default, the reference): Praat autocorrelation, time step
  hop / sr, voicing threshold 0.6, floor 50 Hz, ceiling 1100 Hz.
- ``fcpe``: torchfcpe's bundled model (16 kHz, 10 ms frames).
- ``crepe``: torchcrepe ``full`` or ``tiny`` (16 kHz, 10 ms frames), weighted-argmax
  decoding, unvoiced where the median-filtered periodicity < ``crepe_threshold``.
- ``harvest`` / ``dio``: WORLD (pyworld) refined with StoneMask.

Harvest and FCPE track a "pitch" even in white noise, so every method but
parselmouth also passes a periodicity gate (:func:`periodicity_gate`): a frame
stays voiced only if the waveform's normalised autocorrelation at the detected
period reaches ``F0Config.periodicity_threshold``. Praat's own voicing decision
is that very test, so it is not applied twice.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from comosvc.audio import resample
from comosvc.config import AudioConfig, F0Config

# An extractor maps (wav at sr, sr, F0Config, device, hop=...) -> (its frame times in s, F0 in Hz, 0 = unvoiced).
F0Method = Callable[..., "tuple[np.ndarray, np.ndarray]"]

_MODELS: dict[tuple[str, str], object] = {}  # (name, device) -> loaded model


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- extractors


def parselmouth_f0(wav: np.ndarray, sr: int, cfg: F0Config, device: str, hop: int = 256):
    """Praat ``to_pitch_ac`` with the reference's settings."""
    import parselmouth

    # Praat needs 3 periods of the floor in the sound; pad short clips with silence at
    # the end (frame times are absolute, so the frames inside the clip do not move).
    min_len = int(np.ceil(3.0 / cfg.f0_min * sr)) + 2 * hop
    x = np.pad(wav.astype(np.float64), (0, max(0, min_len - len(wav))))
    sound = parselmouth.Sound(x, sampling_frequency=sr)
    pitch = sound.to_pitch_ac(
        time_step=hop / sr,
        voicing_threshold=cfg.voicing_threshold,
        pitch_floor=cfg.f0_min,
        pitch_ceiling=cfg.f0_max,
    )
    return np.asarray(pitch.xs()), np.nan_to_num(pitch.selected_array["frequency"])


def _world_f0(fn_name: str):
    def extract(wav: np.ndarray, sr: int, cfg: F0Config, device: str, hop: int = 256):
        import pyworld

        x = wav.astype(np.float64)
        estimate = getattr(pyworld, fn_name)
        f0, times = estimate(x, sr, f0_floor=cfg.f0_min, f0_ceil=cfg.f0_max, frame_period=1000.0 * hop / sr)
        f0 = pyworld.stonemask(x, f0, times, sr)
        return times, f0

    extract.__name__ = f"{fn_name}_f0"
    extract.__doc__ = f"WORLD ``{fn_name}`` refined with StoneMask, frames every hop / sr."
    return extract


harvest_f0 = _world_f0("harvest")
dio_f0 = _world_f0("dio")


def _fcpe_model(device: str):
    key = ("fcpe", device)
    if key not in _MODELS:
        import torchfcpe

        _MODELS[key] = torchfcpe.spawn_bundled_infer_model(device=device)
    return _MODELS[key]


def fcpe_f0(wav: np.ndarray, sr: int, cfg: F0Config, device: str, hop: int = 256):
    """torchfcpe's bundled model at 16 kHz; its frame ``j`` is centred on ``j * 10 ms + 5 ms``."""
    model = _fcpe_model(device)
    model_sr, model_hop = model.get_model_sr(), model.get_hop_size()
    x = torch.from_numpy(resample(wav, sr, model_sr)).to(device)
    with torch.no_grad():
        f0 = model.infer(x[None, :, None], sr=model_sr, decoder_mode="local_argmax", threshold=0.006)
    f0 = f0[0, :, 0].float().cpu().numpy()
    f0[(f0 < cfg.f0_min) | (f0 > cfg.f0_max)] = 0.0
    times = (np.arange(len(f0)) * model_hop + model_hop / 2) / model_sr
    return times, f0


def crepe_f0(wav: np.ndarray, sr: int, cfg: F0Config, device: str, hop: int = 256):
    """torchcrepe at 16 kHz, 10 ms frames centred on ``j * 10 ms``; low periodicity -> unvoiced."""
    import torchcrepe

    crepe_sr, crepe_hop = 16000, 160
    x = torch.from_numpy(resample(wav, sr, crepe_sr))[None]
    # torchcrepe keeps one loaded model (per capacity) and moves it to the requested device.
    with torch.no_grad():
        f0, periodicity = torchcrepe.predict(
            x,
            crepe_sr,
            hop_length=crepe_hop,
            fmin=cfg.f0_min,
            fmax=cfg.f0_max,
            model=cfg.crepe_model,
            decoder=torchcrepe.decode.weighted_argmax,
            return_periodicity=True,
            batch_size=512,
            device=device,
            pad=True,
        )
        periodicity = torchcrepe.filter.median(periodicity, 3)
    f0, periodicity = f0[0].cpu().numpy(), periodicity[0].cpu().numpy()
    f0 = np.where(periodicity >= cfg.crepe_threshold, f0, 0.0)
    times = np.arange(len(f0)) * crepe_hop / crepe_sr
    return times, f0


F0_METHODS: dict[str, F0Method] = {
    "parselmouth": parselmouth_f0,
    "fcpe": fcpe_f0,
    "crepe": crepe_f0,
    "harvest": harvest_f0,
    "dio": dio_f0,
}
GATED_METHODS = frozenset({"fcpe", "crepe", "harvest", "dio"})  # see periodicity_gate


# --------------------------------------------------------------------------- shared steps


def mel_frame_times(n_samples: int, hop: int, sr: int) -> np.ndarray:
    """Centres of the ``n_samples // hop`` mel frames, seconds."""
    return (np.arange(n_samples // hop) * hop + hop / 2) / sr


def to_mel_frames(times: np.ndarray, f0: np.ndarray, target_times: np.ndarray) -> np.ndarray:
    """Sample an F0 track (``times`` s, Hz, 0 = unvoiced) at ``target_times``.

    Voicing comes from the nearest source frame; voiced values are interpolated
    linearly between voiced source frames (held constant beyond the ends).
    """
    times = np.asarray(times, dtype=np.float64)
    f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64))
    voiced = f0 > 0
    out = np.zeros(len(target_times), dtype=np.float32)
    if len(times) == 0 or not voiced.any():
        return out
    near_voiced = np.interp(target_times, times, voiced.astype(np.float64)) >= 0.5
    values = np.interp(target_times, times[voiced], f0[voiced])
    out[near_voiced] = values[near_voiced]
    return out


def periodicity(wav: np.ndarray, f0: np.ndarray, sr: int, hop: int, min_window: int = 480) -> np.ndarray:
    """Normalised autocorrelation of ``wav`` at the period of each voiced frame, ``(T,)`` in [-1, 1].

    For frame ``i`` (centre ``i * hop + hop / 2``) with ``f0[i] > 0``: a window of
    ``max(3 periods, min_window)`` samples is correlated with itself shifted by the
    period (best of the integer lags within 2 samples of ``sr / f0``). Unvoiced frames get 0.
    """
    out = np.zeros(len(f0), dtype=np.float32)
    voiced = np.flatnonzero(f0 > 0)
    if len(voiced) == 0:
        return out
    max_period = int(np.ceil(sr / f0[voiced].min())) + 2
    half = max(3 * max_period, min_window) // 2 + 1
    x = np.pad(wav.astype(np.float64), (half, half + max_period + 1))
    for i in voiced:
        period = sr / f0[i]
        length = max(int(3 * period), min_window)
        start = i * hop + hop // 2 - length // 2 + half
        a = x[start : start + length]
        energy_a = np.dot(a, a)
        best = 0.0
        for lag in range(max(1, int(round(period)) - 2), int(round(period)) + 3):
            b = x[start + lag : start + lag + length]
            denom = np.sqrt(energy_a * np.dot(b, b))
            if denom > 0:
                best = max(best, np.dot(a, b) / denom)
        out[i] = best
    return out


def periodicity_gate(wav: np.ndarray, f0: np.ndarray, sr: int, hop: int, threshold: float) -> np.ndarray:
    """Set to 0 the frames of ``f0`` whose :func:`periodicity` is below ``threshold``."""
    if threshold <= 0:
        return f0
    return np.where(periodicity(wav, f0, sr, hop) >= threshold, f0, 0.0).astype(np.float32)


def extract_f0(
    wav: np.ndarray,
    cfg: F0Config = F0Config(),
    audio: AudioConfig = AudioConfig(),
    device: str | None = None,
    method: str | None = None,
) -> np.ndarray:
    """F0 of a mono clip at ``audio.sample_rate``: ``(len(wav) // hop,)`` float32 Hz, 0 = unvoiced.

    ``method`` overrides ``cfg.method``; ``device`` (FCPE, CREPE) defaults to CUDA when available.
    """
    method = method or cfg.method
    if method not in F0_METHODS:
        raise ValueError(f"unknown F0 method {method!r}; choose one of: {', '.join(F0_METHODS)}")
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    sr, hop = audio.sample_rate, audio.hop_length
    target = mel_frame_times(len(wav), hop, sr)
    if len(target) == 0:
        return np.zeros(0, dtype=np.float32)
    times, f0 = F0_METHODS[method](wav, sr, cfg, device or default_device(), hop=hop)
    f0 = to_mel_frames(times, f0, target)
    if method in GATED_METHODS:
        f0 = periodicity_gate(wav, f0, sr, hop, cfg.periodicity_threshold)
    return f0.astype(np.float32)


__all__ = [
    "F0_METHODS",
    "extract_f0",
    "mel_frame_times",
    "periodicity",
    "periodicity_gate",
    "to_mel_frames",
]
