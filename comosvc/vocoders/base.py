"""What every vocoder family shares: the interface, the errors, how a family describes itself.

A vocoder turns the unnormalised natural-log mel of docs/design.md (not the model's
[-1, 1] space) into a waveform: ``vocoder(log_mel (B, T, n_mels)) -> wav (B, T * hop)``
in [-1, 1]. A *family* (BigVGAN, Griffin-Lim, ...) is one :class:`Vocoder` subclass plus
a :class:`VocoderFamily` record saying how it is recognised (by name, or by the files
of a folder: its :class:`Layout`) and how it is loaded, mel-checked and built with
random weights; :mod:`comosvc.vocoders.registry` lists the families.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from comosvc.config import AudioConfig
from comosvc.precision import module_dtype


class VocoderError(RuntimeError):
    """A vocoder cannot be loaded or used; the message says why and what to do."""


class VocoderNotFoundError(VocoderError):
    """The vocoder's files are not reachable (offline, not downloaded, wrong folder)."""


class VocoderMismatchError(VocoderError, ValueError):
    """The vocoder was trained on a different mel than ours (``AudioConfig``)."""


class UnsafeCheckpointError(VocoderError):
    """The checkpoint holds more than tensors and ``weights_only=True`` refused it."""


class Vocoder(nn.Module):
    """Interface: ``vocoder(log_mel (B, T, n_mels)) -> wav (B, T * hop_length)`` in [-1, 1].

    ``log_mel`` is the unnormalised natural-log mel of docs/design.md (not the model's
    [-1, 1] space). A 2-D ``(T, n_mels)`` input gives a 1-D waveform. Subclasses
    implement :meth:`vocode`; ``name``, ``sample_rate`` (Hz), ``hop_length`` (samples
    per frame) and ``n_mels`` describe what they take and give. The log mel is cast to
    the vocoder's :attr:`dtype` (``inference.dtype``, :mod:`comosvc.precision`) and the
    waveform comes back in float32.
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

    @property
    def dtype(self) -> torch.dtype:
        """What the weights are in (float32 for a family without weights, e.g. Griffin-Lim)."""
        return module_dtype(self)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.ndim == 2:
            return self.forward(log_mel[None])[0]
        if log_mel.ndim != 3 or log_mel.shape[-1] != self.n_mels:
            raise ValueError(f"{self.name}: expected a log mel (B, T, {self.n_mels}), got {tuple(log_mel.shape)}")
        with torch.no_grad():
            wav = self.vocode(log_mel.to(self.device, self.dtype))
        return wav[:, : log_mel.shape[1] * self.hop_length].float()

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, T * hop_length); implemented by subclasses."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sample_rate={self.sample_rate}"


def load_weights(path: Path) -> dict[str, Any]:
    """A checkpoint read with ``torch.load(weights_only=True)``: tensors only, never pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path} contains Python objects besides tensors and was refused (torch.load with "
            f"weights_only=True; loading it fully could run arbitrary code). Re-save just the "
            f"generator's state dict: torch.save({{'generator': state_dict}}, path)."
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise VocoderError(
            f"{path} is not a readable PyTorch checkpoint ({err}). Download it again (delete {path.resolve()} so "
            "the next load fetches it)."
        ) from err


def _step_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


@dataclass(frozen=True)
class Layout:
    """The files that make a folder (or a Hub repo) a checkpoint of one family.

    ``files`` holds one glob per file, in the order the family's loader wants them;
    where a glob matches several files, the one with the highest number in its name
    (the latest training step, as in Amphion's ``<step>.pt``) is taken. ``hub_files``
    are the patterns downloaded from the Hub (default: ``files``); ``label`` names the
    files in messages.
    """

    name: str
    files: tuple[str, ...]
    label: str
    hub_files: tuple[str, ...] = ()

    @property
    def download_patterns(self) -> tuple[str, ...]:
        return self.hub_files or self.files

    def find(self, folder: Path) -> tuple[Path, ...] | None:
        """The files of this layout in ``folder`` (one per glob), or None when one is missing."""
        found = []
        for pattern in self.files:
            matches = sorted((p for p in folder.glob(pattern) if p.is_file()), key=_step_number)
            if not matches:
                return None
            found.append(matches[-1])
        return tuple(found)


@dataclass(frozen=True)
class VocoderSource:
    """What :func:`~comosvc.vocoders.load_vocoder` resolved a name to, handed to a family's loader.

    ``folder``/``layout``/``files`` are set for families recognised by their files and
    empty for families picked by name (Griffin-Lim).
    """

    name: str  # as asked for: a family name, a Hub id or a folder
    audio: AudioConfig
    folder: Path | None = None
    layout: Layout | None = None
    files: tuple[Path, ...] = ()  # one per glob of ``layout.files``
    griffinlim_iters: int = 32  # for the Griffin-Lim family (quality vs time)


def no_mel_check(source: VocoderSource) -> None:
    """For families built from our own :class:`~comosvc.config.AudioConfig` (nothing to compare)."""


@dataclass(frozen=True)
class VocoderFamily:
    """One kind of vocoder as the registry knows it.

    Attributes:
        name: the family's name (``"bigvgan"``).
        load: ``source -> Vocoder`` on the CPU; called after ``check_mel``.
        random: ``(name, audio, seed) -> Vocoder`` with random weights, for speed runs
            (speed does not depend on the weights); ``name`` is one of ``names`` or
            ``random_names``.
        check_mel: ``source -> None``; raises :class:`VocoderMismatchError` when the
            vocoder was trained on another mel than ``source.audio``.
        names: names that pick this family without any files (``GRIFFINLIM``),
            compared case-, ``-``- and ``_``-insensitively.
        layouts: the folder layouts that are checkpoints of this family.
        random_names: further names ``random`` can build (known Hub ids).
    """

    name: str
    load: Callable[[VocoderSource], Vocoder]
    random: Callable[[str, AudioConfig, int], Vocoder]
    check_mel: Callable[[VocoderSource], None] = no_mel_check
    names: tuple[str, ...] = ()
    layouts: tuple[Layout, ...] = ()
    random_names: tuple[str, ...] = ()
