"""``dali-aug bench``: throughput of dali-aug against its peers (DALI ``auto_aug``, Kornia,
torchvision v2, timm), end to end (JPEG folder -> normalised device tensors) and for the
augmentation stage alone. The rules (same images, sizes, policy strength, threads, output;
warm-up excluded; interleaved rounds) are in ``docs/benchmarking.md``.

The peers' libraries are imported lazily: a peer that cannot run here keeps its row, with the
reason, in the table and the JSON.

Example:
    >>> from dali_aug.bench import QUICK, BenchConfig, run
    >>> rows, record = run(BenchConfig(**QUICK, device="cpu", threads=2))
"""

from __future__ import annotations

from dali_aug.bench._core import (
    SCHEMA,
    BenchConfig,
    Peer,
    PeerSpec,
    Row,
    Unavailable,
    compute_ratios,
    describe_error,
    format_table,
    measure,
    payload,
)
from dali_aug.bench._run import QUICK, add_arguments, config_from_args, main, run, run_from_args

__all__ = [
    "QUICK",
    "SCHEMA",
    "BenchConfig",
    "Peer",
    "PeerSpec",
    "Row",
    "Unavailable",
    "add_arguments",
    "compute_ratios",
    "config_from_args",
    "describe_error",
    "format_table",
    "main",
    "measure",
    "payload",
    "run",
    "run_from_args",
]
