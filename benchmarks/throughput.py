"""Throughput of dali-aug vs DALI auto_aug, Kornia, torchvision v2 and timm (see README.md).

A thin wrapper of ``dali_aug.bench`` (the same flags as ``dali-aug bench``):

    python benchmarks/throughput.py --quick          # smoke run, < 3 min on 2 cores
    python benchmarks/throughput.py                  # the full run
"""

from __future__ import annotations

from dali_aug.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
