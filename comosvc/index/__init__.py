"""The timbre index: each target singer's own content vectors, blended into the source's at conversion.

Content features (Whisper, ContentVec) carry some of the source singer's timbre. The
index keeps, per singer of a model, a bounded k-means summary of that singer's
training content vectors (:func:`build_index`, ``python -m comosvc index``); at
conversion each source frame is pulled towards its nearest neighbours in the
target singer's index by a user ratio (:func:`blend`, ``index_ratio``). The model
folder's ``index.safetensors`` (:data:`comosvc.files.INDEX_FILE`) loads with the model.

    >>> index = build_index("data/processed")                  # every singer of the train split
    >>> index.save("runs/teacher/model/index.safetensors")
    >>> pipe("song.wav", singer="opencpop_female1", index_ratio=0.5)

Modules: :mod:`~comosvc.index.clustering` (the reduction), :mod:`~comosvc.index.neighbours`
(the neighbour search and the blend), :mod:`~comosvc.index.store` (the file and the
per-singer lookup), :mod:`~comosvc.index.build` (from the preprocessed data). The
names below import on first use, so ``comosvc.index.sizes`` stays free of torch.
"""

from importlib import import_module

_WHERE = {
    "blend": "neighbours",
    "blend_mix": "neighbours",
    "check_ratio": "neighbours",
    "neighbour_mean": "neighbours",
    "build_index": "build",
    "index_size": "sizes",
    "kmeans": "clustering",
    "BUILD_COMMAND": "store",
    "INDEX_FEATURES": "store",
    "IndexFileError": "store",
    "NoIndexError": "store",
    "TimbreIndex": "store",
    "index_for": "store",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"comosvc.index.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'comosvc.index' has no attribute {name!r}")


__all__ = sorted(_WHERE)
