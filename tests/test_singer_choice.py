"""The chosen singer reaches the output, through the whole pipeline, on a briefly trained tiny teacher.

Two synthetic singers of clearly different timbre (formants and spectral tilt) sing the same
phrases: same notes, vowels and timing, so their clips are frame-aligned. A tiny teacher
(configs/tiny.yaml) is trained on them for a few hundred steps in this process.

"Reconstruction" of a singer: that singer's clip converted to that singer. Converting the
clip of singer A to singer B must then land nearer B's reconstruction than A's (by a clear
margin), in log-mel L1 of ``result.mel``. A pipeline that ignored the singer would give
exactly A's reconstruction and fail. A 50/50 mix of A and B lands between the two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comosvc.features.extract import FeatureExtractor
from comosvc.features.mel import MelStats
from comosvc.data.songs import Voice, sung_phrase
from comosvc.pipeline import ConversionPipeline
from conftest import fast_vocoder

pytestmark = pytest.mark.usefixtures("one_thread")

LOW, HIGH = "synth_low", "synth_high"
VOICES = {
    LOW: Voice(formant_scale=0.8, tilt=0.6, breath=0.0),
    HIGH: Voice(formant_scale=1.25, tilt=1.6, breath=0.0),
}
PHRASES = 6  # per singer, 3 notes of 0.35 s each
TRAIN_STEPS = 200
CROP_FRAMES, BATCH = 48, 4
TEACHER_STEPS = 2  # sampling steps of each conversion


def training_items(features: FeatureExtractor) -> list[dict]:
    """Features (``mel`` (T, 100) log mel, ``whisper``, ``contentvec``, ``f0`` Hz, ``energy``) and
    ``speaker`` id of every training phrase; each phrase is sung by both singers."""
    rng = np.random.default_rng(0)
    items = []
    for phrase in range(PHRASES):
        notes = list(rng.uniform(180.0, 400.0, size=3))
        for speaker, voice in enumerate(VOICES.values()):
            wav, _ = sung_phrase(notes, note_seconds=0.35, gap_seconds=0.08, voice=voice, seed=phrase)
            items.append({**features.extract_batch([wav])[0], "speaker": speaker})
    return items


def random_batch(items: list[dict], stats: MelStats, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """A model batch of ``BATCH`` random ``CROP_FRAMES``-frame crops, the mel normalised with ``stats``."""
    rows = [items[i] for i in rng.choice(len(items), BATCH, replace=False)]
    starts = [int(rng.integers(0, len(row["mel"]) - CROP_FRAMES + 1)) for row in rows]
    batch = {
        name: torch.stack([torch.as_tensor(np.asarray(row[name][s : s + CROP_FRAMES], dtype=np.float32))
                           for row, s in zip(rows, starts)])
        for name in ("mel", "whisper", "contentvec", "f0", "energy")
    }
    batch["mel"] = stats.normalize(batch["mel"])
    batch["speaker"] = torch.tensor([row["speaker"] for row in rows])
    return batch


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, tiny_overrides) -> ConversionPipeline:
    """A tiny teacher trained ``TRAIN_STEPS`` steps on the two singers, saved and loaded as a user would."""
    from comosvc.config import load_config
    from comosvc.models import ComoSVC
    from conftest import TINY_CONFIG

    config = load_config(TINY_CONFIG, overrides=tiny_overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        items = training_items(FeatureExtractor(config, device="cpu"))
        stats = MelStats()
        for item in items:
            stats.update(item["mel"])
        singers = {name: i for i, name in enumerate(VOICES)}
        model_stats = {"mel": {"synth": stats.to_dict()}, "f0": {name: {"median": 250.0} for name in singers}}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = ComoSVC(config, singers=singers, stats=model_stats)
            optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
            rng, noise = np.random.default_rng(1), torch.Generator().manual_seed(0)
            model.train()
            for _ in range(TRAIN_STEPS):
                loss = model.teacher_loss(random_batch(items, stats, rng), generator=noise)["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("two-singers") / "teacher"
    model.eval().save_pretrained(folder)
    return ConversionPipeline.from_pretrained(folder, vocoder=fast_vocoder(), device="cpu")


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    """One phrase not in the training set, sung by each singer: ``(N,)`` at 24 kHz, the same N."""
    return {
        name: sung_phrase([220.0, 330.0, 262.0], note_seconds=0.4, gap_seconds=0.08, voice=voice, seed=99)[0]
        for name, voice in VOICES.items()
    }


def convert(pipe, clip, singer) -> np.ndarray:
    """``result.mel`` ``(T, 100)`` log mel of one conversion (fixed seed: the same noise every time)."""
    return pipe(clip, singer, steps=TEACHER_STEPS, seed=0).mel


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute log-mel difference."""
    return float(np.abs(a - b).mean())


def test_each_singer_reaches_the_output(pipe, clips):
    reconstruction = {name: convert(pipe, clips[name], name) for name in VOICES}
    for source, target in ((LOW, HIGH), (HIGH, LOW)):
        converted = convert(pipe, clips[source], target)
        to_target, to_source = l1(converted, reconstruction[target]), l1(converted, reconstruction[source])
        # another singer, another output; and it is the target's: nearer its reconstruction by a clear margin
        assert to_source > 0
        assert to_target < to_source / 2, (source, target, to_target, to_source)


def test_an_even_mix_lands_between_the_two_singers(pipe, clips):
    clip = clips[LOW]
    low, high = convert(pipe, clip, LOW), convert(pipe, clip, HIGH)
    mixed = convert(pipe, clip, {LOW: 0.5, HIGH: 0.5})
    apart = l1(low, high)
    assert 0 < l1(mixed, low) < apart and 0 < l1(mixed, high) < apart
