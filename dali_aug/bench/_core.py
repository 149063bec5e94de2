"""The measurement core of ``dali-aug bench``: settings, peers, interleaved timing, ratios,
the table and the JSON record. Library-free: the peers live in ``_e2e`` and
``_stage`` and import their libraries lazily.

Timing follows these rules (also in ``docs/benchmarking.md``): every peer is built (``Peer.setup``)
outside the timed region, warmed up, then timed in interleaved rounds (round r runs every peer
once before round r + 1 starts), each call ending with a device synchronisation; a row reports
the median images/s over the rounds with min-max.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import torch

__all__ = [
    "SCHEMA",
    "BenchConfig",
    "Peer",
    "PeerSpec",
    "Row",
    "Unavailable",
    "compute_ratios",
    "describe_error",
    "format_table",
    "machine_info",
    "measure",
    "payload",
    "sync",
    "versions",
]

SCHEMA = "dali-aug-bench/1"
#: a *resolved* device (``dali-aug bench`` resolves ``auto`` first, see ``_run``), so not the
#: ``device`` setting :data:`dali_aug._dist.Device`, which also takes ``auto``
Device = Literal["cpu", "cuda"]
Stage = Literal["end-to-end", "augment"]


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark run (copy with ``dataclasses.replace``).

    Attributes:
        images: JPEGs in the generated folder (end-to-end epoch size).
        batch_size: end-to-end batch size.
        stage_batch: batch size of the augmentation stage (resident on the device).
        size: output side (square) of both stages.
        rounds: timed rounds per peer (interleaved), after ``warmup`` untimed calls.
        warmup: untimed calls per peer before the first round.
        stage_iters: at least this many policy calls per augmentation-stage measurement...
        stage_min_s: ...and at least this many seconds (libraries that draw one op per batch
            call vary from call to call; many calls average the draw out).
        threads: CPU threads of every peer (DALI ``num_threads``, DataLoader ``num_workers``,
            ``torch.set_num_threads``).
        device: where the output tensors land (``cuda``: DALI mixed decode and GPU ops).
        stages: which stages to run.
        seed: seed of the data, orders and policies.
        data: an existing ImageFolder of JPEGs to use instead of generating one.
    """

    images: int = 2048
    batch_size: int = 64
    stage_batch: int = 256
    size: int = 224
    rounds: int = 5
    warmup: int = 1
    stage_iters: int = 1
    stage_min_s: float = 1.0
    threads: int = max(1, os.cpu_count() or 1)
    device: Device = "cpu"
    stages: tuple[Stage, ...] = ("end-to-end", "augment")
    seed: int = 0
    data: Path | None = None

    def __post_init__(self) -> None:
        for name in ("images", "batch_size", "stage_batch", "rounds", "stage_iters", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchConfig.{name}={getattr(self, name)} must be >= 1")
        if self.stage_min_s < 0:
            raise ValueError(f"BenchConfig.stage_min_s={self.stage_min_s} must be >= 0")
        if self.warmup < 0:
            raise ValueError(f"BenchConfig.warmup={self.warmup} must be >= 0")
        if self.size < 32:
            raise ValueError(f"BenchConfig.size={self.size} must be >= 32 pixels")
        if self.device not in get_args(Device):
            raise ValueError(f"BenchConfig.device={self.device!r}; use 'cpu' or 'cuda'")
        bad = set(self.stages) - {"end-to-end", "augment"}
        if bad or not self.stages:
            raise ValueError(f"BenchConfig.stages={self.stages}; use 'end-to-end' and/or 'augment'")


class Unavailable(RuntimeError):
    """A peer that cannot run here; the message is the reason shown in the table."""


class Peer(Protocol):
    """One timed contender. ``setup`` builds it (untimed); ``step`` does one unit of work
    (an epoch end to end; policy calls for at least ``stage_iters`` calls and ``stage_min_s``
    seconds in the augmentation stage) and returns the number of images, with the device
    synchronised; ``close`` releases workers."""

    def setup(self) -> None: ...

    def step(self) -> int: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class PeerSpec:
    """A peer to build: ``factory`` imports its library and returns the :class:`Peer`
    (raising :class:`Unavailable` or ``ImportError`` with the reason when it cannot run)."""

    stage: Stage
    policy: str
    name: str
    factory: Callable[[], Peer]
    ours: bool = False
    note: str = ""


@dataclasses.dataclass
class Row:
    """The result of one peer: images/s of every timed round, or the reason it did not run."""

    stage: Stage
    policy: str
    name: str
    ours: bool = False
    note: str = ""
    runs: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None
    setup_s: float | None = None
    ratio: float | None = None
    #: per round: CPU seconds of this process and its children (DataLoader workers) per
    #: wall second, and CPU milliseconds per image (None where /proc is not readable)
    cores: list[float] = dataclasses.field(default_factory=list)
    cpu_ms: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs and self.error is None else None

    @property
    def median_cores(self) -> float | None:
        return statistics.median(self.cores) if self.cores and self.error is None else None

    @property
    def median_cpu_ms(self) -> float | None:
        return statistics.median(self.cpu_ms) if self.cpu_ms and self.error is None else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["median"] = self.median
        d["min"] = min(self.runs) if self.runs else None
        d["max"] = max(self.runs) if self.runs else None
        d["median_cores"] = self.median_cores
        d["median_cpu_ms"] = self.median_cpu_ms
        return d


def tree_cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds of process ``pid`` (default: this one) and of all its living
    descendants, from ``/proc`` (Linux); None where ``/proc`` cannot be read. (A DataLoader's
    workers are living children: ``resource.RUSAGE_CHILDREN`` counts only ended ones.)"""
    root = os.getpid() if pid is None else pid
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue  # ended meanwhile
        fields = raw[raw.rfind(b")") + 2 :].split()
        stats[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for p, (parent, _) in stats.items():
        children.setdefault(parent, []).append(p)
    total, todo = 0.0, [root]
    while todo:
        p = todo.pop()
        total += stats[p][1]
        todo += children.get(p, [])
    return total


def describe_error(err: BaseException) -> str:
    """One line saying why a peer could not run (for the table and the JSON)."""
    if isinstance(err, Unavailable):
        return str(err)
    text = " ".join(str(err).split()) or "(no message)"
    if len(text) > 160:
        text = text[:157] + "..."
    if isinstance(err, ImportError):
        return f"not importable: {text}"
    return f"{type(err).__name__}: {text}"


def sync(device: Device) -> None:
    """Waits for the device's queued work (a no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def measure(
    specs: Sequence[PeerSpec],
    config: BenchConfig,
    *,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Row]:
    """Builds every peer, warms it up and times it in interleaved rounds.

    A peer whose build, warm-up or any round fails keeps its row, with the reason in
    ``Row.error`` (its earlier rounds stay in ``Row.runs`` for the record).

    Returns:
        one :class:`Row` per spec, in the order given.
    """
    rows = [Row(s.stage, s.policy, s.name, s.ours, s.note) for s in specs]
    peers: list[Peer | None] = []
    for spec, row in zip(specs, rows, strict=True):
        t0 = clock()
        try:
            peer = spec.factory()
            peer.setup()
            for _ in range(config.warmup):
                peer.step()
            sync(config.device)
        except Exception as err:  # any failure of a peer is reported, never fatal
            row.error = describe_error(err)
            log(f"  {spec.stage} {spec.policy} {spec.name}: cannot run ({row.error})")
            peers.append(None)
            continue
        row.setup_s = clock() - t0
        log(f"  {spec.stage} {spec.policy} {spec.name}: built + warm-up {row.setup_s:.1f} s")
        peers.append(peer)
    for r in range(config.rounds):
        for k, (timed, row) in enumerate(zip(peers, rows, strict=True)):
            if timed is None:
                continue
            try:
                c0 = tree_cpu_seconds()
                t0 = clock()
                n = timed.step()
                sync(config.device)
                seconds = clock() - t0
                c1 = tree_cpu_seconds()
            except Exception as err:
                row.error = f"failed in round {r + 1}: {describe_error(err)}"
                _close(timed)
                peers[k] = None
                continue
            row.runs.append(n / seconds if seconds > 0 else float("inf"))
            if c0 is not None and c1 is not None and seconds > 0 and n > 0:
                row.cores.append((c1 - c0) / seconds)
                row.cpu_ms.append(1000.0 * (c1 - c0) / n)
        log(f"  round {r + 1}/{config.rounds} done")
    for left in peers:
        if left is not None:
            _close(left)
    return rows


def _close(peer: Peer) -> None:
    try:
        peer.close()
    except Exception:  # closing must not hide the results
        pass


def compute_ratios(rows: Sequence[Row]) -> dict[tuple[str, str], str | None]:
    """Sets ``Row.ratio`` = median / median of the fastest *peer* (a row with ``ours=False``)
    of the same stage and policy, measured in the same run.

    Returns:
        the name of the fastest peer per (stage, policy), None where no peer ran.
    """
    best: dict[tuple[str, str], Row] = {}
    for row in rows:
        key = (row.stage, row.policy)
        med = row.median
        if row.ours or med is None:
            continue
        if key not in best or med > (best[key].median or 0.0):
            best[key] = row
    for row in rows:
        ref = best.get((row.stage, row.policy))
        med = row.median
        row.ratio = (
            med / ref.median if (ref is not None and med is not None and ref.median) else None
        )
    return {
        key: (best[key].name if key in best else None)
        for key in {(r.stage, r.policy) for r in rows}
    }


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def format_table(rows: Sequence[Row], *, width: int = 44) -> str:
    """A plain-text table: one block per (stage, policy), ratios against the fastest peer."""
    head = (
        f"{'stage / policy / peer':{width}s} {'img/s':>9s} {'min-max':>15s} {'vs best':>8s}"
        f" {'cores':>5s} {'cpu ms/img':>10s}"
    )
    lines = [head, "-" * len(head)]
    seen: list[tuple[str, str]] = []
    for row in rows:
        if (row.stage, row.policy) not in seen:
            seen.append((row.stage, row.policy))
    for stage, policy in seen:
        lines.append(f"{stage} | {policy}")
        for row in (r for r in rows if (r.stage, r.policy) == (stage, policy)):
            name = ("* " if row.ours else "  ") + row.name
            if len(name) > width:
                name = name[: width - 3] + "..."
            if row.error is not None or not row.runs:
                reason = row.error or "no timed round"
                lines.append(f"{name:{width}s} {'n/a':>9s}   {reason}")
                continue
            spread = f"{_fmt_rate(min(row.runs))}-{_fmt_rate(max(row.runs))}"
            ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
            note = f"   {row.note}" if row.note else ""
            cores = "-" if row.median_cores is None else f"{row.median_cores:.2f}"
            cpu = "-" if row.median_cpu_ms is None else f"{row.median_cpu_ms:.2f}"
            lines.append(
                f"{name:{width}s} {_fmt_rate(row.median):>9s} {spread:>15s} {ratio:>8s}"
                f" {cores:>5s} {cpu:>10s}{note}"
            )
    lines.append(
        "* = dali-aug; 'vs best' = median / median of the fastest peer of the block (same run);"
        " cores = CPU seconds of the process and its workers per wall second; cpu ms/img ="
        " those CPU seconds per image (medians over the rounds)"
    )
    return "\n".join(lines)


def machine_info(device: Device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "device": device,
    }
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    """Versions of the libraries involved ("not importable: ..." for the missing ones)."""
    out: dict[str, str] = {}
    for name in (
        "dali_aug",
        "torch",
        "torchvision",
        "timm",
        "kornia",
        "nvidia.dali",
        "numpy",
        "PIL",
    ):
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception as err:
            out[name] = describe_error(err)
    return out


def payload(
    config: BenchConfig, rows: Sequence[Row], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON record: machine, versions, settings, every run of every row."""
    settings = dataclasses.asdict(config)
    settings["data"] = None if config.data is None else str(config.data)
    settings["stages"] = list(config.stages)
    return {
        "schema": SCHEMA,
        "machine": machine_info(config.device),
        "versions": versions(),
        "settings": settings | (extra or {}),
        "rows": [r.to_dict() for r in rows],
    }
