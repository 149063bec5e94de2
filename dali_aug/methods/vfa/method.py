"""VFA, Variational Feature Augmentation (Chen, Wang, Xue, Ding, Sun, "Enhance via
Decoupling: Improving Multi-Label Classifiers with Variational Feature Augmentation", Sec. 2)
as a training-step method. No reference implementation is public; this follows the paper's
equations, with our readings where they are ambiguous (below and :class:`VFAConfig`).

In the step, on the model's penultimate features v [N, D] (``out.features``):

1. Decoupling: C two-layer MLPs f_j give sub-features v^j [d] (Sec. 2.2).
2. A VAE per label: ``[mu_j, log sigma_j^2] = e_j(v^j)``, ``z_j = mu_j + sigma_j * eps``,
   decoded ``d_j(z_j)`` (Eq. 1); a binary classifier h_j on z_j against label j (Eq. 3,
   Guided-VAE).
3. Shuffle (Eq. 4, Sec. 2.3): for every label j an independent permutation of the batch
   moves the decoded sub-feature of label j together with label j (:func:`shuffle`).
4. Aggregation (Eq. 5, 6): ``V~ = g(shuffled)``, ``V~_u = g(unshuffled)``.
5. Losses (Eq. 2, 3, 6, 7), as ``loss.terms`` (logged per epoch as ``loss/<name>``):

   * ``vfa_aug``: ``beta * BCE(h(V~), y~)`` with h the model's own head;
   * ``vfa_kl``: ``sum_j -1/2 sum_k (1 + log sigma^2 - mu^2 - sigma^2)``, the standard
     minimisation sign (the paper prints the opposite sign, a misprint);
   * ``vfa_vae_rec``: ``sum_j ||v^j - d_j(z_j)||_2``; ``vfa_kl + vfa_vae_rec`` is L_vae;
   * ``vfa_bin``: ``(1/C) sum_j BCE(h_j(z_j), y^j)``;
   * ``vfa_rec``: ``||V~_u - V||_2`` (L2 norm per sample, target detached).

   Every per-sample quantity is averaged over the batch. The trainer's own loss is
   ``BCE(h(v), y)``, the first term of Eq. 7.

Gap-fills (:class:`VFAConfig`; the paper fixes none of them): the sizes, the term weights,
``detach_backbone``, ``shuffle_source``, and three options added against the collapse of the
per-label VAEs to the prior (which the paper's unit weights cause on our synthetic check:
L_vae summed over C labels outweighs the rest, and with KL and BCE on the same scale, coding
a label in z_j costs about what it gains in L_bin): ``vae_reduction="mean"`` (L_vae per
label), ``kl_warmup_steps`` and ``aug_start_step``. The defaults are still the paper's
reading (sum over labels, weights 1, end-to-end, no schedule), the closest to its text. On
the held-out seeds of the synthetic check (``docs/methods/vfa.md``), the ``detached`` preset
(:data:`PRESETS`: ``VFAConfig(vae_reduction="mean", detach_backbone=True, kl_weight=0.1)``)
beats the baseline a little (mA, rare label combinations) where the co-occurring labels are
equally visible, and ties it where one of them is weak; the defaults lose to the baseline on
both.

The modules live on the method (:meth:`VFAMethod.modules`), never on the model: the exported
model is the baseline architecture with no extra parameters or inference cost (Sec. 2.1).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.methods.vfa._balance import LabelCounts
from dali_aug.methods.vfa._modules import VFAModules
from dali_aug.methods.vfa._presets import PRESETS
from dali_aug.methods.vfa._shuffle import shuffle
from dali_aug.train import Forward, Loss, Method, Step

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = [
    "PRESETS",
    "TERMS",
    "BinBalance",
    "ShuffleSource",
    "VAEReduction",
    "VFAConfig",
    "VFAMethod",
    "kl_divergence",
]

ShuffleSource = Literal["decoded", "mlp"]
VAEReduction = Literal["sum", "mean"]
BinBalance = Literal["none", "propensity"]

#: The names of the loss terms VFA adds (``loss/<name>`` in the history).
TERMS: tuple[str, ...] = ("vfa_aug", "vfa_kl", "vfa_vae_rec", "vfa_bin", "vfa_rec")


@dataclasses.dataclass(frozen=True)
class VFAConfig:
    """VFA's settings. The paper gives none of the sizes or weights except that beta exists;
    every default here is ours, not the paper's.

    Attributes:
        beta: weight of the augmented branch's BCE (Eq. 7).
        sub_dim: d, the width of each label's sub-feature.
        latent_dim: D_z, the width of each label's VAE latent.
        hidden: hidden width of each f_j and of g (the paper: "two-layer MLP").
        shuffle_source: ``decoded`` shuffles d_j(z_j) (the variational output, Eq. 1);
            ``mlp`` shuffles f_j(v). V~_u in L_rec uses the same tensors unshuffled.
        detach_backbone: the VFA branch does not update the backbone (its terms reach the
            VFA modules and the head only).
        kl_weight: weight of ``vfa_kl``.
        vae_rec_weight: weight of ``vfa_vae_rec``.
        bin_weight: weight of ``vfa_bin``.
        rec_weight: weight of ``vfa_rec``.
        vae_reduction: how ``vfa_kl`` and ``vfa_vae_rec`` reduce over the C labels: ``sum``
            (Eq. 2 as printed) or ``mean`` (ours, not the paper's: L_vae then weighs like
            one label, as L_bin's 1/C does, instead of growing with C).
        kl_warmup_steps: the KL weight rises linearly from 0 to ``kl_weight`` over the first
            this many global steps (ours, not the paper's; KL annealing, Bowman et al. 2016,
            against the collapse of the per-label VAEs to the prior). 0: no warm-up.
        aug_start_step: ``vfa_aug`` is zero before this global step, so the VFA modules
            learn to decouple and reconstruct before their shuffled features train the head
            (ours, not the paper's; a reading of its "refining the classifiers"). 0: from
            the first step.
        bin_balance: ``none`` (Eq. 3 as printed) or ``propensity`` (ours, not the
            paper's): each sample's BCE for h_j weighted by the inverse naive-Bayes
            propensity of label j given the other labels, from running counts of the
            training targets (:mod:`dali_aug.methods.vfa._balance`), so that h_j, and with
            it label j's sub-feature, cannot learn j from a co-occurring label's evidence.
        bin_balance_clip: the propensity weights are clipped to ``[1/clip, clip]``.
    """

    beta: float = 1.0
    sub_dim: int = 64
    latent_dim: int = 32
    hidden: int = 256
    shuffle_source: ShuffleSource = "decoded"
    detach_backbone: bool = False
    kl_weight: float = 1.0
    vae_rec_weight: float = 1.0
    bin_weight: float = 1.0
    rec_weight: float = 1.0
    vae_reduction: VAEReduction = "sum"
    kl_warmup_steps: int = 0
    aug_start_step: int = 0
    bin_balance: BinBalance = "none"
    bin_balance_clip: float = 10.0

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VFAConfig:
        """The preset ``name`` (:data:`PRESETS`), with ``overrides`` on top of it.

        Example:
            >>> VFAConfig.from_preset("detached", kl_weight=0.5).kl_weight
            0.5

        Raises:
            ValueError: ``name`` is not a preset.
        """
        if name not in PRESETS:
            raise ValueError(f"VFA preset {name!r}; use one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def __post_init__(self) -> None:
        for name in ("sub_dim", "latent_dim", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VFAConfig.{name}={value!r}; give a positive integer")
        for name in ("beta", "kl_weight", "vae_rec_weight", "bin_weight", "rec_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"VFAConfig.{name}={value!r}; give a number >= 0")
        for name in ("kl_warmup_steps", "aug_start_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"VFAConfig.{name}={value!r}; give an integer >= 0")
        if self.vae_reduction not in ("sum", "mean"):
            raise ValueError(f"VFAConfig.vae_reduction={self.vae_reduction!r}; use 'sum' or 'mean'")
        if self.bin_balance not in ("none", "propensity"):
            raise ValueError(
                f"VFAConfig.bin_balance={self.bin_balance!r}; use 'none' or 'propensity'"
            )
        if not isinstance(self.bin_balance_clip, (int, float)) or not self.bin_balance_clip >= 1:
            raise ValueError(
                f"VFAConfig.bin_balance_clip={self.bin_balance_clip!r}; give a number >= 1"
            )
        if self.shuffle_source not in ("decoded", "mlp"):
            raise ValueError(
                f"VFAConfig.shuffle_source={self.shuffle_source!r}; use 'decoded' or 'mlp'"
            )


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over the last axis:
    ``-1/2 sum_k (1 + log sigma^2 - mu^2 - sigma^2)`` (>= 0; the paper's Eq. 2 prints it
    with the opposite sign)."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(-1)


def _head_linear(model: nn.Module) -> nn.Linear:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"vfa needs a model whose classifier is a linear .head on the penultimate "
            f"features (got head={type(head).__name__}); use dali_aug.models.build_model"
        )
    return head


class VFAMethod(Method):
    """VFA in the training step (see the module docstring).

    Args:
        model: the classifier: ``features(x)`` [N, D] and a linear ``head`` D -> C, as
            :func:`dali_aug.models.build_model` gives.
        num_labels: C, the number of labels (must equal the head's outputs).
        config: the settings.
        seed: seeds the initialisation, the VAE noise and the permutations.

    Raises:
        TypeError: the model has no linear ``head``.
        ValueError: ``num_labels`` differs from the head's output count.

    Example:
        >>> from dali_aug.models import build_model
        >>> model = build_model("small", 5)
        >>> method = VFAMethod(model, 5, VFAConfig(sub_dim=16, latent_dim=8, hidden=32))
        >>> sum(p.numel() for p in model.parameters()) == sum(
        ...     p.numel() for p in build_model("small", 5).parameters())
        True
    """

    name = "vfa"

    def __init__(
        self, model: nn.Module, num_labels: int, config: VFAConfig | None = None, *, seed: int = 0
    ) -> None:
        head = _head_linear(model)
        if head.out_features != num_labels:
            raise ValueError(
                f"vfa: the model's head has {head.out_features} outputs but there are "
                f"{num_labels} labels; build the model with num_classes={num_labels}"
            )
        self.config = config if config is not None else VFAConfig()
        self.num_labels, self.feature_dim = num_labels, head.in_features
        cfg = self.config
        self.net = VFAModules(
            num_labels,
            head.in_features,
            sub_dim=cfg.sub_dim,
            latent_dim=cfg.latent_dim,
            hidden=cfg.hidden,
            seed=seed,
        ).to(head.weight.device)
        self.generator = torch.Generator(device=head.weight.device).manual_seed(seed)
        self.label_counts = LabelCounts(num_labels, head.weight.device)

    def modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"net": self.net})

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "label_counts": self.label_counts.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if "label_counts" in state:
            self.label_counts.load_state_dict(state["label_counts"])

    def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
        if not step.trainer.multi_label:
            raise ValueError(
                "vfa is a multi-label method: train with --multi-label "
                "(Trainer(multi_label=True)) on multi-hot targets"
            )
        if out.features is None:
            raise ValueError(
                "vfa needs the penultimate features in the step (out.features is None): use a "
                "model with features(x) and head, as dali_aug.models.build_model gives"
            )
        terms = self.terms(out.features, batch.labels, _head_linear(step.model), step=step.index)
        loss.terms.update(terms)
        return loss

    def terms(
        self,
        features: torch.Tensor,
        targets: torch.Tensor,
        head: nn.Module,
        *,
        step: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted VFA loss terms (:data:`TERMS`) of one batch.

        Args:
            features: the backbone features v [N, D] (the input of ``head``).
            targets: multi-hot targets [N, C].
            head: the model's classifier h (D -> C).
            step: the global step, for ``kl_warmup_steps`` and ``aug_start_step``; ``None``
                counts as past both.

        Raises:
            ValueError: single-label or mis-shaped targets, a feature width other than the
                head's, or NaN/inf features.
        """
        self._check(features, targets, head)
        cfg = self.config
        y = targets.float()
        v = features.float()
        n = v.shape[0]
        out = self.net.decouple(v.detach() if cfg.detach_backbone else v, generator=self.generator)
        over_labels = 1.0 if cfg.vae_reduction == "sum" else 1.0 / self.num_labels
        kl = kl_divergence(out.mu.float(), out.logvar.float()).sum(0).mean() * over_labels
        vae_rec = (out.sub - out.decoded).float().norm(dim=-1).sum(0).mean() * over_labels
        if cfg.bin_balance == "propensity":
            self.label_counts.update(y)
            w = self.label_counts.weights(y, clip=cfg.bin_balance_clip)
            bce = F.binary_cross_entropy_with_logits(
                out.bin_logits.float(), y.t(), reduction="none"
            )
            bin_ = (w.t() * bce).mean()
        else:
            bin_ = F.binary_cross_entropy_with_logits(out.bin_logits.float(), y.t())
        parts = (out.decoded if cfg.shuffle_source == "decoded" else out.sub).transpose(0, 1)
        shuffled, y_shuffled, _ = shuffle(parts, y, generator=self.generator)
        both = self.net.aggregate(torch.cat([shuffled, parts])).float()
        augmented, unshuffled = both[:n], both[n:]
        rec = (unshuffled - v.detach()).norm(dim=1).mean()
        logits = head(augmented.to(features.dtype)).float()
        aug = F.binary_cross_entropy_with_logits(logits, y_shuffled)
        kl_weight, beta = cfg.kl_weight, cfg.beta
        if step is not None:
            if step < cfg.kl_warmup_steps:
                kl_weight *= step / cfg.kl_warmup_steps
            if step < cfg.aug_start_step:
                beta = 0.0
        return {
            "vfa_aug": beta * aug,
            "vfa_kl": kl_weight * kl,
            "vfa_vae_rec": cfg.vae_rec_weight * vae_rec,
            "vfa_bin": cfg.bin_weight * bin_,
            "vfa_rec": cfg.rec_weight * rec,
        }

    def _check(self, features: torch.Tensor, targets: torch.Tensor, head: nn.Module) -> None:
        c, dd = self.num_labels, self.feature_dim
        if targets.dim() != 2:
            raise ValueError(
                f"vfa needs multi-hot targets [N, C]; got shape {tuple(targets.shape)} "
                "(single-label class indices?): train with --multi-label on a labels.csv folder"
            )
        out_features = getattr(head, "out_features", c)
        if targets.shape[1] != c or out_features != c:
            raise ValueError(
                f"vfa was built for {c} labels but the targets have {targets.shape[1]} and the "
                f"head {out_features}; build the model and VFAMethod with the data's label count"
            )
        if features.dim() != 2 or features.shape[1] != dd or features.shape[0] != targets.shape[0]:
            raise ValueError(
                f"vfa needs features [N, {dd}] (the head's input) for {targets.shape[0]} "
                f"targets; got {tuple(features.shape)}: pass the penultimate features"
            )
        if not bool(torch.isfinite(features).all()):
            raise ValueError(
                "vfa: the backbone features contain NaN/inf; lower the learning rate or "
                "check the input normalisation"
            )
