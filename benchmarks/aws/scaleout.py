"""AWS scale-out check: a tiny search on the halves task, alone or under torchrun (CPU, gloo).

Every rank writes OUT/rank{r}.jsonl (its log rows: the theta fingerprint after every update)
and OUT/theta{r}.pt; rank 0 prints the wall time of the search (stage 1 excluded: it runs on
rank 0 alone) and writes it, with the commit, to ``--record`` (default OUT/summary.json).
Compare W ranks with ``--per 1`` against one rank with ``--per W`` (the same number of
fine-tunes per update). From the repository root:

    torchrun --standalone --nproc_per_node=2 -m benchmarks.aws.scaleout \
        --out runs/bench/aws/scaleout_w2 --per 1
    python -m benchmarks.aws.scaleout --out runs/bench/aws/scaleout_w1 --per 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from benchmarks._record import provenance
from benchmarks.aws.synthetic import halves_config, halves_task
from dali_aug.methods.aws import search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench/aws/scaleout", help="the ranks' folder")
    p.add_argument("--record", default=None, help="rank 0's summary (default: OUT/summary.json)")
    p.add_argument("--per", type=int, default=1, help="fine-tunes per rank per update")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    out = Path(args.out)
    config = halves_config(steps=args.steps, finetunes_per_step=args.per, seed=3)
    rows: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    policy = search(
        halves_task(args.images, seed=3), config, out, progress=False, on_step=rows.append
    )
    (out / f"rank{rank}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.save(policy.theta.detach(), out / f"theta{rank}.pt")
    if rank == 0:
        summary = {
            "provenance": provenance("cpu"),
            "settings": vars(args),
            "world": dist.get_world_size() if dist.is_initialized() else 1,
            "per_rank": args.per,
            "finetunes": len(rows[-1]["rewards"]) * len(rows),
            "stage2_seconds": sum(r["seconds"] for r in rows),
            "total_seconds": time.perf_counter() - t0,
        }
        print(json.dumps(summary))
        record = Path(args.record) if args.record else out / "summary.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(summary, indent=2))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
