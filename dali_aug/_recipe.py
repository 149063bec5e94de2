"""The training recipe of ``dali-aug train`` (timm's flag names and meanings): its flags, the
checks that refuse a flag that would not apply, and the objects they become (the optimizer,
the learning-rate schedule, random erasing and mixing, the per-epoch outputs). Flags become
objects here and in :mod:`dali_aug.cli`, nowhere else."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from dali_aug._crop import CROPS
from dali_aug.models import TIMM_PREFIX

__all__ = [
    "OPTIMIZERS",
    "add_recipe",
    "check_recipe",
    "erasing",
    "epoch_outputs",
    "mixing",
    "optimizer",
    "optimizer_name",
    "positive",
    "recipe_methods",
    "schedule",
]


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adamw", "adam", "lamb")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def add_recipe(t: argparse.ArgumentParser) -> None:
    """The training recipe's flags, with timm's names and meanings (``train.py``); every one
    defaults to None (unset), so that a flag given but not applied is an error."""
    from dali_aug.train._erasing import ERASE_MODES
    from dali_aug.train._mixup import MIX_MODES

    t.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE.yaml",
        help="flags from a YAML file (flag: value; the command line wins); a run writes its "
        "resolved flags to OUT/args.yaml, which this reads back",
    )
    g = t.add_argument_group("recipe (timm's flag names and meanings)")
    g.add_argument(
        "--opt",
        choices=OPTIMIZERS,
        default=None,
        help="optimizer (default: adamw for the small model, nesterov for the others)",
    )
    g.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="default: 1e-4 (adamw, adam), 0.01 (lamb), 5e-5 (sgd, momentum, nesterov)",
    )
    g.add_argument("--momentum", type=float, default=None, help="momentum / nesterov (0.9)")
    g.add_argument("--clip-grad", type=float, default=None, help="clip the gradient L2 norm")
    g.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="linear warm-up before the cosine schedule, in epochs (default 0)",
    )
    g.add_argument("--warmup-lr", type=float, default=None, help="lr at the warm-up's start")
    g.add_argument(
        "--sched-on-updates",
        action="store_true",
        default=None,
        help="change the lr at every update (default: once per epoch, as timm)",
    )
    g.add_argument("--min-lr", type=float, default=None, help="lr at the cosine's end (0)")
    g.add_argument("--smoothing", type=float, default=None, help="label smoothing (0)")
    g.add_argument("--mixup", type=float, default=None, help="mixup alpha (timm: 0.8)")
    g.add_argument("--cutmix", type=float, default=None, help="cutmix alpha (timm: 1.0)")
    g.add_argument("--mixup-prob", type=float, default=None, help="P(mix a batch / sample) (1)")
    g.add_argument(
        "--mixup-switch-prob",
        type=float,
        default=None,
        help="P(cutmix instead of mixup) when both are on (0.5)",
    )
    g.add_argument(
        "--mixup-mode",
        choices=MIX_MODES,
        default=None,
        help="one lam per batch, per pair or per sample (elem) (batch)",
    )
    g.add_argument("--reprob", type=float, default=None, help="random erasing probability")
    g.add_argument(
        "--remode", choices=ERASE_MODES, default=None, help="random erasing fill (pixel)"
    )
    g.add_argument("--recount", type=int, default=None, help="random erasing boxes (1)")
    g.add_argument("--model-ema", action="store_true", default=None, help="keep a model EMA")
    g.add_argument("--model-ema-decay", type=float, default=None, help="the EMA's decay (0.9998)")
    g.add_argument(
        "--crop",
        choices=CROPS,
        default=None,
        help="training crop: rrc (random-resized crop, ImageNet's) or pad (pad-and-random-"
        "crop, small images': the image shifted by up to --pad px; ours, not a timm flag) "
        "(default rrc)",
    )
    g.add_argument(
        "--scale",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="rrc: area range of the random-resized crop (default: 0.5 1 demo and "
        "fashion-mnist, 0.08 1)",
    )
    g.add_argument(
        "--ratio",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="rrc: aspect-ratio range of the random-resized crop (default 0.75 1.3333)",
    )
    g.add_argument(
        "--pad", type=int, default=None, help="pad: the largest shift in pixels (default 4)"
    )
    g.add_argument(
        "--crop-pct",
        type=float,
        default=None,
        help="evaluation: centre crop of side SIZE from the image resized to SIZE / CROP_PCT "
        "(default: 0.875 with rrc, 1 with pad)",
    )
    g.add_argument(
        "--pretrained",
        action="store_true",
        default=None,
        help="timm:NAME models: timm's pretrained weights (from the local cache offline)",
    )
    g.add_argument(
        "--log-interval",
        type=positive,
        default=50,
        help="without a terminal: a log line every N steps (default 50)",
    )


def mixing(args: argparse.Namespace) -> bool:
    """Whether mixup or CutMix is on."""
    return (args.mixup or 0) > 0 or (args.cutmix or 0) > 0


def erasing(args: argparse.Namespace) -> bool:
    """Whether random erasing is on."""
    return (args.reprob or 0) > 0


def optimizer_name(args: argparse.Namespace) -> str:
    """``--opt``, else adamw for the small model and the clip models (Adam learns them in a
    few hundred steps) and SGD + Nesterov (the ImageNet recipe) for the others."""
    small = args.model == "small" or args.model.startswith("clip-")
    return str(args.opt or ("adamw" if small else "nesterov"))


def check_recipe(fail: Any, args: argparse.Namespace) -> None:
    """Recipe flags that are given but would not be applied are errors."""

    def given(*names: str) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]

    unused = []
    if not mixing(args):
        unused += given("mixup_prob", "mixup_switch_prob", "mixup_mode")
    if not erasing(args):
        unused += given("remode", "recount")
    if not args.model_ema:
        unused += given("model_ema_decay")
    if not (args.warmup_epochs or 0) > 0:
        unused += given("warmup_lr")
    if optimizer_name(args) in ("adamw", "adam", "lamb", "sgd"):
        unused += given("momentum")
    unused += given("scale", "ratio") if args.crop == "pad" else given("pad")
    if unused:
        fail(
            unused[0],
            getattr(args, unused[0][2:].replace("-", "_")),
            "it would not be "
            "applied: set the flag it belongs to (e.g. --mixup/--cutmix for --mixup-*, "
            "--reprob for --remode/--recount, --model-ema for its decay, --warmup-epochs for "
            "--warmup-lr, a momentum optimizer for --momentum, --crop pad for --pad, --crop "
            "rrc for --scale/--ratio) or drop it",
        )
    checks = [
        ("smoothing", 0, 1, False),
        ("mixup", 0, math.inf, True),
        ("cutmix", 0, math.inf, True),
        ("mixup_prob", 0, 1, True),
        ("mixup_switch_prob", 0, 1, True),
        ("reprob", 0, 1, True),
        ("model_ema_decay", 0, 1, False),
        ("momentum", 0, 1, False),
        ("warmup_epochs", 0, math.inf, True),
        ("warmup_lr", 0, math.inf, True),
        ("min_lr", 0, math.inf, True),
        ("weight_decay", 0, math.inf, True),
    ]
    for name, lo, hi, hi_ok in checks:
        value = getattr(args, name)
        if value is None:
            continue
        inside = math.isfinite(value) and lo <= value and (value <= hi if hi_ok else value < hi)
        if not inside:
            flag = "--" + name.replace("_", "-")
            fail(flag, value, f"use a finite value in [{lo}, {hi}{']' if hi_ok else ')'}")
    if args.clip_grad is not None and not (math.isfinite(args.clip_grad) and args.clip_grad > 0):
        fail("--clip-grad", args.clip_grad, "use a finite norm > 0")
    if args.recount is not None and args.recount < 1:
        fail("--recount", args.recount, "use at least 1 box")
    if args.scale is not None and not 0 < args.scale[0] <= args.scale[1] <= 1:
        fail("--scale", args.scale, "use 0 < LO <= HI <= 1, e.g. --scale 0.08 1")
    if args.ratio is not None and not (
        math.isfinite(args.ratio[1]) and 0 < args.ratio[0] <= args.ratio[1]
    ):
        fail("--ratio", args.ratio, "use 0 < LO <= HI, e.g. --ratio 0.75 1.3333")
    if args.pad is not None and args.pad < 0:
        fail("--pad", args.pad, "use a shift of 0 or more pixels, e.g. --pad 4")
    if args.crop_pct is not None and not (math.isfinite(args.crop_pct) and 0 < args.crop_pct <= 1):
        fail("--crop-pct", args.crop_pct, "use a share in (0, 1], e.g. 0.875")
    if args.smoothing and args.multi_label:
        fail("--smoothing", args.smoothing, "label smoothing is for single-label data")
    if args.pretrained and not args.model.startswith(TIMM_PREFIX):
        fail("--pretrained", True, "only timm:NAME models have pretrained weights")


def recipe_methods(args: argparse.Namespace, num_classes: int) -> list[Any]:
    """Random erasing, then mixup / CutMix (timm's order: erasing per image, mixing per
    batch), appended after the ``--method`` methods."""
    from dali_aug.train import ErasingConfig, MixupConfig, MixupMethod, RandomErasingMethod

    out: list[Any] = []
    if erasing(args):
        config = ErasingConfig(
            prob=args.reprob, mode=args.remode or "pixel", max_count=args.recount or 1
        )
        out.append(RandomErasingMethod(config, seed=args.seed + 7919))
    if mixing(args):
        mix = MixupConfig(
            mixup_alpha=args.mixup or 0.0,
            cutmix_alpha=args.cutmix or 0.0,
            prob=1.0 if args.mixup_prob is None else args.mixup_prob,
            switch_prob=0.5 if args.mixup_switch_prob is None else args.mixup_switch_prob,
            mode=args.mixup_mode or "batch",
            smoothing=args.smoothing or 0.0,
        )
        out.append(MixupMethod(mix, num_classes, seed=args.seed + 104729))
    return out


def optimizer(args: argparse.Namespace, model: torch.nn.Module) -> tuple[Any, float]:
    """``--opt`` (default: adamw for the small model, SGD + Nesterov for the others) with
    ``--lr`` (default: 1e-3 for adam(w) and lamb; 0.1 x batch / 256 for SGD),
    ``--weight-decay`` (1e-4 adam(w); 0.01 lamb, timm's; 5e-5 SGD) and ``--momentum`` (0.9).
    ``lamb`` is :class:`dali_aug.train.Lamb` (timm's form, with its global gradient clipping
    at 1.0)."""
    opt = optimizer_name(args)
    adam = opt in ("adamw", "adam", "lamb")
    lr = args.lr if args.lr is not None else (1e-3 if adam else 0.1 * args.batch_size / 256)
    default_wd = {"lamb": 0.01}.get(opt, 1e-4 if adam else 5e-5)
    wd = args.weight_decay if args.weight_decay is not None else default_wd
    params = model.parameters()
    if opt == "lamb":
        from dali_aug.train import Lamb

        return Lamb(params, lr=lr, weight_decay=wd), lr
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd), lr
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd), lr
    momentum = 0.0 if opt == "sgd" else (0.9 if args.momentum is None else args.momentum)
    sgd = torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=wd, nesterov=opt == "nesterov"
    )
    return sgd, lr


def schedule(args: argparse.Namespace, lr: float, steps_per_epoch: int) -> Any:
    """The learning rate of each update: linear warm-up over ``--warmup-epochs``, then cosine
    to ``--min-lr`` at the end of ``--epochs``; the lr changes once per epoch (timm's default)
    or, with ``--sched-on-updates``, at every update."""
    from dali_aug.train import WarmupCosine

    warmup = args.warmup_epochs or 0.0
    if warmup >= args.epochs:
        raise SystemExit(
            f"error: --warmup-epochs {warmup:g} covers the whole run of --epochs {args.epochs}; "
            "use fewer warm-up epochs"
        )
    per_update = bool(args.sched_on_updates)
    unit = max(1, steps_per_epoch) if per_update else 1
    sched = WarmupCosine(
        base_lr=lr,
        total=args.epochs * unit,
        warmup=warmup * unit,
        warmup_lr=1e-6 if args.warmup_lr is None else args.warmup_lr,
        min_lr=args.min_lr or 0.0,
    )
    if per_update:
        return sched
    return lambda step: sched(step // max(1, steps_per_epoch))


def epoch_outputs(trainer: Any, out: Path, multi_label: bool) -> Any:
    """After each epoch: ``summary.csv`` and ``curves.png`` (the whole history so far),
    ``last.pt`` (the exported model) and ``best.pt`` (the exported model of the best epoch
    by the main validation metric: ``val_acc`` or ``mAP``; with a model EMA, the EMA's
    weights and metric, as timm does)."""
    from dali_aug.train._checkpoint import save_checkpoint
    from dali_aug.train._summary import draw_curves, write_summary

    key = "mAP" if multi_label else "val_acc"

    def score(row: dict[str, Any]) -> float | None:
        value = row.get(f"ema_{key}" if trainer.ema is not None else key)
        return None if value is None else float(value)

    def weights() -> dict[str, torch.Tensor]:
        if trainer.ema is not None:
            return trainer.ema.module.state_dict()
        return trainer.export()

    def on_epoch(row: dict[str, Any]) -> None:
        history = trainer.history
        write_summary(out / "summary.csv", history)
        draw_curves(out / "curves.png", history, title=str(out))
        save_checkpoint(weights(), out / "last.pt", what="the model weights")
        current = score(row)
        earlier = [v for v in (score(r) for r in history[:-1]) if v is not None]
        if current is not None and (not earlier or current > max(earlier)):
            save_checkpoint(weights(), out / "best.pt", what="the model weights")
            (out / "best.json").write_text(
                json.dumps({"epoch": row["epoch"], "metric": key, "value": current})
            )

    return on_epoch
