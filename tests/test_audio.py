"""comosvc.audio: each kind of bad input has its own clear error; formats and resampling."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from comosvc.audio import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    TooLongError,
    TooShortError,
    audio_from_samples,
    load_audio,
    resample,
    save_audio,
)


def tone(hz=440.0, seconds=1.0, sr=24000, amplitude=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(wav, sr):
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return np.argmax(spectrum) * sr / len(wav)


# --------------------------------------------------------------------------- bad inputs


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are lyrics, not audio\n" * 20)
    with pytest.raises(NotAudioError, match="not a readable audio file") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(NotAudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(NotAudioError, match="folder"):
        load_audio(tmp_path)


def test_zero_byte_file_is_empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="0 bytes"):
        load_audio(path)
    with pytest.raises(EmptyAudioError):
        load_audio(b"")


def test_valid_header_with_no_samples_is_empty(tmp_path):
    path = tmp_path / "header_only.wav"
    sf.write(path, np.zeros(0, np.float32), 24000, subtype="PCM_16")
    assert path.stat().st_size > 0
    with pytest.raises(EmptyAudioError, match="no samples"):
        load_audio(path)


def test_shorter_than_one_analysis_frame(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, tone(seconds=0.02), 24000)  # 480 samples < n_fft 1024
    with pytest.raises(TooShortError, match="shorter than one analysis frame"):
        load_audio(path)
    sf.write(path, tone(seconds=1024 / 24000), 24000)  # exactly one frame is fine
    assert len(load_audio(path)) == 1024


def test_nan_and_inf_samples(tmp_path):
    for bad in (np.nan, np.inf):
        wav = tone()
        wav[100] = bad
        path = tmp_path / "broken.wav"
        sf.write(path, wav, 24000, subtype="FLOAT")
        with pytest.raises(NonFiniteAudioError, match="NaN or infinite"):
            load_audio(path)


def test_longer_than_max(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, tone(seconds=3.0), 24000)
    with pytest.raises(TooLongError, match="audio.max_duration"):
        load_audio(path, max_seconds=2.0)
    assert len(load_audio(path, max_seconds=5.0)) == 72000


def test_errors_are_distinct_audio_errors():
    classes = [NotAudioError, EmptyAudioError, TooShortError, TooLongError, NonFiniteAudioError]
    assert len(set(classes)) == 5 and all(issubclass(c, AudioError) and issubclass(c, ValueError) for c in classes)


def test_samples_are_checked_like_files():
    # int16 stereo PCM (what Gradio gives) -> scaled mono float32, resampled
    pcm = np.stack([np.full(4800, 16383, np.int16), np.full(4800, -16383, np.int16) // 2], axis=1)
    wav = audio_from_samples(pcm, 48000, 24000)
    assert wav.dtype == np.float32 and wav.shape == (2400,)
    np.testing.assert_allclose(wav[100:-100], (16383 - 8192) / 32767 / 2, atol=1e-3)
    with pytest.raises(EmptyAudioError, match="no samples"):
        audio_from_samples(np.zeros(0, np.float32), 24000)
    with pytest.raises(NonFiniteAudioError, match="NaN or infinite"):
        audio_from_samples(np.array([0.0, np.nan] * 2000, np.float32), 24000)
    with pytest.raises(TooShortError, match="shorter than one analysis frame"):
        audio_from_samples(np.zeros(100, np.float32), 24000)
    with pytest.raises(TooLongError, match="audio.max_duration"):
        audio_from_samples(np.zeros(24000 * 3, np.float32), 24000, max_seconds=2)
    with pytest.raises(ValueError, match="mono"):
        audio_from_samples(np.zeros((2, 2, 4000), np.float32), 24000)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg", "mp3"])
def test_round_trip_to_24k_mono(tmp_path, suffix):
    if suffix.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) has no {suffix} support")
    mono = tone(440.0, 1.0)
    stereo = np.stack([mono, 0.5 * mono], axis=1)
    path = tmp_path / f"tone.{suffix}"
    try:
        sf.write(path, stereo, 24000)
    except sf.LibsndfileError as err:  # some builds decode mp3 but cannot encode it
        pytest.skip(f"this libsndfile cannot write {suffix}: {err}")
    wav = load_audio(path, 24000)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert abs(len(wav) - 24000) <= (0 if suffix in ("wav", "flac") else 1200)
    assert abs(peak_hz(wav, 24000) - 440.0) <= 1.0
    if suffix in ("wav", "flac"):  # lossless: the channel average, to 16-bit precision
        np.testing.assert_allclose(wav, 0.75 * mono, atol=1e-4)
    else:
        assert 0.3 < np.abs(wav).max() < 0.45


@pytest.mark.parametrize("rate", [44100, 16000, 48000])
def test_resampling_keeps_frequency(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, tone(440.0, 1.0, sr=rate), rate)
    wav = load_audio(path, 24000)
    assert len(wav) == 24000
    assert abs(peak_hz(wav, 24000) - 440.0) <= 1.0
    assert 0.45 < np.abs(wav[1000:-1000]).max() < 0.55  # amplitude kept


def test_bytes_and_file_objects(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(), 24000, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    assert len(load_audio(data)) == 24000
    assert len(load_audio(io.BytesIO(data), 16000)) == 16000
    with pytest.raises(NotAudioError):
        load_audio(b"definitely not audio" * 10)


def test_save_audio_then_load(tmp_path):
    wav = tone(330.0)
    path = save_audio(tmp_path / "sub" / "out.wav", wav * 3)  # clipped to [-1, 1]
    back = load_audio(path)
    assert np.abs(back).max() <= 1.0 and abs(peak_hz(back, 24000) - 330.0) <= 1.0
    assert resample(wav, 24000, 24000) is not None and len(resample(wav, 24000, 12000)) == 12000


def test_duration_and_pcm_conversions(tmp_path):
    from comosvc.audio import audio_duration, to_mono_float32, to_pcm16

    path = save_audio(tmp_path / "tone.wav", tone(seconds=1.5))
    assert audio_duration(path) == pytest.approx(1.5)
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(NotAudioError):
        audio_duration(tmp_path / "notes.txt")

    pcm = to_pcm16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0], dtype=np.float32))
    assert pcm.dtype == np.int16 and pcm.tolist() == [-32767, -32767, 0, 16384, 32767, 32767]  # clipped, rounded

    stereo = np.array([[32767, -32767], [16384, 16384]], dtype=np.int16)
    assert to_mono_float32(stereo).tolist() == pytest.approx([0.0, 0.5], abs=1e-4)  # scaled by the type's maximum
    mono = np.array([0.25, -0.5], dtype=np.float64)
    assert to_mono_float32(mono).dtype == np.float32 and to_mono_float32(mono).tolist() == [0.25, -0.5]
    assert to_mono_float32(np.zeros(0, dtype=np.int16)).shape == (0,)
