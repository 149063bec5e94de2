"""The training recipe in the Trainer and in ``dali-aug train``: label smoothing, gradient
clipping, the per-update schedule, the model EMA, top-5, timm models' features, logging
without a terminal, recipe flags that would not apply, the run's outputs and args.yaml."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.batch import Batch
from dali_aug.cli import main
from dali_aug.train import ModelEma, Trainer, WarmupCosine, model_parts


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _batch(n: int = 8, classes: int = 10, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    return Batch(x, torch.randint(0, classes, (n,), generator=g), torch.arange(n))


class _Batches:
    """The part of the Loader's interface ``Trainer.fit`` uses, over fixed batches."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches, self.skipped = batches, []

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)

    def state_dict(self) -> dict[str, int]:
        return {}


def _net(classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, classes))


# -- the Trainer -------------------------------------------------------------------------------


def test_smoothing_is_in_the_training_loss_only() -> None:
    model = _net()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), smoothing=0.2)
    batch = _batch()
    with torch.no_grad():
        logits = model(batch.images)
    want = F.cross_entropy(logits, batch.labels, label_smoothing=0.2)
    assert trainer.step(batch) == pytest.approx(float(want), rel=1e-5)
    plain = F.cross_entropy(logits, batch.labels)
    assert trainer.evaluate([batch])["val_loss"] == pytest.approx(float(plain), rel=1e-5)
    with pytest.raises(ValueError, match="single-label"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), multi_label=True, smoothing=0.1)


def test_clip_grad_bounds_the_update() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    Trainer(model, opt, clip_grad=0.01).step(_batch())
    moved = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    )
    assert moved.norm().item() == pytest.approx(0.01, rel=1e-4)  # lr 1 x clipped norm


def test_the_schedule_sets_the_lr_of_every_update() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=123.0)
    sched = WarmupCosine(base_lr=0.5, total=6, warmup=2, warmup_lr=0.1)
    trainer = Trainer(model, opt, schedule=sched)
    seen = []
    for k in range(6):
        trainer.step(_batch(seed=k))
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([sched(t) for t in range(6)])
    with pytest.raises(ValueError, match="not both"):
        Trainer(model, opt, schedule=sched, scheduler=object())


def test_ema_follows_each_update_is_evaluated_and_checkpointed(tmp_path: Path) -> None:
    model = _net()
    ema = ModelEma(model, decay=0.5)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), ema=ema)
    start = [p.detach().clone() for p in model.parameters()]
    trainer.step(_batch())
    for e, m, s in zip(ema.module.parameters(), model.parameters(), start, strict=True):
        assert torch.allclose(e, 0.5 * s + 0.5 * m.detach())
    rows = trainer.fit(
        _Batches([_batch()]), [_batch(seed=1)], 2, progress=False, log=lambda *_: None
    )
    assert {"ema_val_acc", "ema_val_loss", "val_top5"} <= set(rows[-1])
    trainer.save(tmp_path / "c.pt")
    other = _net()
    again = Trainer(other, torch.optim.SGD(other.parameters(), lr=0.5), ema=ModelEma(other))
    again.load(tmp_path / "c.pt")
    assert again.ema is not None
    for a, b in zip(again.ema.module.parameters(), ema.module.parameters(), strict=True):
        assert torch.equal(a, b)
    plain = Trainer(other, torch.optim.SGD(other.parameters(), lr=0.5))
    plain.save(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="no model EMA"):
        again.load(tmp_path / "plain.pt")


def test_top5_counts_a_hit_among_the_five_best() -> None:
    model = nn.Identity()
    # labels ranked 5th (a hit), 7th and 6th (misses: a top-6 would count the third)
    logits = torch.tensor(
        [[9.0, 8, 7, 6, 5, 4, 0], [0.0, 1, 2, 3, 4, 5, 9], [0.0, 1, 2, 3, 4, 5, 9]]
    )
    batch = Batch(logits, torch.tensor([4, 0, 1]), torch.arange(3))
    out = Trainer(model, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)).evaluate([batch])
    assert out["val_top5"] == pytest.approx(1 / 3) and out["val_acc"] == 0.0


class _TimmLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3)  # a conv trunk named `features`, as timm's vgg
        self.head = nn.Linear(4, 5)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def test_timm_models_give_pre_logit_features_and_a_conv_trunk_is_an_error() -> None:
    model, x = _TimmLike(), torch.randn(2, 3, 9, 9)
    logits, features, early = model_parts(model, x)
    assert torch.allclose(logits, model(x)) and features.shape == (2, 4) and early is None

    class Trunk(nn.Module):  # `features` + `head` but features are a map, not [B, D]
        def __init__(self) -> None:
            super().__init__()
            self.features, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4, 5)

    with pytest.raises(ValueError, match=r"\[B, D\]"):
        model_parts(Trunk(), x)


def test_without_a_terminal_the_progress_is_log_lines() -> None:
    model = _net()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    lines: list[str] = []
    batches = _Batches([_batch(seed=k) for k in range(5)])
    trainer.fit(batches, None, 1, log=lines.append, log_every=2)
    steps = [x for x in lines if " step " in x]  # pytest's stderr is not a terminal
    assert [x.split(" step ")[1].split()[0] for x in steps] == ["2/5", "4/5"]
    assert lines[-1].startswith("epoch=1")


def test_eval_every_evaluates_on_its_epochs_and_after_the_last() -> None:
    model = _net()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    batches = _Batches([_batch(seed=k) for k in range(2)])
    rows = trainer.fit(batches, batches, 5, progress=False, log=lambda *_: None, eval_every=2)
    assert ["val_acc" in r for r in rows] == [False, True, False, True, True]
    with pytest.raises(ValueError, match="eval_every=0"):
        trainer.fit(batches, batches, 6, eval_every=0)


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--mixup-prob", "0.5"], "--mixup-prob"),
        (["--mixup-mode", "elem"], "--mixup-mode"),
        (["--remode", "const"], "--remode"),
        (["--recount", "2"], "--recount"),
        (["--model-ema-decay", "0.99"], "--model-ema-decay"),
        (["--warmup-lr", "0.01"], "--warmup-lr"),
        (["--momentum", "0.8"], "--momentum"),  # the small model's default optimizer is adamw
        (["--opt", "sgd", "--momentum", "0.8"], "--momentum"),
        (["--opt", "lamb", "--momentum", "0.8"], "--momentum"),
        (["--pretrained"], "--pretrained"),
        (["--multi-label", "--smoothing", "0.1"], "--smoothing"),
        (["--reprob", "1.5"], "--reprob"),
        (["--scale", "0.9", "0.5"], "--scale"),
        (["--pad", "2"], "--pad"),  # the default crop is rrc
        (["--crop", "pad", "--scale", "0.5", "1"], "--scale"),
        (["--crop", "pad", "--ratio", "0.5", "2"], "--ratio"),
        (["--ratio", "2", "1"], "--ratio"),
        (["--crop", "pad", "--pad", "-1"], "--pad"),
        (["--crop-pct", "1.5"], "--crop-pct"),
        (["--eval-every", "0"], "--eval-every"),
    ],
)
def test_recipe_flags_that_would_not_apply_are_errors(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "run"), *argv])
    assert exc.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in message, message
    assert not (tmp_path / "run").exists()


def test_timm_model_without_timm_exits_with_the_hint_before_any_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "timm:resnet18", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--model" in message and "pip install torch==2.14.1 torchvision==0.29.1 timm" in message
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    with pytest.raises(SystemExit):
        main(["train", "--model", "timm:", "--out", str(tmp_path / "run")])


def test_a_bad_config_file_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yaml"
    cfg.write_text("lerning-rate: 0.1\n")
    with pytest.raises(SystemExit, match="unknown flag 'lerning-rate'"):
        main(["train", "-c", str(cfg), "--out", str(tmp_path / "run")])


def _summary(run: Path) -> list[dict[str, str]]:
    with (run / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    timing = ("seconds", "img_per_s", "data_seconds")
    return [{k: v for k, v in r.items() if k not in timing} for r in rows]


@pytest.mark.slow
def test_recipe_run_writes_its_outputs_and_replays_from_args_yaml(tmp_path: Path) -> None:
    from dali_aug.datasets import make_shapes

    data = tmp_path / "data"
    make_shapes(data / "train", 48, seed=0, size=32)
    make_shapes(data / "val", 16, seed=1, size=32)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("batch-size: 16\nsize: 32\nseed: 3\nno-progress: true\n")
    first = tmp_path / "run1"
    flags = ["--opt", "sgd", "--lr", "0.1", "--weight-decay", "5e-4", "--warmup-epochs", "1"]
    flags += ["--smoothing", "0.1", "--mixup", "0.8", "--cutmix", "1.0", "--reprob", "0.25"]
    flags += ["--model-ema", "--epochs", "2", "-c", str(recipe)]
    assert main(["train", "--data", str(data), "--out", str(first), *flags]) == 0
    for name in ("args.yaml", "summary.csv", "curves.png", "last.pt", "best.pt", "model.pt"):
        assert (first / name).is_file(), name
    rows = _summary(first)
    assert [r["epoch"] for r in rows] == ["1", "2"] and "ema_val_acc" in rows[0]
    assert "loss/mixup" not in rows[0]  # the recipe's methods add no loss terms
    second = tmp_path / "run2"
    assert main(["train", "-c", str(first / "args.yaml"), "--out", str(second)]) == 0
    assert _summary(second) == rows


def test_the_schedule_changes_per_epoch_by_default_and_per_update_on_request() -> None:
    import argparse
    import math

    from dali_aug.cli import _schedule

    def args(**kw: object) -> argparse.Namespace:
        base = {"epochs": 4, "warmup_epochs": None, "warmup_lr": None, "min_lr": None}
        return argparse.Namespace(**{**base, "sched_on_updates": None, **kw})

    per_epoch = _schedule(args(), 0.1, steps_per_epoch=10)
    lrs = [per_epoch(t) for t in range(40)]
    want = [0.1 * 0.5 * (1 + math.cos(math.pi * (t // 10) / 4)) for t in range(40)]
    assert lrs == pytest.approx(want)  # the cosine of the epoch, constant within it
    per_update = _schedule(args(sched_on_updates=True), 0.1, steps_per_epoch=10)
    assert per_update(5) < per_update(0) and per_update(5) == pytest.approx(
        0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 40))
    )
    warm = _schedule(args(warmup_epochs=1.0, warmup_lr=0.0), 0.1, steps_per_epoch=10)
    assert warm(0) == 0.0 and warm(10) == pytest.approx(0.1)
    with pytest.raises(SystemExit, match="warmup"):
        _schedule(args(warmup_epochs=4.0), 0.1, steps_per_epoch=10)
