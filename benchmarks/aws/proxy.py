"""AWS proxy reliability ("Improving Auto-Augment via Augmentation-Wise Weight Sharing",
arXiv:2009.14737, Table 5, qualitatively): for a few fixed pair policies on the demo shapes,
the Pearson r between a proxy's accuracy and the accuracy of full training with the same
policy, for two proxies:

* ``aws``: stage 1 trained once with pairs drawn uniformly (AWS's shared checkpoint), then a
  short fine-tune with the policy (the tail of the same cosine schedule), scored on a held-out
  split of the training data;
* ``noaug``: the same, with stage 1 trained without augmentation.

Full training: the network from scratch on the whole training subset with the policy for
``--full-epochs``, scored on the demo *evaluation* set. The policies are fixed distributions
over the 1296 pairs of the 36 AWS elements (most mass on the pairs of a subset of elements),
plus no augmentation. One seed: each number is one run.

From the repository root:

    python -m benchmarks.aws.proxy --n-train 1600 --size 32 --share-epochs 4 \
        --finetune-epochs 1 --full-epochs 6

Writes a record (settings, results, Pearson r, the commit) to ``--out``, by default
``runs/bench/aws/proxy.json`` (scratch, not tracked); a curated record goes to
``benchmarks/aws/results/`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks._record import provenance
from dali_aug.datasets import demo_data, stratified_holdout, subset
from dali_aug.loader import Loader, LoaderConfig
from dali_aug.methods.aws import AWS_ELEMENTS, Element, PairPolicy
from dali_aug.models import build_model
from dali_aug.policies import Policy
from dali_aug.sources import Source, open_source
from dali_aug.train import Trainer

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
THIRD = 10.0 / 3.0

#: name -> which elements the policy puts its mass on (the pairs of two such elements).
SUBSETS: dict[str, Callable[[Element], bool]] = {
    "uniform": lambda e: True,
    "mild": lambda e: e.level in (0.0, THIRD, 3.0, 5.0) and e.op != "Invert",
    "strong": lambda e: e.level == 10.0 or e.op == "Invert",
    "geometric": lambda e: e.op in GEOMETRIC,
    "colour": lambda e: e.op not in GEOMETRIC,
    "translate-max": lambda e: e.op in ("TranslateX", "TranslateY") and e.level == 10.0,
}


def fixed_policy(name: str, peak: float = 6.0) -> Policy | None:
    """The fixed policy ``name``: theta = +peak on the pairs of two selected elements,
    -peak elsewhere (``none``: no augmentation)."""
    if name == "none":
        return None
    keep = torch.tensor([SUBSETS[name](e) for e in AWS_ELEMENTS])
    both = keep[:, None] & keep[None, :]
    theta = torch.where(both, peak, -peak).flatten().float()
    return PairPolicy(theta).to_policy(f"aws-{name}")


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson r of two lists (nan if either is constant)."""
    a, b = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    den = float((a.square().sum() * b.square().sum()).sqrt())
    return float((a * b).sum()) / den if den > 0 else math.nan


def _trainer(classes: int, epochs: int, args: argparse.Namespace) -> Trainer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = build_model("small", classes)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return Trainer(model, opt, scheduler=sched, distributed=False)


def _silent(*_: Any) -> None:
    return None


class _Loaders:
    """One Loader per source for the pair policies (swapped with ``set_policy``: building the
    pipeline of a 1296-sub-policy policy takes tens of seconds on a 2-core CPU, swapping it
    does not) and one without augmentation."""

    def __init__(self, source: Source, config: LoaderConfig) -> None:
        self.pairs = Loader(source, policy=fixed_policy("uniform"), config=config)
        self.none = Loader(source, config=config)

    def get(self, policy: Policy | None) -> Loader:
        if policy is None:
            return self.none
        self.pairs.set_policy(policy)
        return self.pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-train", type=int, default=1600, help="demo training images used")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--share-epochs", type=int, default=4, help="proxy stage 1 epochs")
    p.add_argument("--finetune-epochs", type=int, default=1, help="proxy fine-tune epochs")
    p.add_argument("--full-epochs", type=int, default=6, help="full training epochs")
    p.add_argument("--holdout", type=float, default=0.25, help="proxy reward split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak lr (dali-aug train's)")
    p.add_argument("--policies", nargs="+", default=["none", *SUBSETS])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch and DALI threads")
    p.add_argument("--out", default="runs/bench/aws/proxy.json")
    args = p.parse_args(argv)
    unknown = sorted(set(args.policies) - {"none", *SUBSETS})
    if unknown:
        p.error(f"unknown --policies {unknown}; choose from none, {', '.join(SUBSETS)}")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    train_dir, val_dir = demo_data(multi_label=False)
    assert val_dir is not None
    full: Source = open_source(train_dir)
    if args.n_train < len(full):
        _, pick = stratified_holdout(full.targets, args.n_train / len(full), seed=args.seed)
        full = subset(full, pick)
    evaluation = open_source(val_dir)
    keep, held = stratified_holdout(full.targets, args.holdout, seed=args.seed)
    proxy_train, proxy_held = subset(full, keep), subset(full, held)
    classes = len(full.classes)
    cfg = LoaderConfig(
        batch_size=args.batch_size,
        size=args.size,
        device="cpu",
        seed=args.seed,
        shard_id=0,
        num_shards=1,
        num_threads=args.threads,
        scale=(0.5, 1.0),  # dali-aug train's on the demo data
    )
    plain = dataclasses.replace(cfg, train=False)
    policies = {name: fixed_policy(name) for name in args.policies}
    results: dict[str, dict[str, float]] = {name: {} for name in policies}
    seconds: dict[str, float] = {}

    # proxies: one stage 1 each, then one fine-tune per policy from it
    total = args.share_epochs + args.finetune_epochs
    held_loader = Loader(proxy_held, config=plain)
    loaders = _Loaders(proxy_train, cfg)
    for proxy, stage1 in (("aws", fixed_policy("uniform")), ("noaug", None)):
        t0 = time.perf_counter()
        trainer = _trainer(classes, total, args)
        trainer.fit(loaders.get(stage1), None, args.share_epochs, progress=False, log=_silent)
        shared = copy.deepcopy(trainer.state_dict())
        print(f"proxy {proxy}: stage 1 {time.perf_counter() - t0:.0f} s", flush=True)
        for name, policy in policies.items():
            trainer.load_state_dict(copy.deepcopy(shared))
            trainer.fit(loaders.get(policy), None, total, progress=False, log=_silent)
            results[name][proxy] = float(trainer.evaluate(held_loader)["val_acc"])
            print(f"  {name:<14} proxy {proxy}: {results[name][proxy]:.4f}", flush=True)
        seconds[proxy] = time.perf_counter() - t0
    # full training, scored on the evaluation set
    t0 = time.perf_counter()
    eval_loader = Loader(evaluation, config=plain)
    loaders = _Loaders(full, cfg)
    for name, policy in policies.items():
        trainer = _trainer(classes, args.full_epochs, args)
        trainer.fit(loaders.get(policy), None, args.full_epochs, progress=False, log=_silent)
        results[name]["full"] = float(trainer.evaluate(eval_loader)["val_acc"])
        print(f"  {name:<14} full: {results[name]['full']:.4f}", flush=True)
    seconds["full"] = time.perf_counter() - t0
    names = list(policies)
    fulls = [results[n]["full"] for n in names]
    r = {proxy: pearson([results[n][proxy] for n in names], fulls) for proxy in ("aws", "noaug")}
    aug = [n for n in names if n != "none"]  # without the no-augmentation outlier
    r_aug = {
        proxy: pearson([results[n][proxy] for n in aug], [results[n]["full"] for n in aug])
        for proxy in ("aws", "noaug")
    }
    print(f"\n{'policy':<16}{'full (eval set)':>16}{'aws proxy':>12}{'noaug proxy':>13}")
    for n in names:
        row = results[n]
        print(
            f"{n:<16}{100 * row['full']:>15.1f}%{100 * row['aws']:>11.1f}%"
            f"{100 * row['noaug']:>12.1f}%"
        )
    print(f"{'Pearson r':<16}{'':>16}{r['aws']:>12.3f}{r['noaug']:>13.3f}")
    print(f"{'r, no `none`':<16}{'':>16}{r_aug['aws']:>12.3f}{r_aug['noaug']:>13.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "provenance": provenance("cpu"),
        "settings": vars(args),
        "images": {
            "full": len(full),
            "proxy_train": len(proxy_train),
            "proxy_held": len(proxy_held),
            "evaluation": len(evaluation),
        },
        "results": results,
        "pearson": r,
        "pearson_without_none": r_aug,
        "seconds": {**seconds, "total": time.perf_counter() - t_start},
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out} ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
