"""Tests for dali_aug.train: the methods of a training step, a tiny training run, and
checkpoint/resume (CPU). The metrics are tested in test_metrics.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dali_aug.loader import Batch, Loader
from dali_aug.models import build_model
from dali_aug.policies import RandAugment
from dali_aug.train import Forward, Loss, Method, Step, Trainer

SIZE = 32


def _quiet(*_: Any) -> None:
    return None


# -- methods ---------------------------------------------------------------------------------
class Recorder(Method):
    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log
        self.loss_shapes: list[tuple[int, ...]] = []
        self.logit_shapes: list[tuple[int, ...]] = []
        self.epochs: list[int] = []
        self.steps: list[int] = []

    def augment(self, step: Step, batch: Batch) -> Batch:
        self.log.append((self.name, "augment"))
        return batch

    def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
        self.log.append((self.name, "loss"))
        self.loss_shapes.append(tuple(loss.per_sample.shape))
        self.logit_shapes.append(tuple(out.logits.shape))
        return loss

    def after_step(self, step: Step, batch: Batch, out: Forward) -> None:
        self.log.append((self.name, "after_step"))
        self.epochs.append(step.epoch)
        self.steps.append(step.index)


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))


def _batch(n: int = 8) -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(
        images=torch.randn((n, 3, 8, 8), generator=g),
        labels=torch.arange(n) % 4,
        indices=torch.arange(n),
    )


def test_methods_are_called_once_per_step_in_order(shapes_dir: Path) -> None:
    log: list[tuple[str, str]] = []
    first, second = Recorder("a", log), Recorder("b", log)
    loader = Loader(shapes_dir, batch_size=16, device="cpu", size=SIZE)
    model = build_model("small", 4)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), methods=[first, second])
    trainer.fit(loader, None, 2, progress=False, log=_quiet)
    steps = 2 * len(loader)
    one_step = [
        ("a", "augment"),
        ("b", "augment"),
        ("a", "loss"),
        ("b", "loss"),
        ("a", "after_step"),
        ("b", "after_step"),
    ]
    assert log == one_step * steps
    assert first.loss_shapes == [(16,)] * steps
    assert first.logit_shapes == [(16, 4)] * steps
    assert first.epochs == [0] * len(loader) + [1] * len(loader)
    assert first.steps == list(range(steps)) and trainer.global_step == steps


def test_method_sees_the_step_in_order() -> None:
    """augment's batch is what the model sees; loss runs before backward (no grad yet);
    after_step runs after the optimizer step (weights changed, grads kept)."""
    model = _linear()
    start = copy.deepcopy(model.state_dict())
    seen: dict[str, Any] = {}

    class Probe(Method):
        def augment(self, step: Step, batch: Batch) -> Batch:
            return Batch(batch.images * 0, batch.labels, batch.indices)

        def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
            seen["logits"] = out.logits.detach().clone()
            seen["features"] = out.features
            seen["grad"] = [p.grad for p in step.model.parameters()]
            return loss

        def after_step(self, step: Step, batch: Batch, out: Forward) -> None:
            # zeroed images: only the bias gets a gradient, so only it moves
            seen["moved"] = not torch.equal(step.model[1].bias, start["1.bias"])
            seen["still"] = torch.equal(step.model[1].weight, start["1.weight"])
            seen["has_grad"] = all(p.grad is not None for p in step.model.parameters())

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), methods=[Probe()])
    loss = trainer.step(_batch())
    bias = start["1.bias"]
    assert torch.allclose(seen["logits"], bias.expand(8, 4))  # zeroed images: bias only
    assert loss == pytest.approx(
        float(nn.functional.cross_entropy(seen["logits"], _batch().labels))
    )
    assert seen["grad"] == [None, None]
    assert seen["features"] is None  # a plain module has no features/head protocol
    assert seen["moved"] and seen["still"] and seen["has_grad"]


class HalfWeights(Method):
    """Zeroes the loss of the second half of the batch (through the per-sample weights)."""

    def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
        w = torch.ones_like(loss.per_sample)
        w[len(w) // 2 :] = 0
        loss.weight = w
        return loss


def _grads(methods: list[Method], batch: Batch) -> tuple[list[torch.Tensor], float]:
    model = _linear()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), methods=methods)
    loss = trainer.step(batch)
    return [p.grad.clone() for p in model.parameters() if p.grad is not None], loss


def test_loss_weights_reduce_as_a_weighted_mean() -> None:
    """sum(w * l) / sum(w): zero weights on the second half give exactly the gradient and
    loss of a step on the first half alone."""
    batch = _batch(8)
    plain, plain_loss = _grads([], batch)
    half, half_loss = _grads([HalfWeights()], batch)
    assert len(plain) == len(half) == 2
    assert not all(torch.allclose(a, b) for a, b in zip(plain, half, strict=True))
    first = Batch(batch.images[:4], batch.labels[:4], batch.indices[:4])
    alone, alone_loss = _grads([], first)
    for a, b in zip(half, alone, strict=True):
        torch.testing.assert_close(a, b)
    assert half_loss == pytest.approx(alone_loss, rel=1e-5)
    assert plain_loss != pytest.approx(half_loss)


def test_non_finite_loss_raises() -> None:
    batch = _batch()
    batch.images[0, 0, 0, 0] = float("nan")
    model = _linear()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        trainer.step(batch)


def test_soft_and_multi_label_losses() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    model = _linear()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    hard = trainer.losses(logits, torch.tensor([0, 1]))
    soft = trainer.losses(logits, torch.eye(3)[[0, 1]])
    torch.testing.assert_close(hard, soft)
    assert hard.shape == (2,)
    multi = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), multi_label=True)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    want = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(multi.losses(logits, targets), want.mean(1))


# -- training --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes96(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dali_aug.datasets import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes96") / "data", 96, seed=4, size=SIZE)


def _trainer(lr: float = 3e-3, methods: list[Method] | None = None) -> Trainer:
    torch.manual_seed(0)
    model = build_model("small", 4)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
    return Trainer(model, opt, methods=methods or [], scheduler=sched)


def _loaders(root: Path, seed: int = 0) -> tuple[Loader, Loader]:
    train = Loader(root, batch_size=16, size=SIZE, device="cpu", seed=seed, scale=(0.5, 1.0))
    val = Loader(root, batch_size=32, size=SIZE, device="cpu", train=False)
    return train, val


def test_tiny_training_run_lowers_the_loss(shapes96: Path) -> None:
    class Losses(Method):
        def __init__(self) -> None:
            self.values: list[float] = []

        def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
            self.values.append(float(loss.per_sample.detach().mean()))
            return loss

    rec = Losses()
    trainer = _trainer(methods=[rec])
    train, val = _loaders(shapes96)
    before = trainer.evaluate(val)
    rows: list[str] = []
    history = trainer.fit(train, val, 2, progress=False, log=rows.append)
    assert [r["epoch"] for r in history] == [1, 2]
    assert len(rows) == 2 and "train_loss=" in rows[0] and "val_acc=" in rows[0]
    assert len(rec.values) == 2 * len(train) == 12
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert sum(rec.values[-3:]) < sum(rec.values[:3])
    assert history[-1]["val_loss"] < before["val_loss"]
    for row in history:
        assert 0.0 <= row["val_acc"] <= 1.0
        assert row["images"] == 96 and row["skipped"] == 0
    result = trainer.evaluate(val)
    assert set(result) == {"val_loss", "val_acc", "val_samples"}
    assert result["val_samples"] == len(val.source)
    assert 0.0 <= result["val_acc"] <= 1.0
    assert result["val_acc"] * 96 == pytest.approx(round(result["val_acc"] * 96))


def test_evaluate_multi_label(shapes_multi_dir: Path) -> None:
    torch.manual_seed(0)
    val = Loader(shapes_multi_dir, batch_size=16, size=SIZE, device="cpu", train=False)
    model = build_model("small", len(val.classes))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), multi_label=True)
    result = trainer.evaluate(val)
    assert {"val_loss", "mAP", "mA", "f1", "CF1", "OF1", "label_f1"} <= set(result)
    assert 0.0 <= result["mAP"] <= 1.0 and 0.0 <= result["mA"] <= 1.0
    assert len(result["label_f1"]) == len(val.classes)


def test_checkpoint_and_resume(shapes96: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    train, _ = _loaders(shapes96, seed=3)
    first = _trainer()
    first.fit(train, None, 2, checkpoint=ckpt, progress=False, log=_quiet)
    assert ckpt.is_file() and not ckpt.with_suffix(".tmp").exists()

    steps = Recorder("r", [])
    resumed = _trainer(methods=[steps])
    resumed.load(ckpt)
    assert resumed.epoch == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for k, v in first.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert resumed.scheduler.last_epoch == 2
    assert resumed.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"]

    fresh_train, _ = _loaders(shapes96, seed=3)
    history = resumed.fit(fresh_train, None, 3, checkpoint=ckpt, progress=False, log=_quiet)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert resumed.epoch == 3
    assert steps.epochs == [2] * len(fresh_train)  # exactly one more epoch, epoch index 2
    assert fresh_train.epoch == 2
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    # nothing left to do
    assert len(resumed.fit(fresh_train, None, 3, progress=False, log=_quiet)) == 3

    # the resumed third epoch is the uninterrupted run's third epoch
    straight = _trainer()
    straight_train, _ = _loaders(shapes96, seed=3)
    straight.fit(straight_train, None, 3, progress=False, log=_quiet)
    assert history[2]["train_loss"] == pytest.approx(straight.history[2]["train_loss"], rel=1e-4)
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=1e-3, atol=1e-4)


def test_data_order_is_a_function_of_seed_and_epoch(shapes96: Path) -> None:
    a = Loader(shapes96, policy=RandAugment(), batch_size=16, size=SIZE, device="cpu", seed=3)
    b = Loader(shapes96, batch_size=8, size=SIZE, device="cpu", seed=3)
    b.set_epoch(5)  # the current epoch does not matter for an explicit one
    assert torch.equal(a.shard_indices(2), b.shard_indices(2))
    assert not torch.equal(a.shard_indices(2), a.shard_indices(1))
    a.set_epoch(2)
    assert torch.equal(a.shard_indices(), b.shard_indices(2))
    assert torch.cat([x.indices for x in a]).tolist() == a.shard_indices(2).tolist()
    c = Loader(shapes96, batch_size=16, size=SIZE, device="cpu", seed=4)
    assert not torch.equal(c.shard_indices(2), a.shard_indices(2))
