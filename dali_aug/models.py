"""Classifiers for the trainer: a small CNN for the demo data, ResNet-18/50 (He et al.,
arXiv:1512.03385) written here because torchvision does not import beside the CPU torch wheel,
and any timm model by name (``timm:NAME``, when timm imports).

Every model satisfies the trainer's protocol: ``features(x)`` (penultimate features) and
``head`` (the linear classifier). The project's own models also have ``early_features(x)``
(the output of the first block: the stem plus the first stage, ``body[:first_block]``) and
``forward_parts(x)``, which returns the features and the first-block map of one pass (for
methods that need both). The ResNets are initialised as torchvision's with
``zero_init_residual=True`` (and timm's default ``zero_init_last``): convolutions Kaiming
normal, fan-out, ReLU gain; batch norms weight 1, bias 0, except the last batch norm of each
residual branch, whose weight is 0, so every block starts as the identity.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import nn

__all__ = [
    "CLIP_AVG_PREFIX",
    "CLIP_MODEL_NAMES",
    "MODEL_NAMES",
    "TIMM_PREFIX",
    "Classifier",
    "ClipAverage",
    "ClipR2Plus1D",
    "ModelName",
    "TimmClassifier",
    "build_model",
    "timm_import_error",
    "timm_pre_logits",
]

#: a model name of :func:`build_model` (the ``--model`` choices of the CLIs)
ModelName = Literal["small", "resnet18", "resnet50"]
#: the names it takes
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
#: ``build_model("timm:NAME", ...)`` builds ``timm.create_model(NAME)`` (timm is optional)
TIMM_PREFIX = "timm:"
#: the clip models' names (input [B, T, C, H, W]); ``clip-avg-NAME`` averages the image
#: model NAME's features over the frames (:class:`ClipAverage`)
CLIP_MODEL_NAMES: tuple[str, ...] = ("clip-r2plus1d-small", "clip-avg-small")
CLIP_AVG_PREFIX = "clip-avg-"
_TIMM_HINT = (
    "timm is not importable here; install it into an environment whose torchvision imports "
    "(e.g. pip install torch==2.14.1 torchvision==0.29.1 timm, as benchmarks/setup_env.sh "
    "does), or use --model small|resnet18|resnet50"
)


class Classifier(nn.Module):
    """``stem`` -> ``body`` -> global average pool -> ``head``.

    ``first_block`` is the number of ``body`` modules that, after the stem, make up the
    network's first block (ResNet: the first stage), whose output ``early_features`` returns.
    """

    def __init__(
        self, stem: nn.Module, body: nn.Sequential, width: int, num_classes: int, first_block: int
    ) -> None:
        super().__init__()
        if not 0 <= first_block <= len(body):
            raise ValueError(f"first_block={first_block} must be in [0, {len(body)}]")
        self.stem = stem
        self.body = body
        self.head = nn.Linear(width, num_classes)
        self.first_block = first_block

    @property
    def early_layer(self) -> nn.Module:
        """The module whose output is :meth:`early_features` (for forward hooks)."""
        return self.body[self.first_block - 1] if self.first_block else self.stem

    def early_features(self, x: torch.Tensor) -> torch.Tensor:
        """The first block's feature map."""
        return self.body[: self.first_block](self.stem(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_parts(x)[0]

    def forward_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features [B, D], first-block map) of one pass."""
        early = self.body[: self.first_block](self.stem(x))
        return self.body[self.first_block :](early).mean(dim=(2, 3)), early

    @property
    def early_channels(self) -> int:
        """Channels of the first-block map."""
        first = [self.stem, *list(self.body)[: self.first_block]]
        convs = [m for b in first for m in b.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.f = nn.Sequential(
            _conv_bn(cin, width, stride),
            nn.Conv2d(width, out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.skip = _shortcut(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.f(x) + self.skip(x))


class _Bottleneck(_Basic):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        nn.Module.__init__(self)
        out = width * self.expansion
        self.f = nn.Sequential(
            _conv_bn(cin, width, 1, k=1),
            _conv_bn(width, width, stride),
            nn.Conv2d(width, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.skip = _shortcut(cin, out, stride)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def _resnet(block: type[_Basic], depths: tuple[int, ...], num_classes: int) -> Classifier:
    stem = nn.Sequential(_conv_bn(3, 64, 2, k=7), nn.MaxPool2d(3, 2, 1))
    layers: list[nn.Module] = []
    cin = 64
    for stage, depth in enumerate(depths):
        width = 64 * 2**stage
        for i in range(depth):
            layers.append(block(cin, width, 2 if (i == 0 and stage > 0) else 1))
            cin = width * block.expansion
    model = Classifier(stem, nn.Sequential(*layers), cin, num_classes, first_block=depths[0])
    _torchvision_init(model)
    return model


def _torchvision_init(model: nn.Module) -> None:
    """Module docstring: Kaiming fan-out convolutions, unit batch norms, and the last batch
    norm of every residual branch at zero."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, _Basic):
            last = m.f[-1]
            assert isinstance(last, nn.BatchNorm2d)
            nn.init.zeros_(last.weight)


def build_model(name: str, num_classes: int, *, pretrained: bool = False) -> nn.Module:
    """``small`` (stride-2 stem + 4 conv blocks, ~0.4 M parameters, receptive
    field ~77 px, for 32-96 px images), ``resnet18``, ``resnet50`` (a :class:`Classifier`),
    or ``timm:NAME`` (a :class:`TimmClassifier`; ``pretrained`` loads timm's weights, which
    must be in the local cache when there is no network). Clip models, for inputs
    [B, T, C, H, W]: ``clip-r2plus1d-small`` (:class:`ClipR2Plus1D`) and ``clip-avg-NAME``
    (:class:`ClipAverage` of the image model NAME, e.g. ``clip-avg-small``).

    Raises:
        ValueError: an unknown name, ``pretrained`` for a model of ours (they have no
            weights), or ``timm:`` without timm (with the install hint).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1")
    if name.startswith(TIMM_PREFIX):
        return _timm_model(name[len(TIMM_PREFIX) :], num_classes, pretrained)
    if pretrained and not name.startswith(CLIP_AVG_PREFIX + TIMM_PREFIX):
        raise ValueError(
            f"--pretrained: the model {name!r} has no pretrained weights; use a "
            f"'{TIMM_PREFIX}NAME' model for pretrained weights"
        )
    if name == "clip-r2plus1d-small":
        return ClipR2Plus1D(num_classes)
    if name.startswith(CLIP_AVG_PREFIX):
        return _clip_average(name[len(CLIP_AVG_PREFIX) :], num_classes, pretrained)
    if name == "small":
        stem = _conv_bn(3, 32, 2)
        body = nn.Sequential(
            _conv_bn(32, 48),
            nn.MaxPool2d(2),
            _conv_bn(48, 96),
            nn.MaxPool2d(2),
            _conv_bn(96, 128),
            nn.MaxPool2d(2),
            _conv_bn(128, 192),
        )
        return Classifier(stem, body, 192, num_classes, first_block=2)  # conv + pool
    if name == "resnet18":
        return _resnet(_Basic, (2, 2, 2, 2), num_classes)
    if name == "resnet50":
        return _resnet(_Bottleneck, (3, 4, 6, 3), num_classes)
    raise ValueError(
        f"unknown model {name!r}; use 'small', 'resnet18', 'resnet50', '{TIMM_PREFIX}NAME', "
        f"'clip-r2plus1d-small' or '{CLIP_AVG_PREFIX}NAME' (NAME an image model)"
    )


def timm_pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm model's penultimate features [B, D]:
    ``forward_head(forward_features(x), pre_logits=True)``."""
    timm_model: Any = model
    return timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)


class TimmClassifier(nn.Module):
    """A timm model in the trainer's protocol: ``features(x)`` is
    ``forward_head(forward_features(x), pre_logits=True)`` and ``head`` maps them to the
    logits (``get_classifier()``), so ``head(features(x))`` equals the model's own forward.

    Args:
        model: a model from ``timm.create_model``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for attr in ("forward_features", "forward_head", "get_classifier"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(
                    f"{type(model).__name__} has no {attr}(); the trainer needs timm's "
                    "forward_features / forward_head(pre_logits=True) / get_classifier()"
                )
        self.model = model
        head = model.get_classifier()  # type: ignore[operator]
        if not isinstance(head, nn.Module):
            raise TypeError(f"{type(model).__name__}.get_classifier() is not a module")
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return timm_pre_logits(self.model, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def timm_import_error() -> str | None:
    """None when timm imports here, else why not and how to get it (one line)."""
    try:
        import timm  # noqa: F401
    except Exception as err:  # ImportError, or torchvision failing inside timm's import
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"{_TIMM_HINT} ({first})"
    return None


def _timm_model(name: str, num_classes: int, pretrained: bool) -> TimmClassifier:
    problem = timm_import_error()
    if problem is not None:
        raise ValueError(f"--model {TIMM_PREFIX}{name}: {problem}")
    import timm

    if name not in timm.list_models(pretrained=False):
        raise ValueError(
            f"--model {TIMM_PREFIX}{name}: timm has no model {name!r}; see timm.list_models()"
        )
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes)
    except Exception as err:  # pretrained weights absent offline, and the like
        raise ValueError(
            f"--model {TIMM_PREFIX}{name}: timm could not build it ({err}); without network "
            "access pretrained weights must already be in the Hugging Face cache"
        ) from None
    return TimmClassifier(model)


def _check_clips(x: torch.Tensor, model: str) -> None:
    if x.dim() != 5:
        raise ValueError(
            f"{model}: expected clips [B, T, C, H, W], got a {x.dim()}-D input of shape "
            f"{tuple(x.shape)}; a clip model needs frames: set the Loader's clip_length (or "
            "use an image model)"
        )


def _r2plus1d_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    """A (2+1)D block: a 1x3x3 spatial convolution (stride ``stride`` in H and W), then a
    3x1x1 temporal one, each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(True),
        nn.Conv3d(cout, cout, (3, 1, 1), 1, (1, 0, 0), bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(True),
    )


class ClipR2Plus1D(nn.Module):
    """A small (2+1)D CNN for clips (Tran et al., *A Closer Look at Spatiotemporal
    Convolutions for Action Recognition*, arXiv:1711.11248, Sec. 3.5: a 3D convolution split
    into a spatial and a temporal one), without residuals: four blocks of
    :func:`_r2plus1d_block` (spatial strides 2, 2, 2, 1; no temporal stride), then a global
    average pool over time and space and ``head``. Sized for 32 px clips of 8-16 frames on a
    CPU (``widths`` (16, 32, 64, 128): about 0.4 M parameters).

    Shape:
        ``x``: float [B, T, C, H, W] (T >= 1) -> features [B, widths[-1]], logits
        [B, num_classes].

    Raises:
        ValueError: an input that is not 5-D (naming the expected shape and the Loader's
            ``clip_length``).
    """

    def __init__(
        self, num_classes: int, *, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        cin = in_channels
        for i, width in enumerate(widths):
            blocks.append(_r2plus1d_block(cin, width, 2 if i < len(widths) - 1 else 1))
            cin = width
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_clips(x, "clip-r2plus1d-small")
        return self.body(x.transpose(1, 2)).mean(dim=(2, 3, 4))  # [B, C, T, H, W] inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ClipAverage(nn.Module):
    """An image model applied to every frame, its features averaged over time (the
    "single-frame" baseline of Karpathy et al., CVPR 2014, with late average fusion): it
    cannot tell a clip from the clip reversed.

    Args:
        frames: an image model of the protocol (``features`` [B, D] and ``head``); its
            ``head`` becomes this model's (shared, not copied).
        name: the model's name, for error messages.

    Shape:
        ``x``: float [B, T, C, H, W] -> features [B, D], logits [B, num_classes].

    Raises:
        ValueError: an input that is not 5-D (naming the expected shape and the Loader's
            ``clip_length``).
    """

    def __init__(self, frames: nn.Module, name: str = "clip-avg") -> None:
        super().__init__()
        head = getattr(frames, "head", None)
        if not callable(getattr(frames, "features", None)) or not isinstance(head, nn.Module):
            raise TypeError(
                f"{name}: {type(frames).__name__} has no features() and head; pass a model "
                "from build_model"
            )
        self.frames = frames
        self.head = head
        self.name = name

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_clips(x, self.name)
        b, t = x.shape[:2]
        per_frame = self.frames.features(x.flatten(0, 1))  # type: ignore[operator]
        return per_frame.reshape(b, t, -1).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _clip_average(frame_name: str, num_classes: int, pretrained: bool) -> ClipAverage:
    if frame_name.startswith("clip-"):
        raise ValueError(
            f"{CLIP_AVG_PREFIX}{frame_name}: {frame_name!r} is a clip model; name an image "
            f"model, e.g. {CLIP_AVG_PREFIX}small"
        )
    frames = build_model(frame_name, num_classes, pretrained=pretrained)
    return ClipAverage(frames, f"{CLIP_AVG_PREFIX}{frame_name}")
