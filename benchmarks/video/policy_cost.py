"""Where the clip Loader's time goes on the throughput benchmark's clips: the Loader alone
(frame folders, T = 16 frames 2 apart, crop 112, flip, batch 8, 2 DALI threads, CPU), with
and without RandAugment(n=2, m=9), and RandAugment(n=2, m=9) restricted to one op (every
sample takes that op's branch twice): the cost of each op per frame, and with ``Identity`` the
cost of the per-sample op selection alone (the pipeline's branch tree over every op family,
and SamplePairing's batch permutation). One Loader per row, one warm-up epoch, then
``--rounds`` timed epochs; the median clips/s. Run ``python -m benchmarks.video.throughput
--clips 256`` first (it writes the clips to the cache).

From the repository root:

    python -m benchmarks.video.policy_cost --out benchmarks/video/results/policy_cost.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks._record import write_record
from benchmarks.video.throughput import ClipBench, make_clips
from dali_aug import Loader
from dali_aug.policies import AugmentPolicy, NoAugment, RandAugment

#: the one-op rows: Identity (the selection machinery alone) and the RandAugment ops
ONE_OP = ("Identity", "Rotate", "ShearX", "TranslateX", "Brightness", "Contrast", "Color",
          "Sharpness", "AutoContrast", "Equalize", "Posterize", "Solarize")  # fmt: skip


def clips_per_s(root: str, policy: AugmentPolicy, rounds: int, cfg: ClipBench) -> list[float]:
    """Clips per second of ``rounds`` epochs after one warm-up epoch."""
    loader = Loader(root, policy=policy, batch_size=8, size=112, clip_length=cfg.length,
                    clip_stride=cfg.stride, num_threads=2, device="cpu", seed=0)  # fmt: skip
    for _ in loader:  # warm-up
        pass
    out = []
    for _ in range(rounds):
        t0, n = time.perf_counter(), 0
        for batch in loader:
            n += batch.images.shape[0]
        out.append(n / (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="runs/bench/video/policy_cost.json")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    cfg = ClipBench(clips=args.clips)
    frames, _ = make_clips(cfg, 0)
    rows: dict[str, dict[str, object]] = {}
    policies: list[tuple[str, AugmentPolicy]] = [
        ("no policy", NoAugment()),
        ("RandAugment n=2 m=9", RandAugment(2, 9)),
    ]
    policies += [(f"only {op}", RandAugment(2, 9, ops=(op,))) for op in ONE_OP]
    base = None
    for name, policy in policies:
        runs = clips_per_s(str(frames), policy, args.rounds, cfg)
        median = statistics.median(runs)
        base = median if base is None else base
        per_op = (1 / median - 1 / base) * 1000 / cfg.length / 2  # ms per frame per op
        rows[name] = {"runs": runs, "median": median, "ms_per_frame_per_op": per_op}
        print(f"{name:22s} {median:7.1f} clips/s  ({median * cfg.length:.0f} frames/s)  "
              f"+{per_op:.3f} ms per frame per op", flush=True)  # fmt: skip
    write_record(args.out, {"clips": args.clips, "rounds": args.rounds, "length": cfg.length,
                            "stride": cfg.stride, "size": 112, "batch_size": 8, "threads": 2},
                 torch.device("cpu"), rows=rows)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
