"""Loading checkpoints safely, and checking that a resumed run is the run it continues.

Checkpoints load with ``torch.load(..., weights_only=True)`` only: tensors, numbers,
strings, lists and dicts, never code (a pickle that would run code is refused with a
ValueError).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointWriteError", "check_resume", "load_checkpoint", "save_checkpoint"]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (its partial temporary file is removed)."""


def save_checkpoint(obj: Any, path: str | Path, *, what: str = "the checkpoint") -> None:
    """Writes ``obj`` with ``torch.save`` atomically: through a temporary file of this process
    (``<name>.<pid>.tmp``), renamed into place, and removed if the write fails.

    Raises:
        CheckpointWriteError: the file could not be written (e.g. the disk is full), naming
            ``what`` and the path; the previous file is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        # torch's zip writer reports a full disk as a RuntimeError ("file write failed")
        if isinstance(err, RuntimeError) and "writ" not in str(err).lower():
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointWriteError(
            f"could not write {what} {path} ({reason}); disk full? free space or write to "
            "another folder, then resume from the last checkpoint"
        ) from None


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Loads a dali-aug checkpoint with ``weights_only=True``.

    Raises:
        ValueError: the file is missing, not a checkpoint, or holds objects other than
            tensors and plain data (e.g. code to run): it is not loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{str(path)!r} is not a loadable dali-aug checkpoint ({first}); only tensors and "
            "plain data are loaded (weights_only=True), never code. Use a checkpoint written "
            "by dali-aug train, or retrain"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(
            f"{str(path)!r} is not a dali-aug checkpoint (no 'model' entry); use OUT/checkpoint.pt "
            "of a dali-aug train run"
        )
    return state


def check_resume(saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuses a resume whose run-defining settings differ from the checkpoint's.

    Args:
        saved: the run arguments stored in the checkpoint.
        current: this run's arguments (the same keys).

    Raises:
        ValueError: naming the first flag that differs and both values.
    """
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if old != new:
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"--resume: {flag} is {new!r} but the checkpoint was trained with {old!r}; the "
                f"same data order needs the same {flag} (pass {flag} {old!r}, or start a new "
                "run in another --out)"
            )
