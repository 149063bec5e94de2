"""The ``dali-aug`` command line: ``train``, ``show``, ``bench`` and ``search``.

Strings become objects here and only here (policy names -> policy objects, flags -> configs).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch

from dali_aug.policies import POLICY_NAMES, parse_policy

__all__ = ["main"]

DEMO_SIZE = 64


def _cache_dir() -> Path:
    base = os.environ.get("DALI_AUG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "dali_aug"
    )
    return Path(base)


def demo_data(multi_label: bool, n: int = 4000, seed: int = 0) -> tuple[Path, Path]:
    """Generates (once, cached) the demo shapes: a train and a val folder."""
    from dali_aug.datasets import make_shapes

    kind = "multi" if multi_label else "single"
    root = _cache_dir() / f"shapes-{kind}-{n}-s{seed}"
    train = make_shapes(root / "train", n, seed=seed, multi_label=multi_label, size=DEMO_SIZE)
    val = make_shapes(
        root / "val", n // 4, seed=seed + 10_000, multi_label=multi_label, size=DEMO_SIZE
    )
    return Path(train), Path(val)


def _data_dirs(args: argparse.Namespace) -> tuple[Path, Path | None]:
    if args.data is None:
        return demo_data(args.multi_label)
    root = Path(args.data)
    if not root.is_dir():
        raise SystemExit(f"error: --data {root} is not a folder")
    train_root = root / "train" if (root / "train").is_dir() else root
    if args.multi_label and not (train_root / "labels.csv").is_file():
        raise SystemExit(
            f"error: --multi-label needs {train_root / 'labels.csv'} (header 'path,labels')"
        )
    if (root / "train").is_dir():  # ImageNet layout
        return root / "train", (root / "val") if (root / "val").is_dir() else None
    return root, None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        help="ImageFolder, ImageNet layout (DIR/train, DIR/val) or a "
        "folder with labels.csv; default: generated demo shapes",
    )
    p.add_argument(
        "--policy",
        default="rand-m9-n2",
        help=f"augmentation policy, e.g. {', '.join(POLICY_NAMES)}",
    )
    p.add_argument("--multi-label", action="store_true", help="multi-hot labels (labels.csv)")
    p.add_argument(
        "--no-flip",
        action="store_true",
        help="no random horizontal flip (for labels that a flip changes, e.g. left/right)",
    )
    p.add_argument("--size", type=int, default=None, help="image side (default: 64 demo, 224)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="DALI CPU threads")
    p.add_argument("--out", default="runs/latest", help="output folder")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dali-aug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a classifier (default: on the demo data)")
    _add_common(t)
    t.add_argument("--model", choices=["small", "resnet18", "resnet50"], default="small")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument(
        "--lr", type=float, default=None, help="SGD lr (default 0.1 * batch/256... 0.05 for small)"
    )
    t.add_argument(
        "--method",
        choices=["none", "cutout", "keep", "lbaug"],
        default="none",
        help="method run in the training step (cutout: KeepCutout's saliency-blind baseline; "
        "lbaug: the label-based ops of --actor, replacing --policy)",
    )
    _add_keep(t)
    # -- lbaug (issue 6): flags live in dali_aug.lbaug._cli --
    from dali_aug.lbaug._cli import add_search_parser, add_train_arguments

    add_train_arguments(t)
    # -- end lbaug --
    t.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--max-epochs-this-run", type=int, default=None, help=argparse.SUPPRESS)
    t.add_argument("--no-progress", action="store_true")
    s = sub.add_parser(
        "show",
        help="write a grid of augmented samples (samples.png); with --method keep, the "
        "saliency maps and the chosen boxes (keep.png)",
    )
    _add_common(s)
    s.add_argument("--method", choices=["none", "keep"], default="none")
    s.add_argument("--model", choices=["small", "resnet18", "resnet50"], default="small")
    s.add_argument(
        "--checkpoint",
        default=None,
        help="trained model for the saliency (default: OUT/checkpoint.pt if it exists)",
    )
    _add_keep(s)
    # -- bench (issue 7): flags live in dali_aug.bench --
    from dali_aug.bench import add_arguments as _bench_arguments

    _bench_arguments(
        sub.add_parser(
            "bench", help="throughput vs DALI auto_aug, Kornia, torchvision v2, timm (table)"
        )
    )
    # -- end bench --
    add_search_parser(sub)  # -- lbaug (issue 6): dali-aug search lbaug --
    return parser


def _add_keep(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-mode", choices=["cutout", "paste", "cutmix"], default="cutout")
    p.add_argument("--saliency", choices=["full", "lowres", "early"], default="lowres")


def _distributed() -> tuple[int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _loaders(args: argparse.Namespace, world: int) -> tuple[Any, Any]:
    from dali_aug.loader import Loader, LoaderConfig

    train_dir, val_dir = _data_dirs(args)
    size = args.size or (DEMO_SIZE if args.data is None else 224)
    lbaug = getattr(args, "method", "none") == "lbaug"  # -- lbaug (issue 6): ops in the step --
    policy = parse_policy("none" if lbaug else args.policy)
    cfg = LoaderConfig(
        batch_size=args.batch_size,
        size=size,
        device=args.device,
        seed=args.seed,
        num_threads=args.threads,
        drop_last=world > 1,
        scale=(0.5, 1.0) if args.data is None else (0.08, 1.0),
        flip=not args.no_flip,
    )
    paste = getattr(args, "method", "none") == "keep" and args.keep_mode == "paste"
    train = Loader(train_dir, policy=policy, config=cfg, provenance=paste or lbaug)
    val = None
    if val_dir is not None:
        val = Loader(
            val_dir,
            config=dataclasses.replace(cfg, train=False, drop_last=False, shard_id=0, num_shards=1),
        )
    return train, val


def _preview_loader(train: Any, batch_size: int) -> Any:
    """The training loader's data and policy, unsharded, with provenance, for pictures."""
    config = dataclasses.replace(
        train.config, provenance=True, batch_size=batch_size, shard_id=0, num_shards=1
    )
    return train.__class__(train.source, policy=train.policy, config=config)


def _show(args: argparse.Namespace, train: Any) -> Path:
    from dali_aug.viz import denormalize, op_labels, save_grid

    loader = _preview_loader(train, 32)
    batch = next(iter(loader))
    assert batch.params is not None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [
        loader.classes[i] if not loader.multi_label else ""
        for i in (batch.labels.tolist() if not loader.multi_label else range(len(batch.labels)))
    ]
    caps = [f"{n}: {o}" if n else o for n, o in zip(names, op_labels(batch.params), strict=True)]
    return save_grid(denormalize(batch.images), caps, out / "samples.png")


def _keep_hook(args: argparse.Namespace, model: torch.nn.Module, loader: Any) -> tuple[Any, list]:
    """The KeepHook the flags ask for, attached; returns it and its parameters to optimise."""
    from dali_aug.keep import KeepHook

    hook = KeepHook(
        model,
        len(loader.classes),
        mode=args.keep_mode,
        saliency_mode=args.saliency,
        seed=args.seed,
    )
    size = loader.config.size
    return hook, hook.attach(torch.zeros(1, 3, size, size, device=loader.device))


def _show_keep(args: argparse.Namespace, train: Any) -> Path:
    """keep.png: per image, the KeepAugment result with its box above the saliency map the
    box was chosen from (colours: :func:`dali_aug.keep.save_preview`)."""
    from dali_aug.keep import save_preview
    from dali_aug.models import build_model

    loader = _preview_loader(train, 16)
    model = build_model(args.model, len(loader.classes)).to(loader.device)
    hook, _ = _keep_hook(args, model, loader)
    ckpt = Path(args.checkpoint) if args.checkpoint else Path(args.out) / "checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=loader.device, weights_only=False)
        model.load_state_dict(state["model"])
        keep_states = [v for v in state.get("hooks", {}).values() if "early_head" in v]
        if hook.early_head is not None:
            if not keep_states or keep_states[0]["early_head"] is None:
                raise SystemExit(
                    f"error: {ckpt} has no early head; train with --method keep --saliency "
                    "early first, or show another --saliency"
                )
            hook.early_head.load_state_dict(keep_states[0]["early_head"])
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
    result = hook.augment(next(iter(loader)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return save_preview(result, args.keep_mode, out / "keep.png")


def _train(args: argparse.Namespace) -> int:
    from dali_aug.models import build_model
    from dali_aug.train import Trainer, write_metrics

    rank, world = _distributed()
    torch.manual_seed(args.seed)
    train, val = _loaders(args, world)
    model: torch.nn.Module = build_model(args.model, len(train.classes)).to(train.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    hooks: list[Any] = []
    params = list(model.parameters())
    if args.method == "cutout":
        from dali_aug.keep import CutoutHook

        hooks.append(CutoutHook(seed=args.seed))
    if args.method == "keep":
        keep, keep_params = _keep_hook(args, model, train)
        params += keep_params
        hooks.append(keep)
    if args.method == "lbaug":  # -- lbaug (issue 6) --
        from dali_aug.lbaug._cli import make_hook

        lbaug_hook = make_hook(args, train)
        hooks.append(lbaug_hook)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    if args.model == "small":  # Adam learns the small demo model in a few hundred steps
        lr = args.lr if args.lr is not None else 1e-3
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    else:  # the ImageNet recipe: SGD + Nesterov, lr 0.1 per 256 images
        lr = args.lr if args.lr is not None else 0.1 * args.batch_size / 256
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-5, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    trainer = Trainer(
        model,
        opt,
        multi_label=train.multi_label,
        hooks=hooks,
        amp=amp,
        channels_last=args.channels_last,
        scheduler=sched,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    if args.resume:
        if not ckpt.is_file():
            raise SystemExit(f"error: --resume but {ckpt} does not exist")
        trainer.load_state_dict(torch.load(ckpt, weights_only=False))
        print(f"resumed from {ckpt} at epoch {trainer.epoch + 1}")
    if rank == 0:
        print(
            f"data: {train.source.root if hasattr(train.source, 'root') else 'arrays'} "
            f"({len(train.source)} train images, {len(train.classes)} classes), "
            f"policy: {'lbaug ' + args.actor if args.method == 'lbaug' else args.policy}, "
            f"model: {args.model}, device: {train.device}, "
            f"shards: {world}"
        )
        _show(args, train)
    stop = args.epochs
    if args.max_epochs_this_run is not None:
        stop = min(args.epochs, trainer.epoch + args.max_epochs_this_run)
    log = print if rank == 0 else (lambda *_: None)
    trainer.fit(
        train,
        val if rank == 0 else None,
        stop,
        checkpoint=ckpt if rank == 0 else None,
        progress=rank == 0 and not args.no_progress,
        log=log,
    )
    if rank == 0:
        payload = {
            "args": vars(args),
            "world_size": world,
            "classes": list(train.classes),
            "skipped": train.skipped,
            "history": trainer.history,
            "data_order_epoch0": train.shard_indices(0)[:16].tolist(),
        }
        if args.method == "lbaug":  # -- lbaug (issue 6): the ops the actor applied --
            from dali_aug.lbaug._cli import describe

            payload["lbaug"] = describe(lbaug_hook)
        write_metrics(out / "metrics.json", payload)
        last = trainer.history[-1] if trainer.history else {}
        key = "mAP" if train.multi_label else "val_acc"
        if key in last:
            chance = "" if train.multi_label else f" (chance {1 / len(train.classes):.3f})"
            print(f"final {key}: {last[key]:.4f}{chance}; wrote {out / 'metrics.json'}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":  # -- bench (issue 7) --
        from dali_aug.bench import run_from_args

        return run_from_args(args)
    if args.command == "search":  # -- lbaug (issue 6) --
        from dali_aug.lbaug._cli import run_search

        return run_search(args)
    try:
        parse_policy(args.policy)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "show":
        train, _ = _loaders(args, 1)
        if args.method == "keep":
            print(f"wrote {_show_keep(args, train)}")
            return 0
        print(f"wrote {_show(args, train)}")
        return 0
    return _train(args)


if __name__ == "__main__":
    raise SystemExit(main())
