"""Training-step methods, one folder each, and the registry the command line is built from.

Every folder has the same shape: ``method.py`` (the :class:`~dali_aug.train.Method`; absent
for a search-only entry such as AWS), optionally ``_search.py`` (an offline stage), ``cli.py``
(its flags) and ``__init__.py`` (its public names), plus private ``_*.py`` modules. A method's
``cli.py`` imports only the standard library at module level (VFA's also its torch-free
``_presets``) and provides:

* ``HELP``: one line for ``dali-aug train --method``;
* ``add_arguments(parser)``: its ``dali-aug train`` flags (prefixed with the method's name);
* ``build(args, ctx: BuildContext) -> Method`` (a search-only entry, such as AWS, whose
  result is a policy for ``--policy``, leaves out these three);
* optionally ``describe(method) -> dict`` (what it did, for ``metrics.json``),
  ``SEARCH_HELP`` / ``add_search_arguments(parser)`` / ``run_search(args) -> int`` (a
  ``dali-aug search <name>`` verb) and ``show(args, ctx, loader) -> Path`` (a
  ``dali-aug show --method <name>`` picture).

Adding a method is its folder plus one line in :data:`REGISTRY`. A method package's
``__init__`` re-exports its public names lazily (:func:`lazy_exports`), so importing its
``cli`` module for the parser does not import the method.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["REGISTRY", "BuildContext", "cli_module", "lazy_exports", "names"]

#: method name -> the module of its command-line glue
REGISTRY: dict[str, str] = {
    "cutout": "dali_aug.methods.cutout.cli",
    "keep": "dali_aug.methods.keep.cli",
    "lbaug": "dali_aug.methods.lbaug.cli",
    "vfa": "dali_aug.methods.vfa.cli",
    "meta": "dali_aug.methods.meta.cli",
    "aws": "dali_aug.methods.aws.cli",
}


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a method's ``build`` gets besides the flags.

    Attributes:
        model: the bare model being trained (on its device).
        classes: the label names.
        multi_label: multi-hot targets.
        device: the model's device.
        size: the training image side.
        seed: the run's seed.
    """

    model: nn.Module
    classes: tuple[str, ...]
    multi_label: bool
    device: torch.device
    size: int
    seed: int


def names() -> tuple[str, ...]:
    """The registered method names."""
    return tuple(REGISTRY)


def cli_module(name: str) -> ModuleType:
    """The command-line module of method ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; use one of {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module
    path) on first access of ``name``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
