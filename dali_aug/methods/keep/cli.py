"""Command-line glue of KeepAugment: ``dali-aug train --method keep`` and
``dali-aug show --method keep`` (the method-registry contract of :mod:`dali_aug.methods`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dali_aug.methods import BuildContext
    from dali_aug.methods.keep.method import KeepMethod

__all__ = ["HELP", "add_arguments", "build", "show"]

HELP = "KeepAugment: saliency-preserving Cutout / paste-back / CutMix in the training step"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-mode", choices=["cutout", "paste", "cutmix"], default="cutout")
    p.add_argument("--saliency", choices=["full", "lowres", "early"], default="lowres")
    p.add_argument(
        "--keep-box",
        type=float,
        default=None,  # DEFAULT_BOX_FRACTION, resolved in build (the parser imports no method)
        metavar="F",
        help="box side as a fraction of the image side, for keep and cutout (default 0.5: "
        "Cutout's 16 px at 32 px); KeepCutMix's paper variant draws its box from Beta(1, 1)",
    )
    p.add_argument(
        "--keep-tau",
        type=float,
        default=0.6,
        metavar="T",
        help="quantile of the box scores separating low from high saliency (paper: 0.6)",
    )
    p.add_argument(
        "--keep-fill",
        choices=["zero", "random"],
        default="zero",
        help="cut box fill, for keep cutout and cutout: zero (Cutout) or random (Random Erasing)",
    )
    p.add_argument(
        "--keep-cutmix",
        choices=["paper", "salient-source"],
        default="paper",
        help="KeepCutMix: paper (CutMix's Beta(1, 1) box, the partner's patch at the same "
        "place) or salient-source (a salient --keep-box patch of the partner)",
    )
    p.add_argument(
        "--saliency-norm",
        choices=["eval", "batch"],
        default="eval",
        help="batch norm in the saliency pass: eval (per-image maps; default) or batch "
        "(the batch's statistics, as the training forward)",
    )
    p.add_argument(
        "--saliency-value",
        choices=["gradient", "gradient-x-input"],
        default="gradient",
        help="what the saliency measures: the vanilla gradient (the paper; default) or "
        "gradient x input against a black image (ours: 0 where a pixel is already black)",
    )


def box_fraction(args: argparse.Namespace) -> float:
    """``--keep-box``, or the default :data:`DEFAULT_BOX_FRACTION` (for keep and cutout)."""
    from dali_aug.methods.keep._augment import DEFAULT_BOX_FRACTION

    value = getattr(args, "keep_box", None)
    return DEFAULT_BOX_FRACTION if value is None else float(value)


def build(args: argparse.Namespace, ctx: BuildContext) -> KeepMethod:
    from dali_aug.methods.keep.method import KeepMethod

    try:
        return KeepMethod(
            ctx.model,
            len(ctx.classes),
            mode=args.keep_mode,
            saliency_mode=args.saliency,
            box_fraction=box_fraction(args),
            tau=args.keep_tau,
            fill=args.keep_fill,
            cutmix=args.keep_cutmix,
            norm=args.saliency_norm,
            value=args.saliency_value.replace("-", "_"),
            seed=args.seed,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def show(args: argparse.Namespace, ctx: BuildContext, loader: Any) -> Path:
    """keep.png: per image, the KeepAugment result with its box above the saliency map the
    box was chosen from (colours: :func:`dali_aug.methods.keep.save_preview`)."""
    from dali_aug.methods.keep._preview import save_preview
    from dali_aug.train import load_checkpoint

    method = build(args, ctx)
    model = ctx.model
    ckpt = Path(args.checkpoint) if args.checkpoint else Path(args.out) / "checkpoint.pt"
    if ckpt.is_file():
        try:
            state = load_checkpoint(ckpt, map_location=ctx.device)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        model.load_state_dict(state["model"])
        heads = [
            v["modules"]
            for k, v in state.get("methods", {}).items()
            if k.endswith(":keep") and "early_head.fc.weight" in v.get("modules", {})
        ]
        if method.early_head is not None:
            if not heads:
                raise SystemExit(
                    f"error: {ckpt} has no early head; train with --method keep --saliency "
                    "early first, or show another --saliency"
                )
            method.modules().load_state_dict(heads[0])
        print(f"saliency of the model in {ckpt}")
    elif args.checkpoint:
        raise SystemExit(f"error: --checkpoint {ckpt} does not exist")
    else:
        print(
            f"warning: no {ckpt}; the saliency is that of an untrained model (train first: "
            f"dali-aug train --method keep --saliency {args.saliency} --out {args.out})",
            file=sys.stderr,
        )
    model.eval()
    result = method.select(next(iter(loader)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return save_preview(result, args.keep_mode, out / "keep.png")
