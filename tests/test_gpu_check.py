"""benchmarks/gpu_check.sh, the one-shot GPU check: its argument handling and output layout,
and the stages that run on a CPU machine (the install into a target folder, the environment
record). The GPU stages themselves run on a lent GPU machine only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_arguments_are_checked() -> None:
    for bad in ([], ["--bogus", "x"], ["a", "b"], ["--only"]):
        proc = _run(*bad)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert "usage: bash benchmarks/gpu_check.sh" in proc.stderr


def test_dry_run_writes_the_plan_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = _run("--dry-run", str(out))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((out / "plan.json").read_text())
    names = [s["name"] for s in plan["stages"]]
    assert names == [
        "install", "env", "tests", "tests-json", "bench", "keep_step", "meta_step", "vfa_step"
    ]  # fmt: skip
    assert sum(s["timeout_s"] for s in plan["stages"]) <= 8 * 60
    bench = next(s for s in plan["stages"] if s["name"] == "bench")["command"]
    assert "--device cuda" in bench and "--stage-batch 256" in bench and "--size 224" in bench
    keep = next(s for s in plan["stages"] if s["name"] == "keep_step")["command"]
    assert "--model resnet50" in keep and "--amp bf16" in keep
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert [s["status"] for s in summary["stages"]] == ["dry run"] * len(names)


@pytest.mark.slow
def test_install_and_env_stages_run_here(tmp_path: Path) -> None:
    """The install (pip --target, no dependencies, as on the GPU machines) gives an importable
    dali_aug with its kernels; env.json records the machine."""
    out = tmp_path / "gpu"
    proc = _run("--only", "install,env", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [
        ("install", "ok"), ("env", "ok")
    ], (out / "install.log").read_text()[-2000:]  # fmt: skip
    assert (out / "work" / "site" / "dali_aug" / "kernels" / "region_select.cu").is_file()
    env = json.loads((out / "env.json").read_text())
    assert env["dali_aug"] == "0.1.0" and env["cuda_available"] is False
