"""dali_aug.models: the ResNets' initialisation, the timm wrapper, the clip models (shapes,
protocol, temporal order, a short training on the moving-object clips), the errors."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from dali_aug.datasets import moving_clips
from dali_aug.models import CLIP_MODEL_NAMES, ClipAverage, TimmClassifier, build_model
from dali_aug.train._metrics import average_precision


def test_resnets_start_every_block_as_the_identity_with_kaiming_fan_out() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 10)
    blocks = [m for m in model.modules() if hasattr(m, "f") and hasattr(m, "skip")]
    assert len(blocks) == 8
    for block in blocks:
        last = block.f[-1]
        assert isinstance(last, nn.BatchNorm2d) and torch.all(last.weight == 0)
        x = torch.randn(2, last.num_features, 8, 8).abs()  # >= 0, as after a ReLU
        if isinstance(block.skip, nn.Identity):
            block.eval()
            assert torch.allclose(block(x), x)  # relu(0 + x) = x
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # a conv whose fan-in and fan-out differ (256 -> 512, 3x3), so the two modes disagree
    big = max((c for c in convs if c.in_channels != c.out_channels), key=lambda c: c.weight.numel())
    fan_out = big.out_channels * big.kernel_size[0] * big.kernel_size[1]
    assert big.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
    stem_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.all(stem_bn.weight == 1) and torch.all(stem_bn.bias == 0)


class _TimmLike(nn.Module):
    """The part of timm's model API the wrapper uses."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3)
        self.pre = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 5)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.relu(self.pre(x.mean((2, 3))))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def test_timm_wrapper_gives_the_pre_logits_features_and_the_models_own_logits() -> None:
    inner = _TimmLike()
    model = TimmClassifier(inner)
    x = torch.randn(3, 3, 9, 9)
    assert model.features(x).shape == (3, 6)
    assert torch.allclose(model(x), inner(x))
    assert model.head is inner.fc
    with pytest.raises(TypeError, match="forward_features"):
        TimmClassifier(nn.Linear(2, 2))


def test_timm_without_timm_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ValueError, match="pip install torch==2.14.1 torchvision==0.29.1 timm"):
        build_model("timm:resnet18", 4)


def test_bad_names_and_pretrained_for_our_models_are_errors() -> None:
    with pytest.raises(ValueError, match="timm:NAME"):
        build_model("resnet101", 4)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("small", 4, pretrained=True)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small", 0)


@pytest.mark.parametrize("name", CLIP_MODEL_NAMES)
def test_clip_models_keep_the_protocol(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 5).eval()
    x = torch.randn(2, 8, 3, 32, 32)
    features = model.features(x)
    assert features.dim() == 2 and features.shape[0] == 2
    assert isinstance(model.head, nn.Linear) and model.head.in_features == features.shape[1]
    logits = model(x)
    assert logits.shape == (2, 5) and torch.allclose(logits, model.head(features))
    with pytest.raises(ValueError, match=r"\[B, T, C, H, W\].*4-D.*clip_length"):
        model(torch.randn(2, 3, 32, 32))


def test_frame_order_matters_to_r2plus1d_not_to_the_frame_average() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 3, 32, 32)
    r21 = build_model("clip-r2plus1d-small", 4).eval()
    avg = build_model("clip-avg-small", 4).eval()
    with torch.no_grad():
        assert not torch.allclose(r21(x), r21(x.flip(1)), atol=1e-4)
        assert torch.allclose(avg(x), avg(x.flip(1)), atol=1e-5)
    assert isinstance(avg, ClipAverage) and avg.head is avg.frames.head


def test_clip_model_names_that_are_errors() -> None:
    with pytest.raises(ValueError, match="clip model; name an image model"):
        build_model("clip-avg-clip-r2plus1d-small", 4)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("clip-avg-nope", 4)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("clip-r2plus1d-small", 4, pretrained=True)
    with pytest.raises(TypeError, match="features"):
        ClipAverage(nn.Linear(2, 2))


@pytest.mark.slow
def test_r2plus1d_learns_the_motion_labels_of_the_moving_clips() -> None:
    """400 training clips of 8 frames, 10 epochs of multi-label BCE (about 14 s on one CPU
    thread); held-out mAP well above chance (a label's chance AP is its share, 0.15 for a
    motion, 0.46 for a kind), the four directions, growing and flickering included. Measured:
    mAP 0.72; directions 0.95-0.99, grows 0.95, flickers 0.66, the turns 0.27-0.31."""
    torch.manual_seed(0)
    clips, targets, classes = moving_clips(700, length=8, seed=1, cache=False)
    x = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float() / 255 - 0.5
    y = torch.from_numpy(targets)
    model = build_model("clip-r2plus1d-small", len(classes))
    steps, batch = 10 * (400 // 32), 32
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        if step % (400 // batch) == 0:
            order = torch.randperm(400, generator=generator)
        rows = order[(step % (400 // batch)) * batch :][:batch]
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[rows]), y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        ap = average_precision(model.eval()(x[400:]), y[400:])
    per_label = dict(zip(classes, ap.tolist(), strict=True))
    assert ap.mean() > 0.6, per_label
    # a static streak shows the axis of a motion (AP near 0.5), only the order its sign
    for label in ("moves left", "moves right", "moves up", "moves down"):
        assert per_label[label] > 0.75, per_label
    assert per_label["grows"] > 0.5 and per_label["flickers"] > 0.4, per_label
