"""Command-line glue of AWS: ``dali-aug search aws`` (the method-registry contract of
:mod:`dali_aug.methods`).

AWS is a search, not a training-step method: its result is ``DIR/policy.json``, trained with
``dali-aug train --policy DIR/policy.json``; so this entry of the registry is search-only
(no ``HELP``/``add_arguments``/``build``: ``aws`` is not a ``--method``). Flags become an
:class:`~dali_aug.methods.aws.AWSConfig` here and nowhere else. Only the standard library is
imported at module level (the parser's choices are imported when the flags are added).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["SEARCH_HELP", "add_search_arguments", "run_search"]

SEARCH_HELP = (
    "AWS: a shared checkpoint trained with uniform pairs, then short fine-tunes scored on a "
    "held-out split and PPO on the 1296-pair distribution; writes policy.json, aws_probs.png, "
    "aws_search.jsonl and the shared checkpoint"
)


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dali-aug search aws``."""
    from dali_aug._crop import CROPS
    from dali_aug._dist import DEVICES
    from dali_aug._recipe import positive
    from dali_aug.datasets import FASHION_MNIST
    from dali_aug.models import MODEL_NAMES

    p.add_argument(
        "--data",
        help="training folder (ImageFolder, or DIR/train), or fashion-mnist (its training "
        "split); only the training part is used, split into fine-tune and reward data "
        "(default: the demo shapes)",
    )
    p.add_argument(
        "--train-size",
        type=positive,
        default=None,
        metavar="N",
        help=f"with --data {FASHION_MNIST}: a seeded, class-balanced training subset of N "
        "images (a multiple of 10); default: all 60,000",
    )
    p.add_argument("--out", default="runs/aws", help="output folder")
    p.add_argument("--share-epochs", type=int, default=10, help="stage 1 epochs (uniform)")
    p.add_argument("--finetune-epochs", type=int, default=1, help="epochs per fine-tune")
    p.add_argument("--steps", type=int, default=40, help="policy updates")
    p.add_argument("--model", choices=MODEL_NAMES, default="small")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"image side (default: 64 demo, 28 {FASHION_MNIST}, 224)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="network peak lr (as dali-aug train)")
    p.add_argument("--holdout", type=float, default=0.2, help="held-out reward fraction")
    p.add_argument("--policy-lr", type=float, default=0.1, help="Adam lr on theta (gap-fill)")
    p.add_argument("--clip", type=float, default=0.2, help="PPO clip epsilon (gap-fill)")
    p.add_argument("--ppo-epochs", type=int, default=10, help="PPO epochs per update")
    p.add_argument(
        "--finetunes-per-step",
        type=int,
        default=1,
        help="fine-tunes per rank per update (under torchrun: W times as many)",
    )
    p.add_argument(
        "--reward",
        choices=["accuracy", "neg_loss"],
        default="accuracy",
        help="held-out score of a fine-tune: accuracy (the paper's) or minus the mean "
        "cross-entropy (ours: smoother, moves with the label noise a policy adds)",
    )
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    p.add_argument(
        "--crop",
        choices=CROPS,
        default="rrc",
        help="training crop: rrc (random-resized crop) or pad (pad-and-random-crop by up to "
        "--pad px, the paper's search-time crop) (default rrc)",
    )
    p.add_argument(
        "--pad", type=int, default=4, metavar="N", help="pad: the largest shift in px (4)"
    )
    p.add_argument(
        "--cutout",
        type=float,
        default=None,
        metavar="F",
        help="Cutout in stage 1 and every fine-tune, a box of side F x the image side, e.g. "
        "0.5 (the paper's search uses Cutout); default: none",
    )
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="DALI CPU threads")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.add_argument("--no-progress", action="store_true")


def run_search(args: argparse.Namespace) -> int:
    """``dali-aug search aws``: search, then write policy.json and aws_probs.png."""
    import torch

    from dali_aug._dist import init_from_env, resolve_device
    from dali_aug.datasets import FASHION_MNIST, default_scale, default_size, training_data
    from dali_aug.methods.aws._report import write_outputs
    from dali_aug.methods.aws._search import AWSConfig, search

    try:
        config = AWSConfig(
            share_epochs=args.share_epochs,
            finetune_epochs=args.finetune_epochs,
            steps=args.steps,
            model=args.model,
            batch_size=args.batch_size,
            size=args.size or default_size(args.data),
            lr=args.lr,
            holdout=args.holdout,
            policy_lr=args.policy_lr,
            clip=args.clip,
            ppo_epochs=args.ppo_epochs,
            finetunes_per_step=args.finetunes_per_step,
            reward=args.reward,
            scale=default_scale(args.data),
            flip=not args.no_flip,
            crop=args.crop,
            pad=args.pad,
            cutout=args.cutout,
            device=args.device,
            seed=args.seed,
            num_threads=args.threads,
        )
        # only the training part is used (the evaluation set is not)
        source = training_data(
            args.data, multi_label=False, train_size=args.train_size, seed=args.seed
        ).source
        data = str(getattr(source, "root", f"{FASHION_MNIST} train"))
        if source.multi_label:
            raise ValueError(f"{data} is multi-label; AWS rewards single-label accuracy")
    except (TypeError, ValueError) as err:
        raise SystemExit(f"error: AWS: {err}") from None
    try:  # the process group on the device the search itself resolves
        rank, world = init_from_env(cuda=resolve_device(config.device).type == "cuda")
    except ValueError as err:
        raise SystemExit(f"error: AWS: {err}") from None
    out = Path(args.out)
    if rank == 0:
        print(
            f"aws search: {data} ({len(source)} images, {len(source.classes)} classes, "
            f"{config.size} px), {int(config.holdout * 100)}% held out for the reward; "
            f"{config.share_epochs} shared + {config.steps} x {config.finetunes_per_step * world} "
            f"fine-tunes of {config.finetune_epochs} epoch(s), {config.model}, {world} rank(s)"
        )
    t0 = time.perf_counter()
    try:
        policy = search(
            source, config, out, resume=args.resume, progress=not args.no_progress, log=print
        )
    except ValueError as err:
        raise SystemExit(f"error: AWS: {err}") from None
    if rank == 0:
        extra = {"search_config": config.to_dict(), "data": data, "world_size": world}
        paths = write_outputs(policy, out, {**extra, "seconds": time.perf_counter() - t0})
        top = policy.top_pairs(1)[0]
        print(
            f"aws: {time.perf_counter() - t0:.1f} s; entropy {policy.entropy():.3f} "
            f"(uniform {torch.log(torch.tensor(float(policy.num_pairs))):.3f}); top pair "
            f"{' -> '.join(top['pair'])} ({100 * top['prob']:.2f}%); wrote "
            f"{', '.join(str(p) for p in paths)}, {out / 'aws_search.jsonl'}, {out / 'shared.pt'}"
        )
        print(f"train with: dali-aug train --policy {out / 'policy.json'}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0
