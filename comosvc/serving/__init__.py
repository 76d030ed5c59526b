"""Serving a model to visitors: everything the web app (``app.py``) does that is not its page.

* :mod:`~comosvc.serving.settings`: :class:`ServingSettings`, every flag and environment variable.
* :mod:`~comosvc.serving.space`: what a Hugging Face Space serves and preloads.
* :mod:`~comosvc.serving.loading`: load the pipeline once (its teacher, a Griffin-Lim fallback
  reported as such), warm it up.
* :mod:`~comosvc.serving.state`: what the app serves: the loaded, warmed-up model and its banner.
* :mod:`~comosvc.serving.gpu_budget`: the GPU seconds a conversion asks ZeroGPU for, measured at start-up.
* :mod:`~comosvc.serving.inputs`: the Convert tab's inputs -> the pipeline's singer, key and samplers.
* :mod:`~comosvc.serving.view`: a comparison -> audio for the players, mel pictures, the cost table.
* :mod:`~comosvc.serving.live`: one visitor's live stream.
* :mod:`~comosvc.serving.examples`: the synthetic example clips.
* :mod:`~comosvc.serving.add_singer`: the "Add a singer" tab: uploads -> the served models fine-tuned on them.

The package imports its modules on first use.
"""

from __future__ import annotations

import importlib

# module -> the names it gives the package
_EXPORTS = {
    "add_singer": ("AddSingerError", "AddedSinger", "add_singer", "finetune_unavailable", "gather_clips"),
    "examples": ("EXAMPLES", "write_examples"),
    "gpu_budget": ("START_UP_GPU_SECONDS", "GpuBudget", "calibrated", "clip_seconds", "measure_budget"),
    "inputs": ("conversion_samplers", "key_shift", "singer_names", "target_singer"),
    "live": ("LIVE_BLOCK_SECONDS", "LIVE_LOOKAHEAD_SECONDS", "LiveSession", "live_latency_text", "live_status"),
    "loading": ("ServedModel", "default_device", "load_served_model", "warm_up"),
    "settings": ("HOW_TO_PROVIDE", "ServingSettings", "parse_settings"),
    "space": ("SPACE_MODEL", "SPACE_TEACHER", "on_space", "space_weights"),
    "state": ("ModelState", "load_model_state"),
    "view": ("ComparisonView", "comparison_view"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
