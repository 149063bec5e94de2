"""Command-line glue of LB-Aug: ``dali-aug search lbaug`` and ``dali-aug train --method lbaug``.

Flags become a :class:`SearchConfig` here and nowhere else; ``dali_aug.cli`` only calls
:func:`add_search_parser`, :func:`add_train_arguments`, :func:`run_search` and :func:`make_hook`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from dali_aug.lbaug._actor import AA_OPS, DEMO_OPS
from dali_aug.lbaug._hook import LBAugHook
from dali_aug.lbaug._report import load_actor, op_table, save_actor, write_heatmap, write_op_table
from dali_aug.lbaug._search import SearchConfig, load_images, search

__all__ = ["add_search_parser", "add_train_arguments", "describe", "make_hook", "run_search"]

_DEFAULTS = SearchConfig()


def _ops(text: str) -> tuple[str, ...]:
    """``aa`` (the 16 AutoAugment ops), ``aa+flips`` (plus FlipLR/FlipUD) or a comma list."""
    if text == "aa":
        return AA_OPS
    if text == "aa+flips":
        return DEMO_OPS
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_search_parser(sub: Any) -> None:
    """Adds ``search`` with its ``lbaug`` method to the ``dali-aug`` subcommands."""
    search_p = sub.add_parser("search", help="search an augmentation policy (lbaug: LB-Aug actor)")
    methods = search_p.add_subparsers(dest="method", required=True)
    p = methods.add_parser(
        "lbaug",
        help="LB-Aug: critics on K stratified shuffle splits, then a label-conditioned actor "
        "trained by REINFORCE; writes the actor, a per-label op table (CSV) and a heat map (PNG)",
    )
    p.add_argument(
        "--data",
        help="multi-label folder (labels.csv, or DIR/train with one); default: the multi-label "
        "demo shapes (as `dali-aug train --multi-label`)",
    )
    p.add_argument("--out", default="runs/lbaug/actor.pt", help="actor file to write")
    p.add_argument("--folds", type=int, default=_DEFAULTS.folds, help="K critics/splits (8)")
    p.add_argument("--critic-epochs", type=int, default=5)
    p.add_argument("--search-epochs", type=int, default=_DEFAULTS.search_epochs)
    p.add_argument(
        "--model",
        choices=["small", "resnet18", "resnet50"],
        default="small",
        help="critic architecture (use the classifier's)",
    )
    p.add_argument(
        "--ops",
        default="aa+flips",
        help="search space: 'aa' (the paper's 16 AutoAugment ops), 'aa+flips' (plus FlipLR and "
        "FlipUD; default) or comma-separated op names",
    )
    p.add_argument("--size", type=int, default=None, help="image side (default: 64 demo, 224)")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="actor batch")
    p.add_argument("--critic-batch-size", type=int, default=_DEFAULTS.critic_batch_size)
    p.add_argument("--actor-lr", type=float, default=_DEFAULTS.actor_lr)
    p.add_argument("--hidden", type=int, default=_DEFAULTS.hidden)
    p.add_argument("--dropout", type=float, default=_DEFAULTS.dropout)
    p.add_argument(
        "--entropy",
        type=float,
        default=_DEFAULTS.entropy_weight,
        help="entropy bonus weight (gap-fill; 0 lets the actor collapse onto one op)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="DALI CPU threads")
    p.add_argument("--no-progress", action="store_true")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """``--actor`` for ``dali-aug train --method lbaug``."""
    p.add_argument("--actor", default=None, help="with --method lbaug: the searched actor.pt")


def _train_folder(data: str | None) -> tuple[Path, bool]:
    """(multi-label training folder, is the demo data)."""
    if data is None:
        from dali_aug.cli import demo_data

        return demo_data(multi_label=True)[0], True
    root = Path(data)
    if not root.is_dir():
        raise SystemExit(f"error: --data {root} is not a folder")
    train = root / "train" if (root / "train").is_dir() else root
    if not (train / "labels.csv").is_file():
        raise SystemExit(
            f"error: LB-Aug needs multi-label data: {train / 'labels.csv'} (header 'path,labels')"
        )
    return train, False


def run_search(args: argparse.Namespace) -> int:
    """``dali-aug search lbaug``: search, then write the actor, the CSV and the PNG."""
    folder, demo = _train_folder(args.data)
    size = args.size or (64 if demo else 224)
    try:
        config = SearchConfig(
            ops=_ops(args.ops),
            folds=args.folds,
            model=args.model,
            critic_epochs=args.critic_epochs,
            critic_batch_size=args.critic_batch_size,
            search_epochs=args.search_epochs,
            batch_size=args.batch_size,
            actor_lr=args.actor_lr,
            hidden=args.hidden,
            dropout=args.dropout,
            entropy_weight=args.entropy,
            seed=args.seed,
        )
        config.actor_config(1)  # validates the op names now, not after the critics
    except (TypeError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    t0 = time.perf_counter()
    images, labels, names = load_images(
        folder, size=size, device=args.device, num_threads=args.threads
    )
    print(
        f"lbaug search: {folder} ({len(labels)} images, {len(names)} labels, {size} px) on "
        f"{images.device}; K={config.folds} critics ({config.model}, {config.critic_epochs} "
        f"epochs), {config.search_epochs} actor epochs, {len(config.ops)} ops"
    )
    result = search(images, labels, config, progress=not args.no_progress, log=print)
    out = Path(args.out)
    summary = {
        "search_config": config.to_dict(),
        "data": str(folder),
        "size": size,
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


def make_hook(args: argparse.Namespace, loader: Any) -> LBAugHook:
    """The :class:`LBAugHook` of ``dali-aug train --method lbaug --actor PATH``."""
    if args.actor is None:
        raise SystemExit("error: --method lbaug needs --actor PATH (from `dali-aug search lbaug`)")
    if not loader.multi_label:
        raise SystemExit("error: --method lbaug needs multi-label data (--multi-label)")
    try:
        actor, names = load_actor(args.actor, map_location=loader.device)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if tuple(names) != tuple(loader.classes):
        raise SystemExit(
            f"error: the actor was searched on labels {list(names)} but the data has "
            f"{list(loader.classes)}; search again on this data"
        )
    return LBAugHook(actor, seed=args.seed)


def describe(hook: LBAugHook) -> dict[str, Any]:
    """What the hook applied during training (for metrics.json)."""
    return {
        "ops": list(hook.actor.config.ops),
        "frequencies": hook.op_frequencies(),
        "loader_flip": hook.keep_loader_flip,
        "config": dataclasses.asdict(hook.actor.config),
    }
