"""The ``dali-aug`` command line: ``train``, ``show``, ``bench``, ``pack`` and ``search <method>``.

Strings become objects at this edge only: here, in the methods' ``cli`` modules and in
``dali_aug.bench._run`` (policy names -> policy objects, flags -> configs).
The ``--method`` choices and the ``search`` verbs come from :data:`dali_aug.methods.REGISTRY`;
a verb's own flags (and its imports: the Loader, DALI, the benchmark code, the methods) are
loaded only when that verb runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dali_aug._config import write_args_yaml
from dali_aug._dist import DEFAULT_TIMEOUT_S, DEVICES, init_from_env, resolve_device
from dali_aug._recipe import add_recipe as _add_recipe
from dali_aug._recipe import check_recipe as _check_recipe
from dali_aug._recipe import epoch_outputs as _epoch_outputs
from dali_aug._recipe import mixing as _mixing
from dali_aug._recipe import optimizer as _optimizer
from dali_aug._recipe import positive as _positive
from dali_aug._recipe import recipe_methods as _recipe_methods
from dali_aug._recipe import schedule as _schedule
from dali_aug._run_folder import check_resume_run as _check_resume_run
from dali_aug._run_folder import check_run_folder as _check_run_folder
from dali_aug._run_folder import fingerprint as _fingerprint
from dali_aug._run_folder import lock as _lock
from dali_aug._run_folder import trim_history as _trim_history
from dali_aug._run_folder import unlock as _unlock
from dali_aug.datasets import FASHION_MNIST, default_scale, default_size
from dali_aug.methods import BuildContext, cli_module, names

__all__ = ["main"]

#: ``--policy`` when none is given (a method that replaces the policy notes only other ones)
_DEFAULT_POLICY = "ra-m9-n2"

#: the smallest ``--size`` every model accepts (tried: the small model needs 15 px)
MIN_SIZE = 16
#: the smallest ``--size`` of ``--method keep`` with ``--saliency lowres`` (a half-size pass)
MIN_SIZE_LOWRES = 32
#: ``--seed`` lies in [0, MAX_SEED]
MAX_SEED = 2**32 - 1


#: flags that may change on ``--resume`` (the rest define the run and must match)
RESUMABLE = frozenset(
    {
        "command",
        "epochs",
        "lr",
        "resume",
        "out",
        "no_progress",
        "threads",
        "device",
        "max_epochs_this_run",
        "max_steps_this_run",
        "checkpoint_every",
        "eval_every",
        "overwrite",
        "dist_timeout",
        "config",
        "log_interval",
    }
)


def _add_common(p: argparse.ArgumentParser) -> None:
    from dali_aug.models import CLIP_AVG_PREFIX, CLIP_MODEL_NAMES, MODEL_NAMES
    from dali_aug.policies import POLICY_NAMES

    p.add_argument(
        "--data",
        help="ImageFolder, ImageNet layout (DIR/train, DIR/val), a "
        "folder with labels.csv, fashion-mnist, or its multi-label mosaics "
        "fashion-mnist-multi-lbaug / fashion-mnist-multi-vfa (with --multi-label), or, with "
        "--clips, moving-shapes / moving-fashion (generated multi-label demo clips) or a "
        "folder of frame folders or video files; default: generated demo shapes",
    )
    p.add_argument(
        "--clips",
        type=_positive,
        default=None,
        metavar="T",
        help="video clips of T frames: one sample is one clip, and the crop, the flip and every "
        "policy op are drawn once per clip (docs/video.md); the default model becomes "
        "clip-r2plus1d-small",
    )
    p.add_argument(
        "--clip-stride",
        type=_positive,
        default=1,
        metavar="S",
        help="with --clips: frames between two frames of a clip (default 1)",
    )
    p.add_argument(
        "--policy",
        default=_DEFAULT_POLICY,
        help=f"augmentation policy, e.g. {', '.join(POLICY_NAMES)}",
    )
    p.add_argument("--multi-label", action="store_true", help="multi-hot labels (labels.csv)")
    p.add_argument(
        "--no-flip",
        action="store_true",
        help="no random horizontal flip (for labels that a flip changes, e.g. left/right)",
    )
    p.add_argument("--size", type=int, default=None, help="image side (default: 64 demo, 224)")
    p.add_argument(
        "--train-size",
        type=_positive,
        default=None,
        metavar="N",
        help=f"with --data {FASHION_MNIST}: a seeded, class-balanced training subset of N "
        "images (a multiple of 10); default: all 60,000; with fashion-mnist-multi-*: N "
        "training mosaics (default 2000)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="DALI CPU threads")
    p.add_argument("--out", default="runs/latest", help="output folder")
    p.add_argument(
        "--model",
        type=_model_name,
        default=None,
        help=f"{', '.join(MODEL_NAMES)}, or timm:NAME (any timm model, when timm imports); "
        f"for --clips: {', '.join(CLIP_MODEL_NAMES)} or {CLIP_AVG_PREFIX}MODEL (an image model "
        "on every frame, averaged); default: small, or clip-r2plus1d-small with --clips",
    )


def _model_name(text: str) -> str:
    from dali_aug.models import CLIP_AVG_PREFIX, CLIP_MODEL_NAMES, MODEL_NAMES, TIMM_PREFIX

    if text in MODEL_NAMES or text in CLIP_MODEL_NAMES:
        return text
    image = text.removeprefix(CLIP_AVG_PREFIX)
    if image in MODEL_NAMES or (image.startswith(TIMM_PREFIX) and len(image) > len(TIMM_PREFIX)):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice {text!r} (choose from {', '.join(MODEL_NAMES)}, or {TIMM_PREFIX}NAME; "
        f"for clips {', '.join(CLIP_MODEL_NAMES)} or {CLIP_AVG_PREFIX}MODEL)"
    )


def _resolve_model(args: argparse.Namespace) -> None:
    """``--model`` left out: ``small``, or ``clip-r2plus1d-small`` with ``--clips``."""
    if getattr(args, "model", "") is None:
        args.model = "clip-r2plus1d-small" if getattr(args, "clips", None) else "small"


def _parser(command: str | None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s subparser gets its flags (and imports)."""
    parser = argparse.ArgumentParser(prog="dali-aug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a classifier (default: on the demo data)")
    s = sub.add_parser(
        "show",
        help="write a grid of augmented samples (samples.png); with --method keep, the "
        "saliency maps and the chosen boxes (keep.png)",
    )
    b = sub.add_parser(
        "bench", help="throughput vs DALI auto_aug, Kornia, torchvision v2, timm (table)"
    )
    k = sub.add_parser(
        "pack",
        help="write an image folder as WebDataset shards (checked, indexed) for the Loader",
    )
    search = sub.add_parser("search", help="search an augmentation policy offline")
    if command == "pack":
        _add_pack(k)
    if command == "train":
        _add_train(t)
    if command == "show":
        _add_common(s)
        shows = [n for n in names() if hasattr(cli_module(n), "show")]
        s.add_argument("--method", choices=["none", *shows], default="none")
        s.add_argument(
            "--checkpoint",
            default=None,
            help="trained model for the saliency (default: OUT/checkpoint.pt if it exists)",
        )
        for n in shows:
            cli_module(n).add_arguments(s)
    if command == "bench":
        from dali_aug.bench._run import add_arguments as bench_arguments

        bench_arguments(b)
    verbs = search.add_subparsers(dest="method", required=True)
    for n in names():
        mod = cli_module(n)
        if hasattr(mod, "run_search"):
            p = verbs.add_parser(n, help=mod.SEARCH_HELP)
            if command == "search":
                mod.add_search_arguments(p)
    return parser


def _add_pack(k: argparse.ArgumentParser) -> None:
    k.add_argument("src", help="ImageFolder, folder with labels.csv, or DIR with train/ (+ val/)")
    k.add_argument("out", help="new (or empty) folder for the shards")
    k.add_argument(
        "--shard-size",
        default="1000",
        help="samples per shard (1000) or bytes per shard (256MB, 1GiB); default 1000",
    )
    k.add_argument("--seed", type=int, default=0, help="seed of the packed order")
    k.add_argument(
        "--no-shuffle", action="store_true", help="keep the source order (default: permuted)"
    )
    k.add_argument("--threads", type=int, default=2, help="DALI decoder threads of the check")
    k.add_argument("--no-progress", action="store_true")


def _pack_verb(args: argparse.Namespace) -> int:
    from dali_aug.shards import pack

    try:
        pack(
            args.src,
            args.out,
            shard_size=args.shard_size,
            seed=args.seed,
            shuffle=not args.no_shuffle,
            threads=args.threads,
            progress=not args.no_progress,
            echo=print,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _add_train(t: argparse.ArgumentParser) -> None:
    _add_common(t)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate of the cosine schedule (default: AdamW 1e-3 for the small "
        "model; SGD + Nesterov 0.1 * batch / 256 for the ResNets)",
    )
    steps = [n for n in names() if hasattr(cli_module(n), "build")]  # not the search-only
    helps = "; ".join(f"{n}: {cli_module(n).HELP}" for n in steps)
    t.add_argument(
        "--method",
        nargs="+",
        choices=["none", *steps],
        default=["none"],
        help=f"training-step method(s), applied in the order given ({helps})",
    )
    for n in steps:
        cli_module(n).add_arguments(t)
    t.add_argument(
        "--copies",
        type=_positive,
        default=1,
        help="M augmented copies of each sample per batch (AWS's Enlarge Batch: batches of "
        "batch-size x M images); default 1",
    )
    t.add_argument(
        "--last-batch",
        choices=["partial", "drop", "fill"],
        default=None,
        help="the epoch's last, incomplete training batch: partial (kept smaller), drop, or "
        "fill (to --batch-size with the first samples); default: partial in one process, "
        "drop under torchrun",
    )
    t.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an --out that holds one (its checkpoint and history are "
        "replaced); without it such an --out is refused",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="also write OUT/checkpoint.pt every N steps, mid-epoch (--resume continues there "
        "with the same batches); default: after every epoch only",
    )
    t.add_argument(
        "--eval-every",
        type=_positive,
        default=1,
        metavar="N",
        help="evaluate on the validation data every N epochs and after the last (default 1; "
        "ours, as Lightning's check_val_every_n_epoch)",
    )
    t.add_argument(
        "--dist-timeout",
        type=_positive,
        default=int(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help="under torchrun: a rank waiting this long for the others (one stalled or dead) "
        f"fails instead of blocking; default {int(DEFAULT_TIMEOUT_S)}",
    )
    _add_recipe(t)
    t.add_argument("--max-epochs-this-run", type=int, default=None, help=argparse.SUPPRESS)
    t.add_argument("--max-steps-this-run", type=int, default=None, help=argparse.SUPPRESS)
    t.add_argument("--no-progress", action="store_true")


def _check_train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses impossible ``train`` settings before any work starts (argparse's one-line
    ``error:``, exit code 2), naming the flag, the value and the fix."""

    def fail(flag: str, value: Any, fix: str) -> None:
        parser.error(f"argument {flag}: {value!r} is not allowed; {fix}")

    if args.epochs < 1:
        fail("--epochs", args.epochs, "train at least 1 epoch (--epochs 1 or more)")
    if args.batch_size < 1:
        fail("--batch-size", args.batch_size, "use --batch-size 1 or more (default 32)")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        fail("--lr", args.lr, "use a finite learning rate > 0, e.g. --lr 1e-3")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        fail(
            "--checkpoint-every",
            args.checkpoint_every,
            "use --checkpoint-every 1 or more (steps), or leave it out",
        )
    if not 0 <= args.seed <= MAX_SEED:
        fail("--seed", args.seed, f"use a seed from 0 to {MAX_SEED}")
    _check_recipe(fail, args)
    from dali_aug.models import TIMM_PREFIX, timm_import_error

    if args.model.startswith(TIMM_PREFIX):  # before any data is generated or read
        problem = timm_import_error()
        if problem is not None:
            fail("--model", args.model, problem)
    keep_lowres = "keep" in args.method and getattr(args, "saliency", None) == "lowres"
    if keep_lowres and (args.size or default_size(args.data)) < MIN_SIZE_LOWRES:
        fail(
            "--size" if args.size is not None else "--saliency",
            args.size or "lowres",
            f"--method keep with --saliency lowres needs at least {MIN_SIZE_LOWRES} px "
            f"(--size {MIN_SIZE_LOWRES} or more, or --saliency full or early)",
        )
    clip_methods = ("none", "lbaug")
    if getattr(args, "clips", None) is not None:
        from dali_aug.models import CLIP_AVG_PREFIX, CLIP_MODEL_NAMES

        if not (args.model in CLIP_MODEL_NAMES or args.model.startswith(CLIP_AVG_PREFIX)):
            fail(
                "--model",
                args.model,
                f"--clips needs a clip model: {', '.join(CLIP_MODEL_NAMES)}, or "
                f"{CLIP_AVG_PREFIX}{args.model} (the image model on every frame, averaged)",
            )
        other = [m for m in args.method if m not in clip_methods]
        if other:
            fail(
                "--method",
                " ".join(other),
                "with --clips only --method lbaug (or none) runs on clips; "
                "the other methods take images",
            )
    if args.size is not None:
        if args.size < MIN_SIZE:
            fail(
                "--size",
                args.size,
                f"the models need at least {MIN_SIZE} px (--size {MIN_SIZE} or more)",
            )


def _device(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except ValueError as err:
        raise SystemExit(f"error: --device: {err}") from None


@dataclasses.dataclass
class _Setup:
    """The objects a train or show run is built from."""

    source: Any
    val_dir: Path | None
    size: int
    ctx: BuildContext
    methods: list[Any]
    val_source: Any = None  # a validation source built in memory (Fashion-MNIST's test split)


def _setup(args: argparse.Namespace, method_names: list[str]) -> _Setup:
    from dali_aug.datasets import training_data
    from dali_aug.models import build_model

    try:
        data = training_data(
            args.data,
            multi_label=args.multi_label,
            train_size=getattr(args, "train_size", None),
            seed=args.seed,
            clips=getattr(args, "clips", None),
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    source = data.source
    size = args.size or default_size(args.data)
    device = _device(args.device)
    try:
        model = build_model(
            args.model, len(source.classes), pretrained=bool(getattr(args, "pretrained", False))
        ).to(device)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    ctx = BuildContext(model, source.classes, source.multi_label, device, size, args.seed)
    methods = [cli_module(n).build(args, ctx) for n in method_names]
    return _Setup(source, data.val_dir, size, ctx, methods, data.val_source)


@dataclasses.dataclass
class _Loaders:
    train: Any
    val: Any
    meta_val: Any


def _loaders(args: argparse.Namespace, setup: _Setup, world: int) -> _Loaders:
    from dali_aug.datasets import holdout
    from dali_aug.loader import Loader, LoaderConfig
    from dali_aug.policies import NoAugment, parse_policy
    from dali_aug.sources import open_source
    from dali_aug.train import LoaderNeeds

    needs = functools.reduce(
        lambda a, b: a | b, (m.loader_needs() for m in setup.methods), LoaderNeeds()
    )
    if not needs.policy and args.policy not in ("none", _DEFAULT_POLICY):
        print(
            f"note: --method {' '.join(args.method)} replaces the dataset-level policy; "
            f"--policy {args.policy} is not applied",
            file=sys.stderr,
        )
    policy = parse_policy(args.policy) if needs.policy else NoAugment()
    cfg = LoaderConfig(
        batch_size=args.batch_size,
        size=setup.size,
        device=setup.ctx.device.type,  # type: ignore[arg-type]
        seed=args.seed,
        num_threads=args.threads,
        drop_last=world > 1 and getattr(args, "last_batch", None) is None,
        last_batch=getattr(args, "last_batch", None),  # train only
        **_crop(args),
        flip=_flip(args),
        op_record=needs.op_record,
        clean=needs.clean,
        channels_last=getattr(args, "channels_last", False),  # train only
        copies=getattr(args, "copies", 1),  # train only
        clip_length=getattr(args, "clips", None),
        clip_stride=getattr(args, "clip_stride", 1),
    )
    plain = dataclasses.replace(
        cfg,
        train=False,
        drop_last=False,
        last_batch=None,
        shard_id=0,
        num_shards=1,
        op_record=False,
        clean=False,
        copies=1,
    )
    source, meta_val = setup.source, None
    if needs.holdout > 0:
        try:
            source, held = holdout(source, needs.holdout, seed=args.seed)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        meta_val = Loader(held, config=dataclasses.replace(plain, shuffle=True))
    train = Loader(source, policy=policy, config=cfg)
    # every rank evaluates its part of the validation set, each image exactly once, and
    # Trainer.evaluate gathers the parts
    val_cfg = dataclasses.replace(plain, shard_id=None, num_shards=None, exact_shards=True)
    val = None
    if setup.val_source is not None:
        val = Loader(setup.val_source, config=val_cfg)
    elif setup.val_dir is not None:
        try:  # the val labels are indexed by the training class names
            classes = tuple(setup.source.classes)
            if cfg.clip_length is not None:
                from dali_aug.video import open_clip_source

                val_src = open_clip_source(setup.val_dir, classes=classes)
            else:
                val_src = open_source(setup.val_dir, classes=classes)
        except ValueError as err:
            raise SystemExit(f"error: validation data: {err}") from None
        val = Loader(val_src, config=val_cfg)
    return _Loaders(train, val, meta_val)


def _flip(args: argparse.Namespace) -> bool:
    """The Loader's random flip: on unless ``--no-flip``, and off on the moving demo clips,
    whose left/right and clockwise labels a flip swaps (a note says so)."""
    from dali_aug.datasets import MOVING_DATA

    if args.no_flip:
        return False
    if args.data in MOVING_DATA:
        print(
            f"note: --data {args.data}: no random flip (it swaps the moves left/right and "
            "rotates clockwise/counterclockwise labels)",
            file=sys.stderr,
        )
        return False
    return True


def _crop(args: argparse.Namespace) -> dict[str, Any]:
    """The LoaderConfig's crop fields from ``--crop``, ``--scale``, ``--ratio``, ``--pad`` and
    ``--crop-pct`` (commands without them: the defaults; the area range without ``--scale``:
    :func:`dali_aug.datasets.default_scale`)."""
    fields: dict[str, Any] = {"crop": getattr(args, "crop", None) or "rrc"}
    scale = getattr(args, "scale", None) or default_scale(args.data)
    fields["scale"] = (float(scale[0]), float(scale[1]))
    for name in ("ratio", "pad", "crop_pct"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = tuple(value) if name == "ratio" else value
    return fields


def _check_steps(train: Any, world: int) -> None:
    """Refuses a run whose epochs would take no step (each rank's share of the training data
    is smaller than the batch, with the incomplete last batch dropped)."""
    if len(train) > 0:
        return
    total, world = len(train.source), getattr(train, "num_shards", world)
    per_rank = -(-total // world)
    batch = train.config.batch_size
    raise SystemExit(
        f"error: every epoch would run 0 steps: each of the {world} process(es) gets "
        f"{per_rank} of the {total} training samples, fewer than --batch-size {batch} (the "
        f"incomplete batch is dropped); use --batch-size {max(per_rank, 1)} or less, fewer "
        "processes, or more data"
    )


def _warn_small_last_batch(train: Any) -> None:
    """Warns when the epoch's last training batch holds under a quarter of the batch: a step
    on a few samples is noisy, and under batch norm its statistics are the last to enter the
    running statistics that evaluation uses."""
    cfg = train.config
    if cfg.last_batch_policy != "partial":
        return
    last = len(train.sampler) % cfg.batch_size
    if 0 < last < cfg.batch_size / 4:
        print(
            f"warning: the last training batch of every epoch holds {last} of "
            f"{cfg.batch_size} samples (a noisy step; with batch norm it also moves the "
            "running statistics evaluation uses); --last-batch drop or fill avoids it",
            file=sys.stderr,
        )


def _preview_loader(train: Any, batch_size: int, *, clean: bool = False) -> Any:
    """The training loader's data and policy, unsharded, with the op record, for pictures
    (at most ``batch_size`` images and never an empty batch: no ``drop_last``, which torchrun
    forces on the training loader, for data smaller than the preview)."""
    config = dataclasses.replace(
        train.config,
        op_record=True,
        clean=clean or train.config.clean,
        batch_size=max(1, min(batch_size, len(train.source))),
        drop_last=False,
        last_batch=None,
        shard_id=0,
        num_shards=1,
    )
    return train.__class__(train.source, policy=train.policy, config=config)


#: clips drawn by ``samples.png`` (one row each)
CLIPS_SHOWN = 8


def _show(args: argparse.Namespace, train: Any) -> Path:
    from dali_aug.viz import denormalize, op_labels, save_grid

    loader = _preview_loader(train, 32)
    batch = next(iter(loader))
    assert batch.params is not None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if loader.multi_label:  # the positive labels' names
        names_ = [
            "+".join(loader.classes[j] for j in row.nonzero().flatten().tolist()) or "(none)"
            for row in batch.labels
        ]
    else:
        names_ = [loader.classes[i] for i in batch.labels.tolist()]
    caps = [f"{n}: {o}" if n else o for n, o in zip(names_, op_labels(batch.params), strict=True)]
    images = batch.images
    if images.dim() == 5:  # clips: one row per clip, its frames side by side
        b, t = images.shape[:2]
        frames = denormalize(images[:CLIPS_SHOWN].flatten(0, 1))  # [b * t, H, W, 3]
        h, w = frames.shape[1:3]
        rows = frames.reshape(-1, t, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(-1, h, t * w, 3)
        return save_grid(rows, caps[:CLIPS_SHOWN], out / "samples.png", cols=1)
    return save_grid(denormalize(images), caps, out / "samples.png")


def _reschedule(trainer: Any) -> None:
    """After a resume: the schedule is this run's (built from its ``--epochs`` and ``--lr``,
    continued at the checkpoint's update count); an interrupted epoch's row logs this run's
    learning rate at the epoch's first update."""
    progress = getattr(trainer, "_progress", None)
    if progress is not None:
        progress.lr = trainer.lr_at(trainer.global_step - progress.steps)


def _run_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in sorted(vars(args).items()) if k not in RESUMABLE}


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``dali-aug train``; ``parser`` is the one ``args`` came from (for ``args.yaml``)."""
    method_names = [m for m in args.method if m != "none"]
    try:
        rank, world = init_from_env(
            cuda=_device(args.device).type == "cuda", timeout_s=args.dist_timeout
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    out = Path(args.out)
    lock = _lock(out) if rank == 0 else None
    try:
        _check_run_folder(args, out)
        return _train_run(args, method_names, rank, world, _subparser(parser, "train"))
    finally:
        if lock is not None:
            _unlock(lock)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]  # type: ignore[no-any-return]
    raise KeyError(name)


def _expand_config(argv: list[str], command: str, parser: argparse.ArgumentParser) -> list[str]:
    """``-c/--config FILE`` of ``train``: the file's flags inserted right after the verb, so
    that the command line (after them) wins."""
    from dali_aug._config import config_argv

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config", default=None)
    known, _ = pre.parse_known_args(argv[argv.index(command) + 1 :])
    if known.config is None:
        return argv
    try:
        tokens = config_argv(known.config, _subparser(parser, command))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    at = argv.index(command) + 1
    return [*argv[:at], *tokens, *argv[at:]]


def _train_run(
    args: argparse.Namespace,
    method_names: list[str],
    rank: int,
    world: int,
    train_parser: argparse.ArgumentParser,
) -> int:
    from dali_aug.train import (
        CheckpointWriteError,
        ModelEma,
        Trainer,
        load_checkpoint,
        write_metrics,
    )

    torch.manual_seed(args.seed)
    setup = _setup(args, method_names)
    setup.methods += _recipe_methods(args, len(setup.source.classes))
    loaders = _loaders(args, setup, world)
    train, val = loaders.train, loaders.val
    _check_steps(train, world)
    _warn_small_last_batch(train)
    model = setup.ctx.model
    opt, lr = _optimizer(args, model)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    ema = None
    if args.model_ema:
        decay = 0.9998 if args.model_ema_decay is None else args.model_ema_decay
        ema = ModelEma(model, decay)
    try:
        trainer = Trainer(
            model,
            opt,
            multi_label=train.multi_label,
            methods=setup.methods,
            amp=amp,
            channels_last=args.channels_last,
            schedule=_schedule(args, lr, len(train)),
            smoothing=0.0 if _mixing(args) else (args.smoothing or 0.0),
            clip_grad=args.clip_grad,
            ema=ema,
            meta_val=loaders.meta_val,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    run = {**_run_args(args), "data_fingerprint": _fingerprint(setup.source)}
    if args.resume:
        if not ckpt.is_file():
            raise SystemExit(f"error: --resume but {ckpt} does not exist")
        try:
            state = load_checkpoint(ckpt, map_location=setup.ctx.device)
            _check_resume_run(state.get("run", {}), run, args.data)
            trainer.load_state_dict(state)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        _reschedule(trainer)
        if rank == 0:
            _trim_history(out / "history.jsonl", trainer.epoch)
        print(f"resumed from {ckpt} at epoch {trainer.epoch + 1}")
    if rank == 0:
        held = (
            ""
            if loaders.meta_val is None
            else (f"; {len(loaders.meta_val.source)} held out for the step's validation batches")
        )
        record = {"args": vars(args), "world_size": world, "started": time.time()}
        (out / "run.json").write_text(json.dumps(record, indent=2, default=str))
        write_args_yaml(out / "args.yaml", args, train_parser)
        if not args.resume:  # a new run (--overwrite: the old one's files go now)
            for name in ("checkpoint.pt", "model.pt", "last.pt", "best.pt", "best.json"):
                (out / name).unlink(missing_ok=True)
            (out / "history.jsonl").write_text("")
        print(
            f"data: {getattr(train.source, 'root', 'arrays')} "
            f"({len(train.source)} train {'clips' if args.clips else 'images'}, "
            f"{len(train.classes)} classes"
            f"{held}), "
            f"policy: {args.policy if train.policy.num_layers else 'none'}, "
            f"methods: {' '.join(method_names) or 'none'}, "
            f"model: {args.model}, device: {train.device}, shards: {world}"
        )
        # files in the class folders that are not loaded (all, root files too: metrics.json)
        ignored = [x for x in getattr(train.source, "ignored", ()) if "/" in x.path]
        if ignored:
            listed = ", ".join(f"{x.path} ({x.reason.value})" for x in ignored[:3])
            print(
                f"not loaded: {len(ignored)} file(s) or folder(s) in the class folders: "
                f"{listed}{' ...' if len(ignored) > 3 else ''} (all in metrics.json)"
            )
        _show(args, train)
    stop = args.epochs
    if args.max_epochs_this_run is not None:
        stop = min(args.epochs, trainer.epoch + args.max_epochs_this_run)
    try:
        trainer.fit(
            train,
            val,
            stop,
            checkpoint=ckpt if rank == 0 else None,
            checkpoint_extra={"run": run},
            checkpoint_every=args.checkpoint_every if rank == 0 else None,
            stop_after_steps=args.max_steps_this_run,
            record=out / "history.jsonl" if rank == 0 else None,
            progress=rank == 0 and not args.no_progress,
            log=print if rank == 0 else (lambda *_: None),
            log_every=args.log_interval,
            eval_every=args.eval_every,
            on_epoch=_epoch_outputs(trainer, out, train.multi_label) if rank == 0 else None,
        )
    except CheckpointWriteError as err:
        raise SystemExit(f"error: {err}") from None
    if rank == 0:
        torch.save(trainer.export(), out / "model.pt")
        payload: dict[str, Any] = {
            "args": vars(args),
            "world_size": world,
            "classes": list(train.classes),
            "skipped": train.skipped,
            "ignored": [
                {"path": x.path, "reason": x.reason.value}
                for x in getattr(train.source, "ignored", ())
            ],
            "history": trainer.history,
            "data_order_epoch0": train.shard_indices(0)[:16].tolist(),
        }
        # the --method methods come first; the recipe's (erasing, mixing) after them
        for name, method in zip(method_names, setup.methods[: len(method_names)], strict=True):
            describe = getattr(cli_module(name), "describe", None)
            if describe is not None:
                payload[name] = describe(method)
        last = trainer.history[-1] if trainer.history else {}
        if "ap" in last:  # per-label metrics keyed by the label's name
            payload["per_label"] = {
                name: {
                    "ap": last["ap"][j],
                    "f1": last["label_f1"][j],
                    "recall": last["label_recall"][j],
                }
                for j, name in enumerate(train.classes)
            }
        write_metrics(out / "metrics.json", payload)
        key = "mAP" if train.multi_label else "val_acc"
        if key in last:
            chance = "" if train.multi_label else f" (chance {1 / len(train.classes):.3f})"
            print(f"final {key}: {last[key]:.4f}{chance}; wrote {out / 'metrics.json'}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def _show_verb(args: argparse.Namespace) -> int:
    method_names = [] if args.method == "none" else [args.method]
    setup = _setup(args, [])
    train = _loaders(args, setup, 1).train
    if not method_names:
        print(f"wrote {_show(args, train)}")
        return 0
    loader = _preview_loader(train, 16, clean=True)
    print(f"wrote {cli_module(args.method).show(args, setup.ctx, loader)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(command)
    if command == "train":
        argv = _expand_config(argv, command, parser)
    args = parser.parse_args(argv)
    _resolve_model(args)
    if args.command == "train":
        _check_train(parser, args)
    if args.command == "bench":
        from dali_aug.bench import run_from_args

        return int(run_from_args(args))
    if args.command == "search":
        return int(cli_module(args.method).run_search(args))
    if args.command == "pack":
        return _pack_verb(args)
    from dali_aug.policies import parse_policy

    try:
        parse_policy(args.policy)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "show":
        return _show_verb(args)
    return _train(args, parser)


if __name__ == "__main__":
    raise SystemExit(main())
