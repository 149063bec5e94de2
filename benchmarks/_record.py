"""The JSON record every lab script writes: its settings, the machine, the git commit, results.

Every published table names one such record (``benchmarks/RESULTS.md``); ``provenance``
stamps it with the commit it was measured on, whether the work tree had uncommitted changes,
and the device, so that a number can be traced to the code that produced it.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding this file."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(status.strip())}


def provenance(device: str) -> dict[str, Any]:
    """The commit, the dirty flag and the device type (``cpu`` / ``cuda``) of a record."""
    return {**git_commit(), "device": device}


def machine(device: torch.device) -> dict[str, str]:
    """Platform, processor, device name and torch version."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }


def write_record(
    out: str | Path, settings: dict[str, Any], device: torch.device, **results: Any
) -> Path:
    """Writes ``{"provenance", "settings", "machine", **results}`` to ``out`` (folders made)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "provenance": provenance(device.type),
        "settings": settings,
        "machine": machine(device),
        **results,
    }
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
