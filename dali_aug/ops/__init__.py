"""The op catalog and its backends.

One table (:data:`CATALOG`) defines every op; the ``torch`` backend (:func:`apply_params`) and
the ``dali`` backend (:func:`apply_layers` inside a DALI pipeline) both read it.

Importing this package needs neither NVIDIA DALI nor Kornia: the DALI backend
(``dali_aug.ops._dali``) imports DALI when it is used and raises an ImportError naming the
package to install when DALI is missing.
"""

from __future__ import annotations

from dali_aug.ops._api import apply, names, param
from dali_aug.ops._catalog import (
    CATALOG,
    FILL,
    Family,
    Mapping,
    OpDef,
    check_level,
    get,
    index,
    level_to_param,
)
from dali_aug.ops._normalize import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
from dali_aug.ops._optional import DALI_PACKAGE, require_dali
from dali_aug.ops._params import (
    OpParams,
    Resolved,
    flip_signs,
    identity_params,
    random_extras,
    random_signs,
    resolve,
    signed_mask,
)
from dali_aug.ops._torch import apply_params, check_images

__all__ = [
    "CATALOG",
    "DALI_PACKAGE",
    "FILL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Family",
    "Mapping",
    "OpDef",
    "OpParams",
    "Resolved",
    "apply",
    "apply_params",
    "check_images",
    "check_level",
    "denormalize",
    "flip_signs",
    "get",
    "identity_params",
    "index",
    "level_to_param",
    "names",
    "normalize",
    "param",
    "random_extras",
    "random_signs",
    "require_dali",
    "resolve",
    "signed_mask",
]
