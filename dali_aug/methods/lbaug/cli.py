"""Command-line glue of LB-Aug: ``dali-aug search lbaug`` and ``dali-aug train --method lbaug``
(the method-registry contract of :mod:`dali_aug.methods`).

Flags become a :class:`SearchConfig` here and nowhere else. Only the standard library is
imported at module level: the method is imported when a verb needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dali_aug.methods import BuildContext
    from dali_aug.methods.lbaug.method import LBAugMethod

__all__ = [
    "HELP",
    "SEARCH_HELP",
    "add_arguments",
    "add_search_arguments",
    "build",
    "describe",
    "run_search",
]

HELP = "LB-Aug: the label-based ops of --actor (from `dali-aug search lbaug`), replacing --policy"
SEARCH_HELP = (
    "LB-Aug: critics on K stratified shuffle splits, then a label-conditioned actor "
    "trained by REINFORCE; writes the actor, a per-label op table (CSV) and a heat map (PNG)"
)


def _ops(text: str) -> tuple[str, ...]:
    """``aa`` (the 16 AutoAugment ops), ``aa+flips`` (plus FlipLR/FlipUD) or a comma list."""
    from dali_aug.methods.lbaug._actor import AA_OPS, DEMO_OPS

    if text == "aa":
        return AA_OPS
    if text == "aa+flips":
        return DEMO_OPS
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dali-aug search lbaug``."""
    from dali_aug._crop import CROPS
    from dali_aug._dist import DEVICES
    from dali_aug.methods.lbaug._search import SearchConfig
    from dali_aug.models import CLIP_AVG_PREFIX, CLIP_MODEL_NAMES, MODEL_NAMES

    defaults = SearchConfig()
    p.add_argument(
        "--data",
        help="multi-label folder (labels.csv, or DIR/train with one), or the Fashion-MNIST "
        "mosaics fashion-mnist-multi-lbaug / -vfa (their training split), or with --clips "
        "moving-shapes / moving-fashion or a folder of frame folders; default: the "
        "multi-label demo shapes (as `dali-aug train --multi-label`)",
    )
    p.add_argument(
        "--multi-label",
        action="store_true",
        help="accepted as in `dali-aug train`; LB-Aug's data is always multi-label",
    )
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        metavar="N",
        help="with fashion-mnist-multi-* or moving-*: N training mosaics or clips (as "
        "`dali-aug train`)",
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        default="rrc",
        help="the training crop the critics and rewards see (as `dali-aug train --crop`)",
    )
    p.add_argument("--pad", type=int, default=4, help="--crop pad: the largest shift (px)")
    p.add_argument("--out", default="runs/lbaug/actor.pt", help="actor file to write")
    p.add_argument("--folds", type=int, default=defaults.folds, help="K critics/splits (8)")
    # 5 here, 10 in SearchConfig: two defaults, kept as they are (either change alters runs)
    p.add_argument(
        "--critic-epochs",
        type=int,
        default=5,
        help="epochs of each critic on its D_M (default 5; SearchConfig.critic_epochs, the "
        "library default, is 10)",
    )
    p.add_argument("--search-epochs", type=int, default=defaults.search_epochs)
    p.add_argument(
        "--model",
        default=None,
        help=f"critic architecture (use the classifier's): {', '.join(MODEL_NAMES)} (default "
        f"{defaults.model}); with --clips a clip model, {', '.join(CLIP_MODEL_NAMES)} or "
        f"{CLIP_AVG_PREFIX}MODEL (default clip-r2plus1d-small)",
    )
    p.add_argument(
        "--clips",
        type=int,
        default=None,
        metavar="T",
        help="search on video clips of T frames (as `dali-aug train --clips`): one fixed "
        "window per clip (the training Loader's of epoch 0), clip critics, one op per clip "
        "applied to every frame",
    )
    p.add_argument(
        "--clip-stride",
        type=int,
        default=1,
        metavar="S",
        help="with --clips: frames between two frames of a clip (default 1)",
    )
    p.add_argument(
        "--ops",
        default="aa+flips",
        help="search space: 'aa' (the paper's 16 AutoAugment ops), 'aa+flips' (plus FlipLR and "
        "FlipUD; default) or comma-separated op names",
    )
    p.add_argument("--size", type=int, default=None, help="image side (default: 64 demo, 224)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="actor batch")
    p.add_argument("--critic-batch-size", type=int, default=defaults.critic_batch_size)
    p.add_argument("--actor-lr", type=float, default=defaults.actor_lr)
    p.add_argument("--hidden", type=int, default=defaults.hidden)
    p.add_argument("--dropout", type=float, default=defaults.dropout)
    p.add_argument(
        "--entropy",
        type=float,
        default=defaults.entropy_weight,
        help="entropy bonus weight (gap-fill; 0 lets the actor collapse onto one op)",
    )
    p.add_argument(
        "--variant",
        choices=["h", "e"],
        default=defaults.variant,
        help="h: LB-Aug_H (op, apply probability and magnitude learned; default); e: LB-Aug_E "
        "(the op only, apply probability 0.5 and the maximum magnitude fixed)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=defaults.draws,
        help="Monte-Carlo (op, p, magnitude) samples per image and actor step",
    )
    p.add_argument(
        "--reward",
        choices=["sample", "label"],
        default=defaults.reward,
        help="actor advantage (ours): sample (Eq. 7's per-sample reward minus a moving "
        "average; default) or label (every label's loss change minus that label's own moving "
        "average, then averaged over labels)",
    )
    p.add_argument(
        "--transform",
        choices=["train", "eval"],
        default="train",
        help="images the critics and rewards see: train (the training Loader's crops, the "
        "distribution the final training augments; default) or eval (resize + centre crop)",
    )
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="DALI CPU threads")
    p.add_argument("--no-progress", action="store_true")


def _model(args: argparse.Namespace) -> str:
    """The critics' model: ``--model``, or ``small`` (``clip-r2plus1d-small`` with
    ``--clips``); an image model with ``--clips`` or a clip model without is refused."""
    from dali_aug.methods.lbaug._search import SearchConfig, is_clip_model
    from dali_aug.models import CLIP_AVG_PREFIX, CLIP_MODEL_NAMES, MODEL_NAMES

    clips = args.clips is not None
    if args.model is None:
        return "clip-r2plus1d-small" if clips else SearchConfig().model
    if clips and not is_clip_model(args.model):
        raise SystemExit(
            f"error: --model {args.model}: --clips needs a clip critic: "
            f"{' or '.join(CLIP_MODEL_NAMES)}, or {CLIP_AVG_PREFIX}{args.model} (that image "
            "model on every frame, averaged)"
        )
    if not clips and is_clip_model(args.model):
        raise SystemExit(
            f"error: --model {args.model} is a clip model; add --clips T to search on clips, "
            f"or use an image model ({', '.join(MODEL_NAMES)})"
        )
    if not clips and args.model not in MODEL_NAMES:
        raise SystemExit(f"error: --model {args.model}: use one of {', '.join(MODEL_NAMES)}")
    if clips:  # a clip-avg-NAME's image model NAME: checked now, not after the data
        from dali_aug.models import build_model

        try:
            build_model(args.model, 1)
        except ValueError as err:
            raise SystemExit(f"error: --model {args.model}: {err}") from None
    return str(args.model)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--actor`` for ``dali-aug train --method lbaug``."""
    p.add_argument("--actor", default=None, help="with --method lbaug: the searched actor.pt")


def run_search(args: argparse.Namespace) -> int:
    """``dali-aug search lbaug``: search, then write the actor, the CSV and the PNG."""
    from dali_aug.datasets import (
        FASHION_MNIST_MULTI,
        MOVING_DATA,
        default_scale,
        default_size,
        training_data,
    )
    from dali_aug.methods.lbaug._report import op_table, save_actor, write_heatmap, write_op_table
    from dali_aug.methods.lbaug._search import SearchConfig, load_images, search

    if args.clips is not None and (args.clips < 1 or args.clip_stride < 1):
        raise SystemExit("error: --clips T and --clip-stride S must be >= 1 (e.g. --clips 8)")
    model = _model(args)
    try:
        data = training_data(
            args.data,
            multi_label=True,
            train_size=args.train_size,
            seed=args.seed,
            clips=args.clips,
        )
    except ValueError as err:
        raise SystemExit(f"error: LB-Aug: {err}") from None
    generated = args.data in FASHION_MNIST_MULTI or args.data in MOVING_DATA
    size = args.size or default_size(args.data)
    try:
        config = SearchConfig(
            ops=_ops(args.ops),
            folds=args.folds,
            model=model,
            critic_epochs=args.critic_epochs,
            critic_batch_size=args.critic_batch_size,
            search_epochs=args.search_epochs,
            batch_size=args.batch_size,
            actor_lr=args.actor_lr,
            hidden=args.hidden,
            dropout=args.dropout,
            entropy_weight=args.entropy,
            variant=args.variant,
            draws=args.draws,
            reward=args.reward,
            seed=args.seed,
        )
        config.actor_config(1)  # validates the op names now, not after the critics
    except (TypeError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    t0 = time.perf_counter()
    # the Loader's flip: dropped when the actor decides it (FlipLR in the space), and off on
    # the moving clips, whose direction labels it swaps (as `dali-aug train`)
    flip = "FlipLR" not in config.ops and args.data not in MOVING_DATA
    try:
        images, labels, names = load_images(
            data.source,
            size=size,
            device=args.device,
            num_threads=args.threads,
            transform=args.transform,
            scale=default_scale(args.data),  # as `dali-aug train`
            flip=flip,
            seed=args.seed,
            crop=args.crop,
            pad=args.pad,
            clip_length=args.clips,
            clip_stride=args.clip_stride,
        )
    except ValueError as err:
        raise SystemExit(f"error: LB-Aug: {err}") from None
    where = args.data if generated else str(data.source.root)
    kind = "images" if args.clips is None else f"clips of {args.clips} frames"
    print(
        f"lbaug search: {where} ({len(labels)} {kind}, {len(names)} labels, {size} px) on "
        f"{images.device}; K={config.folds} critics ({config.model}, {config.critic_epochs} "
        f"epochs), {config.search_epochs} actor epochs, {len(config.ops)} ops, LB-Aug_"
        f"{config.variant.upper()}, {args.transform} crops"
    )
    result = search(images, labels, config, progress=not args.no_progress, log=print)
    out = Path(args.out)
    summary = {
        "search_config": config.to_dict(),
        "data": where,
        "size": size,
        "clip_length": args.clips,
        "clip_stride": args.clip_stride if args.clips is not None else None,
        "transform": args.transform,
        "device": str(images.device),
        "samples": len(labels),
        "uncovered": result.uncovered,
        "critic_seconds": result.critic_seconds,
        "seconds_per_epoch": result.seconds_per_epoch,
        "total_seconds": time.perf_counter() - t0,
        "history": result.history,
    }
    save_actor(out, result.actor, names, extra={"search": summary})
    table = op_table(result.actor, labels, names)
    csv_path = write_op_table(table, out.with_name(out.stem + "_op_probs.csv"))
    png_path = write_heatmap(table, out.with_name(out.stem + "_op_probs.png"))
    out.with_name(out.stem + "_search.json").write_text(json.dumps(summary, indent=2))
    last = result.history[-1]
    print(
        f"critics {result.critic_seconds:.1f} s, actor {result.seconds_per_epoch:.2f} s/epoch, "
        f"final mean reward {last['mean_reward']:+.4f}; wrote {out}, {csv_path}, {png_path}"
    )
    return 0


def build(args: argparse.Namespace, ctx: BuildContext) -> LBAugMethod:
    """The :class:`LBAugMethod` of ``dali-aug train --method lbaug --actor PATH``."""
    from dali_aug.methods.lbaug._report import load_actor
    from dali_aug.methods.lbaug.method import LBAugMethod

    if args.actor is None:
        raise SystemExit("error: --method lbaug needs --actor PATH (from `dali-aug search lbaug`)")
    if not ctx.multi_label:
        raise SystemExit("error: --method lbaug needs multi-label data (--multi-label)")
    try:
        actor, names = load_actor(args.actor, map_location=ctx.device)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if tuple(names) != tuple(ctx.classes):
        raise SystemExit(
            f"error: the actor was searched on labels {list(names)} but the data has "
            f"{list(ctx.classes)}; search again on this data"
        )
    return LBAugMethod(actor, seed=args.seed)


def describe(method: LBAugMethod) -> dict[str, Any]:
    """What the method applied during training (for metrics.json)."""
    return {
        "ops": list(method.actor.config.ops),
        "frequencies": method.op_frequencies(),
        "loader_flip": method.keep_loader_flip,
        "config": dataclasses.asdict(method.actor.config),
    }
