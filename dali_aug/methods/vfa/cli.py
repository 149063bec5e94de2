"""Command-line glue of VFA: ``dali-aug train --multi-label --method vfa`` (the
method-registry contract of :mod:`dali_aug.methods`)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from dali_aug.methods.vfa._presets import PRESETS

if TYPE_CHECKING:
    from dali_aug.methods import BuildContext
    from dali_aug.methods.vfa.method import VFAMethod

__all__ = ["HELP", "add_arguments", "build", "describe"]

HELP = "VFA: per-label variational feature decoupling + shuffle (multi-label only)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vfa-preset",
        choices=list(PRESETS),
        default="paper",
        help="named settings that the flags below override: "
        + "; ".join(
            f"{name} ({', '.join(f'{k}={v}' for k, v in fields.items()) or 'the defaults'})"
            for name, fields in PRESETS.items()
        ),
    )
    # every flag below defaults to None: only the flags given override the preset
    p.add_argument(
        "--vfa-beta", type=float, default=None, help="weight of the augmented-feature BCE (1)"
    )
    p.add_argument("--vfa-sub-dim", type=int, default=None, help="d, sub-feature width (64)")
    p.add_argument("--vfa-latent", type=int, default=None, help="D_z, VAE latent width (32)")
    p.add_argument("--vfa-hidden", type=int, default=None, help="hidden width of f_j, g (256)")
    p.add_argument(
        "--vfa-shuffle-source",
        choices=["decoded", "mlp"],
        default=None,
        help="shuffle the decoded VAE outputs (default) or the MLP sub-features",
    )
    p.add_argument(
        "--vfa-detach-backbone",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the VFA branch does not update the backbone (default: the preset's)",
    )
    p.add_argument(
        "--vfa-vae-reduction",
        choices=["sum", "mean"],
        default=None,
        help="L_vae over the labels: sum (Eq. 2; the paper preset's) or mean (the detached "
        "preset's); default: the preset's",
    )
    p.add_argument(
        "--vfa-kl-weight",
        type=float,
        default=None,
        help="weight of the KL (default: the preset's; paper 1, detached 0.1)",
    )
    p.add_argument("--vfa-bin-weight", type=float, default=None, help="weight of L_bin (1)")
    p.add_argument("--vfa-kl-warmup", type=int, default=None, help="steps of linear KL warm-up (0)")
    p.add_argument(
        "--vfa-aug-start", type=int, default=None, help="global step the augmented BCE starts (0)"
    )
    p.add_argument(
        "--vfa-bin-balance",
        choices=["none", "propensity"],
        default=None,
        help="L_bin weighted by the inverse propensity of each label given the others "
        "(ours; default none)",
    )


def build(args: argparse.Namespace, ctx: BuildContext) -> VFAMethod:
    from dali_aug.methods.vfa.method import VFAConfig, VFAMethod

    if not ctx.multi_label:
        raise SystemExit(
            "error: --method vfa is multi-label only; add --multi-label (a labels.csv folder)"
        )
    given = {
        "beta": args.vfa_beta,
        "sub_dim": args.vfa_sub_dim,
        "latent_dim": args.vfa_latent,
        "hidden": args.vfa_hidden,
        "shuffle_source": args.vfa_shuffle_source,
        "detach_backbone": args.vfa_detach_backbone,
        "vae_reduction": args.vfa_vae_reduction,
        "kl_weight": args.vfa_kl_weight,
        "bin_weight": args.vfa_bin_weight,
        "kl_warmup_steps": args.vfa_kl_warmup,
        "aug_start_step": args.vfa_aug_start,
        "bin_balance": args.vfa_bin_balance,
    }
    try:
        config = VFAConfig.from_preset(
            args.vfa_preset, **{k: v for k, v in given.items() if v is not None}
        )
        return VFAMethod(ctx.model, len(ctx.classes), config, seed=args.seed)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None


def describe(method: VFAMethod) -> dict[str, Any]:
    """The settings and the size of the training-only modules (for ``metrics.json``)."""
    return {
        "config": dataclasses.asdict(method.config),
        "train_only_parameters": sum(p.numel() for p in method.modules().parameters()),
    }
