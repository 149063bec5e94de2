"""Helpers of benchmarks/gpu_check.sh: ``_gpu_env.py OUT.json`` writes the machine's GPU and
package versions; ``_gpu_env.py --junit TESTS.xml OUT.json`` turns pytest's JUnit report into
JSON (counts, and every failure and error with its message). Both carry ``provenance`` (the
git commit of the tree under test, when it is a checkout, and the device)."""

from __future__ import annotations

import importlib
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in ("torch", "cupy", "nvidia.dali", "kornia", "dali_aug"):
        try:
            info[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError as err:
            info[name] = f"not importable: {err}"
    try:
        import torch

        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        info["cuda_available"] = False
    return info


def junit_to_json(xml_path: Path) -> dict[str, Any]:
    root = ET.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {
        k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")
    }
    problems = []
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            node = case.find(kind)
            if node is not None:
                problems.append(
                    {
                        "test": f"{case.get('classname')}::{case.get('name')}",
                        "kind": kind,
                        "message": (node.get("message") or "")[:500],
                    }
                )
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"counts": counts, "problems": problems}


def _provenance(device: str) -> dict[str, Any]:
    """``benchmarks._record.provenance`` where it imports (the repository root on the path);
    otherwise no commit."""
    try:
        from benchmarks._record import provenance
    except ImportError:
        return {"commit": None, "dirty": None, "device": device}
    return provenance(device)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--junit":
        payload = junit_to_json(Path(argv[1]))
        out = Path(argv[2])
    elif len(argv) == 1:
        payload, out = environment(), Path(argv[0])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "cpu"
    payload["provenance"] = _provenance(device)
    out.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
