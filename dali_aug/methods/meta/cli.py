"""Command-line glue of MetaAugment: ``dali-aug train --method meta`` (the method-registry
contract of :mod:`dali_aug.methods`)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dali_aug.methods import BuildContext
    from dali_aug.methods.meta.method import MetaAugmentMethod

__all__ = ["HELP", "add_arguments", "build", "describe"]

HELP = (
    "MetaAugment: sampled function pairs weighted per sample by a meta-learned policy net "
    "(bilevel step on a held-out split; writes meta_pairs.csv/png, meta_policy.json)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--meta-mode",
        choices=["exact", "fast", "uniform"],
        default="exact",
        help="exact: the exact meta-gradient (dot products by a JVP); fast: the meta step "
        "after the real step, with the real step's gradient as the virtual step's (the real "
        "step's sample weights then come from the policy net before that meta update) and the "
        "dot products by a finite difference (one-sided; central under --amp); uniform: "
        "random pairs, equal weights (the control)",
    )
    p.add_argument("--meta-copies", type=int, default=1, help="augmented copies per sample (MT)")
    p.add_argument(
        "--val-fraction",
        "--meta-val-fraction",
        dest="meta_val_fraction",
        type=float,
        default=0.02,
        help="fraction of the training set held out (stratified) for the meta step",
    )
    p.add_argument("--meta-eps", type=float, default=0.1, help="sampler's uniform share (Eq. 5)")
    p.add_argument("--meta-every", type=int, default=50, help="sampler refresh every s steps")
    p.add_argument("--meta-history", type=int, default=200, help="r: steps a refresh averages")
    p.add_argument("--meta-lr", type=float, default=1e-3, help="Adam lr of the policy net")
    p.add_argument("--meta-alpha-lr", type=float, default=1e-3, help="Adam lr of log(alpha)")
    p.add_argument(
        "--meta-alpha-init",
        type=float,
        default=None,
        help="the virtual step's initial learning rate alpha (default: the task optimizer's "
        "lr at the first step; with AdamW that is an SGD step of 1e-3, nearly inert)",
    )
    p.add_argument(
        "--meta-val-samples",
        type=int,
        default=None,
        help="validation samples per meta step (default: --meta-val-share of a batch)",
    )
    p.add_argument(
        "--meta-val-share",
        type=float,
        default=0.25,
        help="share of each validation batch a meta step uses (default 0.25; 1: all)",
    )
    p.add_argument(
        "--meta-export-levels", type=int, default=3, help="level bins per op in meta_policy.json"
    )
    p.add_argument(
        "--meta-real-weights",
        choices=["policy", "equal"],
        default="policy",
        help="the real step's sample weights: the policy's (the method) or equal (an "
        "ablation, ours: everything else of MetaAugment runs as usual)",
    )
    p.add_argument(
        "--meta-weight-norm",
        choices=["sum", "mean"],
        default="sum",
        help="the policy outputs P_i as step weights: divided by the batch's sum (the "
        "paper's text; default) or by the batch size (its Eqs. 2 and 4 as printed: the "
        "policy also scales the step)",
    )


def build(args: argparse.Namespace, ctx: BuildContext) -> MetaAugmentMethod:
    from dali_aug.methods.meta.method import MetaAugmentMethod, MetaConfig

    if ctx.multi_label:
        raise SystemExit(
            "error: --method meta is single-label (cross-entropy weights and a stratified "
            "validation split); drop --multi-label"
        )
    try:
        config = MetaConfig(
            mode=args.meta_mode,
            copies=args.meta_copies,
            val_fraction=args.meta_val_fraction,
            eps=args.meta_eps,
            history=args.meta_history,
            every=args.meta_every,
            meta_lr=args.meta_lr,
            alpha_lr=args.meta_alpha_lr,
            alpha_init=args.meta_alpha_init,
            val_samples=args.meta_val_samples,
            val_share=args.meta_val_share,
            export_levels=args.meta_export_levels,
            real_weights=args.meta_real_weights,
            weight_norm=args.meta_weight_norm,
        )
        method = MetaAugmentMethod(ctx.model, config, seed=args.seed)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    from pathlib import Path

    method.report_dir = None if args.out is None else Path(args.out)
    return method


def describe(method: MetaAugmentMethod) -> dict[str, Any]:
    """The settings, the final alpha, the report files (written by
    :meth:`MetaAugmentMethod.finish` at the end of training) and the top and bottom pairs."""
    files = dict(method.report_files)
    from dali_aug.methods.meta._space import FUNCTIONS

    table = method.pair_table()
    ranked = []
    for j, a in enumerate(FUNCTIONS):
        for k, b in enumerate(FUNCTIONS):
            mean = float(table["mean_weight"][j, k])
            if not math.isnan(mean):
                ranked.append((mean, f"{a}+{b}"))
    ranked.sort()
    return {
        "config": dataclasses.asdict(method.config),
        "alpha": method.alpha,
        "sampler_refreshes": method.sampler.iteration // method.sampler.every,
        "lowest_weight_pairs": [{"pair": n, "mean_weight": v} for v, n in ranked[:5]],
        "highest_weight_pairs": [{"pair": n, "mean_weight": v} for v, n in ranked[-5:][::-1]],
        "files": files,
    }
