"""``dali-aug bench``: flags -> :class:`BenchConfig` -> the
peers -> table on stdout, JSON record, PNG chart."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dali_aug._dist import DEVICES, resolve_device
from dali_aug.bench._core import (
    BenchConfig,
    PeerSpec,
    Row,
    Stage,
    compute_ratios,
    format_table,
    measure,
    payload,
)

__all__ = ["QUICK", "add_arguments", "config_from_args", "main", "run", "run_from_args"]

#: ``--quick``: a smoke-sized run (under 3 minutes on 2 CPU cores, builds included).
QUICK = {
    "images": 192,
    "batch_size": 32,
    "stage_batch": 64,
    "rounds": 3,
    "warmup": 1,
    "stage_iters": 1,
    "stage_min_s": 0.25,
}
_FULL = {f.name: f.default for f in dataclasses.fields(BenchConfig) if f.name in QUICK}
_STAGES: dict[str, tuple[Stage, ...]] = {
    "all": ("end-to-end", "augment"),
    "end-to-end": ("end-to-end",),
    "augment": ("augment",),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dali-aug bench``."""
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke-sized run (<3 min on 2 cores): "
        + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA if available")
    p.add_argument("--stages", choices=sorted(_STAGES), default="all")
    p.add_argument(
        "--images", type=int, help=f"JPEGs in the generated folder (full: {_FULL['images']})"
    )
    p.add_argument("--batch-size", type=int, help=f"end-to-end batch (full: {_FULL['batch_size']})")
    p.add_argument(
        "--stage-batch", type=int, help=f"augmentation-stage batch (full: {_FULL['stage_batch']})"
    )
    p.add_argument("--size", type=int, default=224, help="output side in pixels")
    p.add_argument("--rounds", type=int, help=f"timed interleaved rounds (full: {_FULL['rounds']})")
    p.add_argument("--warmup", type=int, help="untimed warm-up calls per peer (1)")
    p.add_argument(
        "--stage-iters",
        type=int,
        help=f"min policy calls per stage timing (full: {_FULL['stage_iters']})",
    )
    p.add_argument(
        "--stage-min-s",
        type=float,
        help=f"min seconds per stage timing (full: {_FULL['stage_min_s']})",
    )
    p.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="CPU threads/workers of every peer"
    )
    p.add_argument("--data", type=Path, help="an ImageFolder of JPEGs (default: generated, cached)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=Path("runs/bench/throughput.json"), help="JSON record"
    )
    p.add_argument("--chart", type=Path, help="PNG chart (default: the JSON path with .png)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument(
        "--profile", action="store_true", help="also profile where dali-aug's end-to-end time goes"
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Maps the flags onto a :class:`BenchConfig` (``--quick`` presets, explicit flags win)."""
    preset = QUICK if args.quick else _FULL
    values: dict[str, Any] = {}
    for key, default in preset.items():
        given = getattr(args, key)
        values[key] = default if given is None else given
    device = args.device
    if device == "auto":  # only auto is resolved here: cuda without CUDA is BenchConfig's error
        device = resolve_device("auto").type
    return BenchConfig(
        **values,
        size=args.size,
        threads=args.threads,
        device=device,
        stages=_STAGES[args.stages],
        seed=args.seed,
        data=args.data,
    )


def _specs(cfg: BenchConfig, root: Path) -> list[PeerSpec]:
    from dali_aug.bench._e2e import end_to_end_specs
    from dali_aug.bench._stage import resident_batch, stage_specs

    specs: list[PeerSpec] = []
    if "end-to-end" in cfg.stages:
        specs += end_to_end_specs(root, cfg)
    if "augment" in cfg.stages:
        specs += stage_specs(
            lambda: resident_batch(root, cfg.stage_batch, cfg.size, cfg.device), cfg
        )
    return specs


def run(
    cfg: BenchConfig,
    *,
    out: Path | None = None,
    chart: Path | None = None,
    profile: bool = False,
    specs: Sequence[PeerSpec] | None = None,
    annotate: Callable[[list[Row], dict[str, Any]], None] | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    """Runs the benchmark, prints the table, writes the JSON and the chart.

    Args:
        cfg: the settings.
        out: JSON path (None: not written).
        chart: PNG path (None: not drawn).
        profile: append the end-to-end profile of dali-aug (``_profile``).
        specs: the peers (default: every peer of the configured stages).
        annotate: called with the rows and the record before the record is written; it may
            print and add keys to the record.

    Returns:
        the rows and the JSON payload.
    """
    from dali_aug.bench._data import jpeg_folder

    t_start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    root = jpeg_folder(cfg.images, seed=cfg.seed, data=cfg.data)
    print(
        f"dali-aug bench: {cfg.device}, {cfg.threads} threads/workers, data {root} "
        f"({cfg.images} JPEGs of 400-500 px -> {cfg.size}), e2e batch {cfg.batch_size}, "
        f"stage batch {cfg.stage_batch} (>= {cfg.stage_iters} calls, >= {cfg.stage_min_s} s), "
        f"{cfg.warmup} warm-up + "
        f"{cfg.rounds} interleaved rounds"
    )
    rows = measure(specs if specs is not None else _specs(cfg, root), cfg)
    compute_ratios(rows)
    extra: dict[str, Any] = {"data_folder": str(root)}
    print()
    print(format_table(rows))
    if profile:
        from dali_aug.bench._profile import format_profile, profile_end_to_end

        prof = profile_end_to_end(root, cfg)
        print()
        print(format_profile(prof))
        extra["profile"] = prof
    extra["wall_s"] = time.perf_counter() - t_start
    record = payload(cfg, rows, extra)
    if annotate is not None:
        annotate(rows, record)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, default=str))
        print(f"wrote {out}")
    if chart is not None:
        from dali_aug.bench._chart import draw_chart

        title = (
            f"dali-aug bench ({cfg.device}, {cfg.threads} threads): img/s, ratio vs fastest peer"
        )
        print(f"wrote {draw_chart(rows, chart, title=title)}")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return rows, record


def run_from_args(
    args: argparse.Namespace,
    *,
    annotate: Callable[[list[Row], dict[str, Any]], None] | None = None,
) -> int:
    """Runs ``dali-aug bench`` from parsed flags (``annotate`` as in :func:`run`); returns the
    exit code."""
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    chart = None if args.no_chart else (args.chart or args.out.with_suffix(".png"))
    run(cfg, out=args.out, chart=chart, profile=args.profile, annotate=annotate)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``dali-aug bench`` flags from ``argv``, runs the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="dali-aug bench",
        description="Throughput of dali-aug vs DALI auto_aug, Kornia, torchvision v2 and timm.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
