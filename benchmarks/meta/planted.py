"""A planted label-destroying transformation for checking MetaAugment's mechanism
("MetaAugment: Sample-Aware Data Augmentation Policy Learning": the policy network should give
harmful augmented samples a low loss weight): small images whose class is (which half holds
the object) x (its shape), so that TranslateX at a high magnitude moves the object across the
middle or off the image and destroys the label, while colour ops and small shifts keep it.

From the repository root, ``python -m benchmarks.meta.planted --seed 11 --steps 300`` trains
the small model with MetaAugment (and the uniform control) and prints the mechanism numbers:
the mean weight of pairs with TranslateX against the others, the sampler's probability of
those pairs against uniform and the floor, and the final policy's weight of TranslateX by
magnitude; ``--out FILE.json`` also writes them as a record (with the commit; a curated record
goes to ``benchmarks/meta/results/``, see ``benchmarks/RESULTS.md``).
``python -m benchmarks.meta.planted --write-data DIR`` writes the same data as an
ImageNet-layout folder (``DIR/train``, ``DIR/val``, one folder per class) for
``dali-aug train --data DIR --no-flip`` (a flip changes the label).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._record import provenance
from dali_aug.batch import Batch
from dali_aug.methods.meta._space import FUNCTIONS, draw_transforms
from dali_aug.methods.meta.method import MetaAugmentMethod, MetaConfig, Mode
from dali_aug.models import build_model
from dali_aug.ops import apply_params, identity_params
from dali_aug.train import Trainer
from dali_aug.viz import normalize

__all__ = ["CLASSES", "DESTROYER", "half_shapes", "run", "write_folder"]

#: the planted destroying function
DESTROYER = "TranslateX"
#: class names by label (label = 2 * side + shape)
CLASSES = ("left_square", "left_plus", "right_square", "right_plus")


def half_shapes(
    n: int, *, size: int = 32, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 [n, 3, size, size] images, int64 [n] labels): label = 2 * side + shape, side 0
    = the object's centre in the left half, 1 = right; shape 0 = a filled square, 1 = a
    plus. The centre is within size/8 of the middle of its half, on a dark noise background."""
    g = generator
    labels = torch.randint(0, 4, (n,), generator=g)
    side, shape = labels // 2, labels % 2
    r = max(2, size // 10)
    jitter = size // 8
    cx = size // 4 + side * (size // 2) + torch.randint(-jitter, jitter + 1, (n,), generator=g)
    cy = torch.randint(r + 1, size - r - 1, (n,), generator=g)
    yy = torch.arange(size).view(1, size, 1)
    xx = torch.arange(size).view(1, 1, size)
    dy = (yy - cy.view(n, 1, 1)).abs()
    dx = (xx - cx.view(n, 1, 1)).abs()
    square = (dy <= r) & (dx <= r)
    plus = ((dy <= r) & (dx <= r // 2)) | ((dx <= r) & (dy <= r // 2))
    mask = torch.where(shape.view(n, 1, 1) == 0, square, plus)
    colour = torch.randint(150, 256, (n, 3, 1, 1), generator=g)
    background = torch.randint(0, 70, (n, 3, size, size), generator=g)
    img = torch.where(mask.unsqueeze(1), colour, background)
    return img.to(torch.uint8), labels


def write_folder(
    root: str | Path, *, train: int = 2000, val: int = 500, size: int = 32, seed: int = 0
) -> Path:
    """Writes ``train`` and ``val`` images of :func:`half_shapes` as PNG files under
    ``root/train/<class>/`` and ``root/val/<class>/`` (ImageNet layout); returns ``root``."""
    from PIL import Image

    if train < 4 or val < 4:
        raise ValueError(f"write_folder: train={train}, val={val}; give at least 4 images each")
    g = torch.Generator().manual_seed(seed)
    root = Path(root)
    for split, n in (("train", train), ("val", val)):
        images, labels = half_shapes(n, size=size, generator=g)
        for name in CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (img, y) in enumerate(zip(images, labels.tolist(), strict=True)):
            path = root / split / CLASSES[y] / f"{i:05d}.png"
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
    return root


def _batch(clean: torch.Tensor, labels: torch.Tensor) -> Batch:
    n = len(labels)
    return Batch(normalize(clean), labels, torch.arange(n), params=identity_params(n), clean=clean)


@torch.no_grad()
def _probe_magnitudes(
    method: MetaAugmentMethod, trainer: Trainer, clean: torch.Tensor, g: torch.Generator
) -> list[float]:
    """The final policy's mean raw weight of (DESTROYER at m, Identity) for m = 0.5 ... 9.5."""
    j, ident = FUNCTIONS.index(DESTROYER), FUNCTIONS.index("Identity")
    n = clean.shape[0]
    out = []
    trainer.model.eval()
    for m in [b + 0.5 for b in range(10)]:
        first, second = torch.full((n,), j), torch.full((n,), ident)
        t = draw_transforms(first, second, generator=g)
        levels = torch.where(t.params.levels[:, :1] < 0, -m, m)
        params = dataclasses.replace(
            t.params, levels=torch.cat([levels, t.params.levels[:, 1:]], 1)
        )
        t = dataclasses.replace(t, m1=torch.full((n,), m), params=params)
        x = normalize(apply_params(clean, params))
        feats = trainer.forward(x).features
        assert feats is not None
        out.append(float(method.policy(feats.float(), t.embedding()).mean()))
    trainer.model.train()
    return out


def run(
    *, seed: int, steps: int, mode: Mode, batch_size: int = 32, size: int = 32, **config: Any
) -> dict[str, Any]:
    """Trains the small model on the planted data; returns the mechanism numbers."""
    g = torch.Generator().manual_seed(seed)
    train_x, train_y = half_shapes(1024, size=size, generator=g)
    val_x, val_y = half_shapes(128, size=size, generator=g)
    test_x, test_y = half_shapes(512, size=size, generator=g)
    torch.manual_seed(seed)
    model = build_model("small", 4)
    cfg = MetaConfig(mode=mode, **config)
    method = MetaAugmentMethod(model, cfg, seed=seed)
    val = [
        Batch(normalize(val_x[i : i + batch_size]), val_y[i : i + batch_size], torch.arange(0))
        for i in range(0, len(val_y), batch_size)
    ]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    trainer = Trainer(model, opt, methods=[method], meta_val=val)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(train_y), (batch_size,), generator=g)
        trainer.step(_batch(train_x[idx], train_y[idx]))
        del step
    seconds = time.perf_counter() - t0
    acc = trainer.evaluate([_batch(test_x, test_y)])["val_acc"]
    j = FUNCTIONS.index(DESTROYER)
    k = len(FUNCTIONS)
    has = torch.zeros(k, k, dtype=torch.bool)
    has[j, :], has[:, j] = True, True
    result: dict[str, Any] = {
        "seed": seed,
        "steps": steps,
        "mode": mode,
        "config": dataclasses.asdict(cfg),
        "seconds": seconds,
        "test_acc": acc,
    }
    if mode != "uniform":
        window = method.sampler.mean_outputs()
        total = method.pair_table()["mean_weight"]
        probs = method.sampler.probs
        stats = method.magnitude_stats[j]
        result.update(
            {
                "alpha": method.alpha,
                "window_mean_weight_destroyer_pairs": float(window[has].nanmean()),
                "window_mean_weight_other_pairs": float(window[~has].nanmean()),
                "run_mean_weight_destroyer_pairs": float(total[has].nanmean()),
                "run_mean_weight_other_pairs": float(total[~has].nanmean()),
                "prob_destroyer_pairs_mean": float(probs[has].mean()),
                "prob_destroyer_pairs_min": float(probs[has].min()),
                "prob_other_pairs_mean": float(probs[~has].mean()),
                "uniform": 1 / k**2,
                "floor": method.sampler.floor,
                "run_weight_by_magnitude_bin": (stats[:, 0] / stats[:, 1]).tolist(),
                "probe_weight_by_magnitude": _probe_magnitudes(method, trainer, test_x[:128], g),
            }
        )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--modes", nargs="+", default=["exact", "uniform"])
    p.add_argument("--meta-lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--history", type=int, default=100)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument(
        "--write-data", default=None, metavar="DIR", help="only write the data as a folder"
    )
    p.add_argument("--train", type=int, default=2000, help="with --write-data: train images")
    p.add_argument("--val", type=int, default=500, help="with --write-data: val images")
    p.add_argument("--size", type=int, default=32, help="with --write-data: image side")
    args = p.parse_args(argv)
    if args.write_data is not None:
        root = write_folder(
            args.write_data, train=args.train, val=args.val, size=args.size, seed=args.seed
        )
        print(f"wrote {root}")
        return 0
    torch.set_num_threads(1)  # a shared CPU: one thread wastes no time spinning
    rows = []
    for mode in args.modes:
        row = run(
            seed=args.seed,
            steps=args.steps,
            mode=mode,
            meta_lr=args.meta_lr,
            every=args.every,
            history=args.history,
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {"provenance": provenance("cpu"), "settings": vars(args), "rows": rows}
        Path(args.out).write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
