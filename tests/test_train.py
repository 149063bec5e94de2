"""Tests for dali_aug.train: metrics, the hooks of a training step, a tiny training run, and
checkpoint/resume (CPU)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dali_aug.loader import Batch, Loader
from dali_aug.models import build_model
from dali_aug.policies import RandAugment
from dali_aug.train import Hook, Trainer, accuracy, multilabel_metrics

SIZE = 32


def _quiet(*_: Any) -> None:
    return None


# -- metrics ---------------------------------------------------------------------------------
def test_accuracy() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [5.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 0, 0, 2])) == pytest.approx(0.75)
    assert accuracy(logits, torch.tensor([0, 1, 0, 2])) == 1.0
    assert accuracy(logits, torch.tensor([1, 0, 1, 0])) == 0.0
    assert math.isnan(accuracy(logits[:0], torch.tensor([], dtype=torch.int64)))


def test_multilabel_metrics_by_hand() -> None:
    """4 samples, 3 labels; label 2 has no positive (left out of the mAP).

    label 0: scores 3, -1, 2, -2 for targets 1, 1, 0, 0. Ranked: + - + -, so
        AP = (1/1 + 2/3) / 2 = 5/6; at 0.5: TP 1, FP 1, FN 1, TN 1 -> TPR = TNR = 1/2,
        F1 = 2 / (2 + 1 + 1) = 1/2.
    label 1: scores -1, 4, -2, 1 for targets 0, 1, 0, 1: ranked + + - -, AP = 1, every
        prediction right: TPR = TNR = F1 = 1.
    label 2: no positive -> AP undefined, excluded; one false positive -> F1 = 0.
    """
    logits = torch.tensor(
        [[3.0, -1.0, -1.0], [-1.0, 4.0, -1.0], [2.0, -2.0, 2.0], [-2.0, 1.0, -3.0]]
    )
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]], dtype=torch.float32)
    m = multilabel_metrics(logits, targets)
    assert m["mAP"] == pytest.approx((5 / 6 + 1) / 2)
    assert m["f1"] == pytest.approx([0.5, 1.0, 0.0])
    # the first two labels alone (both have positives and negatives)
    m2 = multilabel_metrics(logits[:, :2], targets[:, :2])
    assert m2["mAP"] == pytest.approx(11 / 12)
    assert m2["mA"] == pytest.approx((0.5 + 1.0) / 2)
    assert m2["f1"] == pytest.approx([0.5, 1.0])


def test_multilabel_metrics_threshold_is_at_logit_zero() -> None:
    """F1/mA use sigmoid >= 0.5, i.e. logit >= 0."""
    targets = torch.tensor([[1.0], [0.0]])
    assert multilabel_metrics(torch.tensor([[0.0], [-0.01]]), targets)["f1"] == [1.0]
    assert multilabel_metrics(torch.tensor([[-0.01], [-0.02]]), targets)["f1"] == [0.0]


def test_multilabel_metrics_perfect_predictions() -> None:
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand((32, 6), generator=g) < 0.4).float()
    targets[0], targets[1] = 1.0, 0.0  # every label has a positive and a negative
    logits = (2 * targets - 1) * torch.rand((32, 6), generator=g).add(0.5)
    m = multilabel_metrics(logits, targets)
    assert m["mAP"] == pytest.approx(1.0)
    assert m["mA"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx([1.0] * 6)
    worst = multilabel_metrics(-logits, targets)
    assert worst["mA"] == pytest.approx(0.0)
    assert worst["f1"] == pytest.approx([0.0] * 6)
    assert worst["mAP"] < 0.6


# -- hooks -----------------------------------------------------------------------------------
class Recorder(Hook):
    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log
        self.loss_shapes: list[tuple[int, ...]] = []
        self.logit_shapes: list[tuple[int, ...]] = []
        self.epochs: list[int] = []

    def before_forward(self, trainer: Trainer, batch: Batch) -> Batch:
        self.log.append((self.name, "before_forward"))
        return batch

    def on_loss(
        self, trainer: Trainer, batch: Batch, logits: torch.Tensor, losses: torch.Tensor
    ) -> torch.Tensor:
        self.log.append((self.name, "on_loss"))
        self.loss_shapes.append(tuple(losses.shape))
        self.logit_shapes.append(tuple(logits.shape))
        return losses

    def after_backward(self, trainer: Trainer, batch: Batch) -> None:
        self.log.append((self.name, "after_backward"))
        self.epochs.append(trainer.epoch)


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


def test_hooks_are_called_once_per_step_in_order(shapes_dir: Path) -> None:
    log: list[tuple[str, str]] = []
    first, second = Recorder("a", log), Recorder("b", log)
    loader = Loader(shapes_dir, batch_size=16, device="cpu", size=SIZE)
    model = build_model("small", 4)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), hooks=[first, second])
    trainer.fit(loader, None, 2, progress=False, log=_quiet)
    steps = 2 * len(loader)
    one_step = [
        ("a", "before_forward"),
        ("b", "before_forward"),
        ("a", "on_loss"),
        ("b", "on_loss"),
        ("a", "after_backward"),
        ("b", "after_backward"),
    ]
    assert log == one_step * steps
    assert first.loss_shapes == [(16,)] * steps
    assert first.logit_shapes == [(16, 4)] * steps
    assert first.epochs == [0] * len(loader) + [1] * len(loader)


def test_hook_sees_the_step_in_order() -> None:
    """before_forward's batch is what the model sees; on_loss runs before backward (no grad
    yet); after_backward runs after the optimizer step (weights changed, grads kept)."""
    model = _linear()
    start = copy.deepcopy(model.state_dict())
    seen: dict[str, Any] = {}

    class Probe(Hook):
        def before_forward(self, trainer: Trainer, batch: Batch) -> Batch:
            return Batch(batch.images * 0, batch.labels, batch.indices)

        def on_loss(
            self, trainer: Trainer, batch: Batch, logits: torch.Tensor, losses: torch.Tensor
        ) -> torch.Tensor:
            seen["logits"] = logits.detach().clone()
            seen["grad"] = [p.grad for p in trainer.model.parameters()]
            return losses

        def after_backward(self, trainer: Trainer, batch: Batch) -> None:
            # zeroed images: only the bias gets a gradient, so only it moves
            seen["moved"] = not torch.equal(trainer.model[1].bias, start["1.bias"])
            seen["still"] = torch.equal(trainer.model[1].weight, start["1.weight"])
            seen["has_grad"] = all(p.grad is not None for p in trainer.model.parameters())

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), hooks=[Probe()])
    loss = trainer.step(_batch())
    bias = start["1.bias"]
    assert torch.allclose(seen["logits"], bias.expand(8, 4))  # zeroed images: bias only
    assert loss == pytest.approx(
        float(nn.functional.cross_entropy(seen["logits"], _batch().labels))
    )
    assert seen["grad"] == [None, None]
    assert seen["moved"] and seen["still"] and seen["has_grad"]


class HalfWeights(Hook):
    """Zeroes the loss of the second half of the batch."""

    def on_loss(
        self, trainer: Trainer, batch: Batch, logits: torch.Tensor, losses: torch.Tensor
    ) -> torch.Tensor:
        w = torch.ones_like(losses)
        w[len(w) // 2 :] = 0
        return losses * w


def _grads(hooks: list[Hook], batch: Batch) -> tuple[list[torch.Tensor], float]:
    model = _linear()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), hooks=hooks)
    loss = trainer.step(batch)
    return [p.grad.clone() for p in model.parameters() if p.grad is not None], loss


def test_on_loss_reweighting_changes_the_gradient() -> None:
    batch = _batch(8)
    plain, plain_loss = _grads([], batch)
    half, half_loss = _grads([HalfWeights()], batch)
    assert len(plain) == len(half) == 2
    assert not all(torch.allclose(a, b) for a, b in zip(plain, half, strict=True))
    # exactly half the gradient (and loss) of a step on the first half alone
    first = Batch(batch.images[:4], batch.labels[:4], batch.indices[:4])
    alone, alone_loss = _grads([], first)
    for a, b in zip(half, alone, strict=True):
        torch.testing.assert_close(a, 0.5 * b)
    assert half_loss == pytest.approx(0.5 * alone_loss, rel=1e-5)
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


def _trainer(lr: float = 3e-3, hooks: list[Hook] | None = None) -> Trainer:
    torch.manual_seed(0)
    model = build_model("small", 4)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
    return Trainer(model, opt, hooks=hooks or [], scheduler=sched)


def _loaders(root: Path, seed: int = 0) -> tuple[Loader, Loader]:
    train = Loader(root, batch_size=16, size=SIZE, device="cpu", seed=seed, scale=(0.5, 1.0))
    val = Loader(root, batch_size=32, size=SIZE, device="cpu", train=False)
    return train, val


def test_tiny_training_run_lowers_the_loss(shapes96: Path) -> None:
    class Losses(Hook):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_loss(
            self, trainer: Trainer, batch: Batch, logits: torch.Tensor, losses: torch.Tensor
        ) -> torch.Tensor:
            self.values.append(float(losses.detach().mean()))
            return losses

    rec = Losses()
    trainer = _trainer(hooks=[rec])
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
    assert set(result) == {"val_loss", "val_acc"}
    assert 0.0 <= result["val_acc"] <= 1.0
    assert result["val_acc"] * 96 == pytest.approx(round(result["val_acc"] * 96))


def test_evaluate_multi_label(shapes_multi_dir: Path) -> None:
    torch.manual_seed(0)
    val = Loader(shapes_multi_dir, batch_size=16, size=SIZE, device="cpu", train=False)
    model = build_model("small", len(val.classes))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), multi_label=True)
    result = trainer.evaluate(val)
    assert set(result) == {"val_loss", "mAP", "mA", "f1"}
    assert 0.0 <= result["mAP"] <= 1.0 and 0.0 <= result["mA"] <= 1.0
    assert len(result["f1"]) == len(val.classes)


def test_checkpoint_and_resume(shapes96: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    train, _ = _loaders(shapes96, seed=3)
    first = _trainer()
    first.fit(train, None, 2, checkpoint=ckpt, progress=False, log=_quiet)
    assert ckpt.is_file() and not ckpt.with_suffix(".tmp").exists()

    steps = Recorder("r", [])
    resumed = _trainer(hooks=[steps])
    resumed.load_state_dict(torch.load(ckpt, weights_only=False))
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
    assert torch.load(ckpt, weights_only=False)["epoch"] == 3
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
