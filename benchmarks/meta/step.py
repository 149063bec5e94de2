"""Training-step time of MetaAugment (``exact`` and ``fast``) against the plain step.

One training step (``Trainer.step``: methods, forward, loss, backward, optimizer step) on a
resident batch, for: the plain step (no method), ``uniform`` (MetaAugment's pair sampler and
torch ops, equal weights: the augmentation alone), and the meta step's forms, before (the
previous forms: ``exact unrolled`` differentiates through the virtual step; ``fast
prev+central`` takes the virtual step with the previous gradient and a central difference)
and after (``exact``: the identity with a JVP; ``fast``: the meta step after the real step,
from its gradient, one-sided difference; ``fast current``: an extra backward for this
batch's gradient; ``fast prev+fwd``: the previous gradient). The "before" peers and
those marked ``val n`` use the whole validation batch (the previous default), the others a
quarter of it (the new default ``val_share=0.25``).
Peers run in interleaved rounds in one process, in an order that reverses every round; the
headline is each step's median time as a ratio to the plain step's in the same run, in wall
time and in the process's CPU time (the fairer number on a shared machine with
``--threads 1``), and the median over rounds of the CPU-time ratio within each round (robust
to the machine's drift between rounds). Also: the cosine between each fast variant's
theta-gradient and exact's on the same batches (after a few real steps, so a previous
gradient exists).

From the repository root:

    python -m benchmarks.meta.step --threads 1                        # CPU, small model, 64 px
    python -m benchmarks.meta.step --model resnet18 --batch-size 32   # CPU, ResNet-18, 64 px

Writes a record (``benchmarks/_record.py``: settings, machine, commit, every round) to
``--out``, by default ``runs/bench/meta/step_<model>.json`` (scratch, not tracked); a curated
record goes to ``benchmarks/meta/results/`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks._record import write_record
from dali_aug.batch import Batch
from dali_aug.methods.meta import MetaAugmentMethod, MetaConfig
from dali_aug.models import build_model
from dali_aug.ops import identity_params
from dali_aug.train import Method, Step, Trainer
from dali_aug.viz import normalize


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cosines(
    args: argparse.Namespace, batch: Batch, val: Batch, device: torch.device
) -> dict[str, list[float]]:
    """cos(theta-gradient of each fast variant, exact) on ``args.cosine_batches`` fresh
    augmented batches (the trainer runs fast mode with the previous gradient kept)."""
    torch.manual_seed(0)
    model = build_model(args.model, args.classes).to(device)
    method = MetaAugmentMethod(model, MetaConfig(mode="fast", fast_virtual="previous"), seed=0)
    base = method.config
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = Trainer(model, opt, methods=[method], meta_val=[val])
    for _ in range(3):
        trainer.step(batch)
    variants = {  # real_step's theta-gradient is current's (test_meta.py), taken after the step
        "fast (current, forward)": {"fast_virtual": "current", "fd": "forward"},
        "fast (current, central)": {"fast_virtual": "current", "fd": "central"},
        "fast (previous, forward)": {"fast_virtual": "previous", "fd": "forward"},
        "exact unrolled": {"exact_form": "unrolled"},
    }
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.cosine_batches):
        step = Step(trainer, trainer.global_step, 0)
        aug = method.augment(step, batch)
        fwd = trainer.forward(aug.images)
        per_sample = trainer.losses(fwd.logits.float(), aug.labels)
        method.config = dataclasses.replace(base, exact_form="jvp")
        exact, _ = method.meta_gradients(step, aug, fwd, per_sample, val=val, mode="exact")
        a = torch.cat([g.flatten() for g in exact[:-1]])
        for name, change in variants.items():
            method.config = dataclasses.replace(base, **change)  # type: ignore[arg-type]
            mode = "exact" if name.startswith("exact") else "fast"
            other, _ = method.meta_gradients(step, aug, fwd, per_sample, val=val, mode=mode)
            b = torch.cat([g.flatten() for g in other[:-1]])
            out[name].append(float(F.cosine_similarity(a, b, dim=0)))
        method.config = base
        trainer.step(batch)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="small", choices=["small", "resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per peer per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cosine-batches", type=int, default=4)
    p.add_argument("--out", default=None)
    p.add_argument(
        "--peers", nargs="+", default=None, help="time only these peers (plain is always timed)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n, s = args.batch_size, args.size
    clean = torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8).to(device)
    labels = torch.randint(0, args.classes, (n,), generator=g).to(device)
    batch = Batch(normalize(clean), labels, torch.arange(n), params=identity_params(n), clean=clean)
    val_clean = torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8).to(device)
    val = Batch(normalize(val_clean), labels.flip(0), torch.arange(n))

    def trainer(config: MetaConfig | None) -> Trainer:
        torch.manual_seed(0)
        model = build_model(args.model, args.classes).to(device)
        methods: list[Method] = [] if config is None else [MetaAugmentMethod(model, config)]
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return Trainer(model, opt, methods=methods, meta_val=[val])

    quarter = max(1, n // 4)
    peers = {
        "plain": trainer(None),
        "uniform pairs": trainer(MetaConfig(mode="uniform")),
        # before: the previous session's forms (same cost as then)
        "exact unrolled": trainer(MetaConfig(mode="exact", exact_form="unrolled", val_share=1.0)),
        "fast prev+central": trainer(
            MetaConfig(mode="fast", fast_virtual="previous", fd="central", val_share=1.0)
        ),
        # after
        "exact, val n": trainer(MetaConfig(mode="exact", val_share=1.0)),
        "exact": trainer(MetaConfig(mode="exact", val_samples=quarter)),
        "fast, val n": trainer(MetaConfig(mode="fast", val_share=1.0)),
        "fast": trainer(MetaConfig(mode="fast", val_samples=quarter)),
        "fast current": trainer(
            MetaConfig(mode="fast", fast_virtual="current", val_samples=quarter)
        ),
        "fast prev+fwd": trainer(
            MetaConfig(mode="fast", fast_virtual="previous", val_samples=quarter)
        ),
    }
    if args.peers is not None:
        unknown = set(args.peers) - set(peers)
        if unknown:
            p.error(f"--peers: unknown {sorted(unknown)}; choose from {list(peers)}")
        peers = {k: v for k, v in peers.items() if k == "plain" or k in args.peers}
    for t in peers.values():  # warm-up, outside the timed region
        for _ in range(2):
            t.step(batch)
    _sync(device)
    runs: dict[str, list[float]] = {name: [] for name in peers}
    cpu: dict[str, list[float]] = {name: [] for name in peers}
    for r in range(args.rounds):  # the order alternates between rounds
        for name, t in sorted(peers.items(), reverse=r % 2 == 1):
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                t.step(batch)
            _sync(device)
            runs[name].append((time.perf_counter() - start) / args.steps * 1e3)
            cpu[name].append((time.process_time() - start_cpu) / args.steps * 1e3)
    base = statistics.median(runs["plain"])
    base_cpu = statistics.median(cpu["plain"])
    rows: list[dict[str, Any]] = []
    print(f"{args.model}, {s} px, batch {n}, {device}, {args.threads} thread(s)")
    print(
        f"{'step':<20}{'wall ms (median)':>18}{'min-max':>16}{'x plain':>9}{'CPU ms':>8}{'x':>6}"
        f"{'x, per round (median, min-max)':>32}"
    )
    for name, ms in runs.items():
        med, med_cpu = statistics.median(ms), statistics.median(cpu[name])
        # the CPU-time ratio within each round (the peers of a round run minutes apart at
        # most, so a slow drift of the machine cancels)
        per_round = [c / b for c, b in zip(cpu[name], cpu["plain"], strict=True)]
        rows.append(
            {
                "peer": name,
                "ms_median": med,
                "ms_runs": ms,
                "ratio_to_plain": med / base,
                "cpu_ms_median": med_cpu,
                "cpu_ratio_to_plain": med_cpu / base_cpu,
                "cpu_ratio_per_round": per_round,
                "cpu_ratio_per_round_median": statistics.median(per_round),
            }
        )
        spread = f"{min(ms):.0f}-{max(ms):.0f}"
        rounds = f"{statistics.median(per_round):.2f} ({min(per_round):.2f}-{max(per_round):.2f})"
        print(
            f"{name:<20}{med:>18.1f}{spread:>16}{med / base:>9.2f}{med_cpu:>8.0f}"
            f"{med_cpu / base_cpu:>6.2f}{rounds:>32}"
        )
    cos = _cosines(args, batch, val, device)
    for name, values in cos.items():
        print(f"cos(theta-grad {name}, exact): {', '.join(f'{c:.4f}' for c in values)}")
    out = args.out or f"runs/bench/meta/step_{args.model}.json"
    write_record(out, vars(args), device, rows=rows, cosine_fast_vs_exact=cos)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
