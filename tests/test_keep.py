"""KeepAugment pieces: saliency modes and the Selective-Cut / Selective-Paste / KeepCutMix
augmentations on top of the region selection (whose own tests are test_region_select.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from dali_aug.kernels.region_select import region_scores, score_threshold

from dali_aug.cli import main
from dali_aug.datasets import make_shapes
from dali_aug.keep import (
    EarlyHead,
    KeepHook,
    box_mask,
    keep_cutmix,
    keep_cutout,
    keep_paste,
    saliency,
)
from dali_aug.loader import Batch
from dali_aug.models import build_model

SIZE = (6, 6)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small", 4).eval()


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mode", ["full", "lowres", "early"])
@pytest.mark.parametrize("kind", ["single", "multi", "none"])
def test_saliency_shapes(
    model: torch.nn.Module, images: torch.Tensor, mode: str, kind: str
) -> None:
    targets = {
        "single": torch.tensor([0, 1, 2, 3, 0, 1]),
        "multi": (torch.rand(6, 4, generator=torch.Generator().manual_seed(2)) > 0.5).float(),
        "none": None,
    }[kind]
    head = EarlyHead(4)
    sal = saliency(model, images, targets, mode=mode, early_head=head)  # type: ignore[arg-type]
    assert sal.shape == (6, 32, 32) and sal.dtype == torch.float32
    assert bool((sal >= 0).all()) and bool(torch.isfinite(sal).all())
    assert float(sal.sum()) > 0
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients


def test_full_saliency_is_the_input_gradient(model: torch.nn.Module, images: torch.Tensor) -> None:
    targets = torch.tensor([3, 2, 1, 0, 3, 2])
    x = images.clone().requires_grad_(True)
    model(x).gather(1, targets.view(-1, 1)).sum().backward()
    assert x.grad is not None
    expected = x.grad.abs().amax(1)
    torch.testing.assert_close(saliency(model, images, targets), expected)


def test_saliency_errors(model: torch.nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown saliency mode"):
        saliency(model, images, None, mode="bad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="early_head"):
        saliency(model, images, None, mode="early")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        saliency(model, images[:, :1], None)
    with pytest.raises(ValueError, match="targets"):
        saliency(model, images, torch.tensor([0, 1]))


def _maps() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    sal = torch.rand(6, 32, 32, generator=g)
    sal[:3, 8:16, 10:20] += 5.0  # a salient object in half of the maps
    return sal


def test_keep_cutout_cuts_only_low_saliency(images: torch.Tensor) -> None:
    sal = _maps()
    out, boxes = keep_cutout(images, sal, SIZE, tau=0.6, generator=torch.Generator().manual_seed(0))
    scores = region_scores(sal, SIZE)
    q = score_threshold(scores, 0.6)
    mask = box_mask(boxes, 32, 32)
    for i, (y0, x0, _, _) in enumerate(boxes.tolist()):
        assert float(scores[i, y0, x0]) < float(q[i])
    assert bool((out[mask.expand_as(out)] == 0).all())
    assert torch.equal(out[~mask.expand_as(out)], images[~mask.expand_as(images)])


def test_keep_paste_restores_a_high_saliency_box(images: torch.Tensor) -> None:
    sal = _maps()
    augmented = -images
    out, boxes = keep_paste(
        augmented, images, sal, SIZE, generator=torch.Generator().manual_seed(0)
    )
    scores = region_scores(sal, SIZE)
    q = score_threshold(scores, 0.6)
    mask = box_mask(boxes, 32, 32).expand_as(out)
    for i, (y0, x0, _, _) in enumerate(boxes.tolist()):
        assert float(scores[i, y0, x0]) >= float(q[i])
    assert torch.equal(out[mask], images[mask])  # pasted pixels are the original's
    assert torch.equal(out[~mask], augmented[~mask])
    with pytest.raises(ValueError, match="differ"):
        keep_paste(augmented[:2], images, sal, SIZE)


@pytest.mark.parametrize("multi", [False, True])
def test_keep_cutmix(images: torch.Tensor, multi: bool) -> None:
    sal = _maps()
    targets = (
        (torch.rand(6, 4, generator=torch.Generator().manual_seed(4)) > 0.5).float()
        if multi
        else torch.tensor([0, 1, 2, 3, 0, 1])
    )
    out, mixed, src, dst = keep_cutmix(
        images, targets, sal, SIZE, 4, generator=torch.Generator().manual_seed(0)
    )
    partner = torch.roll(torch.arange(6), 1)
    for i in range(6):
        sy, sx, sy1, sx1 = src[i].tolist()
        dy, dx, dy1, dx1 = dst[i].tolist()
        assert torch.equal(out[i, :, dy:dy1, dx:dx1], images[partner[i], :, sy:sy1, sx:sx1])
    scores = region_scores(sal, SIZE)
    q = score_threshold(scores, 0.6)
    for i in range(6):  # source is salient in the partner, destination is not in the target
        assert float(scores[partner[i], src[i, 0], src[i, 1]]) >= float(q[partner[i]])
        assert float(scores[i, dst[i, 0], dst[i, 1]]) < float(q[i])
    area = 36 / 1024
    y = targets.float() if multi else torch.nn.functional.one_hot(targets, 4).float()
    torch.testing.assert_close(mixed, (1 - area) * y + area * y[partner])


@pytest.mark.parametrize("keep_mode", ["cutout", "paste", "cutmix"])
@pytest.mark.parametrize("sal_mode", ["full", "lowres", "early"])
def test_keep_method_trains_from_the_cli(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, keep_mode: str, sal_mode: str
) -> None:
    data = tmp_path_factory.getbasetemp() / "keep-shapes"
    make_shapes(data, 32, seed=3, size=32)
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(data),
        "--size",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--method",
        "keep",
        "--keep-mode",
        keep_mode,
        "--saliency",
        sal_mode,
    ]
    assert main(argv) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["images"] == 32
    assert math.isfinite(history[0]["train_loss"])


def test_keep_hook_paste_needs_provenance(model: torch.nn.Module, images: torch.Tensor) -> None:
    hook = KeepHook(model, 4, mode="paste", saliency_mode="full")
    batch = Batch(images=images, labels=torch.zeros(6, dtype=torch.long), indices=torch.arange(6))
    with pytest.raises(ValueError, match="provenance=True"):
        hook.before_forward(None, batch)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep mode"):
        KeepHook(model, 4, mode="bad")  # type: ignore[arg-type]
