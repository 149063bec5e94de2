"""Command-line glue of Cutout: ``dali-aug train --method cutout``.

Cutout is KeepCutout's saliency-blind baseline, so it reads KeepAugment's box and fill flags
(``--keep-box``, ``--keep-fill``, added by :mod:`dali_aug.methods.keep.cli` to the same
parser): ``--method cutout`` and ``--method keep`` use the same box by default (half of each
side) and with the same flags.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dali_aug.methods import BuildContext
    from dali_aug.methods.cutout.method import CutoutMethod

__all__ = ["HELP", "add_arguments", "build"]

HELP = (
    "Cutout in the training step (KeepCutout's saliency-blind baseline: same box and fill, "
    "--keep-box / --keep-fill)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    return None


def build(args: argparse.Namespace, ctx: BuildContext) -> CutoutMethod:
    from dali_aug.methods.cutout.method import CutoutMethod
    from dali_aug.methods.keep.cli import box_fraction

    try:
        return CutoutMethod(
            box_fraction=box_fraction(args),
            fill=getattr(args, "keep_fill", "zero"),
            seed=args.seed,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
