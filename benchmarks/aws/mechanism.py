"""AWS mechanism check ("Improving Auto-Augment via Augmentation-Wise Weight Sharing": the
search should lower the probability of a harmful augmentation) on a task where one element
destroys the label: runs a small search on a reduced 6-element space (36 pairs, the harmful
element first) and prints, per step, the marginal probability of pairs containing that
element (uniform: 11/36 = 0.306), the entropy of p_theta (uniform: log 36 = 3.58) and the top
pair's mass (uniform: 1/36). The record also holds the final mass on the pairs that destroy the
label: those with the harmful element exactly once (uniform: 10/36 = 0.278; a pair with it
twice, e.g. (Invert, Invert), is the identity and keeps the label).

Tasks (``benchmarks.aws.synthetic``): ``polarity`` (class = light or dark square; Invert maps
each class onto the other) and ``halves`` (class = which half holds the square; TranslateX at
0.45 x width moves it across or off the image). From the repository root:

    python -m benchmarks.aws.mechanism --task polarity --seed 11 --steps 60 --reward neg_loss

The search's own files (checkpoints, log) go to ``--out`` (default
``runs/bench/aws/mechanism``); the record (curves, final marginals, the commit) to
``--record`` (default ``OUT/aws_mechanism.json``; a curated record goes to
``benchmarks/aws/results/``, see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._record import provenance
from benchmarks.aws.synthetic import halves_config, halves_task, polarity_config, polarity_task
from dali_aug.methods.aws import search

TASKS = {"polarity": (polarity_task, polarity_config), "halves": (halves_task, halves_config)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="polarity")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--n", type=int, default=600, help="images (--holdout of them for the reward)")
    p.add_argument("--share-epochs", type=int, default=6)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--contrast", type=float, default=40.0)
    p.add_argument("--lr", type=float, default=3e-3, help="network peak lr (AdamW)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--holdout", type=float, default=0.5)
    p.add_argument("--reward", choices=("accuracy", "neg_loss"), default="neg_loss")
    p.add_argument("--policy-lr", type=float, default=0.1)
    p.add_argument("--finetunes-per-step", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default="runs/bench/aws/mechanism", help="the search's folder")
    p.add_argument("--record", default=None, help="default: OUT/aws_mechanism.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    make_task, make_config = TASKS[args.task]
    source = make_task(args.n, seed=args.seed, contrast=args.contrast)
    config = make_config(
        share_epochs=args.share_epochs,
        finetune_epochs=args.finetune_epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        holdout=args.holdout,
        reward=args.reward,
        policy_lr=args.policy_lr,
        finetunes_per_step=args.finetunes_per_step,
        num_threads=1,
        seed=args.seed,
    )
    n = len(config.elements)
    harmful = config.elements[0].name
    rows: list[dict[str, Any]] = []

    def on_step(row: dict[str, Any]) -> None:
        rows.append(row)
        print(
            f"step {row['step']:3d}  reward {row['reward']:.4f}  baseline {row['baseline']:.4f}  "
            f"marginal({harmful}) {row['marginals'][0]:.3f}  entropy {row['entropy']:.3f}  "
            f"top pair {row['top_pairs'][0]['prob']:.3f}",
            flush=True,
        )

    t0 = time.perf_counter()
    policy = search(source, config, args.out, progress=False, on_step=on_step)
    seconds = time.perf_counter() - t0
    probs = policy.probs().detach().double()
    top = probs.sort(descending=True).values
    grid = probs.view(n, n)  # [first, second]: pair k = first * n + second
    destroying = float(grid[0, 1:].sum() + grid[1:, 0].sum())
    result = {
        "provenance": provenance("cuda" if config.device == "cuda" else "cpu"),
        "settings": vars(args),
        "task": args.task,
        "seed": args.seed,
        "harmful": harmful,
        "config": config.to_dict(),
        "uniform_marginal": (2 * n - 1) / n**2,
        "uniform_entropy": math.log(n**2),
        "marginal_curve": [r["marginals"][0] for r in rows],
        "reward_curve": [r["reward"] for r in rows],
        "entropy_curve": [r["entropy"] for r in rows],
        "top_pair_curve": [r["top_pairs"][0]["prob"] for r in rows],
        "final_marginals": dict(
            zip([e.name for e in config.elements], rows[-1]["marginals"], strict=True)
        ),
        "top5_mass": float(top[:5].sum()),
        "destroying_mass": destroying,
        "uniform_destroying_mass": 2 * (n - 1) / n**2,
        "top_pairs": policy.top_pairs(5),
        "seconds": seconds,
    }
    out = Path(args.record) if args.record else Path(args.out) / "aws_mechanism.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    keys = ("final_marginals", "destroying_mass", "top5_mass", "top_pairs", "seconds")
    print(json.dumps({k: result[k] for k in keys}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
