"""Reading a model folder's files (``config.json``, ``singers.json``, ``stats.json``, ``model.safetensors``) with clear errors.

A JSON file that does not parse raises :class:`~comosvc.config.ConfigError` naming the
file and saying what to do, instead of json's bare "Expecting property name ...";
a truncated or damaged weights file raises :class:`DamagedWeightsError` instead of
safetensors' bare "Error while deserializing header ...".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model
from torch import nn

from comosvc.config import ConfigError
from comosvc.files import MODEL_CONFIG_FILE, SINGERS_FILE, STATS_FILE


class DamagedWeightsError(OSError):
    """A model's weights file cannot be read (truncated download, damaged copy); the message names it."""


def read_model_json(path: str | Path) -> Any:
    """The parsed JSON of one file of a model folder (:class:`ConfigError` naming it when malformed)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{path} is not valid JSON ({err}). The model folder is damaged: re-save the model with "
            "ComoSVC.save_pretrained, or download it again."
        ) from err


def load_weights(model: nn.Module, path: str | Path, strict: bool = True, device: str = "cpu") -> None:
    """Load ``model.safetensors`` at ``path`` into ``model`` in place (:class:`DamagedWeightsError` when unreadable).

    ``strict`` and ``device`` are those of :func:`safetensors.torch.load_model`.
    """
    path = Path(path)
    try:
        load_model(model, str(path), strict=strict, device=device)
    except SafetensorError as err:
        raise DamagedWeightsError(
            f"{path} is truncated or damaged ({err}). Download the model again (from_pretrained(..., "
            f"force_download=True), or delete {path.resolve()} so the next load fetches it), or re-save it "
            "with ComoSVC.save_pretrained."
        ) from err


def read_singer_tables(model: str | Path) -> tuple[dict[str, int], dict[str, Any]]:
    """``(singers, stats)`` of a model folder or Hub id, without loading its weights.

    ``stats`` is ``{}`` when the model has no ``stats.json``.
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / MODEL_CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{folder} is not a ComoSVC model folder ({MODEL_CONFIG_FILE} missing).")
        paths = {name: folder / name for name in (SINGERS_FILE, STATS_FILE)}
    else:
        paths = _download_tables(str(model))
    if paths[SINGERS_FILE] is None or not paths[SINGERS_FILE].is_file():
        raise FileNotFoundError(f"{model} has no {SINGERS_FILE}: it is not a complete ComoSVC model.")
    singers = read_model_json(paths[SINGERS_FILE])
    stats_path = paths.get(STATS_FILE)
    stats = read_model_json(stats_path) if stats_path is not None and stats_path.is_file() else {}
    return singers, stats


def _download_tables(repo_id: str) -> dict[str, Path | None]:
    """Hub paths of ``singers.json`` (required) and ``stats.json`` (``None`` when it cannot be fetched)."""
    from huggingface_hub import hf_hub_download

    paths: dict[str, Path | None] = {}
    for name in (SINGERS_FILE, STATS_FILE):
        try:
            paths[name] = Path(hf_hub_download(repo_id, name))
        except Exception as err:  # offline, missing repo or file
            if name == STATS_FILE:
                paths[name] = None
                continue
            raise OSError(f"Could not read {name} of the model {repo_id!r} ({type(err).__name__}: {err}).") from err
    return paths


__all__ = ["DamagedWeightsError", "load_weights", "read_model_json", "read_singer_tables"]
