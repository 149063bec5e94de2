"""The method interface of the training step (dali_aug.train._method): what a step gives a
method (Forward, Loss, substituted weights, a validation batch, frozen batch norm, the step
counter), method-owned modules (optimizer, checkpoint, export), amp, and safe checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dali_aug.batch import Batch
from dali_aug.methods.keep import KeepMethod
from dali_aug.models import build_model
from dali_aug.train import (
    Forward,
    LoaderNeeds,
    Loss,
    Method,
    Step,
    Trainer,
    check_resume,
    frozen_norm,
    load_checkpoint,
)

SIZE = 32


def _batch(n: int = 8, seed: int = 1, classes: int = 4) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        images=torch.randn((n, 3, SIZE, SIZE), generator=g),
        labels=torch.randint(0, classes, (n,), generator=g),
        indices=torch.arange(n),
    )


def _small(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small", 4)


# -- Forward ---------------------------------------------------------------------------------
def test_forward_gives_logits_features_and_early_of_one_pass() -> None:
    model = _small()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0))
    x = _batch().images
    model.eval()
    out = trainer.forward(x)
    assert out.features is not None and out.early is not None
    assert out.features.shape == (8, 192) and out.early.shape[:2] == (8, 48)
    torch.testing.assert_close(out.logits, model(x))
    torch.testing.assert_close(out.logits, model.head(out.features))
    torch.testing.assert_close(out.early, model.early_features(x))


def test_forward_with_substituted_weights_is_functional_call() -> None:
    """params=... runs the model with other weights (as a virtual step does) and leaves the
    model's own weights untouched; gradients flow to the substituted tensors."""
    model = _small().eval()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0))
    x = _batch().images
    w = model.head.weight.detach().clone().requires_grad_(True)
    shifted = {"head.weight": w * 0 + 1.0, "head.bias": torch.zeros(4)}
    out = trainer.forward(x, params=shifted)
    assert out.features is not None
    torch.testing.assert_close(out.logits, out.features.sum(1, keepdim=True).expand(8, 4))
    assert not torch.equal(model.head.weight, torch.ones_like(model.head.weight))
    virtual = {"head.weight": w - 0.5 * w.detach()}
    out = trainer.forward(x, params=virtual)
    out.logits.sum().backward()
    assert w.grad is not None and float(w.grad.abs().sum()) > 0


def test_step_forward_runs_under_the_step_autocast() -> None:
    model = _small()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), amp=torch.bfloat16)
    out = trainer.forward(_batch().images)
    assert out.logits.dtype == torch.bfloat16
    assert out.early is not None and out.early.dtype == torch.bfloat16


# -- Loss --------------------------------------------------------------------------------------
def test_loss_total_is_the_weighted_mean_plus_terms() -> None:
    per = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert float(Loss(per).total()) == pytest.approx(3.0)
    w = torch.tensor([1.0, 0.0, 1.0, 2.0])
    loss = Loss(per, weight=w, terms={"a": torch.tensor(0.5), "b": torch.tensor(-0.25)})
    assert float(loss.main()) == pytest.approx((1 + 3 + 12) / 4)
    assert float(loss.total()) == pytest.approx(4.0 + 0.25)
    with pytest.raises(ValueError, match="one weight per sample"):
        Loss(per, weight=w[:3]).main()
    with pytest.raises(ValueError, match="NaN"):
        Loss(per, weight=torch.tensor([1.0, float("nan"), 1.0, 1.0])).main()


def test_loader_needs_combine() -> None:
    a = LoaderNeeds(op_record=True)
    b = LoaderNeeds(policy=False, clean=True)
    assert (a | b) == LoaderNeeds(policy=False, op_record=True, clean=True)
    assert (LoaderNeeds() | LoaderNeeds()) == LoaderNeeds()


# -- a custom method in ten lines, with a module, a term, a val batch --------------------------
class Toy(Method):
    """An auxiliary linear head on the features, trained with the model (term ``aux``)."""

    name = "toy"

    def __init__(self, dim: int, classes: int) -> None:
        self.aux = nn.Linear(dim, classes)
        self.val_losses: list[float] = []
        self.indices: list[int] = []

    def modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"aux": self.aux})

    def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
        assert out.features is not None
        loss.terms["aux"] = 0.5 * step.losses(self.aux(out.features), batch.labels).mean()
        with torch.no_grad(), step.frozen_norm():
            val = step.val_batch()
            v = step.forward(val.images)
        loss.stats["val"] = step.losses(v.logits, val.labels).mean()
        self.indices.append(step.index)
        return loss


def test_method_modules_are_trained_checkpointed_and_not_exported(tmp_path: Path) -> None:
    model = _small()
    toy = Toy(192, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    val = [_batch(seed=50 + k) for k in range(2)]
    trainer = Trainer(model, opt, methods=[toy], meta_val=val)
    assert {id(p) for p in toy.aux.parameters()} <= {
        id(p) for g in opt.param_groups for p in g["params"]
    }
    before = toy.aux.weight.detach().clone()
    stats_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    loss = trainer._step(_batch())
    assert set(loss.terms) == {"aux"} and set(loss.stats) == {"val"}
    assert not torch.equal(toy.aux.weight, before)  # trained by the step's optimizer
    # the val side pass (between forward and backward) left the running statistics to the
    # training batch alone: they equal those of a plain step on the same batch
    plain = _small()
    Trainer(plain, torch.optim.AdamW(plain.parameters(), lr=1e-2)).step(_batch())
    for k, v in stats_before.items():
        assert torch.equal(model.state_dict()[k], plain.state_dict()[k]), k
        assert not torch.equal(model.state_dict()[k], v), k
    for _ in range(3):  # the val batches cycle (2 batches, 4 steps)
        trainer.step(_batch(seed=2))
    assert toy.indices == [0, 1, 2, 3] and trainer.global_step == 4
    # checkpoint: the module's state is saved beside the model, not inside it
    state = trainer.state_dict()
    assert "0:toy" in state["methods"]
    assert set(state["methods"]["0:toy"]["modules"]) == {"aux.weight", "aux.bias"}
    exported = trainer.export()
    assert not any("aux" in k for k in exported)
    fresh = build_model("small", 4)
    fresh.load_state_dict(exported, strict=True)
    n_params = sum(p.numel() for p in fresh.parameters())
    assert n_params == sum(p.numel() for p in model.parameters())
    # restore into a new trainer
    trainer.save(tmp_path / "c.pt")
    toy2 = Toy(192, 4)
    other = Trainer(fresh, torch.optim.AdamW(fresh.parameters(), lr=1e-2), methods=[toy2])
    other.load(tmp_path / "c.pt")
    assert torch.equal(toy2.aux.weight, toy.aux.weight)
    assert other.global_step == 4


def test_val_batch_without_a_meta_val_loader_is_a_clear_error() -> None:
    model = _small()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), methods=[Toy(192, 4)])
    with pytest.raises(ValueError, match="meta_val"):
        trainer.step(_batch())


def test_frozen_norm_restores_running_statistics() -> None:
    model = _small().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with frozen_norm(model):
        model(_batch().images)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_trainer_refuses_a_ddp_model_and_a_bad_amp() -> None:
    with pytest.raises(ValueError, match="amp"):
        Trainer(_small(), torch.optim.SGD(_small().parameters(), lr=0.1), amp=torch.int8)  # type: ignore[arg-type]


# -- amp: the early head in bf16, the GradScaler in fp16 ---------------------------------------
def test_keep_early_head_trains_under_bf16_autocast() -> None:
    """Regression: the early head's loss ran outside the step's autocast while the captured
    first-block map was bf16 ("mat1 and mat2 must have the same dtype")."""
    model = _small()
    keep = KeepMethod(model, 4, saliency_mode="early", seed=0)
    trainer = Trainer(
        model, torch.optim.AdamW(model.parameters(), lr=1e-3), methods=[keep], amp=torch.bfloat16
    )
    assert keep.early_head is not None
    before = keep.early_head.fc.weight.detach().clone()
    loss = trainer._step(_batch())
    assert set(loss.terms) == {"early"} and torch.isfinite(loss.total())
    assert not torch.equal(keep.early_head.fc.weight, before)


def test_fp16_uses_a_grad_scaler() -> None:
    """Regression: --amp fp16 ran without a GradScaler. The scaler scales the loss (grads
    seen by the optimizer are unscaled) and skips a step whose gradients overflow."""
    model = _small()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), amp=torch.float16)
    assert isinstance(trainer.scaler, torch.amp.GradScaler)
    scale = trainer.scaler.get_scale()
    trainer.step(_batch())
    assert trainer.state_dict()["scaler"]["scale"] == trainer.scaler.get_scale()

    class Overflow(Method):
        def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
            loss.terms["huge"] = (
                out.logits.float().sum() * 1e4
            )  # finite; scaled fp16 grads overflow
            return loss

    model = _small()
    trainer = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), methods=[Overflow()],
        amp=torch.float16,
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.named_parameters()}
    trainer.step(_batch())  # inf gradients: the scaler skips the update and backs off
    assert trainer.scaler is not None and trainer.scaler.get_scale() < scale
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), k


# -- checkpoints -------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"model": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="never code"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'model' entry"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_the_trainers_own_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    model = _small()
    keep = KeepMethod(model, 4, saliency_mode="early", seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(
        model, opt, methods=[keep], amp=torch.float16,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - 0.1 * e),
    )  # fmt: skip
    trainer.step(_batch())
    trainer.history.append({"epoch": 1, "train_loss": 1.0, "label_f1": [0.5, None]})
    trainer.save(tmp_path / "c.pt", {"run": {"seed": 0, "policy": "none"}})
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["run"] == {"seed": 0, "policy": "none"}
    assert "early_head.fc.weight" in state["methods"]["0:keep"]["modules"]


def test_check_resume_names_the_flag_that_differs() -> None:
    check_resume({"seed": 0, "policy": "none"}, {"seed": 0, "policy": "none"})
    with pytest.raises(ValueError, match="--batch-size is 16 but the checkpoint was trained"):
        check_resume({"batch_size": 32}, {"batch_size": 16})
    with pytest.raises(ValueError, match="--policy"):
        check_resume({"policy": "none"}, {"policy": "ra-m9-n2"})
