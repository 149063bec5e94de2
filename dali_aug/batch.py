"""The :class:`Batch` a Loader yields and a training step consumes (importable without DALI)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from dali_aug.ops import OpParams, index

__all__ = ["Batch", "apply_flip", "check_unaugmented"]

_FLIP_LR = index("FlipLR")


@dataclasses.dataclass
class Batch:
    """One batch: normalised images [B, 3, S, S], labels ([B] int64 or [B, C] float32) and the
    dataset indices; with ``op_record`` the ops applied (``params``: layer 0 is the flip,
    FlipLR or Identity, then the policy's layers), with ``clean`` the clean images (uint8
    [B, 3, S, S] after the crop, before the flip and the policy).

    A clip batch (``clip_length=T``, :mod:`dali_aug.video`) holds clips: ``images``
    [B, T, 3, S, S], ``clean`` [B, T, 3, S, S], and one row of ``params`` per clip (every
    frame of a clip got the same flip and ops); labels and indices are per clip.

    A batch unpacks as ``images, labels`` (``for images, labels in loader:``); the other
    fields are attributes only.
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    params: OpParams | None = None
    clean: torch.Tensor | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.images, self.labels))

    def flipped_clean(self) -> torch.Tensor:
        """The clean crops with the Loader's flip (layer 0 of the op record) re-applied:
        uint8 [B, 3, S, S], the image the Loader's policy started from.

        Raises:
            ValueError: the Loader gave no op record or no clean crops.
        """
        if self.clean is None or self.params is None:
            raise ValueError(
                "this batch has no clean crops or no op record: build the Loader with "
                "op_record=True, clean=True"
            )
        return apply_flip(self.clean, self.params)


def apply_flip(images: torch.Tensor, params: OpParams) -> torch.Tensor:
    """Flips the images [B, C, H, W] (or clips [B, T, C, H, W], all frames of a clip) whose
    layer 0 of ``params`` is FlipLR (a flip is its own inverse: this also undoes it)."""
    flipped = (params.op_ids[:, 0] == _FLIP_LR).to(images.device)
    return torch.where(flipped.view(-1, *[1] * (images.dim() - 1)), images.flip(-1), images)


def check_unaugmented(batch: Batch, who: str) -> tuple[torch.Tensor, OpParams]:
    """For methods that replace the dataset-level policy (they ask
    ``LoaderNeeds(policy=False, op_record=True, clean=True)``): the batch must carry the op
    record and the clean crops, and the Loader must have run no policy (the flip only).

    Returns:
        (``batch.clean``, ``batch.params``), checked.

    Raises:
        ValueError: naming ``who`` and the Loader settings that fix it.
    """
    if batch.clean is None or batch.params is None:
        raise ValueError(
            f"{who} needs a Loader with the op record and the clean crops "
            "(op_record=True, clean=True: see its loader_needs()) and no dataset-level policy"
        )
    if batch.params.num_layers != 1:
        raise ValueError(
            f"the Loader ran a dataset-level policy ({batch.params.num_layers - 1} layers); "
            f"{who} replaces it: build the Loader with policy=None"
        )
    return batch.clean, batch.params
