"""Training-step time of KeepAugment's saliency modes against Cutout.

One training step (``Trainer.step``: methods, forward, loss, backward, optimizer step) on a
resident batch, for: no augmentation, Cutout (a uniformly placed box filled in the step, the
same fill as KeepCutout), and KeepCutout with ``full``, ``lowres`` and ``early`` saliency
(``KeepMethod``; ``early`` includes training its head); Cutout is
``dali_aug.methods.cutout.CutoutMethod``. Peers run in interleaved rounds in one process;
the headline is each step's median time as a ratio to Cutout's in the same run.

From the repository root:

    python -m benchmarks.keep.step --rounds 7 --steps 5 --threads 1   # CPU, small model, 64 px
    python -m benchmarks.keep.step --model resnet50 --size 224 --batch-size 128 --amp bf16 \
        --device cuda                                                   # the GPU row

Writes a record (``benchmarks/_record.py``: settings, machine, commit, every round) to
``--out``, by default ``runs/bench/keep/step.json`` (scratch, not tracked); a curated record
goes to ``benchmarks/keep/results/`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from benchmarks._record import write_record
from dali_aug.batch import Batch
from dali_aug.methods.cutout import CutoutMethod
from dali_aug.methods.keep import DEFAULT_BOX_FRACTION, KeepMethod
from dali_aug.models import build_model
from dali_aug.train import Method, Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="small", choices=["small", "resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--box",
        type=float,
        default=DEFAULT_BOX_FRACTION,
        help="box side / image side, for Cutout and KeepCutout (paper: 0.5, 16 px at 32 px)",
    )
    p.add_argument("--tau", type=float, default=0.6, help="KeepAugment's quantile (paper: 0.6)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per peer per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="runs/bench/keep/step.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.size, args.size, generator=g).to(device)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=g).to(device)
    batch = Batch(images, labels, torch.arange(args.batch_size))

    def trainer(saliency: str | None = None, cutout: bool = False) -> Trainer:
        torch.manual_seed(0)
        model = build_model(args.model, args.classes).to(device)
        methods: list[Method] = [CutoutMethod(box_fraction=args.box, seed=0)] if cutout else []
        if saliency is not None:
            keep = KeepMethod(
                model,
                args.classes,
                saliency_mode=saliency,  # type: ignore[arg-type]
                box_fraction=args.box,
                tau=args.tau,
                seed=0,
            )
            methods.append(keep)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return Trainer(model, opt, methods=methods, amp=amp)

    peers = {"no aug": trainer(), "Cutout": trainer(cutout=True)}
    for mode in ("full", "lowres", "early"):
        peers[f"KeepCutout ({mode})"] = trainer(saliency=mode)
    for t in peers.values():  # warm-up, outside the timed region
        for _ in range(2):
            t.step(batch)
    _sync(device)
    runs: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(args.rounds):
        for name, t in peers.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                t.step(batch)
            _sync(device)
            runs[name].append((time.perf_counter() - start) / args.steps * 1e3)
    base = statistics.median(runs["Cutout"])
    rows: list[dict[str, Any]] = []
    print(f"{'step':<22}{'ms/step (median)':>18}{'min-max':>18}{'x Cutout':>10}")
    for name, ms in runs.items():
        med = statistics.median(ms)
        rows.append({"peer": name, "ms_median": med, "ms_runs": ms, "ratio_to_cutout": med / base})
        print(f"{name:<22}{med:>18.1f}{f'{min(ms):.1f}-{max(ms):.1f}':>18}{med / base:>10.2f}")
    write_record(args.out, vars(args), device, rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
