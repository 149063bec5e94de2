"""The run folder of ``dali-aug train``: its lock (one run writes a folder at a time), the
refusal to replace a run silently, and what a ``--resume`` must match (the run-defining flags
and a fingerprint of the training data)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_NAME",
    "RUN_FILES",
    "check_resume_run",
    "check_run_folder",
    "fingerprint",
    "lock",
    "pid_alive",
    "trim_history",
    "unlock",
]


#: the lock file of a run folder (holds the pid of the run writing it)
LOCK_NAME = ".dali-aug.lock"


#: files whose presence makes a folder an existing run (refused without --resume/--overwrite)
RUN_FILES = ("checkpoint.pt", "history.jsonl", "model.pt")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def lock(out: Path) -> Path:
    """Takes the run folder's lock (a file holding this process's pid); a lock whose process
    is gone (a killed run) is taken over.

    Raises:
        SystemExit: a live process holds the lock.
    """
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            text = lock.read_text().strip() if lock.is_file() else ""
            pid = int(text) if text.isdigit() else None
            if pid is not None and pid_alive(pid):
                raise SystemExit(
                    f"error: --out {out} is in use by another dali-aug train (pid {pid}, lock "
                    f"{lock}); wait for it, use another --out, or delete {lock} if that "
                    "process is not a dali-aug run"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        return lock
    raise SystemExit(f"error: could not take the lock {lock}; try again")


def unlock(lock: Path) -> None:
    try:
        if lock.read_text().strip() == str(os.getpid()):
            lock.unlink()
    except OSError:
        pass


def check_run_folder(args: argparse.Namespace, out: Path) -> None:
    """Refuses to start a new run over an existing one unless ``--overwrite`` (whose old
    files are replaced only once the new run has started: after its setup)."""
    if args.resume:
        return
    found = [n for n in RUN_FILES if (out / n).exists()]
    if not found:
        return
    if not args.overwrite:
        raise SystemExit(
            f"error: --out {out} already holds a run ({', '.join(found)}); continue it with "
            "--resume, replace it with --overwrite, or start a new run in another --out"
        )


def fingerprint(source: Any) -> dict[str, Any]:
    """What identifies the training data on ``--resume``: the sample count and a hash of the
    samples' names (relative to the data folder, so a relative and an absolute ``--data``
    agree) and file sizes."""
    root = getattr(source, "root", None)
    prefix = f"{root}/" if root is not None else ""
    digest = hashlib.sha256()
    for i in range(len(source)):
        name = str(source.name(i))
        rel = name[len(prefix) :] if prefix and name.startswith(prefix) else name
        try:
            size = os.stat(name).st_size if root is not None else -1
        except OSError:
            size = -1
        digest.update(f"{rel}\t{size}\n".encode())
    return {"count": len(source), "sha256": digest.hexdigest()}


def check_resume_run(saved: dict[str, Any], current: dict[str, Any], data: str | None) -> None:
    """The run-defining flags must match; the data is compared by its fingerprint (a
    checkpoint from before fingerprints: by the ``--data`` string)."""
    from dali_aug.train import check_resume

    saved, current = dict(saved), dict(current)
    new = current.pop("data_fingerprint")
    if "data_fingerprint" in saved:
        old = saved.pop("data_fingerprint")
        saved.pop("data", None)
        current.pop("data", None)
        if old != new:
            raise ValueError(
                f"--resume: the training data of --data {data} is not the data the checkpoint "
                f"was trained on ({old['count']} samples then, {new['count']} now, or other "
                "file names or sizes); resume with the same data, or start a new run "
                "(--overwrite, or another --out)"
            )
    check_resume(saved, current)


def trim_history(path: Path, epochs_done: int) -> None:
    """Drops the rows of ``history.jsonl`` at or after the resumed epoch (1-based ``epoch``
    > ``epochs_done``): written before a checkpoint that then failed, they are run again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(row, dict) and int(row.get("epoch", 0)) <= epochs_done:
            kept.append(line)
    path.write_text("".join(f"{x}\n" for x in kept))
