"""Exact evaluation under a process group (issue 28): a validation Loader with
``exact_shards=True`` gives each rank a part of the set, each sample exactly once, and
``Trainer.evaluate`` gathers the parts, so every rank gets the metrics of the whole set,
equal to one process evaluating it all (3 gloo processes on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys, numpy as np, torch, torch.distributed as dist
from dali_aug.loader import Loader
from dali_aug.models import build_model
from dali_aug.sources import ArraySource
from dali_aug.train import Trainer

def data():
    g = np.random.default_rng(3)
    images = g.integers(0, 256, (100, 16, 16, 3), dtype=np.uint8)
    return ArraySource.from_arrays(images, g.integers(0, 7, 100))

def trainer():
    torch.manual_seed(0)  # the same weights on every rank
    model = build_model("small", 7)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), distributed=False)

# built before the process group exists: it shards by the group its epoch meets
val = Loader(data(), train=False, batch_size=8, size=16, device="cpu", exact_shards=True)
dist.init_process_group("gloo")
rank = dist.get_rank()
seen = [int(i) for b in val for i in b.indices]
metrics = trainer().evaluate(val)
torch.save({"seen": seen, "metrics": metrics, "batches": len(val)}, f"{sys.argv[1]}/rank{rank}.pt")
dist.barrier()
dist.destroy_process_group()
"""


def run_script(text: str, tmp_path: Path, nproc: int | None, timeout: float = 240) -> None:
    """Writes ``text`` to a script in ``tmp_path`` and runs it with the folder as its
    argument: under torchrun with ``nproc`` CPU processes, or as a plain process (None: a
    script that starts its own, as Lightning's DDP does); asserts it succeeded."""
    script = tmp_path / "script.py"
    script.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable]
    if nproc is not None:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launch, str(script), str(tmp_path)]
    run = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


@pytest.mark.slow
def test_100_images_on_3_ranks_evaluate_100_with_the_single_process_metrics(
    tmp_path: Path,
) -> None:
    run_script(_SCRIPT, tmp_path, nproc=3)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(3)]
    seen = [i for r in ranks for i in r["seen"]]
    assert sorted(seen) == list(range(100))  # each image once: 33 + 33 + 34, no padding
    assert [len(r["seen"]) for r in ranks] == [33, 33, 34]
    assert [r["batches"] for r in ranks] == [5, 5, 5]
    # every rank has the whole set's metrics, those of one process evaluating all of it
    exec(compile(_SCRIPT.split("# built before")[0], "defs", "exec"), ns := {})  # noqa: S102
    val = ns["Loader"](ns["data"](), train=False, batch_size=8, size=16, device="cpu")
    whole = ns["trainer"]().evaluate(val)
    assert whole["val_samples"] == 100
    for r in ranks:
        assert r["metrics"]["val_samples"] == 100
        assert r["metrics"]["val_acc"] == whole["val_acc"]
        assert r["metrics"]["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-6)
