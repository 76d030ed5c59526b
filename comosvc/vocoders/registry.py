"""The vocoder families, and the two ways to get a vocoder: load one by name, or build one with random weights.

:data:`FAMILIES` maps a family's name to its :class:`~comosvc.vocoders.base.VocoderFamily`:
how it is recognised (a name such as :data:`GRIFFINLIM`, or the files of a folder or Hub
repo) and how it is mel-checked, loaded and built with random weights. Adding a vocoder
is one module (a :class:`~comosvc.vocoders.base.Vocoder` subclass and its ``FAMILY``)
plus one entry in :data:`FAMILIES`; :func:`register`/:func:`unregister` do the same at
run time (tests, plug-ins).

    >>> vocoder = load_vocoder("nvidia/bigvgan_base_24khz_100band")
    >>> wav = vocoder(log_mel)          # (B, T, 100) -> (B, T * 256), in [-1, 1]
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from comosvc.config import AudioConfig
from comosvc.vocoders import bigvgan, griffinlim
from comosvc.vocoders.base import Layout, Vocoder, VocoderFamily, VocoderNotFoundError, VocoderSource
from comosvc.vocoders.bigvgan import DEFAULT_VOCODER
from comosvc.vocoders.names import GRIFFINLIM

logger = logging.getLogger(__name__)

# name -> family; families picked by name are tried first, then layouts in this order
FAMILIES: dict[str, VocoderFamily] = {family.name: family for family in (bigvgan.FAMILY, griffinlim.FAMILY)}
FALLBACK = GRIFFINLIM  # the family used when a neural vocoder is not reachable and fallback=True


def register(family: VocoderFamily) -> VocoderFamily:
    """Add a family (for a test or a plug-in); its name must be new."""
    if family.name in FAMILIES:
        raise ValueError(f"a vocoder family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove the family ``name`` (added with :func:`register`)."""
    del FAMILIES[name]


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def family_named(name: str) -> VocoderFamily | None:
    """The family picked by ``name`` without any files (:data:`GRIFFINLIM`, in any case, with or without ``-``/``_``), or None."""
    for family in FAMILIES.values():
        if any(_normalise(name) == _normalise(known) for known in family.names):
            return family
    return None


def _layouts() -> list[tuple[VocoderFamily, Layout]]:
    return [(family, layout) for family in FAMILIES.values() for layout in family.layouts]


def find_checkpoint(folder: Path) -> tuple[VocoderFamily, Layout, tuple[Path, ...]]:
    """The family, layout and files of the checkpoint in a local folder, or VocoderNotFoundError."""
    for family, layout in _layouts():
        files = layout.find(folder)
        if files is not None:
            return family, layout, files
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    expected = " or ".join(layout.label for _, layout in _layouts())
    raise VocoderNotFoundError(
        f"{folder} holds no vocoder checkpoint: expected {expected}; found {present[:10] or 'nothing'}."
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") == 0


def _download(name: str, cache_dir: str | None, local_files_only: bool) -> Path:
    """Fetch a Hub id ``owner/name[/subfolder]`` (only the files of known layouts) into the HF cache."""
    from huggingface_hub import snapshot_download

    parts = name.split("/")
    repo_id, subfolder = "/".join(parts[:2]), "/".join(parts[2:])
    prefix = f"{subfolder}/" if subfolder else ""
    layouts = [layout for _, layout in _layouts()]
    patterns = [prefix + pattern for layout in layouts for pattern in layout.download_patterns]
    try:
        root = snapshot_download(
            repo_id, allow_patterns=patterns, cache_dir=cache_dir, local_files_only=local_files_only
        )
    except Exception as err:  # offline, not cached, no such repo, HTTP errors: all "not reachable"
        first, others = layouts[0], layouts[1:]
        also = f"; for other layouts the files of {' or '.join(o.label for o in others)}" if others else ""
        raise VocoderNotFoundError(
            f"Could not get the vocoder {name!r} from the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            f"Run once with network access (unset HF_HUB_OFFLINE) so it is cached, or download it "
            f"into a folder (`hf download {repo_id} {' '.join(prefix + f for f in first.files)} "
            f"--local-dir DIR`{also}) and pass that folder as the vocoder; or set "
            f"inference.vocoder={FALLBACK} for the low-quality fallback."
        ) from err
    return Path(root) / subfolder


def _locate(source: VocoderSource, cache_dir: str | None, local_files_only: bool) -> tuple[VocoderFamily, VocoderSource]:
    """The family and files of a local folder or Hub id; VocoderNotFoundError when not reachable."""
    name = source.name
    path = Path(name).expanduser()
    if path.is_dir() or _looks_like_path(name):
        if not path.is_dir():
            raise VocoderNotFoundError(f"The vocoder folder {name} does not exist.")
        folder = path
    else:
        folder = _download(name, cache_dir, local_files_only)
    family, layout, files = find_checkpoint(folder)
    return family, replace(source, folder=folder, layout=layout, files=files)


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
        name_or_path: a family name (:data:`GRIFFINLIM`), a Hub id
            (``nvidia/bigvgan_v2_24khz_100band_256x``,
            ``amphion/BigVGAN_singing_bigdata/bigvgan_singing``) or a local folder; the
            family of a folder is recognised by its files.
        device: default CUDA when available, else CPU.
        audio: our mel settings; the vocoder's config must match them.
        fallback: when the neural vocoder's files are not reachable (offline, not
            downloaded, missing files), warn and return Griffin-Lim instead of raising
            :class:`VocoderNotFoundError`. A mel mismatch or an unsafe checkpoint always raises.
        griffinlim_iters: Griffin-Lim iterations (quality vs time).
        cache_dir, local_files_only: passed to ``huggingface_hub`` for Hub ids.
    """
    source = VocoderSource(name_or_path, audio or AudioConfig(), griffinlim_iters=griffinlim_iters)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    family = family_named(name_or_path)
    if family is None:
        try:
            family, source = _locate(source, cache_dir, local_files_only)  # "not found" before anything is built
        except VocoderNotFoundError as err:
            if not fallback:
                raise
            logger.warning("%s\nFalling back to the Griffin-Lim vocoder (low quality).", err)
            family = FAMILIES[FALLBACK]
    family.check_mel(source)
    return family.load(source).to(device).eval()


def random_names() -> list[str]:
    """Every name :func:`random_vocoder` can build."""
    return [name for family in FAMILIES.values() for name in (*family.random_names, *family.names)]


def random_vocoder(name: str, audio: AudioConfig | None = None, seed: int = 0) -> Vocoder:
    """A vocoder of a known family/config with random weights (CPU), for speed runs.

    Speed does not depend on the weights, so nothing is downloaded. ``name`` is a
    family name (:data:`GRIFFINLIM`) or a known config (``"nvidia/bigvgan_base_24khz_100band"``).
    """
    audio = audio or AudioConfig()
    family = family_named(name) or next((f for f in FAMILIES.values() if name in f.random_names), None)
    if family is None:
        raise ValueError(f"no random-weight config for vocoder {name!r}; choose one of {random_names()}")
    return family.random(name, audio, seed)
