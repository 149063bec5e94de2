"""Command-line glue of Cutout: ``dali-aug train --method cutout``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dali_aug.methods import BuildContext
    from dali_aug.methods.cutout.method import CutoutMethod

__all__ = ["HELP", "add_arguments", "build"]

HELP = "Cutout in the training step (KeepCutout's saliency-blind baseline: same box, same fill)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    return None


def build(args: argparse.Namespace, ctx: BuildContext) -> CutoutMethod:
    from dali_aug.methods.cutout.method import CutoutMethod

    return CutoutMethod(seed=args.seed)
