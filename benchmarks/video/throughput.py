"""Clip throughput: the dali-aug Loader in clip mode against a DataLoader decoding the same
clips with PIL and augmenting them with torchvision v2 (issue 31's acceptance benchmark).

Peers (same clips, clip length, stride, crop size, batch and thread count; CPU):

- a. ``Loader(frames, clip_length=T, clip_stride=2)``: frame folders of JPEGs, RandAugment
  n=2 m=9, random-resized crop, flip, normalise (DALI decodes the JPEGs);
- b. the same over MJPEG AVI files of the same frames (``VideoFileSource``: DALI's CPU video
  decoder, one clip at a time on the feeding thread);
- c. ``torch.utils.data.DataLoader(num_workers=threads)`` over the frame folders: PIL reads
  the window's T frames, torchvision v2 ``RandomResizedCrop`` + ``RandomHorizontalFlip`` +
  ``RandAugment(2, 9)`` run once on the stacked ``tv_tensors.Video`` [T, C, H, W] (one draw
  of the parameters per clip, checked at start-up), then ``ToDtype`` + ``Normalize``.

The timing is ``dali-aug bench``'s (:func:`dali_aug.bench._core.measure`): every peer built,
warmed up with one epoch, then timed in interleaved rounds of one epoch each; the table gives
median clips/s, frames/s and the ratio to the DataLoader. Run from the repository root in the
benchmark venv (torchvision is not in the main one):

    PYTHONPATH=. .venv-bench/bin/python -m benchmarks.video.throughput --quick   # smoke run
    PYTHONPATH=. .venv-bench/bin/python -m benchmarks.video.throughput \\
        --out benchmarks/video/results/NAME.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks._record import write_record
from dali_aug.bench._core import BenchConfig, PeerSpec, Row, compute_ratios, measure
from dali_aug.datasets import cache_dir

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ClipBench:
    """The clips: ``clips`` clips of ``frames`` frames at ``side`` px, read as windows of
    ``length`` frames ``stride`` apart. The rest (crop ``size``, ``batch_size``, ``rounds``,
    ``threads``, ``seed``) is ``dali-aug bench``'s :class:`~dali_aug.bench._core.BenchConfig`
    (its ``images`` = ``clips``)."""

    clips: int = 64
    frames: int = 32
    side: int = 128
    length: int = 16
    stride: int = 2


#: the BenchConfig fields this script sets, with its defaults
BENCH = {"batch_size": 8, "size": 112, "rounds": 5, "threads": BenchConfig().threads, "seed": 0}


# -- data ------------------------------------------------------------------------------------
def make_clips(cfg: ClipBench, seed: int) -> tuple[Path, Path]:
    """The frame folders ``frames/c<k%2>/clip<k>/000001.jpg`` and the same frames as MJPEG AVI
    files ``videos/c<k%2>/clip<k>.avi`` (both quality 90), cached under ``$DALI_AUG_CACHE``.
    A clip is a photo-like field (smooth colours + noise) panning 2 px per frame."""
    from dali_aug.video import write_mjpeg_avi

    root = cache_dir() / f"bench-clips-{cfg.clips}x{cfg.frames}-{cfg.side}-s{seed}"
    frames_root, videos_root = root / "frames", root / "videos"
    if (root / ".complete").is_file():
        return frames_root, videos_root
    rng = np.random.default_rng(seed)
    s, n = cfg.side, cfg.frames
    for k in range(cfg.clips):
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(low).resize((s + 2 * n, s), Image.Resampling.BICUBIC))
        noise = rng.integers(-12, 13, (s, s + 2 * n, 3))
        field = (field.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
        clip = [np.ascontiguousarray(field[:, 2 * t : 2 * t + s]) for t in range(n)]
        folder = frames_root / f"c{k % 2}" / f"clip{k:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t, f in enumerate(clip):
            Image.fromarray(f).save(folder / f"{t + 1:06d}.jpg", quality=90)
        (videos_root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        write_mjpeg_avi(videos_root / f"c{k % 2}" / f"clip{k:04d}.avi", clip, quality=90)
    (root / ".complete").write_text(f"{cfg}\n")
    return frames_root, videos_root


# -- peers -----------------------------------------------------------------------------------
class LoaderClips:
    """a/b: the dali-aug Loader in clip mode over ``root`` (frame folders or videos), with
    ``policy`` (default RandAugment n=2 m=9)."""

    def __init__(self, root: Path, cfg: ClipBench, bench: BenchConfig, policy: Any = None) -> None:
        self.root, self.cfg, self.bench, self.epoch = root, cfg, bench, 0
        self.policy = policy

    def setup(self) -> None:
        from dali_aug.loader import Loader
        from dali_aug.policies import RandAugment

        c, b = self.cfg, self.bench
        policy = RandAugment(n=2, m=9) if self.policy is None else self.policy
        self.loader = Loader(
            self.root, policy=policy, batch_size=b.batch_size, size=b.size,
            clip_length=c.length, clip_stride=c.stride, num_threads=b.threads, device="cpu",
            seed=b.seed,
        )  # fmt: skip

    def step(self) -> int:
        self.epoch += 1
        self.loader.set_epoch(self.epoch)
        return sum(int(b.images.shape[0]) for b in self.loader)

    def close(self) -> None:
        self.loader = None  # type: ignore[assignment]


def clip_transform(size: int) -> Any:
    """torchvision v2: crop, flip, RandAugment(2, 9), float, normalise; applied to a
    ``tv_tensors.Video`` [T, C, H, W], which v2 transforms with one draw per call."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandAugment(num_ops=2, magnitude=9),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def check_one_draw_per_clip(size: int, trials: int = 20) -> None:
    """Raises if v2 gives different frames of a clip of identical frames different
    parameters (so one call = one draw for the whole clip)."""
    from torchvision import tv_tensors

    t = clip_transform(size)
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=g)
    for _ in range(trials):
        out = t(tv_tensors.Video(frame.expand(4, -1, -1, -1).clone()))
        if not all(torch.equal(out[k], out[0]) for k in range(1, 4)):
            raise AssertionError("torchvision v2 drew different parameters for frames of a clip")


class FrameClips(torch.utils.data.Dataset):  # type: ignore[misc]
    """c: a clip = a window of ``length`` frames ``stride`` apart (uniform start), read with
    PIL and transformed once as a ``tv_tensors.Video``."""

    def __init__(self, root: Path, cfg: ClipBench, size: int) -> None:
        self.clips = sorted(p for p in root.glob("*/*") if p.is_dir())
        self.labels = [int(p.parent.name[1:]) for p in self.clips]
        self.cfg = cfg
        self.transform = clip_transform(size)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision import tv_tensors

        c = self.cfg
        files = sorted(self.clips[i].iterdir())
        span = (c.length - 1) * c.stride + 1
        start = int(torch.randint(0, max(len(files) - span + 1, 1), ()))
        window = [files[(start + k * c.stride) % len(files)] for k in range(c.length)]
        frames = [np.asarray(Image.open(f).convert("RGB")) for f in window]
        video = tv_tensors.Video(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
        return self.transform(video).as_subclass(torch.Tensor), self.labels[i]


class DataLoaderClips:
    """c: ``torch.utils.data.DataLoader(num_workers=threads, persistent_workers=True)``."""

    def __init__(self, root: Path, cfg: ClipBench, bench: BenchConfig) -> None:
        self.root, self.cfg, self.bench = root, cfg, bench

    def setup(self) -> None:
        b = self.bench
        self.dl = torch.utils.data.DataLoader(
            FrameClips(self.root, self.cfg, b.size), batch_size=b.batch_size, shuffle=True,
            num_workers=b.threads, persistent_workers=True,
            generator=torch.Generator().manual_seed(b.seed),
        )  # fmt: skip

    def step(self) -> int:
        return sum(int(x.shape[0]) for x, _ in self.dl)

    def close(self) -> None:
        it = getattr(self.dl, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


# -- run -------------------------------------------------------------------------------------
def specs(frames: Path, videos: Path, cfg: ClipBench, bench: BenchConfig) -> list[PeerSpec]:
    clip = f"T={cfg.length} stride {cfg.stride} crop {bench.size}"
    return [
        PeerSpec("end-to-end", clip, "a. Loader, frame folders (DALI JPEG)",
                 lambda: LoaderClips(frames, cfg, bench), ours=True),
        PeerSpec("end-to-end", clip, "b. Loader, MJPEG AVI (DALI CPU video)",
                 lambda: LoaderClips(videos, cfg, bench), ours=True),
        PeerSpec("end-to-end", clip, "c. DataLoader + PIL + torchvision v2",
                 lambda: DataLoaderClips(frames, cfg, bench)),
    ]  # fmt: skip


def table(rows: Sequence[Row], cfg: ClipBench, rounds: int) -> str:
    head = f"{'peer':40s} {'clips/s':>8s} {'min-max':>13s} {'frames/s':>9s} {'vs c':>6s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.median is None:
            lines.append(f"{r.name:40s} {'n/a':>8s}   {r.error or 'no timed round'}")
            continue
        spread = f"{min(r.runs):.1f}-{max(r.runs):.1f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(
            f"{r.name:40s} {r.median:8.1f} {spread:>13s} {r.median * cfg.length:9.0f} {ratio:>6s}"
        )
    lines.append(
        f"median over {rounds} interleaved rounds of one epoch ({cfg.clips} clips); "
        f"frames/s = clips/s x T ({cfg.length}); 'vs c' = median / median of the DataLoader"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.video.throughput")
    defaults = dataclasses.asdict(ClipBench()) | BENCH
    for name, value in defaults.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=value)
    p.add_argument("--quick", action="store_true", help="smoke run: 16 clips, T=8, 2 rounds")
    p.add_argument("--out", default="runs/bench/video/throughput.json")
    args = p.parse_args(argv)
    cfg = ClipBench(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ClipBench)})
    rounds = args.rounds
    if args.quick:
        cfg = dataclasses.replace(cfg, clips=16, frames=16, length=8)
        rounds = 2
    bench = BenchConfig(
        images=cfg.clips, batch_size=args.batch_size, size=args.size, rounds=rounds, warmup=1,
        threads=args.threads, device="cpu", stages=("end-to-end",), seed=args.seed,
    )  # fmt: skip
    torch.set_num_threads(bench.threads)
    check_one_draw_per_clip(bench.size)
    print("torchvision v2 on a tv_tensors.Video: one draw per clip (checked)")
    t0 = time.perf_counter()
    frames, videos = make_clips(cfg, bench.seed)
    print(f"clips in {frames.parent} ({time.perf_counter() - t0:.1f} s)")
    rows = measure(specs(frames, videos, cfg, bench), bench)
    compute_ratios(rows)
    print(table(rows, cfg, rounds))
    results = [
        r.to_dict() | {"frames_per_s": None if r.median is None else r.median * cfg.length}
        for r in rows
    ]
    settings = dataclasses.asdict(cfg) | {k: getattr(bench, k) for k in BENCH}
    settings |= {"quick": args.quick, "load_average": os.getloadavg()}
    write_record(
        args.out, settings,
        torch.device("cpu"), rows=results,
        median_clips_per_s={r.name: r.median for r in rows},
        spread={r.name: statistics.pstdev(r.runs) if len(r.runs) > 1 else None for r in rows},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
