"""Policy names at the command-line / config edge (timm style). The library itself never
parses strings: this one function maps a name onto a policy object.

Grammar (case-sensitive, ``-`` separated):

* ``none``
* ``aa-imagenet`` | ``aa-cifar10`` | ``aa-svhn``
* ``ta-wide``
* ``rand-m<M>-n<N>[-mstd<S>][-p<P>]``, e.g. ``rand-m9-n2-mstd0.5`` (any order after ``rand``;
  defaults m=9, n=2, mstd=0, p=1)
* ``PATH.json``: a policy written with ``policy.to_dict()`` (an exported search: AWS,
  MetaAugment), read as JSON data (never code)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dali_aug.policies._policy import (
    AugmentPolicy,
    NoAugment,
    RandAugment,
    TrivialAugmentWide,
    auto_augment,
    policy_from_dict,
)
from dali_aug.policies._tables import TABLES

__all__ = ["POLICY_NAMES", "parse_policy"]

POLICY_NAMES = ("none", "aa-imagenet", "aa-cifar10", "aa-svhn", "ta-wide", "rand-m9-n2-mstd0.5")

_RAND_PART = re.compile(r"^(m|n|mstd|p)(\d+(?:\.\d+)?)$")


def _bad(name: str, why: str) -> ValueError:
    return ValueError(
        f"bad policy name {name!r}: {why}. Valid forms: 'none', 'aa-imagenet', 'aa-cifar10', "
        "'aa-svhn', 'ta-wide', 'rand-m<0-10>-n<int>[-mstd<float>][-p<0-1>]' "
        "(e.g. 'rand-m9-n2-mstd0.5'), or the path of a policy .json file"
    )


def parse_policy(name: str) -> AugmentPolicy:
    """Maps a timm-style policy name onto a policy object.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: the name is unknown or malformed; the message lists the valid forms.

    Example:
        >>> parse_policy("rand-m9-n2-mstd0.5")
        RandAugment(n=2, m=9.0, mstd=0.5, prob=1.0, ...)
    """
    if not isinstance(name, str):
        raise TypeError(f"policy name must be a str, got {type(name).__name__}")
    if name.endswith(".json"):
        return _from_file(name)
    if name == "none":
        return NoAugment()
    if name == "ta-wide":
        return TrivialAugmentWide()
    if name.startswith("aa-"):
        table = name[3:]
        if table not in TABLES:
            raise _bad(name, f"unknown AutoAugment table {table!r}")
        return auto_augment(table)
    parts = name.split("-")
    if parts[0] != "rand":
        raise _bad(name, "unknown policy")
    values: dict[str, float] = {}
    for part in parts[1:]:
        match = _RAND_PART.match(part)
        if match is None:
            raise _bad(name, f"cannot read {part!r}")
        key, number = match.group(1), float(match.group(2))
        if key in values:
            raise _bad(name, f"{key!r} given twice")
        values[key] = number
    n = values.get("n", 2.0)
    if n != int(n):
        raise _bad(name, f"n must be an integer, got {n:g}")
    try:
        return RandAugment(
            n=int(n),
            m=values.get("m", 9.0),
            mstd=values.get("mstd", 0.0),
            prob=values.get("p", 1.0),
        )
    except ValueError as err:
        raise _bad(name, str(err)) from None


def _from_file(name: str) -> AugmentPolicy:
    path = Path(name)
    if not path.is_file():
        raise _bad(name, f"policy file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except RecursionError:
        raise _bad(name, f"{str(path)!r} is nested too deeply to be a policy") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _bad(name, f"{str(path)!r} is not JSON ({err})") from None
    if isinstance(data, dict) and "policy" in data and "type" not in data:
        data = data["policy"]  # a search's output that wraps the policy with its metadata
    try:
        return policy_from_dict(data)
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise _bad(
            name, f"{str(path)!r} is not a policy written by policy.to_dict() ({err})"
        ) from None
