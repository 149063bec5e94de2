"""Where KeepCutout's boxes fall on Fashion-MNIST: the object's share of the saliency and
of the cut boxes, for the models the Fashion-MNIST table trained.

For each run folder (a ``dali-aug train`` run of the table: its ``model.pt`` and
``args.yaml``), on that run's 500 training images (the subset of its seed) as the model sees
them at evaluation (28 px, normalised; no crop or flip):

- ``object area``: the share of pixels that belong to the garment (raw grey level above
  :data:`OBJECT_LEVEL`; the background of Fashion-MNIST is 0);
- ``saliency on object``: the share of the saliency (``full``, the method's map, batch norm
  in eval mode) on those pixels; above the area share, the saliency points at the garment;
- ``object cut, Cutout``: the mean share of the garment's pixels inside a Cutout box, exact
  over all the box positions Cutout draws from (uniform);
- ``object cut, KeepCutout``: the same for KeepCutout's boxes (tau 0.6), exact over the
  positions it draws from (uniform among those whose saliency sum is below the image's
  tau-quantile), with the run model's own saliency (``full``, the run's ``--saliency-value``);
- ``object cut, least``: the position that cuts the least of the garment (the bound any
  box choice has).

From the repository root, after ``python -m benchmarks.keep.fashion --attempt 2``:

    python -m benchmarks.keep.diagnose --runs runs/fashion/keep runs/fashion/keep-a2 \\
        --out benchmarks/keep/results/fashion_box_diagnosis.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import yaml
from dali_aug.kernels.region_select import region_scores, score_threshold

from benchmarks._record import provenance
from dali_aug.datasets import fashion_mnist_source
from dali_aug.methods.keep._augment import box_size
from dali_aug.methods.keep._saliency import saliency
from dali_aug.models import build_model
from dali_aug.viz import normalize

#: a pixel belongs to the garment above this raw grey level (of 255)
OBJECT_LEVEL = 25
TAU = 0.6


def _args(run: Path) -> dict[str, Any]:
    """The run's resolved flags (its ``args.yaml``, written by ``dali-aug train``)."""
    return dict(yaml.safe_load((run / "args.yaml").read_text(encoding="utf-8")))


def diagnose(run: Path) -> dict[str, float | str | int]:
    """The shares of the module docstring for one run folder."""
    args = _args(run)
    seed, frac = int(args["seed"]), float(args.get("keep_box") or 0.5)
    value = str(args.get("saliency_value", "gradient")).replace("-", "_")
    src = fashion_mnist_source("train", train_size=int(args["train_size"]), seed=seed)
    raw = torch.from_numpy(src.images).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, H, W]
    obj = (raw[:, 0] > OBJECT_LEVEL).float()  # [N, H, W]
    model = build_model(args.get("model", "small"), len(src.classes))
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    sal = torch.cat(
        [
            saliency(
                model,
                normalize(raw[i : i + 100]),
                src.targets[i : i + 100],
                mode="full",
                value=value,  # type: ignore[arg-type]
            )
            for i in range(0, len(raw), 100)
        ]
    )
    n, h, w = obj.shape
    bh, bw = box_size(h, w, frac)
    # the garment's pixels inside each box position, as a share of the garment: [N, P]
    inside = region_scores(obj, (bh, bw)).reshape(n, -1)
    cut = inside / obj.sum((1, 2)).clamp_min(1)[:, None]
    scores = region_scores(sal, (bh, bw)).reshape(n, -1)
    q = score_threshold(scores, TAU)[:, None]
    keep = scores < q
    keep = torch.where(keep.any(1, keepdim=True), keep, scores <= q)
    keep_cut = (cut * keep).sum(1) / keep.sum(1)
    return {
        "run": run.name,
        "seed": seed,
        "box_px": bh,
        "object_area": float(obj.mean()),
        "saliency_on_object": float(((sal * obj).sum((1, 2)) / sal.sum((1, 2))).mean()),
        "object_cut_cutout": float(cut.mean()),
        "object_cut_keep": float(keep_cut.mean()),
        "object_cut_least": float(cut.min(1).values.mean()),
        "keep_cuts_less_than_cutout": float((keep_cut < cut.mean(1)).float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--runs", nargs="+", required=True, help="folders of run folders (KeepCutout rows)"
    )
    p.add_argument("--match", default="KeepCutout-full", help="run folders whose name has this")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [
        diagnose(r)
        for folder in args.runs
        for r in sorted(Path(folder).iterdir())
        if r.is_dir() and args.match in r.name and (r / "model.pt").exists()
    ]
    keys = [k for k in rows[0] if k not in ("run",)] if rows else []
    print("| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['run']} | " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float)
                                                 else str(r[k]) for k in keys) + " |")  # fmt: skip
    if args.out:
        record = {"provenance": provenance("cpu"), "object_level": OBJECT_LEVEL, "tau": TAU,
                  "rows": rows}  # fmt: skip
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
