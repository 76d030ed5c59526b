"""Crash-safe training checkpoints on top of ``accelerator.save_state``.

Layout under a run's output folder ``OUT``::

    OUT/checkpoints/step-00001000/        complete: everything below was written
        model.safetensors, optimizer.bin, random_states_*.pkl, custom_checkpoint_*.pkl
        trainer_state.json                written last, before the rename
    OUT/checkpoints/step-00002000.tmp/    being written (or left by a crash): ignored

A checkpoint is written into ``step-XXXXXXXX.tmp`` and renamed to
``step-XXXXXXXX`` only once every file, ``trainer_state.json`` last, is on disk.
A rename within one folder is atomic, so a crash (even SIGKILL) at any moment
leaves either the previous checkpoints untouched plus a ``.tmp`` folder, or one more
complete checkpoint; resuming never picks up a half-written one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import Accelerator

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # subfolder of OUT
STATE_FILE = "trainer_state.json"  # written last: its presence marks a complete checkpoint
_COMPLETE = re.compile(r"^step-(\d{8})$")


@dataclass
class TrainerState:
    """The loop's own counters, stored as JSON in every checkpoint.

    ``step`` counts optimiser updates (skipped non-finite steps do not count).
    """

    step: int = 0
    best_val_loss: float | None = None
    nonfinite_in_a_row: int = 0
    nonfinite_total: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainerState":
        return cls(**json.loads(text))


def checkpoint_dir(out: str | Path, step: int) -> Path:
    """``OUT/checkpoints/step-XXXXXXXX`` (8-digit, so names sort by step)."""
    return Path(out) / CHECKPOINTS / f"step-{step:08d}"


def list_complete_checkpoints(out: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first; ``.tmp`` and unmarked folders are skipped."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _COMPLETE.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def find_latest_complete(out: str | Path) -> Path | None:
    """The newest complete checkpoint under ``OUT/checkpoints``, or None."""
    complete = list_complete_checkpoints(out)
    return complete[-1] if complete else None


def read_trainer_state(checkpoint: str | Path) -> TrainerState:
    return TrainerState.from_json((Path(checkpoint) / STATE_FILE).read_text())


def save_checkpoint(
    accelerator: Accelerator, out: str | Path, state: TrainerState, keep: int
) -> Path:
    """Save the full training state at ``state.step`` and prune to the newest ``keep``.

    Every process must call this (Accelerate saves per-process RNG states); the
    main process writes the model/optimiser files, the JSON, renames and prunes.
    Returns the final checkpoint folder.
    """
    final = checkpoint_dir(out, state.step)
    tmp = final.with_name(final.name + ".tmp")
    if final.exists():  # already saved at this step (e.g. a checkpoint step that was also the last)
        return final
    if accelerator.is_main_process:
        if tmp.exists():  # left behind by a crash
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_tree(tmp)
        _write_synced(tmp / STATE_FILE, state.to_json())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        prune_checkpoints(out, keep)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        logger.info("Saved checkpoint %s", final)
    return final


def prune_checkpoints(out: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints (and stale ``.tmp`` folders).

    ``keep <= 0`` keeps everything. Returns the deleted folders.
    """
    root = Path(out) / CHECKPOINTS
    deleted: list[Path] = []
    complete = list_complete_checkpoints(out)
    if keep > 0:
        deleted += complete[:-keep]
    newest = int(_COMPLETE.match(complete[-1].name).group(1)) if complete else -1
    for path in root.glob("step-*.tmp") if root.is_dir() else []:
        step = path.name[len("step-") : -len(".tmp")]
        if step.isdigit() and int(step) <= newest:  # superseded partial writes
            deleted.append(path)
    for path in deleted:
        (path / STATE_FILE).unlink(missing_ok=True)  # first un-mark it, so a crash mid-delete leaves no "complete" husk
        shutil.rmtree(path, ignore_errors=True)
    return deleted


def load_checkpoint(accelerator: Accelerator, checkpoint: str | Path) -> TrainerState:
    """Restore model, optimiser, registered objects (scheduler, EMA) and RNG; return the counters."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"{checkpoint} is not a complete checkpoint (no {STATE_FILE}); "
            f"use find_latest_complete() or pass a folder like OUT/{CHECKPOINTS}/step-00001000."
        )
    accelerator.load_state(str(checkpoint))
    return read_trainer_state(checkpoint)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_tree(folder: Path) -> None:
    """Flush every file of a folder to disk, so the rename publishes data that survives power loss."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


__all__ = [
    "CHECKPOINTS",
    "STATE_FILE",
    "TrainerState",
    "checkpoint_dir",
    "find_latest_complete",
    "list_complete_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "read_trainer_state",
    "save_checkpoint",
]
