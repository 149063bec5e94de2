"""The timm-style recipe pieces of the training step: Mixup/CutMix soft targets, Random
Erasing, the model EMA and the per-step warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dali_aug.train._ema import ModelEma
from dali_aug.train._erasing import ErasingConfig, RandomErasingMethod
from dali_aug.train._mixup import MixupConfig, MixupMethod, soft_targets
from dali_aug.train._schedule import WarmupCosine


def _tagged(n: int, h: int = 16, w: int = 16) -> torch.Tensor:
    """Images whose every pixel holds the sample's index: where a pixel came from is
    readable from its value."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).clone()


# -- mixup / cutmix ------------------------------------------------------------------------


def test_soft_targets_are_timms_smoothed_one_hot() -> None:
    y = soft_targets(torch.tensor([2, 0]), 4, smoothing=0.1)
    assert torch.allclose(y[0], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    assert torch.allclose(y.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="single-label"):
        soft_targets(torch.ones(2, 4), 4, smoothing=0.1)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("alphas", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_single_label_targets_sum_to_one_and_weight_the_partner(
    mode: str, alphas: tuple[float, float]
) -> None:
    n, classes = 8, 10
    cfg = MixupConfig(mixup_alpha=alphas[0], cutmix_alpha=alphas[1], mode=mode, smoothing=0.1)
    mix = MixupMethod(cfg, classes, seed=3)
    labels = torch.arange(n) % classes
    images, targets = mix.mix(_tagged(n), labels)
    assert targets.shape == (n, classes)
    assert torch.allclose(targets.sum(1), torch.ones(n))
    # the target's weight on the own class (smoothed) is the image's share of own pixels
    own = (images == torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)).float()
    for i in range(n):
        partner = n - 1 - i
        if partner == i:
            continue
        lam = (targets[i, labels[i]] - 0.01) / 0.9  # undo the smoothing (off = 0.1 / 10)
        if alphas[1] > 0 and alphas[0] == 0:  # CutMix only: the pasted area is 1 - lam
            assert own[i].mean().item() == pytest.approx(lam.item(), abs=1e-6)
        else:  # the pixel values are a blend, or pasted: either way lam * i + (1 - lam) * p
            assert images[i].mean().item() == pytest.approx(
                lam.item() * i + (1 - lam.item()) * partner, abs=1e-4
            )


def test_multi_hot_targets_are_the_lambda_combination_and_elem_lambdas_differ() -> None:
    n, classes = 6, 5
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(n, classes, generator=gen) < 0.5).float()
    cfg = MixupConfig(mixup_alpha=1.0, cutmix_alpha=0.0, mode="elem", smoothing=0.0)
    images, targets = MixupMethod(cfg, classes, seed=1).mix(_tagged(n), labels)
    lams = []
    for i in range(n):
        partner = n - 1 - i
        lam = (images[i, 0, 0, 0] - partner) / (i - partner)  # pixel = lam*i + (1-lam)*p
        assert torch.allclose(targets[i], lam * labels[i] + (1 - lam) * labels[partner], atol=1e-5)
        lams.append(round(float(lam), 5))
    assert len(set(lams[: n // 2])) == n // 2  # one lam per sample, not per batch
    with pytest.raises(ValueError, match="columns"):
        MixupMethod(cfg, classes + 1).mix(_tagged(n), labels)


def test_batch_and_pair_modes_share_lambda_as_timm() -> None:
    n = 6
    labels = torch.arange(n)
    for mode, distinct in (("batch", 1), ("pair", 3)):
        cfg = MixupConfig(mixup_alpha=1.0, cutmix_alpha=0.0, mode=mode, smoothing=0.0)
        _, targets = MixupMethod(cfg, n, seed=5).mix(_tagged(n), labels)
        lams = targets[torch.arange(n), labels]  # the weight of each sample's own class
        assert torch.allclose(lams, lams.flip(0))  # i and B-1-i share their draw (timm)
        assert torch.allclose(targets[torch.arange(n), labels.flip(0)], 1 - lams)
        assert len({round(float(x), 5) for x in lams}) == distinct


def test_mixup_is_seeded_and_resumable() -> None:
    cfg = MixupConfig(mode="elem")
    a, b = MixupMethod(cfg, 4, seed=7), MixupMethod(cfg, 4, seed=7)
    x, y = _tagged(4), torch.tensor([0, 1, 2, 3])
    first = a.mix(x, y)
    state = a.state_dict()
    again = a.mix(x, y)
    assert torch.equal(first[0], b.mix(x, y)[0])
    b.load_state_dict(state)
    assert torch.equal(again[1], b.mix(x, y)[1])


def test_mixup_config_rejects_what_would_not_apply() -> None:
    with pytest.raises(ValueError, match="both 0"):
        MixupConfig(mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="mode"):
        MixupConfig(mode="row")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prob"):
        MixupConfig(prob=1.5)


# -- random erasing ------------------------------------------------------------------------


def test_erasing_boxes_are_per_sample_within_the_area_range() -> None:
    cfg = ErasingConfig(prob=1.0, mode="const")
    boxes = RandomErasingMethod(cfg, seed=0).boxes(64, 32, 32)[:, 0]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert (area > 0).float().mean() > 0.9  # some of the 10 attempts fit nearly always
    fitted = area[area > 0].float() / (32 * 32)
    assert fitted.min() >= 0.02 - 0.01 and fitted.max() <= 1 / 3 + 0.05
    assert (boxes[:, 2] <= 32).all() and (boxes[:, 3] <= 32).all() and (boxes >= 0).all()
    assert len({tuple(b.tolist()) for b in boxes}) > 50  # drawn per sample
    none = RandomErasingMethod(ErasingConfig(prob=0.5), seed=0).boxes(400, 32, 32)[:, 0]
    erased = (none[:, 2] > none[:, 0]).float().mean().item()
    assert 0.4 < erased < 0.6


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_erasing_fill_matches_remode(mode: str) -> None:
    x = torch.full((16, 3, 24, 24), 5.0)
    out = RandomErasingMethod(ErasingConfig(prob=1.0, mode=mode), seed=1).erase(x)
    for i in range(16):
        inside = out[i, 0] != 5.0
        if not inside.any():
            continue
        values = out[i][:, inside]  # [3, pixels]
        if mode == "const":
            assert torch.all(values == 0)
        elif mode == "rand":  # one value per channel
            assert torch.all(values == values[:, :1]) and values[:, 0].unique().numel() == 3
        else:  # one value per pixel
            assert values.unique().numel() > values.shape[1]


def test_erasing_counts_and_determinism() -> None:
    cfg = ErasingConfig(prob=1.0, max_count=3)
    boxes = RandomErasingMethod(cfg, seed=2).boxes(200, 32, 32)
    used = (boxes[..., 2] > boxes[..., 0]).sum(1)
    assert set(used.tolist()) >= {1, 2, 3}
    # the total area is shared by a sample's boxes: each of 3 holds at most a third of it
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    assert area[used == 3].max().item() <= 1.2 * (32 * 32 / 3) / 3
    again = RandomErasingMethod(cfg, seed=2).boxes(200, 32, 32)
    assert torch.equal(boxes, again)
    with pytest.raises(ValueError, match="prob"):
        ErasingConfig(prob=0.0)


# -- EMA and the schedule ------------------------------------------------------------------


def test_ema_equals_the_closed_form_average() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    decay = 0.9
    ema = ModelEma(model, decay)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots = []
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 3))  # moves the batch-norm statistics and counter
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        ema.update(model)
    got = ema.module.state_dict()
    for key, value in start.items():
        if not value.is_floating_point():
            assert torch.equal(got[key], snapshots[-1][key])
            continue
        want = decay**5 * value + sum(
            (1 - decay) * decay ** (4 - t) * snapshots[t][key] for t in range(5)
        )
        assert torch.allclose(got[key], want, atol=1e-6), key
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_warmup_then_cosine_per_step_matches_the_formula() -> None:
    s = WarmupCosine(base_lr=0.1, total=100, warmup=10, warmup_lr=1e-4, min_lr=1e-5)
    assert s(0) == pytest.approx(1e-4)
    assert s(5) == pytest.approx(1e-4 + (0.1 - 1e-4) * 0.5)
    assert s(10) == pytest.approx(0.1)
    t = 55
    u = (t - 10) / 90
    assert s(t) == pytest.approx(1e-5 + (0.1 - 1e-5) * (1 + math.cos(math.pi * u)) / 2)
    assert s(100) == pytest.approx(1e-5) and s(150) == pytest.approx(1e-5)
    assert s.factor(10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warm-up must be shorter"):
        WarmupCosine(base_lr=0.1, total=10, warmup=10)
