"""The small CPU check of VFA's mechanism (the decorrelation claim of "Enhance via Decoupling:
Improving Multi-Label Classifiers with Variational Feature Augmentation"): feature-level
synthetic multi-label data whose training split has a strong spurious co-occurrence and a rare
label, and whose test split has independent labels; a tiny MLP classifier trained with and
without VFA. ``python -m benchmarks.vfa.step mechanism`` runs it (``benchmarks/vfa/NOTES.md``).

Labels: ``A``; ``B``, equal to ``A`` in 95% of the training samples and carrying a weak
signal (so a classifier can read B off A's signal); ``R``, rare (5%) in training; two
independent labels. Inputs: ``sum_j y_j * s_j * p_j + noise`` with orthonormal directions
``p_j`` in R^32. The test split draws every label independently (``R`` at 30%). The
default strengths make B weak next to A; ``SyntheticSpec(strengths=(1.5,) * 5)`` is the
equal-strength variant, where B's own signal is as visible as A's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from dali_aug.batch import Batch
from dali_aug.methods.vfa.method import VFAConfig, VFAMethod
from dali_aug.train import Method, Trainer

__all__ = [
    "LABELS",
    "SyntheticSpec",
    "TinyClassifier",
    "auc",
    "make_data",
    "make_split",
    "rare_combo_recall",
    "run",
]

LABELS: tuple[str, ...] = ("A", "B", "R", "I1", "I2")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """The data and the training run of the check.

    Attributes:
        n_train: training samples.
        n_test: test samples.
        dim: input width.
        cooccur: P(B = A) in training.
        rare: P(R) in training.
        strengths: the signal strength of each label (default: A strong, B weak).
        noise: the noise std per input dimension.
        steps: training steps.
        batch_size: batch size.
        lr: AdamW learning rate.
    """

    n_train: int = 4000
    n_test: int = 4000
    dim: int = 32
    cooccur: float = 0.95
    rare: float = 0.05
    strengths: tuple[float, ...] = (2.0, 0.6, 1.5, 1.5, 1.5)
    noise: float = 0.7
    steps: int = 400
    batch_size: int = 128
    lr: float = 1e-3


class TinyClassifier(nn.Module):
    """A two-layer MLP backbone and a linear head (the trainer's features/head protocol)."""

    def __init__(self, dim: int, width: int, num_labels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width))
        self.head = nn.Linear(width, num_labels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_split(
    spec: SyntheticSpec, *, train: bool, generator: torch.Generator, directions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [n, dim], multi-hot targets [n, 5]) of the training or the test split."""
    n = spec.n_train if train else spec.n_test
    u = torch.rand(n, 5, generator=generator)
    y = torch.empty(n, 5)
    y[:, 0] = u[:, 0] < 0.5
    if train:
        y[:, 1] = torch.where(u[:, 1] < spec.cooccur, y[:, 0], 1 - y[:, 0])
        y[:, 2] = u[:, 2] < spec.rare
    else:
        y[:, 1] = u[:, 1] < 0.5
        y[:, 2] = u[:, 2] < 0.3
    y[:, 3:] = u[:, 3:] < 0.3
    signal = (y * torch.tensor(spec.strengths)) @ directions
    x = signal + spec.noise * torch.randn(n, spec.dim, generator=generator)
    return x, y


def make_data(
    seed: int, spec: SyntheticSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(signal directions [5, dim], training inputs, training targets, test inputs, test
    targets) of seed ``seed``."""
    g = torch.Generator().manual_seed(1000 + seed)
    directions = torch.linalg.qr(torch.randn(spec.dim, spec.dim, generator=g))[0][:5]
    x, y = make_split(spec, train=True, generator=g, directions=directions)
    xt, yt = make_split(spec, train=False, generator=g, directions=directions)
    return directions, x, y, xt, yt


def rare_combo_recall(pred: torch.Tensor, targets: torch.Tensor) -> float:
    """The recall of B where A = 0 and of A where B = 0, averaged (boolean predictions and
    targets [n, 5]): the combinations at 2.5% each in training."""
    b_only = (targets[:, 1] == 1) & (targets[:, 0] == 0)
    a_only = (targets[:, 0] == 1) & (targets[:, 1] == 0)
    return float(0.5 * (pred[b_only, 1].float().mean() + pred[a_only, 0].float().mean()))


def _batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[Batch]:
    idx = torch.arange(len(x))
    return [
        Batch(x[i : i + size], y[i : i + size], idx[i : i + size]) for i in range(0, len(x), size)
    ]


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The area under the ROC curve: P(score of a positive > score of a negative), ties 1/2."""
    pos, neg = scores[labels.bool()], scores[~labels.bool()]
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def _probe_auc(train: torch.Tensor, y: torch.Tensor, test: torch.Tensor, yt: torch.Tensor) -> float:
    """Test AUC of a least-squares linear probe fitted on the training split."""
    ones = torch.ones(len(train), 1, dtype=train.dtype)
    w = torch.linalg.lstsq(torch.cat([train, ones], 1), y[:, None]).solution
    return auc(torch.cat([test, torch.ones(len(test), 1, dtype=test.dtype)], 1) @ w[:, 0], yt)


def run(seed: int, *, vfa: VFAConfig | None, spec: SyntheticSpec | None = None) -> dict[str, Any]:
    """Trains the tiny classifier (with VFA when ``vfa`` is given) and evaluates it on the
    independent-label test split.

    Returns:
        the trainer's multi-label metrics plus ``recall_R`` (the rare label),
        ``recall_rare_combos`` (the recall of B where A = 0 and of A where B = 0, averaged:
        the combinations at 2.5% each in training) and ``history`` (mean loss terms).
    """
    spec = spec if spec is not None else SyntheticSpec()
    _, x, y, xt, yt = make_data(seed, spec)
    torch.manual_seed(seed)  # the model's initialisation (nn.Linear draws from the global RNG)
    model = TinyClassifier(spec.dim, 64, 5)
    methods: list[Method] = [] if vfa is None else [VFAMethod(model, 5, vfa, seed=seed)]
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=1e-4)
    trainer = Trainer(model, opt, multi_label=True, methods=methods)
    order = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    steps = 0
    while steps < spec.steps:
        perm = torch.randperm(len(x), generator=order)
        for batch in _batches(x[perm], y[perm], spec.batch_size):
            if steps == spec.steps:
                break
            loss = trainer._step(batch)
            for k, v in loss.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            steps += 1
    metrics = trainer.evaluate(_batches(xt, yt, 1000))
    with torch.no_grad():
        model.eval()
        pred = model(xt) > 0
    metrics["recall_R"] = metrics["label_recall"][2]
    metrics["recall_rare_combos"] = rare_combo_recall(pred, yt)
    metrics["terms"] = {k: v / steps for k, v in sums.items()}
    with torch.no_grad():
        logit_b = model(xt)[:, 1]
        probe = {"head_B_vs_A": auc(logit_b, yt[:, 0]), "head_B_vs_B": auc(logit_b, yt[:, 1])}
        if methods:
            method = methods[0]
            assert isinstance(method, VFAMethod)
            noise = torch.Generator().manual_seed(seed)
            sub = method.net.decouple(model.features(x), generator=noise).sub[1].double()
            sub_t = method.net.decouple(model.features(xt), generator=noise).sub[1].double()
            for j, name in enumerate(("A", "B")):
                probe[f"sub_B_vs_{name}"] = _probe_auc(sub, y[:, j].double(), sub_t, yt[:, j])
    metrics["probe"] = probe
    return metrics
