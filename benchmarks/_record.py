"""The JSON record every step benchmark writes: its settings, the machine, its results."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch


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
    """Writes ``{"settings", "machine", **results}`` to ``out`` (folders made) and says so."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "machine": machine(device), **results}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
