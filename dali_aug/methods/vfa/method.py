"""VFA, Variational Feature Augmentation (Chen, Wang, Xue, Ding, Sun, "Enhance via
Decoupling: Improving Multi-Label Classifiers with Variational Feature Augmentation"; text in
``shared/papers/vfa.txt``, digest §2) as a training-step method. No reference implementation
is public; this follows the paper's equations with the readings of the digest (§2.3).

In the step, on the model's penultimate features v [N, D] (``out.features``):

1. Decoupling: C two-layer MLPs f_j give sub-features v^j [d] (Sec. 2.1).
2. A VAE per label: ``[mu_j, log sigma_j^2] = e_j(v^j)``, ``z_j = mu_j + sigma_j * eps``,
   decoded ``d_j(z_j)`` (Eq. 1); a binary classifier h_j on z_j against label j (Eq. 3,
   Guided-VAE).
3. Shuffle (Eq. 4): for every label j an independent permutation of the batch moves the
   decoded sub-feature of label j together with label j (:func:`shuffle`).
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

The modules live on the method (:meth:`VFAMethod.modules`), never on the model: the exported
model is the baseline architecture with no extra parameters or inference cost (Sec. 2.4).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.methods.vfa._modules import VFAModules
from dali_aug.methods.vfa._shuffle import shuffle
from dali_aug.train import Forward, Loss, Method, Step

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["TERMS", "ShuffleSource", "VFAConfig", "VFAMethod", "kl_divergence"]

ShuffleSource = Literal["decoded", "mlp"]

#: The names of the loss terms VFA adds (``loss/<name>`` in the history).
TERMS: tuple[str, ...] = ("vfa_aug", "vfa_kl", "vfa_vae_rec", "vfa_bin", "vfa_rec")


@dataclasses.dataclass(frozen=True)
class VFAConfig:
    """VFA's settings. The paper gives none of the sizes or weights except that beta exists;
    every default here is ours, not the paper's (digest §2.3).

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

    def __post_init__(self) -> None:
        for name in ("sub_dim", "latent_dim", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VFAConfig.{name}={value!r}; give a positive integer")
        for name in ("beta", "kl_weight", "vae_rec_weight", "bin_weight", "rec_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"VFAConfig.{name}={value!r}; give a number >= 0")
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

    def modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"net": self.net})

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

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
        loss.terms.update(self.terms(out.features, batch.labels, _head_linear(step.model)))
        return loss

    def terms(
        self, features: torch.Tensor, targets: torch.Tensor, head: nn.Module
    ) -> dict[str, torch.Tensor]:
        """The weighted VFA loss terms (:data:`TERMS`) of one batch.

        Args:
            features: the backbone features v [N, D] (the input of ``head``).
            targets: multi-hot targets [N, C].
            head: the model's classifier h (D -> C).

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
        kl = kl_divergence(out.mu.float(), out.logvar.float()).sum(0).mean()
        vae_rec = (out.sub - out.decoded).float().norm(dim=-1).sum(0).mean()
        bin_ = F.binary_cross_entropy_with_logits(out.bin_logits.float(), y.t())
        parts = (out.decoded if cfg.shuffle_source == "decoded" else out.sub).transpose(0, 1)
        shuffled, y_shuffled, _ = shuffle(parts, y, generator=self.generator)
        both = self.net.aggregate(torch.cat([shuffled, parts])).float()
        augmented, unshuffled = both[:n], both[n:]
        rec = (unshuffled - v.detach()).norm(dim=1).mean()
        logits = head(augmented.to(features.dtype)).float()
        aug = F.binary_cross_entropy_with_logits(logits, y_shuffled)
        return {
            "vfa_aug": cfg.beta * aug,
            "vfa_kl": cfg.kl_weight * kl,
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
