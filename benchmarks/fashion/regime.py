"""The Fashion-MNIST regime every method table runs in, and its own table: no augmentation
against the papers' baseline augmentation and the standard augmentations.

The regime (found by the search in ``benchmarks/fashion/NOTES.md``): 500 training images (a
seeded, class-balanced subset, 50 per class; the subset follows the run's seed), the official
10,000 test images for validation, 28 px, the small CNN, AdamW 1e-3 with a per-epoch cosine
to 0, batch 64, 100 epochs. The baseline augmentation of KeepAugment, MetaAugment and AWS
(CIFAR's: random horizontal flip and a pad-and-random-crop, here by up to 2 px) is
:data:`BASE`; ``none`` turns both off.

From the repository root (``apt-get install dataset-fashion-mnist`` first):

    python -m benchmarks.fashion.regime            # writes benchmarks/fashion/results/regime.json

Seeds: :data:`SEEDS` (held out: no development run used them; the search used seeds 0-2).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from benchmarks import accuracy_table

#: the held-out seeds of every Fashion-MNIST table (written before the first table ran)
SEEDS = (100, 101, 102)
#: more seeds where a difference is within two standard deviations
EXTRA_SEEDS = (103, 104)
#: the regime's data, model, optimizer and length
EPOCHS = 100
REGIME = "--data fashion-mnist --train-size 500 --device cpu --eval-every 50"
#: the papers' baseline augmentation: flip + pad-and-random-crop
BASE = "--crop pad --pad 2"
#: no augmentation at all
NONE = "--crop pad --pad 0 --no-flip --policy none"

CONFIGS = {
    "none": NONE,
    "baseline (flip+crop)": f"{BASE} --policy none",
    "baseline+RandAugment-m5-n1": f"{BASE} --policy ra-m5-n1",
    "baseline+RandAugment-m9-n2": f"{BASE} --policy ra-m9-n2",
    "baseline+Cutout-14px": f"{BASE} --policy none --method cutout --keep-box 0.5",
    "baseline+Cutout-8px": f"{BASE} --policy none --method cutout --keep-box 0.3",
}


def run(
    name: str,
    configs: dict[str, str],
    out: str,
    *,
    seeds: Sequence[int] = SEEDS,
    jobs: int = 2,
    extra: str = "",
    regime: str = REGIME,
    epochs: int = EPOCHS,
    multi_label: bool = False,
    workdir: str = "runs/fashion",
) -> int:
    """One table of ``configs`` (name -> flags) in the regime, over ``seeds``, written to
    ``out`` (a record of :mod:`benchmarks.accuracy_table`). ``regime``: the flags after
    every row's (default :data:`REGIME`; a table whose rows set ``--train-size`` themselves
    passes it without); ``epochs``, ``multi_label`` (mAP and mA) and the runs' ``workdir``
    for other data."""
    argv = ["--name", name, "--epochs", str(epochs), "--jobs", str(jobs), "--out", out]
    argv += ["--seeds", *map(str, seeds), "--extra", f"{regime} {extra}".strip()]
    argv += ["--workdir", f"{workdir}/{name}", *(["--multi-label"] if multi_label else [])]
    for label, flags in configs.items():
        argv += ["--config", f"{label}={flags}"]
    print("python -m benchmarks.accuracy_table " + shlex.join(argv), flush=True)
    return accuracy_table.main(argv)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="benchmarks/fashion/results/regime.json")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = p.parse_args(argv)
    return run("regime", CONFIGS, args.out, seeds=args.seeds, jobs=args.jobs)


if __name__ == "__main__":
    raise SystemExit(main())
