"""Content features of pitch-shifted copies of a processed folder's training clips.

The content encoders (Whisper, ContentVec) keep some of the pitch of what they hear. A
fine-tune sees a new singer in one register only, where content and F0 always agree, so the
model may learn to take that singer's pitch from the content. A conversion with a key shift
then gives it content and F0 an interval apart, and it sings part of the frames at the
content's pitch (an octave below the melody, docs/benchmarks.md "Your own voice").

The fine-tune therefore also shows each clip with content taken from copies of it
pitch-shifted by ``SEMITONES`` (one copy up, one down), with its F0, energy and target mel
unchanged: content and F0 disagree as in a conversion, and the F0 is the one to follow (the
information perturbation of NANSY, Choi et al. 2021).

    >>> shifted = shifted_content("runs/alice/data", cfg, "runs/alice/shifted_content")
    >>> data = FeatureDataset(train, stats, singers, shifted=shifted, shifted_share=0.5)

``shifted`` has :data:`COPIES` rows per training clip (row ``i * COPIES + k`` is copy ``k`` of
clip ``i``): ``"whisper"`` ``(T, Dw)`` and ``"contentvec"`` ``(T, Dc)`` with the clip's ``T``
frames, ``"semitones"`` (the shift applied), and the clip's ``dataset``, ``singer``,
``utterance`` and ``segment``. It is cached under a name that fingerprints the clips and the
feature settings, so a resumed run reuses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from comosvc.config import ComoSVCConfig

COPIES = 2  # pitch-shifted copies of each clip: one up, one down
SEMITONES = (2.0, 12.0)  # the size of each copy's shift, drawn uniformly
IDENTITY = ("dataset", "singer", "utterance", "segment")  # the columns naming a clip
VERSION = 1


def _features(config: ComoSVCConfig):
    from datasets import Array2D, Features, Value

    content = config.data.content_dtype
    return Features(
        {
            "dataset": Value("string"),
            "singer": Value("string"),
            "utterance": Value("string"),
            "segment": Value("int32"),
            "semitones": Value("float32"),
            "whisper": Array2D(shape=(None, config.content.whisper_dim), dtype=content),
            "contentvec": Array2D(shape=(None, config.content.contentvec_dim), dtype=content),
        }
    )


def draw_shifts(n_clips: int, seed: int) -> np.ndarray:
    """Each clip's :data:`COPIES` shifts in semitones, ``(n_clips, COPIES)``: copy 0 up, copy 1 down,
    each by a size drawn uniformly from :data:`SEMITONES`."""
    rng = np.random.default_rng(seed)
    return rng.uniform(*SEMITONES, size=(n_clips, COPIES)) * np.array([1.0, -1.0])


def _shifted_batch(batch: dict[str, list], indices: list[int], config: ComoSVCConfig, extractor, shifts: np.ndarray):
    """datasets.map function: clips -> their :data:`COPIES` copies' content features."""
    from comosvc.audio import load_audio
    from comosvc.features.pitch_shift import pitch_shift

    sr = config.audio.sample_rate
    content_dtype = np.float16 if config.data.content_dtype == "float16" else np.float32
    out: dict[str, list] = {name: [] for name in (*IDENTITY, "semitones", "whisper", "contentvec")}
    wavs, loaded = [], {}
    for i, index in enumerate(indices):
        path = batch["audio"][i]["path"]
        if path not in loaded:
            loaded.clear()  # one file decoded at a time
            loaded[path] = load_audio(path, sr, max_seconds=config.audio.max_duration)
        clip = loaded[path][batch["start"][i] : batch["end"][i]]
        for k in range(COPIES):
            shifted, semitones = pitch_shift(clip, sr, float(shifts[index, k]))
            wavs.append(shifted)
            for name in IDENTITY:
                out[name].append(batch[name][i])
            out["semitones"].append(semitones)
    for features in extractor.extract_batch(wavs, features=("whisper", "contentvec")):
        out["whisper"].append(np.asarray(features["whisper"]).astype(content_dtype))
        out["contentvec"].append(np.asarray(features["contentvec"]).astype(content_dtype))
    return out


def shifted_content(data_dir: str | Path, config: ComoSVCConfig, folder: str | Path, device: str | None = None,
                    seed: int = 0, extractor=None):
    """The pitch-shifted copies' content of ``data_dir``'s train split (module docstring), built into
    ``folder`` unless already there; a :class:`datasets.Dataset`.

    ``config``: the model's (its audio, content and ``data.content_dtype``); ``device``: where the
    content encoders run; ``extractor``: a ready :class:`~comosvc.features.extract.FeatureExtractor`
    (default: built from ``config`` when something must be extracted).
    """
    from datasets import Dataset

    from comosvc.data.preprocess import _digest, feature_settings, load_processed

    train = load_processed(data_dir, splits=["train"])["train"]
    names = train.select_columns(list(IDENTITY))
    identity = [list(names[name]) for name in IDENTITY]
    fingerprint = _digest(["shifted-content", VERSION, feature_settings(config), identity, seed, COPIES, SEMITONES])
    folder = Path(folder)
    target = folder / f"shifted-{fingerprint}.arrow"
    if target.is_file():
        return Dataset.from_file(str(target))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("shifted-*.arrow"):
        stale.unlink()
    if extractor is None:
        from comosvc.features.extract import FeatureExtractor

        extractor = FeatureExtractor(config, device=device)
    shifts = draw_shifts(len(train), seed)
    return train.select_columns([*IDENTITY, "audio", "start", "end"]).map(
        _shifted_batch,
        with_indices=True,
        batched=True,
        batch_size=max(1, config.data.batch_size // COPIES),
        fn_kwargs={"config": config, "extractor": extractor, "shifts": shifts},
        features=_features(config),
        remove_columns=[*IDENTITY, "audio", "start", "end"],
        cache_file_name=str(target),
        new_fingerprint=fingerprint,
        writer_batch_size=max(1, config.data.batch_size),
        desc="content of pitch-shifted copies",
    )


def check_aligned(shifted, split) -> int:
    """The copies per clip of ``shifted`` for ``split`` (a processed train split); raises
    ``ValueError`` when its rows are not those clips' copies, in order."""
    if len(split) == 0 or len(shifted) % len(split):
        raise ValueError(f"The pitch-shifted content has {len(shifted)} rows for {len(split)} clips; rebuild it "
                         "(delete its folder) from the same processed data.")
    copies = len(shifted) // len(split)
    mine = list(zip(*(split[name] for name in IDENTITY)))
    theirs = list(zip(*(shifted[name] for name in IDENTITY)))[::copies]
    if mine != theirs:
        raise ValueError("The pitch-shifted content was built from other clips than the processed data's train split; "
                         "rebuild it (delete its folder).")
    return copies


__all__ = ["COPIES", "SEMITONES", "check_aligned", "draw_shifts", "shifted_content"]
