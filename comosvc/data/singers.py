"""The global singer table: ``"{dataset}_{singer}" -> id``, saved as ``singers.json``.

One table serves training and inference alike (the reference keeps per-dataset
ids that collide when datasets are mixed). Ids are stable: a singer keeps its id
forever; a singer seen for the first time gets the next unused id, so rerunning
preprocessing or adding a dataset never moves an existing singer.

    >>> table = SingerTable()
    >>> table.add("m4singer", "Alto-1")
    0
    >>> table["m4singer_Alto-1"]
    0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from comosvc.files import SINGERS_FILE


class TooManySingersError(ValueError):
    """More singers than the model has speaker embeddings."""


class SingerTable:
    """Mapping of global singer keys to stable integer ids.

    ``max_speakers``: the size of the model's speaker embedding
    (``config.model.n_speakers``); adding a singer whose id would not fit raises
    :class:`TooManySingersError`.
    """

    def __init__(self, ids: dict[str, int] | None = None, max_speakers: int | None = None):
        self.max_speakers = max_speakers
        self._ids: dict[str, int] = {}
        for key, value in (ids or {}).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Singer {key!r} has id {value!r}; ids must be non-negative integers.")
            self._ids[str(key)] = value
        if len(set(self._ids.values())) != len(self._ids):
            raise ValueError("The singer table gives the same id to two singers; it is corrupt.")
        self._check_size()

    @staticmethod
    def key(dataset: str, singer: str) -> str:
        """Global key ``"{dataset}_{singer}"``."""
        return f"{dataset}_{singer}"

    def add(self, dataset_or_key: str, singer: str | None = None) -> int:
        """Id of the singer, giving it the next unused id if it is new.

        Call as ``add(dataset, singer)`` or ``add(key)``.
        """
        key = dataset_or_key if singer is None else self.key(dataset_or_key, singer)
        if key not in self._ids:
            self._ids[key] = max(self._ids.values(), default=-1) + 1
            self._check_size()
        return self._ids[key]

    def update(self, keys: Iterable[str]) -> list[str]:
        """Add ``keys`` in sorted order (deterministic ids); returns the keys that were new."""
        new = sorted(set(k for k in keys if k not in self._ids))
        # check the size before adding anything so a refused update leaves the table unchanged
        needed = max(self._ids.values(), default=-1) + len(new) + 1
        if self.max_speakers is not None and needed > self.max_speakers:
            raise TooManySingersError(self._too_many_message(needed))
        for key in new:
            self.add(key)
        return new

    def extending(self, base: dict[str, int]) -> "SingerTable":
        """The table of a trained model (``base``) extended by this table's other singers.

        ``base``'s ids never move; this table must give its singers the same ids and no other
        singer an id ``base`` uses (else ValueError). Singers added later take the next free id.
        """
        moved = {key: i for key, i in self._ids.items() if key in base and base[key] != i}
        taken = {key: i for key, i in self._ids.items() if key not in base and i in set(base.values())}
        if moved or taken:
            key, i = next(iter({**moved, **taken}.items()))
            clash = f"has id {base[key]} there" if key in base else f"id {i} is another singer's there"
            raise ValueError(
                f"This singer table gives {key!r} id {i}, but the base model's table {clash}; "
                "prepare the data again in an empty folder."
            )
        return SingerTable({**base, **self._ids}, max_speakers=self.max_speakers)

    def _check_size(self) -> None:
        needed = max(self._ids.values(), default=-1) + 1
        if self.max_speakers is not None and needed > self.max_speakers:
            raise TooManySingersError(self._too_many_message(needed))

    def _too_many_message(self, needed: int) -> str:
        return (
            f"{needed} singer ids are needed but the model has only model.n_speakers="
            f"{self.max_speakers} speaker embeddings. Raise model.n_speakers (e.g. "
            f"model.n_speakers={max(needed, 2 * self.max_speakers)}) before training, or "
            "preprocess fewer datasets."
        )

    def __getitem__(self, key: str) -> int:
        try:
            return self._ids[key]
        except KeyError:
            raise KeyError(
                f"Unknown singer {key!r}. Known singers: {', '.join(sorted(self._ids)) or '(none)'}"
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ids, key=self._ids.__getitem__))

    def items(self) -> list[tuple[str, int]]:
        """``(key, id)`` pairs in id order."""
        return [(k, self._ids[k]) for k in self]

    def to_dict(self) -> dict[str, int]:
        return dict(self.items())

    def save(self, path: str | Path) -> Path:
        """Write ``singers.json`` (a file path, or a folder to write it into)."""
        path = Path(path)
        if path.is_dir():
            path = path / SINGERS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, max_speakers: int | None = None, missing_ok: bool = False) -> "SingerTable":
        """Read ``singers.json`` (a file path or the folder holding it)."""
        path = Path(path)
        if path.is_dir() or (missing_ok and not path.suffix):
            path = path / SINGERS_FILE
        if not path.is_file():
            if missing_ok:
                return cls(max_speakers=max_speakers)
            raise FileNotFoundError(f"No singer table at {path}. Run train/preprocess.py first.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); restore it from a backup.") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of singer -> id.")
        return cls(data, max_speakers=max_speakers)

    def __repr__(self) -> str:
        return f"SingerTable({len(self)} singers)"


__all__ = ["SINGERS_FILE", "SingerTable", "TooManySingersError"]
