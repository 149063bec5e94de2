"""dali_aug.models: the ResNets' initialisation, the timm wrapper, the errors."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from dali_aug.models import TimmClassifier, build_model


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
