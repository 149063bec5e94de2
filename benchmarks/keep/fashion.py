"""KeepAugment against its baselines on Fashion-MNIST (paper Table 2, qualitatively), in the
regime of :mod:`benchmarks.fashion.regime` (every row on the baseline augmentation: flip +
pad-and-random-crop).

Rows: the baseline alone; Cutout and KeepCutout (saliency ``full`` and ``early``) at two
box sides, 8 px and 14 px (KeepCutout's advantage should grow with the box: a bigger box
removes the object's salient part more often); RandAugment against Keep + RandAugment (the
``paste`` mode: a salient box of the clean crop pasted back after the policy; ``full``
saliency). ``lowres`` saliency (the input at half size) cannot run at 28 px with the small
CNN, which needs 16 px or more: ``full`` is the exact saliency ``lowres`` approximates.

From the repository root:

    python -m benchmarks.keep.fashion      # writes benchmarks/keep/results/fashion.json

Seeds: :data:`benchmarks.fashion.regime.SEEDS` (held out), written before the first run.
"""

from __future__ import annotations

import argparse

from benchmarks.fashion.regime import BASE, SEEDS, run

#: the RandAugment of the paste rows (the regime table's stronger of the two; dali-aug's own
#: RandAugment, every op applied: the spelling rand-m5-n1 meant it when the table ran)
RAND = "ra-m5-n1"

CONFIGS = {
    "baseline": f"{BASE} --policy none",
    "Cutout-8px": f"{BASE} --policy none --method cutout --keep-box 0.3",
    "KeepCutout-full-8px": f"{BASE} --policy none --method keep --keep-mode cutout "
    "--saliency full --keep-box 0.3",
    "KeepCutout-early-8px": f"{BASE} --policy none --method keep --keep-mode cutout "
    "--saliency early --keep-box 0.3",
    "Cutout-14px": f"{BASE} --policy none --method cutout --keep-box 0.5",
    "KeepCutout-full-14px": f"{BASE} --policy none --method keep --keep-mode cutout "
    "--saliency full --keep-box 0.5",
    "KeepCutout-early-14px": f"{BASE} --policy none --method keep --keep-mode cutout "
    "--saliency early --keep-box 0.5",
    f"RandAugment-{RAND[3:]}": f"{BASE} --policy {RAND}",
    f"Keep+RandAugment-{RAND[3:]}": f"{BASE} --policy {RAND} --method keep --keep-mode paste "
    "--saliency full",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="benchmarks/keep/results/fashion.json")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--only", nargs="+", default=None, help="a subset of the rows, by name")
    args = p.parse_args(argv)
    configs = {k: v for k, v in CONFIGS.items() if args.only is None or k in args.only}
    return run("keep", configs, args.out, seeds=args.seeds, jobs=args.jobs)


if __name__ == "__main__":
    raise SystemExit(main())
