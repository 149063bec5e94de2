"""VFA's named settings, apart from the method so that the command line can list them
without importing torch."""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

#: Named settings (:meth:`VFAConfig.from_preset`, ``--vfa-preset``), as the fields they
#: change from the defaults. ``paper``: the defaults (the paper's reading with our gap-fill
#: sizes and unit weights). ``detached`` (ours, not the paper's): L_vae as a mean over the
#: labels, no VFA gradient into the backbone, KL weight 0.1; chosen on the development seeds
#: of the synthetic check, where the defaults' per-label VAEs collapse to the prior
#: (``docs/methods/vfa.md``).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "detached": {"vae_reduction": "mean", "detach_backbone": True, "kl_weight": 0.1},
}
