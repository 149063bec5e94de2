"""Seeded generators, one per device, for the randomness a method draws on the data's
device (a CUDA generator for CUDA tensors), checkpointed with the method."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DeviceGenerators"]


class DeviceGenerators:
    """A ``torch.Generator`` per device, seeded with ``seed`` when first asked for.

    Example:
        >>> gens = DeviceGenerators(1)
        >>> noise = torch.rand(4, generator=gens(torch.device("cpu")))
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._by_device: dict[torch.device, torch.Generator] = {}

    def __call__(self, device: torch.device | str) -> torch.Generator:
        device = torch.device(device)
        if device not in self._by_device:
            self._by_device[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._by_device[device]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The states by device name (for checkpoints loaded with ``weights_only=True``)."""
        return {str(d): g.get_state() for d, g in self._by_device.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, st in state.items():
            self(name).set_state(st)


def generators_state(generator: torch.Generator, fills: DeviceGenerators) -> dict[str, Any]:
    """The checkpoint state of a method's draw generator and its fill generators."""
    return {"generator": generator.get_state(), "fill_generators": fills.state_dict()}


def load_generators_state(
    generator: torch.Generator, fills: DeviceGenerators, state: dict[str, Any]
) -> None:
    """Restores :func:`generators_state` (a state without fill generators leaves them fresh)."""
    generator.set_state(state["generator"])
    fills.load_state_dict(state.get("fill_generators", {}))
