"""Where the clip Loader's time goes on the throughput benchmark's clips: the Loader alone
(frame folders, T = 16 frames 2 apart, crop 112, flip, batch 8, the cores as DALI threads,
CPU; :class:`benchmarks.video.throughput.LoaderClips`), with and without RandAugment(n=2,
m=9), and RandAugment(n=2, m=9) restricted to one op (every sample takes that op's branch
twice): the cost of each op per frame, and with ``Identity`` the cost of the per-sample op
selection alone (the pipeline's branch tree over every op family, and SamplePairing's batch
permutation). Timed with ``dali-aug bench``'s ``measure``: every row built, warmed up with
one epoch, then ``--rounds`` interleaved rounds of one epoch; the median clips/s. The clips
are the throughput benchmark's (generated and cached on first use).

From the repository root:

    python -m benchmarks.video.policy_cost --out benchmarks/video/results/policy_cost.json
"""

from __future__ import annotations

import argparse
import dataclasses
from functools import partial

import torch

from benchmarks._record import write_record
from benchmarks.video.throughput import BENCH, ClipBench, LoaderClips, make_clips
from dali_aug.bench._core import BenchConfig, PeerSpec, measure
from dali_aug.policies import AugmentPolicy, NoAugment, RandAugment

#: the one-op rows: Identity (the selection machinery alone) and the RandAugment ops
ONE_OP = ("Identity", "Rotate", "ShearX", "TranslateX", "Brightness", "Contrast", "Color",
          "Sharpness", "AutoContrast", "Equalize", "Posterize", "Solarize")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="runs/bench/video/policy_cost.json")
    args = p.parse_args(argv)
    cfg = ClipBench(clips=args.clips)
    bench = BenchConfig(
        images=cfg.clips, batch_size=BENCH["batch_size"], size=BENCH["size"],
        rounds=args.rounds, warmup=1, threads=BENCH["threads"], device="cpu",
        stages=("end-to-end",), seed=BENCH["seed"],
    )  # fmt: skip
    torch.set_num_threads(bench.threads)
    frames, _ = make_clips(cfg, bench.seed)
    policies: list[tuple[str, AugmentPolicy]] = [
        ("no policy", NoAugment()),
        ("RandAugment n=2 m=9", RandAugment(2, 9)),
    ]
    policies += [(f"only {op}", RandAugment(2, 9, ops=(op,))) for op in ONE_OP]
    specs = [
        PeerSpec("end-to-end", name, name, partial(LoaderClips, frames, cfg, bench, policy), True)
        for name, policy in policies
    ]
    rows = {}
    base = None
    for row in measure(specs, bench):
        if row.median is None:
            print(f"{row.name:22s} failed: {row.error}")
            continue
        base = row.median if base is None else base
        per_op = (1 / row.median - 1 / base) * 1000 / cfg.length / 2  # ms per frame per op
        rows[row.name] = {"runs": row.runs, "median": row.median, "ms_per_frame_per_op": per_op}
        print(f"{row.name:22s} {row.median:7.1f} clips/s  ({row.median * cfg.length:.0f} "
              f"frames/s)  +{per_op:.3f} ms per frame per op")  # fmt: skip
    settings = dataclasses.asdict(cfg) | {
        "rounds": args.rounds,
        "size": bench.size,
        "batch_size": bench.batch_size,
        "threads": bench.threads,
    }
    write_record(args.out, settings, torch.device("cpu"), rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
