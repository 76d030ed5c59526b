"""Content encoders: Whisper's encoder and ContentVec, loaded through transformers.

Both read 16 kHz audio and give one vector per 20 ms; :func:`align_to_mel` maps
those frames onto the mel frame rate (hop 256 at 24 kHz).

- :class:`WhisperContentEncoder`: the encoder of a Whisper checkpoint (default
  ``openai/whisper-medium``, 1024-d), last layer after the final layer norm. Two
  modes: ``"padded"`` is the reference (every 30 s window padded to 30 s, output
  trimmed to the input); ``"unpadded"`` feeds only the real frames with the
  positional embeddings cut to the input length, far cheaper on short clips.
  Inputs longer than 30 s are encoded in consecutive 30 s windows in both modes.
- :class:`ContentVecEncoder`: the HF port of ContentVec (default
  ``lengyue233/content-vec-best``): a ``HubertModel`` plus a ``final_proj``
  Linear(768, 256) in the same state dict (:class:`HubertModelWithFinalProj`);
  hidden state ``layer`` (12 = the last layer of HuBERT-base), then ``final_proj``.

Batches give the same features as one clip at a time: clips are padded and
attention is masked, and the convolutional front ends (whose GroupNorm / edge
frames would see the padding) run per clip or are masked. Nothing here touches
the network unless you pass a Hub id that is not cached yet.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import HubertConfig, HubertModel, WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperPreTrainedModel

WHISPER_SAMPLE_RATE = 16000
CONTENT_SAMPLE_RATE = WHISPER_SAMPLE_RATE  # Hz: both encoders read 16 kHz audio
CONTENT_FRAME_HOP = 320  # samples at 16 kHz: one content frame per 20 ms (both encoders)
WHISPER_WINDOW_SECONDS = 30
CONTENT_HOP_SECONDS = CONTENT_FRAME_HOP / CONTENT_SAMPLE_RATE


# --------------------------------------------------------------------------- alignment


def align_to_mel(features, n_frames: int, source_hop: int = 480, target_hop: int = 256):
    """Map content frames ``(T_src, D)`` (hop ``source_hop`` samples) to ``(n_frames, D)`` at ``target_hop``.

    docs/design.md "Frame alignment": with the hops reduced by their gcd (480:256 = 15:8 at 24 kHz) repeat
    each content frame 15x, average each full block of 8, pad by repeating the
    last frame and cut to ``n_frames``. NumPy arrays and torch tensors alike.
    """
    g = math.gcd(source_hop, target_hop)
    up, down = source_hop // g, target_hop // g
    is_torch = isinstance(features, torch.Tensor)
    x = features if is_torch else np.asarray(features)
    dim = x.shape[-1]
    if x.shape[0] == 0:
        return x.new_zeros((n_frames, dim)) if is_torch else np.zeros((n_frames, dim), dtype=x.dtype)
    x = x.repeat_interleave(up, dim=0) if is_torch else np.repeat(x, up, axis=0)
    n = x.shape[0] // down
    x = x[: n * down].reshape(n, down, dim).mean(1)
    if n < n_frames:
        last = x[-1:]
        pad = last.expand(n_frames - n, dim) if is_torch else np.repeat(last, n_frames - n, axis=0)
        x = torch.cat([x, pad]) if is_torch else np.concatenate([x, pad])
    return x[:n_frames]


def _additive_mask(lengths: torch.Tensor, max_len: int, dtype: torch.dtype) -> torch.Tensor | None:
    """``(B, 1, 1, max_len)`` additive attention mask hiding keys at or beyond each length; None if all full."""
    if bool((lengths == max_len).all()):
        return None
    valid = torch.arange(max_len, device=lengths.device)[None] < lengths[:, None]
    mask = torch.zeros(valid.shape, dtype=dtype, device=lengths.device)
    mask.masked_fill_(~valid, torch.finfo(dtype).min)
    return mask[:, None, None, :]


def _batches(wavs: list[np.ndarray], batch_size: int):
    """Indices of ``wavs`` grouped into batches of similar length (less padding)."""
    order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _model_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(module.parameters())
    return p.device, p.dtype


def _place(module: nn.Module, device: str | torch.device | None, dtype: torch.dtype) -> nn.Module:
    """``module`` frozen, in eval mode, on ``device`` (default CUDA when available) in ``dtype``.

    ``dtype`` is the resolved ``inference.dtype`` (:func:`comosvc.precision.resolve_dtype`);
    the encoders' outputs are float32 whatever it is.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)


# --------------------------------------------------------------------------- Whisper


class WhisperEncoderOnly(WhisperPreTrainedModel):
    """Loads just the encoder of a full Whisper checkpoint (the decoder weights are skipped)."""

    _keys_to_ignore_on_load_unexpected = [r"decoder\.", r"proj_out"]

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.post_init()


WHISPER_SIZES = {
    # openai/whisper-medium's encoder
    "default": dict(d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096, num_mel_bins=80),
    "tiny": dict(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, num_mel_bins=80),
}


def whisper_config(size: str = "tiny") -> WhisperConfig:
    """A WhisperConfig of a named size with a tiny decoder and a vocabulary that fits its special ids."""
    if size not in WHISPER_SIZES:
        raise ValueError(f"unknown Whisper size {size!r}; choose one of {list(WHISPER_SIZES)}")
    return WhisperConfig(
        **WHISPER_SIZES[size],
        max_source_positions=1500,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=128,
        max_target_positions=64,
        # a small vocabulary needs every special id below its size (a pitfall of tiny test vocabularies)
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )


class WhisperContentEncoder(nn.Module):
    """Whisper encoder features: 16 kHz clips -> ``(T_i, d_model)`` per clip, one frame per 20 ms.

    ``T_i = ceil((n_i // 160) / 2)`` for a clip of ``n_i`` samples (the encoder's
    stride-2 convolution over 10 ms mel frames).
    """

    def __init__(self, encoder: WhisperEncoder, feature_extractor: WhisperFeatureExtractor, mode: str = "padded"):
        super().__init__()
        if mode not in ("padded", "unpadded"):
            raise ValueError(f"Whisper mode must be 'padded' or 'unpadded', got {mode!r}")
        if feature_extractor.feature_size != encoder.config.num_mel_bins:
            raise ValueError(
                f"the Whisper feature extractor makes {feature_extractor.feature_size} mel bins "
                f"but the encoder expects {encoder.config.num_mel_bins}"
            )
        self.encoder = encoder.eval().requires_grad_(False)
        self.feature_extractor = feature_extractor
        self.mode = mode
        self.window = WHISPER_WINDOW_SECONDS * WHISPER_SAMPLE_RATE  # samples per 30 s window
        self.hop = feature_extractor.hop_length  # 160: 10 ms mel frames

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, mode: str = "padded", device=None, dtype: torch.dtype = torch.float32
    ) -> "WhisperContentEncoder":
        """Load from a Hub id (``openai/whisper-medium``) or a local folder saved with ``save_pretrained``;
        the weights in ``dtype`` (``inference.dtype`` resolved, :mod:`comosvc.precision`)."""
        model, info = WhisperEncoderOnly.from_pretrained(str(name_or_path), output_loading_info=True)
        missing = [k for k in info.get("missing_keys", []) if k.startswith("encoder.")]
        if missing:
            raise ValueError(
                f"{name_or_path} is not a Whisper checkpoint with encoder weights (missing {missing[:3]}...). "
                "Point content.whisper at a Whisper model such as openai/whisper-medium."
            )
        try:
            fe = WhisperFeatureExtractor.from_pretrained(str(name_or_path))
        except OSError:  # a model folder without preprocessor_config.json
            fe = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        encoder = _place(model.encoder, device, dtype)
        return cls(encoder, fe, mode)

    @classmethod
    def random(
        cls, size: str = "default", mode: str = "padded", device="cpu", seed: int = 0, dtype: torch.dtype = torch.float32
    ):
        """Random weights, in memory, no download: ``"default"`` = whisper-medium's encoder, or ``"tiny"``."""
        config = whisper_config(size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = WhisperEncoder(config)
        fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        return cls(_place(encoder, device, dtype), fe, mode)

    # ---- features

    def _log_mel(self, wav: np.ndarray, pad_to_window: bool) -> torch.Tensor:
        """``(n_mels, frames)`` Whisper log mel of one window (at most 30 s) of 16 kHz audio."""
        kwargs = dict(padding="max_length", max_length=self.window) if pad_to_window else dict(padding="longest")
        feats = self.feature_extractor(
            [wav], sampling_rate=WHISPER_SAMPLE_RATE, return_tensors="pt", truncation=False, **kwargs
        ).input_features[0]
        return feats[:, : self.window // self.hop] if pad_to_window else feats[:, : len(wav) // self.hop]

    def _windows(self, wav: np.ndarray) -> list[np.ndarray]:
        """Consecutive 30 s windows; a tail shorter than one 10 ms frame gives no output and is dropped."""
        return [wav[i : i + self.window] for i in range(0, len(wav), self.window) if len(wav) - i >= self.hop]

    @torch.no_grad()
    def _encode_padded(self, mels: list[torch.Tensor]) -> torch.Tensor:
        """The reference path: transformers' WhisperEncoder on full 30 s (3000-frame) inputs."""
        device, dtype = _model_device_dtype(self.encoder)
        x = torch.stack(mels).to(device=device, dtype=dtype)
        return self.encoder(x).last_hidden_state

    @torch.no_grad()
    def _encode_unpadded(self, mels: list[torch.Tensor]) -> torch.Tensor:
        """Only the real frames; positional embeddings cut to the length; padding masked out.

        Mirrors ``WhisperEncoder.forward`` (conv1, conv2, positions, layers, final
        layer norm) but for any length up to 30 s, and with a batch of
        different lengths giving exactly what each clip gives alone.
        """
        enc = self.encoder
        device, dtype = _model_device_dtype(enc)
        lengths = torch.tensor([m.shape[-1] for m in mels], device=device)
        max_len = int(lengths.max())
        x = torch.zeros(len(mels), mels[0].shape[0], max_len, device=device, dtype=dtype)
        for i, m in enumerate(mels):
            x[i, :, : m.shape[-1]] = m.to(device=device, dtype=dtype)
        x = nn.functional.gelu(enc.conv1(x))
        # zero conv1's output past each clip's end, as conv2's zero padding would see alone
        x = x * (torch.arange(max_len, device=device)[None] < lengths[:, None])[:, None, :].to(dtype)
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)  # (B, T, D)
        out_lengths = (lengths + 1) // 2
        x = x + enc.embed_positions.weight[: x.shape[1]].to(dtype)
        mask = _additive_mask(out_lengths, x.shape[1], dtype)
        for layer in enc.layers:
            x = layer(x, mask)
        return enc.layer_norm(x)

    @torch.no_grad()
    def forward(self, wavs: list[np.ndarray], batch_size: int = 8) -> list[torch.Tensor]:
        """16 kHz mono clips -> list of ``(T_i, dim)`` float32 tensors on the encoder's device."""
        windows, owner = [], []
        for i, wav in enumerate(wavs):
            for w in self._windows(np.asarray(wav, dtype=np.float32)):
                windows.append(w)
                owner.append(i)
        padded = self.mode == "padded"
        outputs: list[torch.Tensor | None] = [None] * len(windows)
        for idx in _batches(windows, batch_size):
            mels = [self._log_mel(windows[i], pad_to_window=padded) for i in idx]
            hidden = self._encode_padded(mels) if padded else self._encode_unpadded(mels)
            for row, i in enumerate(idx):
                n_out = (len(windows[i]) // self.hop + 1) // 2
                outputs[i] = hidden[row, :n_out].float()
        device, _ = _model_device_dtype(self.encoder)
        per_clip: list[list[torch.Tensor]] = [[torch.zeros(0, self.dim, device=device)] for _ in wavs]
        for i, out in zip(owner, outputs):
            per_clip[i].append(out)
        return [torch.cat(parts) for parts in per_clip]


# --------------------------------------------------------------------------- ContentVec


class HubertModelWithFinalProj(HubertModel):
    """ContentVec's HF layout: a HubertModel with ``final_proj`` (hidden -> classifier_proj_size) alongside."""

    def __init__(self, config: HubertConfig):
        super().__init__(config)
        self.final_proj = nn.Linear(config.hidden_size, config.classifier_proj_size)


CONTENTVEC_SIZES = {
    # HuBERT-base, as in lengyue233/content-vec-best
    "default": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,  # strides/kernels keep the default 320-sample (20 ms) hop
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    ),
}


def contentvec_config(size: str = "tiny") -> HubertConfig:
    if size not in CONTENTVEC_SIZES:
        raise ValueError(f"unknown ContentVec size {size!r}; choose one of {list(CONTENTVEC_SIZES)}")
    return HubertConfig(
        **CONTENTVEC_SIZES[size],
        classifier_proj_size=256,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        vocab_size=32,
    )


class ContentVecEncoder(nn.Module):
    """ContentVec features: 16 kHz clips -> ``(T_i, 256)`` per clip, hidden state ``layer`` through ``final_proj``.

    ``T_i = (n_i - 400) // 320 + 1`` for a clip of ``n_i >= 400`` samples (the CNN's
    receptive field and stride); shorter clips are zero-padded to 400.
    """

    MIN_SAMPLES = 400

    def __init__(self, model: HubertModelWithFinalProj, layer: int = 12):
        super().__init__()
        cfg = model.config
        if cfg.do_stable_layer_norm:
            raise ValueError("ContentVec is HuBERT-base (post-norm); stable-layer-norm HuBERT checkpoints are not supported")
        if not 0 <= layer <= cfg.num_hidden_layers:
            raise ValueError(
                f"content.contentvec_layer={layer} but the model has {cfg.num_hidden_layers} layers "
                f"(0 = input of the first layer .. {cfg.num_hidden_layers} = last layer)"
            )
        self.model = model.eval().requires_grad_(False)
        self.layer = layer

    @property
    def dim(self) -> int:
        return self.model.final_proj.out_features

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, layer: int = 12, device=None, dtype: torch.dtype = torch.float32):
        """Load from a Hub id (``lengyue233/content-vec-best``) or a folder saved with ``save_pretrained``;
        the weights in ``dtype`` (``inference.dtype`` resolved, :mod:`comosvc.precision`)."""
        model, info = HubertModelWithFinalProj.from_pretrained(str(name_or_path), output_loading_info=True)
        missing = list(info.get("missing_keys", []))
        if any(k.startswith("final_proj") for k in missing):
            raise ValueError(
                f"{name_or_path} has no final_proj weights: it is a plain HuBERT, not ContentVec. "
                "Use the HF port of ContentVec with its 256-d projection, e.g. lengyue233/content-vec-best."
            )
        if missing:
            raise ValueError(f"{name_or_path} is missing weights {missing[:3]}...; is it a HuBERT/ContentVec checkpoint?")
        return cls(_place(model, device, dtype), layer)

    @classmethod
    def random(
        cls, size: str = "default", layer: int | None = None, device="cpu", seed: int = 0, dtype: torch.dtype = torch.float32
    ):
        """Random weights, in memory, no download: ``"default"`` = HuBERT-base + final_proj, or ``"tiny"``."""
        config = contentvec_config(size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = HubertModelWithFinalProj(config)
        return cls(_place(model, device, dtype), config.num_hidden_layers if layer is None else layer)

    @torch.no_grad()
    def _encode(self, wavs: list[np.ndarray]) -> torch.Tensor:
        """A batch of clips -> ``(B, T_max, dim)``; rows past a clip's length are padding."""
        m = self.model
        device, dtype = _model_device_dtype(m)
        # The CNN runs per clip: its first GroupNorm normalises over time, so padding would leak in.
        convs = []
        for wav in wavs:
            x = torch.from_numpy(np.asarray(wav, dtype=np.float32)).to(device=device, dtype=dtype)
            x = nn.functional.pad(x, (0, max(0, self.MIN_SAMPLES - x.shape[0])))
            convs.append(m.feature_extractor(x[None])[0].transpose(0, 1))  # (T_i, C)
        lengths = torch.tensor([c.shape[0] for c in convs], device=device)
        x = nn.utils.rnn.pad_sequence(convs, batch_first=True)  # (B, T, C)
        hidden = m.feature_projection(x)
        valid = torch.arange(x.shape[1], device=device)[None] < lengths[:, None]
        hidden = hidden * valid[..., None].to(dtype)  # padded frames are zero for the positional conv
        enc = m.encoder
        hidden = enc.layer_norm(hidden + enc.pos_conv_embed(hidden))  # hidden_states[0]
        mask = _additive_mask(lengths, x.shape[1], dtype)
        for layer in enc.layers[: self.layer]:  # hidden_states[k] = output of layer k
            hidden = layer(hidden, attention_mask=mask)
        return m.final_proj(hidden), lengths

    @torch.no_grad()
    def forward(self, wavs: list[np.ndarray], batch_size: int = 8) -> list[torch.Tensor]:
        """16 kHz mono clips -> list of ``(T_i, dim)`` float32 tensors on the model's device."""
        outputs: list[torch.Tensor | None] = [None] * len(wavs)
        for idx in _batches(wavs, batch_size):
            feats, lengths = self._encode([wavs[i] for i in idx])
            for row, i in enumerate(idx):
                outputs[i] = feats[row, : int(lengths[row])].float()
        return outputs


# --------------------------------------------------------------------------- tiny test encoders


def build_tiny_encoders(out_dir: str | Path, seed: int = 0) -> dict:
    """Save a tiny random Whisper and ContentVec (HF format) under ``out_dir``; no network.

    The folders have the layout of the real checkpoints (a full
    WhisperForConditionalGeneration plus preprocessor_config.json; a
    HubertModelWithFinalProj), so loading them by path exercises the real code.
    Returns the ``content`` config overrides that point at them.
    """
    from transformers import WhisperForConditionalGeneration

    out_dir = Path(out_dir)
    whisper_dir, contentvec_dir = out_dir / "whisper-tiny-random", out_dir / "contentvec-tiny-random"
    wcfg, hcfg = whisper_config("tiny"), contentvec_config("tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        WhisperForConditionalGeneration(wcfg).save_pretrained(whisper_dir)
        HubertModelWithFinalProj(hcfg).save_pretrained(contentvec_dir)
    WhisperFeatureExtractor(feature_size=wcfg.num_mel_bins).save_pretrained(whisper_dir)
    return {
        "whisper": str(whisper_dir),
        "whisper_dim": wcfg.d_model,
        "contentvec": str(contentvec_dir),
        "contentvec_dim": hcfg.classifier_proj_size,
        "contentvec_layer": hcfg.num_hidden_layers,
    }


__all__ = [
    "ContentVecEncoder",
    "HubertModelWithFinalProj",
    "WhisperContentEncoder",
    "WhisperEncoderOnly",
    "align_to_mel",
    "build_tiny_encoders",
    "contentvec_config",
    "whisper_config",
]
