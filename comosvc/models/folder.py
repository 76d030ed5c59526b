"""Reading a model folder's JSON files (``config.json``, ``singers.json``, ``stats.json``) with clear errors.

A file that does not parse raises :class:`~comosvc.config.ConfigError` naming the
file and saying what to do, instead of json's bare "Expecting property name ...".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comosvc.config import ConfigError
from comosvc.files import MODEL_CONFIG_FILE, SINGERS_FILE, STATS_FILE


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


__all__ = ["read_model_json", "read_singer_tables"]
