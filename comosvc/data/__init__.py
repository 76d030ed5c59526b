"""Data preparation: corpus readers, the global singer table, preprocessing to cached
features with 🤗 Datasets, and the torch Dataset/collate used for training.

- :mod:`comosvc.data.corpora` -- readers for M4Singer, Opencpop, OpenSinger, SVCC, VCTK
  and a generic one-folder-per-singer layout.
- :mod:`comosvc.data.singers` -- :class:`SingerTable`, ``singers.json``.
- :mod:`comosvc.data.preprocess` -- ``preprocess()`` / ``load_processed()`` (the
  logic behind ``train/preprocess.py``).
- :mod:`comosvc.data.dataset` -- :class:`FeatureDataset`, :func:`collate`,
  :class:`MixedSingerSampler`.
"""

from comosvc.data.corpora import CORPORA, AudioRecord, CorpusError, DatasetSpec, read_corpus
from comosvc.data.singers import SingerTable, TooManySingersError

__all__ = [
    "AudioRecord",
    "CORPORA",
    "CorpusError",
    "DatasetSpec",
    "SingerTable",
    "TooManySingersError",
    "read_corpus",
]
