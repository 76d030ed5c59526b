"""Vocoders: unnormalised natural-log mel ``(B, T, 100)`` -> 24 kHz waveform ``(B, T * 256)``.

One interface (:class:`Vocoder`, in :mod:`~comosvc.vocoders.base`), one module per family:

* :mod:`~comosvc.vocoders.bigvgan`: BigVGAN written in this project; loads NVIDIA's
  (``config.json`` + ``bigvgan_generator.pt``) and Amphion's (``args.json`` +
  ``<step>.pt``) checkpoints, locally or from the Hub, weights only.
* :mod:`~comosvc.vocoders.griffinlim`: Griffin-Lim, no weights, a low-quality fallback.
* :mod:`~comosvc.vocoders.parallel`: a wrapper that vocodes overlapping segments on several CPU cores.

:mod:`~comosvc.vocoders.registry` lists the families: :func:`load_vocoder` picks one from
a name (:data:`GRIFFINLIM`, a Hub id or a local folder) and checks its mel against our
:class:`~comosvc.config.AudioConfig`, so a vocoder trained on another mel fails loudly
instead of producing noise; :func:`random_vocoder` builds one with random weights.

    >>> vocoder = load_vocoder("nvidia/bigvgan_base_24khz_100band")
    >>> wav = vocoder(log_mel)          # (B, T, 100) -> (B, T * 256), in [-1, 1]

``python -m comosvc.measure.vocoder_bench`` times the generators on this machine.
The package imports its modules on first use (torch is not loaded by
``from comosvc.vocoders import GRIFFINLIM``, so the command line stays fast).
"""

from __future__ import annotations

import importlib

from comosvc.vocoders.names import GRIFFINLIM

# module -> the names it gives the package
_EXPORTS = {
    "base": ("Layout", "UnsafeCheckpointError", "Vocoder", "VocoderError", "VocoderFamily",
             "VocoderMismatchError", "VocoderNotFoundError", "VocoderSource"),
    "bigvgan": ("CPU_VOCODER", "DEFAULT_VOCODER", "KNOWN_CONFIGS", "BigVGANConfig", "BigVGANGenerator", "BigVGANVocoder"),
    "griffinlim": ("GriffinLimVocoder",),
    "parallel": ("CompiledVocoder", "ParallelVocoder", "prepare_vocoder"),
    "registry": ("FAMILIES", "family_named", "load_vocoder", "random_names", "random_vocoder", "register", "unregister"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["GRIFFINLIM", *_MODULE_OF]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
