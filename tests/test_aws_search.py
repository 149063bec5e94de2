"""Tests for the AWS search loop (``dali_aug.methods.aws._search``) and its command line
(``dali-aug search aws``): outputs, counts from the Loader's op record, resume, determinism,
``dali-aug train --policy DIR/policy.json``, the search-time pad crop and Cutout (config
checks, both Loaders, Cutout in every training step, the resume check), ``--data
fashion-mnist`` on small IDX files, and a 2-rank torchrun search (CPU, gloo) with theta bitwise
equal on both ranks after every update. The loop's mechanics: ``tests/test_aws_loop.py``."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.aws.synthetic import halves_config, halves_task, polarity_task
from dali_aug.datasets import make_shapes
from dali_aug.methods.aws import AWSConfig, search

REPO = Path(__file__).resolve().parents[1]
TINY = halves_config(seed=4)


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "aws_search.jsonl").read_text().splitlines()]


def test_search_outputs_counts_resume_and_determinism(tmp_path: Path) -> None:
    source = halves_task(64, seed=4)  # 48 fine-tuned on, 16 held out
    seen: list[dict[str, object]] = []
    policy = search(source, TINY, tmp_path / "a", progress=False, log=lambda _: None,
                    on_step=seen.append)  # fmt: skip
    rows = _rows(tmp_path / "a")
    assert [r["step"] for r in rows] == [1, 2] and len(seen) == 2
    for r in rows:
        assert set(r) >= {"reward", "baseline", "entropy", "top_pairs", "marginals"}
        assert 0.0 <= float(r["reward"]) <= 1.0  # type: ignore[arg-type]
        assert r["applied"] == [48]  # one epoch of the 48 fine-tune images, counts reset
    assert (tmp_path / "a" / "shared.pt").is_file() and (tmp_path / "a" / "aws_state.pt").is_file()
    rewards = [x for r in rows for x in r["rewards"]]  # type: ignore[attr-defined]
    moved = not torch.equal(policy.theta.detach(), torch.zeros(36))
    assert moved == (len(set(rewards)) > 1)  # the first update's advantage is 0 by design
    # resume to 3 steps == an uninterrupted 3-step search (bitwise), same seed
    longer = dataclasses.replace(TINY, steps=3)
    resumed = search(source, longer, tmp_path / "a", resume=True, progress=False,
                     log=lambda _: None)  # fmt: skip
    assert [r["step"] for r in _rows(tmp_path / "a")] == [1, 2, 3]
    fresh = search(source, longer, tmp_path / "b", progress=False, log=lambda _: None)
    assert torch.equal(resumed.theta, fresh.theta)
    with pytest.raises(ValueError, match="--seed"):
        search(source, dataclasses.replace(longer, seed=5), tmp_path / "a", resume=True,
               progress=False, log=lambda _: None)  # fmt: skip


def test_counter_sees_every_finetune_sample(tmp_path: Path) -> None:
    """The counts of a fine-tune sum to the samples it trained on (48 per epoch)."""
    from dali_aug.methods.aws._search import PairCounter, _Epochs, _loaders, _trainer

    counter = PairCounter(TINY.elements)
    trainer = _trainer(TINY, 2, counter)
    train, _ = _loaders(halves_task(64, seed=4), TINY)
    trainer.fit(_Epochs(train, 0), None, 1, progress=False, log=lambda _: None)
    assert int(counter.counts.sum()) == 48


def test_reward_kinds() -> None:
    from dali_aug.methods.aws._search import _reward

    metrics = {"val_acc": 0.75, "val_loss": 0.4}
    assert _reward(metrics, "accuracy") == 0.75
    assert _reward(metrics, "neg_loss") == -0.4
    with pytest.raises(ValueError, match="reward='loss'.*neg_loss"):
        AWSConfig(reward="loss")  # type: ignore[arg-type]


def test_neg_loss_search_logs_minus_the_held_out_loss(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, reward="neg_loss", steps=1)
    search(halves_task(64, seed=4), config, tmp_path, progress=False, log=lambda _: None)
    (row,) = _rows(tmp_path)
    assert float(row["reward"]) < 0.0  # type: ignore[arg-type]  # minus a cross-entropy


def test_polarity_task_invert_maps_one_class_onto_the_other() -> None:
    """Class ``dark`` is 255 - a ``light`` image: the inverted light images have the dark
    class's pixel distribution (quantiles equal within sampling noise), not the light one's."""
    src = polarity_task(400, seed=3)
    images = torch.from_numpy(src.images).float()
    labels = src.targets
    assert labels.bincount().tolist() == [200, 200] and src.classes == ("light", "dark")
    light, dark = images[labels == 0], images[labels == 1]
    q = torch.linspace(0.05, 0.95, 10)
    inverted = torch.quantile((255 - light).flatten()[::7], q)
    assert (inverted - torch.quantile(dark.flatten()[::7], q)).abs().max() < 6
    gap = torch.quantile(light.flatten()[::7], q) - torch.quantile(dark.flatten()[::7], q)
    assert gap.abs().max() > 100
    with pytest.raises(ValueError, match="size >= 16"):
        polarity_task(10, size=8)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_shapes(tmp_path_factory.mktemp("aws") / "data", 48, seed=2, size=32))


def test_cli_search_then_train_with_the_policy(shapes: Path, tmp_path: Path) -> None:
    from dali_aug.cli import main

    out = tmp_path / "aws"
    argv = ["search", "aws", "--data", str(shapes), "--out", str(out), "--share-epochs", "1",
            "--finetune-epochs", "1", "--steps", "2", "--size", "32", "--batch-size", "16",
            "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    for name in ("policy.json", "aws_probs.png", "aws_search.jsonl", "shared.pt"):
        assert (out / name).is_file(), name
    payload = json.loads((out / "policy.json").read_text())
    assert len(payload["aws"]["theta"]) == 1296 and len(payload["policy"]["sub_policies"]) == 1296
    assert main([*argv, "--steps", "3", "--resume"]) == 0
    assert len(_rows(out)) == 3
    run = tmp_path / "train"
    assert main(["train", "--data", str(shapes), "--policy", str(out / "policy.json"), "--out",
                 str(run), "--epochs", "1", "--size", "32", "--batch-size", "16",
                 "--no-progress"]) == 0  # fmt: skip
    assert (run / "metrics.json").is_file()


def test_cli_errors(shapes: Path, tmp_path: Path) -> None:
    from dali_aug.cli import main
    from dali_aug.methods.aws import cli

    with pytest.raises(SystemExit, match="steps"):
        main(["search", "aws", "--data", str(shapes), "--steps", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="not a folder"):
        main(["search", "aws", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)])
    # a search-only registry entry: not a training-step method
    assert not hasattr(cli, "build")
    with pytest.raises(SystemExit) as info:
        main(["train", "--method", "aws", "--data", str(shapes), "--out", str(tmp_path)])
    assert info.value.code == 2


@pytest.mark.slow
def test_torchrun_two_ranks_theta_identical(tmp_path: Path) -> None:
    out = tmp_path / "w2"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DALI_AUG_CACHE": str(tmp_path / "cache")}
    script = str(REPO / "benchmarks" / "aws" / "scaleout.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           script, "--out", str(out), "--steps", "3"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [[json.loads(x) for x in (out / f"rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]  # fmt: skip
    assert len(ranks[0]) == len(ranks[1]) == 3
    for a, b in zip(*ranks, strict=True):
        assert a["theta_sha256"] == b["theta_sha256"]  # bitwise equal after every update
        assert len(a["rewards"]) == 2 and a["rewards"] == b["rewards"]  # both ranks' rewards
    assert torch.equal(torch.load(out / "theta0.pt"), torch.load(out / "theta1.pt"))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("crop", "centre", r"AWSConfig.crop='centre'; use one of rrc, pad"),
        ("pad", -1, r"AWSConfig.pad=-1 must be an int in \[0, size=16\)"),
        ("pad", 16, r"AWSConfig.pad=16 must be an int in \[0, size=16\)"),
        ("pad", 2.0, r"AWSConfig.pad=2.0 must be an int"),
        ("pad", True, r"AWSConfig.pad=True must be an int"),
        ("cutout", 0.0, r"AWSConfig.cutout=0.0 must be None \(no Cutout\) or a box side"),
        ("cutout", 1.5, r"AWSConfig.cutout=1.5 must be None"),
        ("cutout", True, r"AWSConfig.cutout=True must be None"),
        ("cutout", "0.5", r"AWSConfig.cutout='0.5' must be None"),
    ],
)
def test_config_rejects_bad_crop_pad_and_cutout(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **{field: value})


def test_pad_crop_and_cutout_in_stage_1_and_every_finetune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """crop='pad' reaches both Loaders (the evaluation one takes the whole image) and Cutout
    runs on every training batch of stage 1 and of each fine-tune, with its own boxes per
    fine-tune; a resume with another crop or Cutout is refused, naming the flag."""
    from dali_aug.methods.aws._search import PairCounter
    from dali_aug.methods.cutout.method import CutoutMethod
    from dali_aug.train import Trainer

    config = dataclasses.replace(TINY, crop="pad", pad=2, cutout=0.5, batch_size=8)
    fits: list[dict[str, Any]] = []
    boxed: list[float] = []
    fit, augment, evaluate = Trainer.fit, CutoutMethod.augment, Trainer.evaluate
    evaluated: list[Any] = []

    def spy_fit(trainer: Trainer, train: Any, *args: Any, **kw: Any) -> Any:
        cut = [m for m in trainer.methods if isinstance(m, CutoutMethod)]
        gen = cut[0].generator.get_state() if cut else None
        fits.append({"types": [type(m) for m in trainer.methods], "loader": train.loader,
                     "gen": gen})  # fmt: skip
        return fit(trainer, train, *args, **kw)

    def spy_augment(method: CutoutMethod, step: Any, batch: Any) -> Any:
        out = augment(method, step, batch)
        zero = (out.images == 0).all(1).flatten(1).float().mean(1)  # box: 8x8 of 16x16
        boxed.append(float(zero.min()))
        return out

    def spy_evaluate(trainer: Trainer, loader: Any, model: Any = None) -> Any:
        evaluated.append(loader)
        return evaluate(trainer, loader, model)

    monkeypatch.setattr(Trainer, "fit", spy_fit)
    monkeypatch.setattr(CutoutMethod, "augment", spy_augment)
    monkeypatch.setattr(Trainer, "evaluate", spy_evaluate)
    source = halves_task(64, seed=4)  # 48 fine-tuned on: 6 batches of 8 per epoch
    search(source, config, tmp_path, progress=False, log=lambda _: None)
    assert len(fits) == 1 + config.steps
    for f in fits:
        assert f["types"] == [PairCounter, CutoutMethod]
        cfg = f["loader"].config
        assert (cfg.crop, cfg.pad, cfg.train) == ("pad", 2, True)
    assert len({bytes(f["gen"].numpy()) for f in fits}) == len(fits)  # own boxes per fit
    for loader in evaluated:
        cfg = loader.config
        assert (cfg.crop, cfg.train, cfg.eval_crop_pct) == ("pad", False, 1.0)
    assert len(boxed) == 6 * len(fits)  # every training batch, stage 1 and fine-tunes
    assert min(boxed) >= 0.25  # each image holds its zeroed box
    for field, value, flag in (("cutout", 0.25, "--cutout"), ("crop", "rrc", "--crop")):
        other = dataclasses.replace(config, **{field: value})
        with pytest.raises(ValueError, match=flag):  # the search state's settings
            search(source, other, tmp_path, resume=True, progress=False, log=lambda _: None)
    (tmp_path / "aws_state.pt").unlink()  # only stage 1 done: its checkpoint's settings
    with pytest.raises(ValueError, match="--pad"):
        search(source, dataclasses.replace(config, pad=3), tmp_path, resume=True,
               progress=False, log=lambda _: None)  # fmt: skip


def _fashion_mnist(root: Path) -> Path:
    """Small Fashion-MNIST IDX files (100 train, 20 test images, labels cycling 0..9)."""
    import numpy as np

    from dali_aug.datasets._fashion_mnist import write_idx

    g = np.random.default_rng(0)
    for stem, n in (("train", 100), ("t10k", 20)):
        write_idx(root / f"{stem}-images-idx3-ubyte", g.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(root / f"{stem}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return root


def test_cli_search_on_fashion_mnist_with_pad_crop_and_cutout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dali_aug.cli import main

    monkeypatch.setenv("DALI_AUG_FASHION_MNIST", str(_fashion_mnist(tmp_path)))
    out = tmp_path / "aws"
    argv = ["search", "aws", "--data", "fashion-mnist", "--train-size", "60", "--out", str(out),
            "--share-epochs", "1", "--finetune-epochs", "1", "--steps", "1", "--batch-size",
            "8", "--crop", "pad", "--pad", "2", "--cutout", "0.5", "--device", "cpu",
            "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads((out / "policy.json").read_text())
    cfg = payload["search_config"]
    assert (cfg["size"], cfg["crop"], cfg["pad"], cfg["cutout"]) == (28, "pad", 2, 0.5)
    assert cfg["scale"] == [0.5, 1.0] and payload["data"] == "fashion-mnist train"
    (row,) = _rows(out)
    assert row["applied"] == [50]  # 60 images, round(20 % of 6) = 1 per class held out
    with pytest.raises(SystemExit, match="train_size=35"):
        main([*argv[:5], "35", *argv[6:]])
    with pytest.raises(SystemExit, match="--train-size is for --data fashion-mnist"):
        main(["search", "aws", "--train-size", "60", "--out", str(tmp_path / "x")])


def test_cli_rejects_bad_crop_pad_and_cutout(tmp_path: Path) -> None:
    from dali_aug.cli import main

    base = ["search", "aws", "--out", str(tmp_path), "--size", "16"]
    with pytest.raises(SystemExit, match="AWSConfig.cutout=2.0"):
        main([*base, "--cutout", "2"])
    with pytest.raises(SystemExit, match=r"AWSConfig.pad=16 must be an int in \[0, size=16\)"):
        main([*base, "--crop", "pad", "--pad", "16"])
    with pytest.raises(SystemExit) as info:
        main([*base, "--crop", "centre"])
    assert info.value.code == 2  # argparse: not one of the choices
