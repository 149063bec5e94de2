"""The op catalog and its backends.

One table (:data:`CATALOG`) defines every op; the ``torch`` backend (:func:`apply_params`) and
the ``dali`` backend (:func:`apply_layers` inside a DALI pipeline) both read it.
"""

from __future__ import annotations

from dali_aug.ops._api import apply, names, param
from dali_aug.ops._catalog import CATALOG, FILL, Family, Mapping, OpDef, check_level, get, index
from dali_aug.ops._params import OpParams, Resolved, identity_params, random_extras, resolve
from dali_aug.ops._torch import apply_params, check_images

__all__ = [
    "CATALOG",
    "FILL",
    "Family",
    "Mapping",
    "OpDef",
    "OpParams",
    "Resolved",
    "apply",
    "apply_params",
    "check_images",
    "check_level",
    "get",
    "identity_params",
    "index",
    "names",
    "param",
    "random_extras",
    "resolve",
]
