"""Readers for singing (and speech) corpora, each in its official release layout.

A reader takes the folder a corpus was unpacked into and yields one
:class:`AudioRecord` per audio file: which dataset, which singer, an utterance id
unique within that singer, and the path. Records come out sorted, so everything
downstream is deterministic. The layouts (see README "## Data"):

- ``m4singer``: ``<Singer>#<Song>/<idx>.wav`` (e.g. ``Alto-1#newboy/0000.wav``),
  plus ``meta.json``; singer = the part before ``#``.
- ``opencpop``: ``segments/wavs/<song><idx>.wav`` (one female singer); the full
  songs in ``wavs/`` are used only when ``segments/`` is absent.
- ``opensinger``: ``ManRaw|WomanRaw/<id>_<song>/<id>_<song>_<n>.wav``; singer =
  ``Man_<id>`` / ``Woman_<id>`` (ids are reused across the two genders).
- ``svcc``: SVCC 2023 ``Data/<singer>/<n>.wav`` (singers IDF1, IDM1, CDF1, CDM1),
  the same folders at the top level as the challenge's generation script writes
  them, or VCC 2018 ``vcc2018_training/VCC2<xx>/<n>.wav``. Evaluation and
  ground-truth folders are left out.
- ``vctk``: 0.92 ``wav48_silence_trimmed/<p225>/<p225>_<nnn>_mic1.flac`` (mic2 is
  the same take on another microphone and is skipped) or 0.80
  ``wav48/<p225>/<p225>_<nnn>.wav``.
- ``generic``: ``<singer>/**/<name>.wav|flac|mp3|ogg`` -- one folder per singer,
  any depth below it.

Use :func:`get_reader` / :func:`read_corpus` rather than the functions directly:
they check the name and the folder first and fail with a message that says what
is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


class CorpusError(ValueError):
    """A corpus name, folder or layout is not usable; the message says what to do."""


@dataclass(frozen=True, order=True)
class AudioRecord:
    """One audio file of a corpus.

    ``dataset``: the dataset name (the corpus name unless renamed on the command
    line); ``singer``: the singer's name within the dataset; ``utterance``: an id
    unique within that singer; ``path``: the audio file.
    """

    dataset: str
    singer: str
    utterance: str
    path: Path

    @property
    def singer_key(self) -> str:
        """Global singer key ``"{dataset}_{singer}"`` (see :mod:`comosvc.data.singers`)."""
        return f"{self.dataset}_{self.singer}"


Reader = Callable[[Path, str], Iterator[AudioRecord]]


def _audio_files(folder: Path, recursive: bool = False, suffixes=AUDIO_SUFFIXES) -> list[Path]:
    if not folder.is_dir():
        return []
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in suffixes and p.is_file())


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


# --------------------------------------------------------------------------- readers


def read_m4singer(root: Path, dataset: str = "m4singer") -> Iterator[AudioRecord]:
    """``root/<Singer>#<Song>/<idx>.wav``; utterance ``<Song>#<idx>``."""
    for song_dir in _subdirs(root):
        if "#" not in song_dir.name:
            continue
        singer, song = song_dir.name.split("#", 1)
        for wav in _audio_files(song_dir, suffixes=(".wav",)):
            yield AudioRecord(dataset, singer, f"{song}#{wav.stem}", wav)


def read_opencpop(root: Path, dataset: str = "opencpop") -> Iterator[AudioRecord]:
    """``root/segments/wavs/*.wav`` (or the full songs ``root/wavs/*.wav``); one singer."""
    for folder in (root / "segments" / "wavs", root / "wavs"):
        files = _audio_files(folder, suffixes=(".wav",))
        if files:
            for wav in files:
                yield AudioRecord(dataset, "female1", wav.stem, wav)
            return


def read_opensinger(root: Path, dataset: str = "opensinger") -> Iterator[AudioRecord]:
    """``root/{ManRaw,WomanRaw}/<id>_<song>/<id>_<song>_<n>.wav``; singer ``Man_<id>``."""
    for gender_dir in (root / "ManRaw", root / "WomanRaw"):
        gender = gender_dir.name[: -len("Raw")]
        for song_dir in _subdirs(gender_dir):
            singer_id, _, _song = song_dir.name.partition("_")
            for wav in _audio_files(song_dir, suffixes=(".wav",)):
                # file stem is <id>_<song>_<n>: drop the singer id, keep song and index
                utterance = wav.stem[len(singer_id) + 1 :] if wav.stem.startswith(singer_id + "_") else wav.stem
                yield AudioRecord(dataset, f"{gender}_{singer_id}", utterance, wav)


_SVCC2023_SINGER = re.compile(r"^(ID|CD)[MF]\d+$")
_VCC2018_SINGER = re.compile(r"^VCC2[ST][FM]\d+$")


def read_svcc(root: Path, dataset: str = "svcc") -> Iterator[AudioRecord]:
    """SVCC 2023 ``Data/<IDF1|IDM1|CDF1|CDM1>/*.wav`` (or those folders at the top level)
    or VCC 2018 ``vcc2018_training/VCC2<xx>/*.wav``."""
    candidates = (
        [d for d in _subdirs(root / "Data")]
        + [d for d in _subdirs(root) if _SVCC2023_SINGER.match(d.name)]
        + [d for d in _subdirs(root / "vcc2018_training") if _VCC2018_SINGER.match(d.name)]
        + [d for d in _subdirs(root) if _VCC2018_SINGER.match(d.name)]
    )
    seen: set[Path] = set()
    for singer_dir in candidates:
        if singer_dir in seen:
            continue
        seen.add(singer_dir)
        for wav in _audio_files(singer_dir, suffixes=(".wav",)):
            yield AudioRecord(dataset, singer_dir.name, wav.stem, wav)


def read_vctk(root: Path, dataset: str = "vctk") -> Iterator[AudioRecord]:
    """VCTK 0.92 ``wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac`` or 0.80 ``wav48/<spk>/*.wav``."""
    if (root / "wav48_silence_trimmed").is_dir():
        for spk_dir in _subdirs(root / "wav48_silence_trimmed"):
            for flac in _audio_files(spk_dir, suffixes=(".flac",)):
                if flac.stem.endswith("_mic1"):
                    yield AudioRecord(dataset, spk_dir.name, flac.stem[: -len("_mic1")], flac)
    elif (root / "wav48").is_dir():
        for spk_dir in _subdirs(root / "wav48"):
            for wav in _audio_files(spk_dir, suffixes=(".wav",)):
                yield AudioRecord(dataset, spk_dir.name, wav.stem, wav)


def read_generic(root: Path, dataset: str = "generic") -> Iterator[AudioRecord]:
    """``root/<singer>/**/<name>.<wav|flac|mp3|ogg>``; utterance = path below the singer folder."""
    for singer_dir in _subdirs(root):
        for audio in _audio_files(singer_dir, recursive=True):
            utterance = audio.relative_to(singer_dir).with_suffix("").as_posix()
            yield AudioRecord(dataset, singer_dir.name, utterance, audio)


# --------------------------------------------------------------------------- registry

CORPORA: dict[str, Reader] = {
    "m4singer": read_m4singer,
    "opencpop": read_opencpop,
    "opensinger": read_opensinger,
    "svcc": read_svcc,
    "vctk": read_vctk,
    "generic": read_generic,
}

LAYOUTS: dict[str, str] = {
    "m4singer": "<root>/<Singer>#<Song>/<idx>.wav (e.g. Alto-1#newboy/0000.wav) and meta.json",
    "opencpop": "<root>/segments/wavs/<id>.wav (or <root>/wavs/<song>.wav)",
    "opensinger": "<root>/ManRaw|WomanRaw/<id>_<song>/<id>_<song>_<n>.wav",
    "svcc": "<root>/Data/<IDF1|IDM1|CDF1|CDM1>/<n>.wav or <root>/vcc2018_training/VCC2<xx>/<n>.wav",
    "vctk": "<root>/wav48_silence_trimmed/<spk>/<spk>_<n>_mic1.flac or <root>/wav48/<spk>/<spk>_<n>.wav",
    "generic": "<root>/<singer>/**/<name>.wav|flac|mp3|ogg",
}

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


def valid_names() -> str:
    return ", ".join(CORPORA)


def get_reader(corpus: str) -> Reader:
    """The reader for ``corpus``; :class:`CorpusError` listing the valid names if unknown."""
    try:
        return CORPORA[corpus.lower()]
    except KeyError:
        raise CorpusError(
            f"Unknown corpus {corpus!r}. Valid names: {valid_names()}. "
            "Use 'generic' for your own data laid out as <root>/<singer>/**/*.wav."
        ) from None


@dataclass(frozen=True)
class DatasetSpec:
    """One ``--dataset CORPUS[:NAME]=PATH`` argument: which reader, the dataset name, the folder."""

    corpus: str
    name: str
    root: Path

    @classmethod
    def parse(cls, text: str) -> "DatasetSpec":
        """Parse ``CORPUS=PATH`` or ``CORPUS:NAME=PATH`` (NAME renames the dataset,
        e.g. ``generic:alice=/data/alice``). Checks the corpus name and the folder."""
        if "=" not in text:
            raise CorpusError(
                f"--dataset {text!r} must look like CORPUS=PATH or CORPUS:NAME=PATH, "
                f"e.g. m4singer=/data/m4singer. Valid corpora: {valid_names()}."
            )
        head, path = text.split("=", 1)
        corpus, _, name = head.partition(":")
        corpus = corpus.strip().lower()
        get_reader(corpus)
        name = name.strip() or corpus
        if not _DATASET_NAME.match(name) or "_" in name:
            raise CorpusError(
                f"Dataset name {name!r} may use letters, digits, '.' and '-' only "
                "(no '_': singer keys are '<dataset>_<singer>')."
            )
        spec = cls(corpus, name, Path(path.strip()).expanduser())
        spec.check_folder()
        return spec

    def check_folder(self) -> None:
        """Fail unless ``root`` is an existing, non-empty folder."""
        if not self.root.exists():
            raise CorpusError(f"Dataset path for {self.name!r} does not exist: {self.root}")
        if not self.root.is_dir():
            raise CorpusError(f"Dataset path for {self.name!r} is not a folder: {self.root}")
        if not any(self.root.iterdir()):
            raise CorpusError(f"Dataset folder for {self.name!r} is empty: {self.root}")

    def records(self) -> list[AudioRecord]:
        """All records, sorted; :class:`CorpusError` if the layout matches no audio file."""
        root = self.root.resolve()
        records = sorted(get_reader(self.corpus)(root, self.name))
        if not records:
            raise CorpusError(
                f"No audio found for {self.corpus!r} in {self.root}. Expected layout: "
                f"{LAYOUTS[self.corpus]}. Valid corpora: {valid_names()}."
            )
        return records


def read_corpus(corpus: str, root: str | Path, dataset: str | None = None) -> list[AudioRecord]:
    """All records of ``corpus`` under ``root``, sorted, with the folder and layout checked."""
    spec = DatasetSpec(corpus.lower(), dataset or corpus.lower(), Path(root))
    get_reader(spec.corpus)
    spec.check_folder()
    return spec.records()


__all__ = [
    "AUDIO_SUFFIXES",
    "AudioRecord",
    "CORPORA",
    "CorpusError",
    "DatasetSpec",
    "LAYOUTS",
    "get_reader",
    "read_corpus",
    "read_generic",
    "read_m4singer",
    "read_opencpop",
    "read_opensinger",
    "read_svcc",
    "read_vctk",
]
