"""Vocoders: unnormalised natural-log mel ``(B, T, 100)`` -> 24 kHz waveform ``(B, T * 256)``.

Two kinds, one interface (:class:`Vocoder`):

* :class:`BigVGANVocoder` wraps :class:`BigVGANGenerator`, BigVGAN written in this
  project (anti-aliased multi-periodicity "AMP" blocks: Snake/SnakeBeta activations
  run at twice the sample rate between kaiser-windowed sinc low-pass filters). Its
  parameter and buffer names are those of NVIDIA's checkpoints, so it loads

  - ``nvidia/bigvgan_v2_24khz_100band_256x`` (BigVGAN v2, 112M parameters),
  - ``nvidia/bigvgan_base_24khz_100band`` (BigVGAN v1 base, 14M: the CPU choice),
  - any other NVIDIA folder (``config.json`` + ``bigvgan_generator.pt``), and
  - Amphion's singing BigVGAN (``args.json`` + ``<step>.pt``, e.g. the
    ``bigvgan_singing`` folder of ``amphion/BigVGAN_singing_bigdata``).

  Only the weights are read from the checkpoint, with ``torch.load(weights_only=True)``.
* :class:`GriffinLimVocoder` inverts our Slaney mel (non-negative least squares) and
  runs Griffin-Lim phase reconstruction: no weights, low quality, a fallback.

:func:`load_vocoder` picks one from a name: ``"griffinlim"``, a Hub id (``owner/name``
or ``owner/name/subfolder``) or a local folder. The vocoder's mel settings are checked
against our :class:`~comosvc.config.AudioConfig`, so a vocoder trained on another mel
fails loudly instead of producing noise.

    >>> vocoder = load_vocoder("nvidia/bigvgan_base_24khz_100band")
    >>> wav = vocoder(log_mel)          # (B, T, 100) -> (B, T * 256), in [-1, 1]

``python -m comosvc.vocoder --bench`` times the generators on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pickle
import re
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from comosvc.config import AudioConfig
from comosvc.features.mel import MelSpectrogram

logger = logging.getLogger(__name__)

GRIFFINLIM = "griffinlim"
DEFAULT_VOCODER = "nvidia/bigvgan_v2_24khz_100band_256x"
CPU_VOCODER = "nvidia/bigvgan_base_24khz_100band"

NVIDIA_CONFIG = "config.json"
NVIDIA_WEIGHTS = "bigvgan_generator.pt"
AMPHION_CONFIG = "args.json"


class VocoderError(RuntimeError):
    """A vocoder cannot be loaded or used; the message says why and what to do."""


class VocoderNotFoundError(VocoderError):
    """The vocoder's files are not reachable (offline, not downloaded, wrong folder)."""


class VocoderMismatchError(VocoderError, ValueError):
    """The vocoder was trained on a different mel than ours (``AudioConfig``)."""


class UnsafeCheckpointError(VocoderError):
    """The checkpoint holds more than tensors and ``weights_only=True`` refused it."""


# --------------------------------------------------------------------------- config


@dataclass
class BigVGANConfig:
    """The generator's structure and the mel it was trained on.

    Field names are the keys of NVIDIA's ``config.json``; keys that only matter for
    training (discriminators, losses, optimiser) are ignored when reading one.
    """

    upsample_rates: list[int]
    upsample_kernel_sizes: list[int]
    upsample_initial_channel: int
    resblock_kernel_sizes: list[int]
    resblock_dilation_sizes: list[list[int]]
    resblock: Literal["1", "2"] = "1"  # "1": two convs per dilation, "2": one
    activation: Literal["snake", "snakebeta"] = "snakebeta"
    snake_logscale: bool = True  # alpha/beta stored as logs
    use_tanh_at_final: bool = True  # NVIDIA's default when the key is absent (v1, Amphion)
    use_bias_at_final: bool = True
    # the mel the generator was trained on
    num_mels: int = 100
    sampling_rate: int = 24000  # Hz
    n_fft: int = 1024
    hop_size: int = 256  # samples
    win_size: int = 1024
    fmin: float = 0.0  # Hz
    fmax: float | None = 12000.0  # Hz; None means sampling_rate / 2 (as in librosa)

    def __post_init__(self) -> None:
        self.resblock = str(self.resblock)
        if self.resblock not in ("1", "2"):
            raise VocoderError(f"BigVGAN config: resblock must be '1' or '2', got {self.resblock!r}")
        if self.activation not in ("snake", "snakebeta"):
            raise VocoderError(
                f"BigVGAN config: activation must be 'snake' or 'snakebeta', got {self.activation!r}"
            )
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise VocoderError("BigVGAN config: upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise VocoderError("BigVGAN config: resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if math.prod(self.upsample_rates) != self.hop_size:
            raise VocoderError(
                f"BigVGAN config: the upsample rates {self.upsample_rates} multiply to "
                f"{math.prod(self.upsample_rates)}, not hop_size {self.hop_size}"
            )

    @property
    def hop_length(self) -> int:
        """Output samples per mel frame."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_nvidia(cls, config: dict[str, Any]) -> "BigVGANConfig":
        """From an NVIDIA ``config.json`` dict (training-only keys are ignored)."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in config.items() if k in known})
        except TypeError as err:  # a required key is missing
            raise VocoderError(f"Not a BigVGAN generator config ({err}).") from err

    @classmethod
    def from_amphion(cls, args: dict[str, Any]) -> "BigVGANConfig":
        """From an Amphion vocoder ``args.json`` dict: ``model.bigvgan`` plus ``preprocess``."""
        try:
            model = dict(args["model"]["bigvgan"])
            pre = args["preprocess"]
        except (KeyError, TypeError) as err:
            raise VocoderError(f"Not an Amphion BigVGAN args.json: missing {err}") from err
        mel = {
            "num_mels": pre.get("n_mel", 100),
            "sampling_rate": pre.get("sample_rate", 24000),
            "n_fft": pre.get("n_fft", 1024),
            "hop_size": pre.get("hop_size", 256),
            "win_size": pre.get("win_size", 1024),
            "fmin": pre.get("fmin", 0),
            "fmax": pre.get("fmax"),
        }
        return cls.from_nvidia({**model, **mel})

    def to_dict(self) -> dict[str, Any]:
        """The NVIDIA ``config.json`` form (generator and mel keys only)."""
        return asdict(self)

    def check_mel(self, audio: AudioConfig, source: str = "the vocoder") -> None:
        """Raise :class:`VocoderMismatchError` listing every mel setting that differs from ``audio``."""
        fmax = self.fmax if self.fmax is not None else self.sampling_rate / 2
        pairs = [
            ("sampling_rate", self.sampling_rate, "sample_rate", audio.sample_rate),
            ("num_mels", self.num_mels, "n_mels", audio.n_mels),
            ("hop_size", self.hop_size, "hop_length", audio.hop_length),
            ("n_fft", self.n_fft, "n_fft", audio.n_fft),
            ("win_size", self.win_size, "win_length", audio.win_length),
            ("fmin", self.fmin, "fmin", audio.fmin),
            ("fmax", fmax, "fmax", audio.fmax),
        ]
        diffs = [
            f"{ours}={theirs_value!r} in {source} but audio.{ours_key}={ours_value!r}"
            for ours, theirs_value, ours_key, ours_value in pairs
            if float(theirs_value) != float(ours_value)
        ]
        if diffs:
            raise VocoderMismatchError(
                f"{source} was trained on a different mel than this model: " + "; ".join(diffs)
                + ". Use a vocoder trained on the mel of DESIGN.md (24 kHz, 100 bands, hop 256, "
                "n_fft 1024, fmin 0, fmax 12000), e.g. " + DEFAULT_VOCODER + " or " + CPU_VOCODER
                + ", or change the audio section of the config to match the vocoder (and retrain)."
            )


_AMP_24K = dict(resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3)

# Generator configs of the two NVIDIA checkpoints that take our mel (from NVIDIA's
# configs/bigvgan_v2_24khz_100band_256x.json and configs/bigvgan_base_24khz_100band.json).
KNOWN_CONFIGS: dict[str, BigVGANConfig] = {
    DEFAULT_VOCODER: BigVGANConfig(
        upsample_rates=[4, 4, 2, 2, 2, 2],
        upsample_kernel_sizes=[8, 8, 4, 4, 4, 4],
        upsample_initial_channel=1536,
        use_tanh_at_final=False,
        use_bias_at_final=False,
        fmax=None,
        **_AMP_24K,
    ),
    CPU_VOCODER: BigVGANConfig(
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        upsample_initial_channel=512,
        **_AMP_24K,
    ),
}


# --------------------------------------------------------------------------- anti-aliasing


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR filter ``(1, 1, kernel_size)``: a sinc windowed by a Kaiser window.

    ``cutoff`` and ``half_width`` (transition band half-width) are in cycles per sample
    (0.5 = Nyquist). The Kaiser beta follows Kaiser's empirical formula for the
    attenuation this length and transition width can reach; taps sum to 1 (DC gain 1).
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95  # dB
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        t = torch.arange(-half, half) + 0.5  # taps sit between samples
    else:
        t = torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class LowPassFilter1d(nn.Module):
    """Depthwise FIR low-pass with replicate padding, optionally decimating by ``stride``."""

    def __init__(self, cutoff: float, half_width: float, stride: int = 1, kernel_size: int = 12):
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, ceil(T / stride))."""
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(x.shape[1], -1, -1), stride=self.stride, groups=x.shape[1])


class UpSample1d(nn.Module):
    """Band-limited upsampling by ``ratio``: zero-stuffing plus the kaiser-sinc low-pass."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1  # input samples of context on each side
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T * ratio)."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels)
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class DownSample1d(nn.Module):
    """Band-limited downsampling by ``ratio``: the kaiser-sinc low-pass with stride ``ratio``."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, stride=ratio, kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T / ratio)."""
        return self.lowpass(x)


class Snake(nn.Module):
    """Periodic activation ``x + sin^2(alpha x) / alpha`` with one learnt alpha per channel."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        alpha = self.alpha.view(1, -1, 1)
        if self.logscale:
            alpha = alpha.exp()
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class SnakeBeta(nn.Module):
    """Snake with a separate magnitude: ``x + sin^2(alpha x) / beta``, per channel."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        alpha, beta = self.alpha.view(1, -1, 1), self.beta.view(1, -1, 1)
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class AntiAliasedActivation(nn.Module):
    """Upsample 2x, apply the periodic activation, low-pass and downsample 2x.

    Running the nonlinearity at twice the rate keeps the harmonics it creates below
    the new Nyquist, so the filter removes them instead of letting them alias.
    """

    def __init__(self, activation: nn.Module, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(ratio, kernel_size)
        self.downsample = DownSample1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        return self.downsample(self.act(self.upsample(x)))


# --------------------------------------------------------------------------- generator


def _conv(*args, **kwargs) -> nn.Conv1d:
    """A weight-normalised Conv1d initialised like HiFi-GAN/BigVGAN (N(0, 0.01))."""
    conv = nn.Conv1d(*args, **kwargs)
    nn.init.normal_(conv.weight, 0.0, 0.01)
    return weight_norm(conv)


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


def _activation(config: BigVGANConfig, channels: int) -> AntiAliasedActivation:
    snake = SnakeBeta if config.activation == "snakebeta" else Snake
    return AntiAliasedActivation(snake(channels, logscale=config.snake_logscale))


class AMPBlock1(nn.Module):
    """Residual block, per dilation d: act -> conv(dilation d) -> act -> conv(dilation 1) -> + x."""

    def __init__(self, config: BigVGANConfig, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            _conv(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            _conv(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1)) for _ in dilations
        )
        # interleaved: activations[2i] before convs1[i], activations[2i + 1] before convs2[i]
        self.activations = nn.ModuleList(_activation(config, channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        acts1, acts2 = self.activations[0::2], self.activations[1::2]
        for conv1, conv2, act1, act2 in zip(self.convs1, self.convs2, acts1, acts2):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class AMPBlock2(nn.Module):
    """Lighter residual block, per dilation d: act -> conv(dilation d) -> + x."""

    def __init__(self, config: BigVGANConfig, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            _conv(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.activations = nn.ModuleList(_activation(config, channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        for conv, act in zip(self.convs, self.activations):
            x = x + conv(act(x))
        return x


class BigVGANGenerator(nn.Module):
    """BigVGAN generator: mel ``(B, num_mels, T)`` -> waveform ``(B, 1, T * hop)``.

    conv_pre (7 taps) -> for each upsampling stage: transposed conv (channels halve),
    then the mean of ``len(resblock_kernel_sizes)`` AMP blocks -> anti-aliased
    activation -> conv_post (7 taps, 1 channel) -> tanh or clamp to [-1, 1].

    Convolutions carry weight normalisation (``torch.nn.utils.parametrizations``);
    :meth:`load_checkpoint` accepts NVIDIA's old-style ``weight_g``/``weight_v``
    tensors and :meth:`remove_weight_norm` folds them into plain weights for inference.
    """

    def __init__(self, config: BigVGANConfig):
        super().__init__()
        self.config = config
        channels = config.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(config.num_mels, channels, 7, padding=3))
        block = AMPBlock1 if config.resblock == "1" else AMPBlock2
        # ups[i] is a one-element list, as in NVIDIA's checkpoints ("ups.{i}.0.weight_g")
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
            c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
            up = nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2)
            nn.init.normal_(up.weight, 0.0, 0.01)
            self.ups.append(nn.ModuleList([weight_norm(up)]))
            for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
                self.resblocks.append(block(config, c_out, k, dilations))
        self.activation_post = _activation(config, c_out)
        self.conv_post = _conv(c_out, 1, 7, padding=3, bias=config.use_bias_at_final)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, num_mels, T) log mel -> (B, 1, T * hop) waveform in [-1, 1]."""
        x = self.conv_pre(mel)
        n_blocks = len(self.config.resblock_kernel_sizes)
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            blocks = self.resblocks[i * n_blocks : (i + 1) * n_blocks]
            x = sum(block(x) for block in blocks) / n_blocks
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.config.use_tanh_at_final else x.clamp(-1.0, 1.0)

    def _weight_normed(self) -> list[nn.Module]:
        return [m for m in self.modules() if parametrize.is_parametrized(m, "weight")]

    def remove_weight_norm(self) -> "BigVGANGenerator":
        """Fold weight_g * weight_v / |weight_v| into plain weights (inference; idempotent)."""
        for module in self._weight_normed():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under NVIDIA's names (``weight_g``/``weight_v`` while weight-normed)."""
        rename = {"original0": "weight_g", "original1": "weight_v"}
        return {
            re.sub(r"parametrizations\.weight\.(original[01])$", lambda m: rename[m[1]], key): value
            for key, value in self.state_dict().items()
        }

    def load_checkpoint(self, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load NVIDIA/Amphion generator weights (weight-normed or already folded), strictly."""
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
        if not any(k.endswith(".weight_g") for k in state_dict):
            self.remove_weight_norm()  # the checkpoint stores plain weights
        # the weight-norm parametrization maps weight_g/weight_v to its own names on load
        result = self.load_state_dict(state_dict, strict=False)
        bad = [
            f"missing {result.missing_keys[:5]}" if result.missing_keys else "",
            f"unexpected {result.unexpected_keys[:5]}" if result.unexpected_keys else "",
        ]
        if any(bad):
            raise VocoderError(
                f"{source} does not fit the generator its config describes "
                f"({', '.join(b for b in bad if b)}; {len(result.missing_keys)} missing, "
                f"{len(result.unexpected_keys)} unexpected). Is the config from the same checkpoint?"
            )

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write NVIDIA's layout: ``config.json`` and ``bigvgan_generator.pt`` ({'generator': state})."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / NVIDIA_CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2))
        torch.save({"generator": self.checkpoint_state_dict()}, folder / NVIDIA_WEIGHTS)
        return folder


# --------------------------------------------------------------------------- vocoders


class Vocoder(nn.Module):
    """Interface: ``vocoder(log_mel (B, T, n_mels)) -> wav (B, T * hop_length)`` in [-1, 1].

    ``log_mel`` is the unnormalised natural-log mel of DESIGN.md (not the model's
    [-1, 1] space). A 2-D ``(T, n_mels)`` input gives a 1-D waveform.
    """

    def __init__(self, name: str, sample_rate: int, hop_length: int, n_mels: int):
        super().__init__()
        self.name = name
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels

    @property
    def device(self) -> torch.device:
        buffer = next(iter(self.buffers()), None)
        return buffer.device if buffer is not None else torch.device("cpu")

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.ndim == 2:
            return self.forward(log_mel[None])[0]
        if log_mel.ndim != 3 or log_mel.shape[-1] != self.n_mels:
            raise ValueError(f"{self.name}: expected a log mel (B, T, {self.n_mels}), got {tuple(log_mel.shape)}")
        with torch.no_grad():
            wav = self.vocode(log_mel.to(self.device, torch.float32))
        return wav[:, : log_mel.shape[1] * self.hop_length]

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, T * hop_length); implemented by subclasses."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sample_rate={self.sample_rate}"


class BigVGANVocoder(Vocoder):
    """A :class:`BigVGANGenerator` (weight norm removed, eval mode) behind the Vocoder interface."""

    def __init__(self, generator: BigVGANGenerator, name: str = "bigvgan"):
        config = generator.config
        super().__init__(name, config.sampling_rate, config.hop_length, config.num_mels)
        self.generator = generator.remove_weight_norm().eval()

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.generator(log_mel.transpose(1, 2)).squeeze(1)


class GriffinLimVocoder(Vocoder):
    """Low-quality fallback: mel -> linear magnitude (non-negative least squares) -> Griffin-Lim.

    Expect phasey, metallic audio; it keeps pitch and timing, which is enough for
    smoke tests and for a pipeline without network access.
    """

    def __init__(self, audio: AudioConfig = AudioConfig(), n_iter: int = 32, momentum: float = 0.99, nnls_iters: int = 30):
        super().__init__(GRIFFINLIM, audio.sample_rate, audio.hop_length, audio.n_mels)
        logger.warning(
            "Using the Griffin-Lim vocoder: a low-quality fallback (phasey, metallic sound). For real "
            "conversions use a BigVGAN checkpoint, e.g. %s or %s (14M parameters, CPU-friendly).",
            DEFAULT_VOCODER,
            CPU_VOCODER,
        )
        self.n_fft, self.win_length = audio.n_fft, audio.win_length
        self.n_iter, self.momentum, self.nnls_iters = n_iter, momentum, nnls_iters
        basis = MelSpectrogram(audio).mel_basis  # (M, F): the Slaney filterbank of our mel
        self.register_buffer("mel_basis", basis)
        self.register_buffer("mel_pinv", torch.linalg.pinv(basis))  # (F, M)
        self.register_buffer("window", torch.hann_window(audio.win_length))
        # our frame t covers samples [t*hop - (n_fft-hop)/2, ...): its centre is hop/2 later
        # than the centre of frame t of a centred STFT, which Griffin-Lim inverts
        self.offset = audio.n_fft // 2 - (audio.n_fft - audio.hop_length) // 2

    def magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, M) log mel -> (B, F, T) linear STFT magnitude >= 0 with basis @ mag ~= mel."""
        mel = log_mel.exp().transpose(1, 2)  # (B, M, T)
        mag = (self.mel_pinv @ mel).clamp(min=1e-8)
        # multiplicative NNLS updates (Lee & Seung): stay non-negative, decrease |basis @ mag - mel|
        numerator = self.mel_basis.T @ mel
        gram = self.mel_basis.T @ self.mel_basis
        for _ in range(self.nnls_iters):
            mag = mag * numerator / (gram @ mag + 1e-10)
        return mag

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        import torchaudio.functional as AF

        n_samples = log_mel.shape[1] * self.hop_length
        magnitude = self.magnitude(log_mel)
        # a centred STFT of T * hop samples has T + 1 frames: repeat the last one
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        wav = AF.griffinlim(
            magnitude,
            self.window,
            self.n_fft,
            self.hop_length,
            self.win_length,
            power=1.0,
            n_iter=self.n_iter,
            momentum=self.momentum,
            length=n_samples,
            rand_init=False,
        )
        wav = F.pad(wav, (self.offset, 0))[:, :n_samples]
        return wav.clamp(-1.0, 1.0)


# --------------------------------------------------------------------------- loading


def _read_json(path: Path) -> dict[str, Any]:
    """JSON, or Amphion's JSON5-ish args.json (trailing commas, // comment lines)."""
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        relaxed = re.sub(r"^\s*//.*$", "", text, flags=re.M)
        relaxed = re.sub(r",(\s*[}\]])", r"\1", relaxed)
        try:
            return json.loads(relaxed)
        except json.JSONDecodeError as err:
            raise VocoderError(f"{path} is not valid JSON: {err}") from err


def _step_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


def _find_checkpoint(folder: Path) -> tuple[Path, Path, Literal["nvidia", "amphion"]]:
    """(config file, weights file, layout) in a local folder, or VocoderNotFoundError."""
    if (folder / NVIDIA_CONFIG).is_file() and (folder / NVIDIA_WEIGHTS).is_file():
        return folder / NVIDIA_CONFIG, folder / NVIDIA_WEIGHTS, "nvidia"
    steps = sorted(folder.glob("*.pt"), key=_step_number)
    if (folder / AMPHION_CONFIG).is_file() and steps:
        return folder / AMPHION_CONFIG, steps[-1], "amphion"
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise VocoderNotFoundError(
        f"{folder} holds no BigVGAN checkpoint: expected {NVIDIA_CONFIG} + {NVIDIA_WEIGHTS} "
        f"(NVIDIA) or {AMPHION_CONFIG} + <step>.pt (Amphion); found {present[:10] or 'nothing'}."
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") == 0


def _download(name: str, cache_dir: str | None, local_files_only: bool) -> Path:
    """Fetch a Hub id ``owner/name[/subfolder]`` (config and generator only) into the HF cache."""
    from huggingface_hub import snapshot_download

    parts = name.split("/")
    repo_id, subfolder = "/".join(parts[:2]), "/".join(parts[2:])
    prefix = f"{subfolder}/" if subfolder else ""
    patterns = [prefix + NVIDIA_CONFIG, prefix + NVIDIA_WEIGHTS, prefix + AMPHION_CONFIG, prefix + "[0-9]*.pt"]
    try:
        root = snapshot_download(
            repo_id, allow_patterns=patterns, cache_dir=cache_dir, local_files_only=local_files_only
        )
    except Exception as err:  # offline, not cached, no such repo, HTTP errors: all "not reachable"
        raise VocoderNotFoundError(
            f"Could not get the vocoder {name!r} from the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            f"Run once with network access (unset HF_HUB_OFFLINE) so it is cached, or download it "
            f"into a folder (`hf download {repo_id} {prefix}{NVIDIA_CONFIG} {prefix}{NVIDIA_WEIGHTS} "
            f"--local-dir DIR`; for Amphion's folders {prefix}{AMPHION_CONFIG} and the <step>.pt) and "
            f"pass that folder as the vocoder; or set inference.vocoder={GRIFFINLIM} for the "
            f"low-quality fallback."
        ) from err
    return Path(root) / subfolder


def _load_weights(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path} contains Python objects besides tensors and was refused (torch.load with "
            f"weights_only=True; loading it fully could run arbitrary code). Re-save just the "
            f"generator's state dict: torch.save({{'generator': state_dict}}, path)."
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise VocoderError(f"{path} is not a readable PyTorch checkpoint ({err}). Download it again.") from err


def _generator_state(checkpoint: Any, layout: str, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict):
        for key in ("generator", "generator_state_dict", "state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key]
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return checkpoint  # a bare state dict
    raise VocoderError(
        f"{path} ({layout} layout) has no generator state dict (looked for 'generator' and "
        f"'generator_state_dict')."
    )


def load_bigvgan(folder: str | Path, audio: AudioConfig | None = None, name: str | None = None) -> BigVGANVocoder:
    """Load a BigVGAN vocoder from a local folder in NVIDIA's or Amphion's layout."""
    folder = Path(folder).expanduser()
    config_path, weights_path, layout = _find_checkpoint(folder)
    raw = _read_json(config_path)
    config = BigVGANConfig.from_nvidia(raw) if layout == "nvidia" else BigVGANConfig.from_amphion(raw)
    name = name or str(folder)
    config.check_mel(audio or AudioConfig(), source=f"the vocoder {name} ({config_path.name})")
    state = _generator_state(_load_weights(weights_path), layout, weights_path)
    generator = BigVGANGenerator(config)
    generator.load_checkpoint(state, source=str(weights_path))
    return BigVGANVocoder(generator, name=name)


def load_vocoder(
    name_or_path: str = DEFAULT_VOCODER,
    device: str | torch.device | None = None,
    audio: AudioConfig | None = None,
    *,
    fallback: bool = False,
    griffinlim_iters: int = 32,
    cache_dir: str | None = None,
    local_files_only: bool = False,
) -> Vocoder:
    """A ready vocoder (eval mode, on ``device``) from a name.

    Args:
        name_or_path: ``"griffinlim"``, a Hub id (``nvidia/bigvgan_v2_24khz_100band_256x``,
            ``amphion/BigVGAN_singing_bigdata/bigvgan_singing``) or a local folder.
        device: default CUDA when available, else CPU.
        audio: our mel settings; the vocoder's config must match them.
        fallback: when the neural vocoder's files are not reachable (offline, not
            downloaded, missing files), warn and return Griffin-Lim instead of raising
            :class:`VocoderNotFoundError`. A mel mismatch or an unsafe checkpoint always raises.
        griffinlim_iters: Griffin-Lim iterations (quality vs time).
        cache_dir, local_files_only: passed to ``huggingface_hub`` for Hub ids.
    """
    audio = audio or AudioConfig()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if name_or_path.strip().lower().replace("-", "").replace("_", "") == GRIFFINLIM:
        return GriffinLimVocoder(audio, n_iter=griffinlim_iters).to(device)
    try:
        path = Path(name_or_path).expanduser()
        if path.is_dir() or _looks_like_path(name_or_path):
            if not path.is_dir():
                raise VocoderNotFoundError(f"The vocoder folder {name_or_path} does not exist.")
            folder = path
        else:
            folder = _download(name_or_path, cache_dir, local_files_only)
        _find_checkpoint(folder)  # raise "not found" before anything is built
    except VocoderNotFoundError as err:
        if not fallback:
            raise
        logger.warning("%s\nFalling back to the Griffin-Lim vocoder (low quality).", err)
        return GriffinLimVocoder(audio, n_iter=griffinlim_iters).to(device)
    return load_bigvgan(folder, audio, name=name_or_path).to(device)


# --------------------------------------------------------------------------- benchmark


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def benchmark(
    names: list[str] | None = None,
    seconds: float = 10.0,
    runs: int = 3,
    threads: int | None = None,
    audio: AudioConfig | None = None,
) -> list[dict[str, Any]]:
    """Time vocoding ``seconds`` of random mel with random-weight generators on the CPU.

    Speed does not depend on the weights, so this needs no download. Returns one dict
    per generator: name, parameters (inference: weight norm folded), the wall-clock
    and process CPU seconds of each run, their medians, and the real-time factor.
    """
    audio = audio or AudioConfig()
    if threads:
        torch.set_num_threads(threads)
    results = []
    for name in names or list(KNOWN_CONFIGS):
        torch.manual_seed(0)
        vocoder = BigVGANVocoder(BigVGANGenerator(KNOWN_CONFIGS[name]), name=name).to("cpu")
        frames = round(seconds * audio.sample_rate / audio.hop_length)
        audio_seconds = frames * audio.hop_length / audio.sample_rate
        mel = torch.randn(1, frames, audio.n_mels) - 5.0
        vocoder(mel[:, : min(frames, 32)])  # warm-up
        wall, cpu = [], []
        for _ in range(runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            vocoder(mel)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        results.append(
            {
                "name": name,
                "parameters": count_parameters(vocoder),
                "seconds_of_audio": audio_seconds,
                "threads": torch.get_num_threads(),
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "median_seconds": statistics.median(wall),
                "median_cpu_seconds": statistics.median(cpu),
                "rtf": statistics.median(wall) / audio_seconds,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comosvc.vocoder", description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="time the known BigVGAN generators (random weights)")
    parser.add_argument("--model", action="append", choices=list(KNOWN_CONFIGS), help="default: all")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the mel to vocode")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return 0
    for r in benchmark(args.model, args.seconds, args.runs, args.threads):
        print(
            f"{r['name']}: {r['parameters'] / 1e6:.2f}M parameters; {r['seconds_of_audio']:.2f} s of audio "
            f"in {r['median_seconds']:.2f} s wall (median of {len(r['wall_seconds'])}: "
            f"{', '.join(f'{t:.2f}' for t in r['wall_seconds'])}), {r['median_cpu_seconds']:.2f} s CPU, "
            f"RTF {r['rtf']:.2f} (torch {torch.__version__}, {r['threads']} threads, fp32, batch 1)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
