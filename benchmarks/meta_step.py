"""Training-step time of MetaAugment (``exact`` and ``fast``) against the plain step.

One training step (``Trainer.step``: methods, forward, loss, backward, optimizer step) on a
resident batch, for: the plain step (no method), ``uniform`` (MetaAugment's pair sampler and
torch ops, equal weights: the augmentation alone), ``exact`` (Eq. 2-3 through the virtual
step), ``fast`` (dot products by a finite difference) and ``fast`` with a quarter-size
validation batch. The validation batch has the training batch's size. Peers run in
interleaved rounds in one process; the headline is each step's median time as a ratio to the
plain step's in the same run, in wall time and in the process's CPU time (the fairer number
on a shared machine with ``--threads 1``). Also: the cosine between the fast and exact
theta-gradients on the same batches (after a few real steps, so fast mode has a previous gradient).

    python benchmarks/meta_step.py                                   # CPU, small model, 64 px
    python benchmarks/meta_step.py --model resnet18 --batch-size 32  # CPU, ResNet-18, 64 px

Writes ``benchmarks/results/meta_step_<model>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from _record import write_record

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
) -> list[float]:
    """cos(theta-gradient fast, exact) on ``args.cosine_batches`` fresh augmented batches."""
    torch.manual_seed(0)
    model = build_model(args.model, args.classes).to(device)
    method = MetaAugmentMethod(model, MetaConfig(mode="fast"), seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = Trainer(model, opt, methods=[method], meta_val=[val])
    for _ in range(3):
        trainer.step(batch)
    out = []
    for i in range(args.cosine_batches):
        step = Step(trainer, trainer.global_step, 0)
        aug = method.augment(step, batch)
        fwd = trainer.forward(aug.images)
        per_sample = trainer.losses(fwd.logits.float(), aug.labels)
        exact, _ = method.meta_gradients(step, aug, fwd, per_sample, val=val, mode="exact")
        fast, _ = method.meta_gradients(step, aug, fwd, per_sample, val=val, mode="fast")
        a = torch.cat([g.flatten() for g in exact[:-1]])
        b = torch.cat([g.flatten() for g in fast[:-1]])
        out.append(float(F.cosine_similarity(a, b, dim=0)))
        trainer.step(batch)
        del i
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

    peers = {
        "plain": trainer(None),
        "uniform pairs": trainer(MetaConfig(mode="uniform")),
        "exact": trainer(MetaConfig(mode="exact")),
        "fast": trainer(MetaConfig(mode="fast")),
        "fast, val n/4": trainer(MetaConfig(mode="fast", val_samples=max(1, n // 4))),
    }
    for t in peers.values():  # warm-up, outside the timed region
        for _ in range(2):
            t.step(batch)
    _sync(device)
    runs: dict[str, list[float]] = {name: [] for name in peers}
    cpu: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(args.rounds):
        for name, t in peers.items():
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
    print(f"{'step':<16}{'wall ms (median)':>18}{'min-max':>18}{'x plain':>9}{'CPU ms':>9}{'x':>6}")
    for name, ms in runs.items():
        med, med_cpu = statistics.median(ms), statistics.median(cpu[name])
        rows.append(
            {
                "peer": name,
                "ms_median": med,
                "ms_runs": ms,
                "ratio_to_plain": med / base,
                "cpu_ms_median": med_cpu,
                "cpu_ratio_to_plain": med_cpu / base_cpu,
            }
        )
        spread = f"{min(ms):.1f}-{max(ms):.1f}"
        print(
            f"{name:<16}{med:>18.1f}{spread:>18}{med / base:>9.2f}{med_cpu:>9.0f}"
            f"{med_cpu / base_cpu:>6.2f}"
        )
    cos = _cosines(args, batch, val, device)
    print(f"cos(theta-grad fast, exact): {', '.join(f'{c:.3f}' for c in cos)}")
    out = args.out or f"benchmarks/results/meta_step_{args.model}.json"
    write_record(out, vars(args), device, rows=rows, cosine_fast_vs_exact=cos)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
