"""Content encoders built tiny, saved with save_pretrained, loaded back by path; frame alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel

from comosvc.audio import resample
from comosvc.features.content import (
    ContentVecEncoder,
    WhisperContentEncoder,
    align_to_mel,
    contentvec_config,
    whisper_config,
)


@pytest.fixture(scope="module")
def encoders(tiny_encoder_dirs):
    d = tiny_encoder_dirs
    return {
        "padded": WhisperContentEncoder.from_pretrained(d["whisper"], mode="padded", device="cpu"),
        "unpadded": WhisperContentEncoder.from_pretrained(d["whisper"], mode="unpadded", device="cpu"),
        "contentvec": ContentVecEncoder.from_pretrained(d["contentvec"], layer=d["contentvec_layer"], device="cpu"),
    }


def clips_16k(lengths_24k, seed=0):
    rng = np.random.default_rng(seed)
    wavs = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths_24k]
    return wavs, [resample(w, 24000, 16000) for w in wavs]


def test_tiny_encoders_saved_and_loaded_by_path(tiny_encoder_dirs, encoders):
    d = tiny_encoder_dirs
    assert set(d) == {"whisper", "whisper_dim", "contentvec", "contentvec_dim", "contentvec_layer"}
    assert encoders["padded"].dim == d["whisper_dim"] == 64
    assert encoders["contentvec"].dim == d["contentvec_dim"] == 256
    wavs24, wavs16 = clips_16k([24000, 13001])
    for name, enc in encoders.items():
        feats = enc(wavs16)
        for wav24, f in zip(wavs24, feats):
            n_mel = len(wav24) // 256
            # both encoders run at 20 ms: 15/8 content frames per mel frame, at most a frame or two short
            assert f.ndim == 2 and f.shape[1] == enc.dim and f.dtype == torch.float32
            assert len(f) * 15 // 8 >= n_mel - 3, (name, len(f), n_mel)
            aligned = align_to_mel(f, n_mel)
            assert aligned.shape == (n_mel, enc.dim)
            assert torch.isfinite(aligned).all()


def test_padded_and_unpadded_same_shape_and_equal_on_a_full_window(encoders):
    _, wavs16 = clips_16k([12000, 30000])
    for p, u in zip(encoders["padded"](wavs16), encoders["unpadded"](wavs16)):
        assert p.shape == u.shape
    full = (0.1 * np.random.default_rng(1).standard_normal(16000 * 30)).astype(np.float32)
    p, u = encoders["padded"]([full])[0], encoders["unpadded"]([full])[0]
    assert p.shape == u.shape == (1500, 64)
    torch.testing.assert_close(p, u, atol=1e-4, rtol=1e-4)  # same input, same positions: same output


def test_whisper_longer_than_30s_is_windowed(encoders):
    wav = (0.1 * np.random.default_rng(2).standard_normal(16000 * 31)).astype(np.float32)
    for mode in ("padded", "unpadded"):
        assert encoders[mode]([wav])[0].shape == (1500 + 50, 64)


@pytest.mark.parametrize("name", ["padded", "unpadded", "contentvec"])
def test_batched_equals_one_by_one(encoders, name):
    enc = encoders[name]
    _, wavs16 = clips_16k([9000, 24000, 16001, 5000], seed=3)
    batched = enc(wavs16, batch_size=4)
    for wav, b in zip(wavs16, batched):
        torch.testing.assert_close(b, enc([wav])[0], atol=1e-4, rtol=1e-4)


def test_contentvec_layer_is_hf_hidden_state_through_final_proj(encoders):
    enc = encoders["contentvec"]
    wav = (0.1 * np.random.default_rng(4).standard_normal(8000)).astype(np.float32)
    with torch.no_grad():
        ref = enc.model(torch.from_numpy(wav)[None], output_hidden_states=True)
    for layer in (1, 2):
        ours = ContentVecEncoder(enc.model, layer=layer)([wav])[0]
        torch.testing.assert_close(ours, enc.model.final_proj(ref.hidden_states[layer])[0], atol=1e-5, rtol=1e-5)


def test_plain_hubert_without_final_proj_is_refused(tmp_path):
    cfg = contentvec_config("tiny")
    HubertModel(HubertConfig(**cfg.to_dict())).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="final_proj"):
        ContentVecEncoder.from_pretrained(tmp_path)


def test_random_sizes_without_network():
    cfg = whisper_config("default")
    assert (cfg.d_model, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.encoder_ffn_dim, cfg.num_mel_bins) == (
        1024, 24, 16, 4096, 80,
    )
    assert max(cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id, cfg.decoder_start_token_id) < cfg.vocab_size
    hub = contentvec_config("default")
    assert (hub.hidden_size, hub.num_hidden_layers, hub.classifier_proj_size) == (768, 12, 256)
    w = WhisperContentEncoder.random("tiny", mode="unpadded")
    c = ContentVecEncoder.random("tiny")
    wav = np.zeros(16000, np.float32)
    assert w([wav])[0].shape == (50, 64) and c([wav])[0].shape == (49, 256)


@pytest.mark.parametrize("n_content", [1, 2, 3, 7, 50, 51, 157, 1000])
def test_align_to_mel_exact_frame_count(n_content):
    feats = np.random.default_rng(n_content).normal(size=(n_content, 4)).astype(np.float32)
    for n_frames in {1, n_content, n_content * 15 // 8, n_content * 15 // 8 + 3, n_content * 2 + 5}:
        out = align_to_mel(feats, n_frames)
        assert out.shape == (n_frames, 4) and out.dtype == np.float32
        out_t = align_to_mel(torch.from_numpy(feats), n_frames)
        np.testing.assert_allclose(out_t.numpy(), out, atol=1e-6)


def test_align_to_mel_hand_example():
    feats = np.array([[0.0], [8.0], [16.0]])
    # 15 x 0, 15 x 8, 15 x 16 -> blocks of 8: [0]*8, [0]*7+[8], [8]*8, [8]*6+[16]*2, [16]*8; 5 left over dropped
    expected = [0.0, 1.0, 8.0, 10.0, 16.0, 16.0, 16.0]  # padded with the last frame
    np.testing.assert_allclose(align_to_mel(feats, 7)[:, 0], expected)
    np.testing.assert_allclose(align_to_mel(feats, 3)[:, 0], expected[:3])
    assert align_to_mel(np.zeros((0, 5)), 4).shape == (4, 5)
