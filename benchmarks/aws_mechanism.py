"""AWS mechanism check (papers/DIGEST.md §3.4) on the left/right halves task, where the largest
TranslateX element destroys the label: runs a small search on the reduced 6-element space
(36 pairs) and prints the marginal probability of pairs containing that element per step
(uniform: 11/36 = 0.306) and the final top pairs; writes OUT/aws_mechanism.json.

    python benchmarks/aws_mechanism.py --seed 7 --out runs/aws_mechanism
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dali_aug.methods.aws import HALVES_ELEMENTS, halves_config, halves_task, search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--n", type=int, default=600, help="images (--holdout of them for the reward)")
    p.add_argument("--share-epochs", type=int, default=6)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--contrast", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=3e-3, help="network peak lr (AdamW)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--holdout", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", default="runs/aws_mechanism")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    source = halves_task(args.n, seed=args.seed, contrast=args.contrast)
    config = halves_config(
        share_epochs=args.share_epochs,
        finetune_epochs=args.finetune_epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        holdout=args.holdout,
        num_threads=2,
        seed=args.seed,
    )
    rows: list[dict[str, object]] = []

    def on_step(row: dict[str, object]) -> None:
        rows.append(row)
        marginals = row["marginals"]
        assert isinstance(marginals, list)
        print(
            f"step {row['step']:3d}  reward {row['reward']:.3f}  baseline {row['baseline']:.3f}  "
            f"marginal(TranslateX@10) {marginals[0]:.3f}  entropy {row['entropy']:.3f}",
            flush=True,
        )

    t0 = time.perf_counter()
    policy = search(source, config, args.out, progress=False, on_step=on_step)
    seconds = time.perf_counter() - t0
    result = {
        "seed": args.seed,
        "config": config.to_dict(),
        "uniform_marginal": 11 / 36,
        "marginal_curve": [r["marginals"][0] for r in rows],  # type: ignore[index]
        "reward_curve": [r["reward"] for r in rows],
        "entropy_curve": [r["entropy"] for r in rows],
        "final_marginals": dict(
            zip([e.name for e in HALVES_ELEMENTS], rows[-1]["marginals"], strict=True)  # type: ignore[arg-type]
        ),
        "top_pairs": policy.top_pairs(5),
        "seconds": seconds,
    }
    out = Path(args.out) / "aws_mechanism.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("final_marginals", "top_pairs", "seconds")}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
