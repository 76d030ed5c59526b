"""BigVGAN: the network (written in this project), its checkpoints and its place in the registry.

:class:`BigVGANGenerator` is BigVGAN's generator: anti-aliased multi-periodicity "AMP"
blocks (:mod:`comosvc.vocoders.antialias`: Snake/SnakeBeta activations run at twice
the sample rate between kaiser-windowed sinc low-pass filters). Its parameter and
buffer names are those of NVIDIA's checkpoints, so it loads

- ``nvidia/bigvgan_v2_24khz_100band_256x`` (BigVGAN v2, 112M parameters),
- ``nvidia/bigvgan_base_24khz_100band`` (BigVGAN v1 base, 14M: the CPU choice),
- any other NVIDIA folder (``config.json`` + ``bigvgan_generator.pt``), and
- Amphion's singing BigVGAN (``args.json`` + ``<step>.pt``, e.g. the
  ``bigvgan_singing`` folder of ``amphion/BigVGAN_singing_bigdata``).

Only the weights are read from the checkpoint, with ``torch.load(weights_only=True)``.
:class:`BigVGANVocoder` puts a generator behind the :class:`~comosvc.vocoders.base.Vocoder`
interface; :data:`FAMILY` tells the registry how to recognise, mel-check, load and
build one with random weights (:data:`KNOWN_CONFIGS`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from comosvc.config import AudioConfig
from comosvc.vocoders.antialias import AntiAliasedActivation, Snake, SnakeBeta
from comosvc.vocoders.base import (
    Layout,
    Vocoder,
    VocoderError,
    VocoderFamily,
    VocoderMismatchError,
    VocoderSource,
    load_weights,
)

DEFAULT_VOCODER = "nvidia/bigvgan_v2_24khz_100band_256x"
CPU_VOCODER = "nvidia/bigvgan_base_24khz_100band"

NVIDIA_CONFIG = "config.json"
NVIDIA_WEIGHTS = "bigvgan_generator.pt"
AMPHION_CONFIG = "args.json"

NVIDIA_LAYOUT = Layout("nvidia", (NVIDIA_CONFIG, NVIDIA_WEIGHTS), label=f"{NVIDIA_CONFIG} + {NVIDIA_WEIGHTS} (NVIDIA BigVGAN)")
AMPHION_LAYOUT = Layout(
    "amphion", (AMPHION_CONFIG, "*.pt"), label=f"{AMPHION_CONFIG} + <step>.pt (Amphion BigVGAN)", hub_files=(AMPHION_CONFIG, "[0-9]*.pt")
)


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
                + ". Use a vocoder trained on this model's mel (24 kHz, 100 bands, hop 256, "
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


# --------------------------------------------------------------------------- generator


def _conv(*args, **kwargs) -> nn.Conv1d:
    """A weight-normalised Conv1d initialised like HiFi-GAN/BigVGAN (N(0, 0.01))."""
    conv = nn.Conv1d(*args, **kwargs)
    nn.init.normal_(conv.weight, 0.0, 0.01)
    return weight_norm(conv)


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


def _dilated_convs(channels: int, kernel_size: int, dilations: list[int]) -> nn.ModuleList:
    """One length-preserving ``channels -> channels`` conv per dilation."""
    return nn.ModuleList(
        _conv(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d)) for d in dilations
    )


def _activation(config: BigVGANConfig, channels: int) -> AntiAliasedActivation:
    snake = SnakeBeta if config.activation == "snakebeta" else Snake
    return AntiAliasedActivation(snake(channels, logscale=config.snake_logscale))


class AMPBlock1(nn.Module):
    """Residual block, per dilation d: act -> conv(dilation d) -> act -> conv(dilation 1) -> + x."""

    def __init__(self, config: BigVGANConfig, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = _dilated_convs(channels, kernel_size, dilations)
        self.convs2 = _dilated_convs(channels, kernel_size, [1] * len(dilations))
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
        self.convs = _dilated_convs(channels, kernel_size, dilations)
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


# --------------------------------------------------------------------------- vocoder


class BigVGANVocoder(Vocoder):
    """A :class:`BigVGANGenerator` (weight norm removed, eval mode) behind the Vocoder interface."""

    def __init__(self, generator: BigVGANGenerator, name: str = "bigvgan"):
        config = generator.config
        super().__init__(name, config.sampling_rate, config.hop_length, config.num_mels)
        self.generator = generator.remove_weight_norm().eval()

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.generator(log_mel.transpose(1, 2)).squeeze(1)


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


def read_config(source: VocoderSource) -> BigVGANConfig:
    """The generator config of a checkpoint found in NVIDIA's or Amphion's layout."""
    raw = _read_json(source.files[0])
    return BigVGANConfig.from_nvidia(raw) if source.layout.name == NVIDIA_LAYOUT.name else BigVGANConfig.from_amphion(raw)


def check_bigvgan_mel(source: VocoderSource) -> None:
    """Raise :class:`VocoderMismatchError` when the checkpoint's mel is not ``source.audio``."""
    read_config(source).check_mel(source.audio, source=f"the vocoder {source.name} ({source.files[0].name})")


def load_bigvgan(source: VocoderSource) -> BigVGANVocoder:
    """A BigVGAN vocoder (CPU) from a folder in NVIDIA's or Amphion's layout; the registry checks its mel first."""
    weights_path = source.files[1]
    state = _generator_state(load_weights(weights_path), source.layout.name, weights_path)
    generator = BigVGANGenerator(read_config(source))
    generator.load_checkpoint(state, source=str(weights_path))
    return BigVGANVocoder(generator, name=source.name)


def random_bigvgan(name: str, audio: AudioConfig, seed: int = 0) -> BigVGANVocoder:
    """A BigVGAN of the known config ``name`` (a key of :data:`KNOWN_CONFIGS`) with random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BigVGANVocoder(BigVGANGenerator(KNOWN_CONFIGS[name]), name=f"{name} (random weights)")


FAMILY = VocoderFamily(
    name="bigvgan",
    load=load_bigvgan,
    random=random_bigvgan,
    check_mel=check_bigvgan_mel,
    layouts=(NVIDIA_LAYOUT, AMPHION_LAYOUT),
    random_names=tuple(KNOWN_CONFIGS),
)
