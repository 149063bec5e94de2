"""VFA's shuffle and aggregation with *perfectly* decoupled sub-features: a diagnostic of
where VFA's mechanism breaks on the synthetic spurious-correlation data
(``benchmarks.vfa.synthetic``).

The learned decoupling f_j is replaced by an oracle: label j's part is the input's projection
on label j's own signal direction (what the data generator added for label j), repeated
``--part-dim`` times. Everything else is VFA's: per-label shuffle
(``dali_aug.methods.vfa._shuffle.shuffle``), an aggregation g (a two-layer MLP, or linear with
``--linear``) trained by ``L_rec = ||g(parts) - V||`` (V detached), and
``beta * BCE(h(g(shuffled)), y~)`` with the model's own head h, next to the ordinary BCE. If
even these parts do not beat the baseline, the decoupling is not the only problem: the
transfer from g's output to the real features is.

From the repository root:

    python -m benchmarks.vfa.oracle_parts --seeds 21 22 23                 # g: two-layer MLP
    python -m benchmarks.vfa.oracle_parts --seeds 21 22 23 --linear        # g: linear
    python -m benchmarks.vfa.oracle_parts --seeds 21 22 23 --residual --linear --betas 0 3 10 30

Writes a record (``benchmarks/_record.py``) to ``--out``, by default
``runs/bench/vfa/oracle_parts.json`` (scratch, not tracked); a curated record goes to
``benchmarks/vfa/results/`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._record import write_record
from benchmarks.vfa.synthetic import (
    SyntheticSpec,
    TinyClassifier,
    auc,
    make_data,
    rare_combo_recall,
)
from dali_aug.methods.vfa import shuffle
from dali_aug.train._metrics import multilabel_metrics


def run(
    seed: int, beta: float, *, part_dim: int, linear: bool, residual: bool = False
) -> dict[str, float]:
    spec = SyntheticSpec()
    directions, x, y, xt, yt = make_data(seed, spec)  # the same data as synthetic.run
    torch.manual_seed(seed)
    model = TinyClassifier(spec.dim, 64, 5)
    c = y.shape[1]
    agg: nn.Module = (
        nn.Linear(c * part_dim, 64)
        if linear
        else nn.Sequential(nn.Linear(c * part_dim, 128), nn.ReLU(), nn.Linear(128, 64))
    )
    params = [*model.parameters(), *agg.parameters()]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=1e-4)
    order = torch.Generator().manual_seed(seed)
    perms = torch.Generator().manual_seed(seed + 7)
    steps = 0
    while steps < spec.steps:
        idx = torch.randperm(len(x), generator=order)
        for start in range(0, len(x), spec.batch_size):
            if steps == spec.steps:
                break
            rows = idx[start : start + spec.batch_size]
            xb, yb = x[rows], y[rows]
            v = model.features(xb)
            loss = F.binary_cross_entropy_with_logits(model.head(v), yb)
            if beta > 0:
                parts = (xb @ directions.t())[:, :, None].repeat(1, 1, part_dim)  # [N, C, d]
                shuffled, y_shuffled, _ = shuffle(parts, yb, generator=perms)
                n = len(xb)
                both = agg(torch.cat([shuffled, parts]).reshape(2 * n, -1))
                rec = (both[n:] - v.detach()).norm(dim=1).mean()
                augmented = both[:n]
                if residual:  # V + g(shuffled) - g(parts): only the parts' contribution swaps
                    augmented = v + both[:n] - both[n:]
                aug = F.binary_cross_entropy_with_logits(model.head(augmented), y_shuffled)
                loss = loss + beta * aug + rec
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    model.eval()
    with torch.no_grad():
        logits = model(xt)
    metrics = multilabel_metrics(logits, yt)
    return {
        "mA": float(metrics["mA"]),
        "recall_rare_combos": rare_combo_recall(logits > 0, yt),
        "head_B_vs_B": auc(logits[:, 1], yt[:, 1]),
        "head_B_vs_A": auc(logits[:, 1], yt[:, 0]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23])
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    p.add_argument("--part-dim", type=int, default=4)
    p.add_argument("--linear", action="store_true", help="a linear aggregation g")
    p.add_argument(
        "--residual",
        action="store_true",
        help="augmented features V + g(shuffled) - g(parts) instead of g(shuffled)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench/vfa/oracle_parts.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keys = ("mA", "recall_rare_combos", "head_B_vs_B", "head_B_vs_A")
    rows: list[dict[str, Any]] = []
    print(f"{'beta':<8}" + "".join(f"{k:>24}" for k in keys) + "   (beta 0: the baseline)")
    for beta in args.betas:
        runs = [
            run(s, beta, part_dim=args.part_dim, linear=args.linear, residual=args.residual)
            for s in args.seeds
        ]
        summary = {k: statistics.mean(r[k] for r in runs) for k in keys}
        spread = {k: statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0 for k in keys}
        rows.append({"beta": beta, "runs": runs, "mean": summary, "std": spread})
        print(
            f"{beta:<8}" + "".join(f"{f'{summary[k]:.3f} +- {spread[k]:.3f}':>24}" for k in keys),
            flush=True,
        )
    write_record(args.out, vars(args), torch.device("cpu"), rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
