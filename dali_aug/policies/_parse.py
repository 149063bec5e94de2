"""Policy names at the command-line / config edge. The library itself never parses strings:
this one function maps a name onto a policy object.

Grammar (case-sensitive, ``-`` separated):

* ``none``
* ``aa-imagenet`` | ``aa-cifar10`` | ``aa-svhn``
* ``ta-wide``
* ``rand-...``: timm's RandAugment, spelled and meant as timm 1.0's ``rand_augment_transform``
  (:class:`~dali_aug.policies.TimmRandAugment`): keys ``m<int>`` (magnitude, default 10),
  ``n<int>`` (ops per image, default 2), ``p<float>`` (per-op apply probability, default
  0.5), ``mstd<float>`` (magnitude std; ``> 100`` = uniform in [0, m]), ``mmax<int>`` (upper
  clip of the magnitude, default 10, at most 10 here), ``inc<0|1>`` (timm's increasing op
  set), in any order, e.g. ``rand-m9-n2-mstd0.5-inc1``. timm's transform-set key ``t...``
  and its removed ``w`` key are refused.
* ``ra-m<M>-n<N>[-mstd<S>][-p<P>]``: dali-aug's own RandAugment
  (:class:`~dali_aug.policies.RandAugment`: the paper's 14 ops, every op applied, the level
  jittered by a Gaussian of std ``mstd`` clipped to [0, 10]); defaults m=9, n=2, mstd=0, p=1;
  ``m`` may be fractional. This was the meaning of ``rand-...`` before timm's.
* ``PATH.json``: a policy written with ``policy.to_dict()`` (an exported search: AWS,
  MetaAugment), read as JSON data (never code)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from dali_aug.policies._policy import (
    AugmentPolicy,
    NoAugment,
    RandAugment,
    TimmRandAugment,
    TrivialAugmentWide,
    auto_augment,
    policy_from_dict,
)
from dali_aug.policies._tables import TABLES

__all__ = ["POLICY_NAMES", "parse_policy"]

POLICY_NAMES = (
    "none",
    "aa-imagenet",
    "aa-cifar10",
    "aa-svhn",
    "ta-wide",
    "rand-m9-n2-mstd0.5",
    "ra-m9-n2-mstd0.5",
)

_RA_PART = re.compile(r"^(m|n|mstd|p)(\d+(?:\.\d+)?)$")
#: timm splits a section at its first digit (``re.split(r'(\d.*)', c)``).
_TIMM_PART = re.compile(r"^([a-z]*)(\d.*)$")
_TIMM_INT_KEYS = ("m", "n", "mmax", "inc")
_TIMM_FLOAT_KEYS = ("p", "mstd")
_TIMM_FORM = "'rand-m<int>-n<int>[-p<0-1>][-mstd<float>][-mmax<1-10>][-inc<0|1>]'"
_RA_FORM = "'ra-m<0-10>-n<int>[-mstd<float>][-p<0-1>]'"


def _bad(name: str, why: str) -> ValueError:
    return ValueError(
        f"bad policy name {name!r}: {why}. Valid forms: 'none', 'aa-imagenet', 'aa-cifar10', "
        f"'aa-svhn', 'ta-wide', {_TIMM_FORM} (timm's RandAugment, as timm means it: "
        f"p=0.5 per op, e.g. 'rand-m9-n2-mstd0.5'), {_RA_FORM} (dali-aug's own RandAugment: "
        "every op applied, e.g. 'ra-m9-n2-mstd0.5'), or the path of a policy .json file"
    )


def parse_policy(name: str) -> AugmentPolicy:
    """Maps a policy name onto a policy object.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: the name is unknown or malformed; the message lists the valid forms.

    Example:
        >>> parse_policy("rand-m9-n2-mstd0.5")  # timm's: p=0.5 per op, timm's 15 ops
        TimmRandAugment(n=2, m=9.0, mstd=0.5, mmax=10.0, prob=0.5, increasing=False)
        >>> parse_policy("ra-m9-n2-mstd0.5")  # dali-aug's: every op applied
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
    if parts[0] == "rand":
        return _timm_rand(name, parts[1:])
    if parts[0] == "ra":
        return _ra(name, parts[1:])
    raise _bad(name, "unknown policy")


def _ra(name: str, parts: list[str]) -> RandAugment:
    """dali-aug's own RandAugment (``ra-...``)."""
    values: dict[str, float] = {}
    for part in parts:
        match = _RA_PART.match(part)
        if match is None:
            raise _bad(name, f"cannot read {part!r} (ra- keys: m, n, mstd, p)")
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


def _timm_rand(name: str, parts: list[str]) -> TimmRandAugment:
    """timm's RandAugment (``rand-...``), read as ``rand_augment_transform`` reads it."""
    values: dict[str, float] = {}
    for part in parts:
        if part.startswith("t"):
            raise _bad(
                name,
                f"timm's transform-set key {part!r} (t<name>, e.g. 'tweights') is not "
                "supported: only timm's default op sets (inc0, inc1)",
            )
        match = _TIMM_PART.match(part)
        if match is None:
            raise _bad(
                name,
                f"cannot read {part!r}: a key followed by a number (for uniform magnitudes "
                "write mstd101, as timm's mstd > 100)",
            )
        key, text = match.group(1), match.group(2)
        if key == "w":
            raise _bad(name, "timm's weight key 'w' was removed from timm and is not supported")
        if key not in _TIMM_INT_KEYS + _TIMM_FLOAT_KEYS:
            raise _bad(
                name, f"unknown key {key!r} in {part!r} (rand- keys: m, n, p, mstd, mmax, inc)"
            )
        if key in values:
            raise _bad(name, f"{key!r} given twice")
        try:
            number = float(int(text)) if key in _TIMM_INT_KEYS else float(text)
        except ValueError:
            kind = "a whole number" if key in _TIMM_INT_KEYS else "a number"
            hint = " (for a fractional m use dali-aug's 'ra-' spelling)" if key == "m" else ""
            raise _bad(name, f"{key} must be {kind} as in timm, got {text!r}{hint}") from None
        if not math.isfinite(number):
            raise _bad(name, f"{key} must be finite, got {text!r}")
        values[key] = number
    inc = values.get("inc", 0.0)
    if inc not in (0.0, 1.0):
        raise _bad(name, f"inc must be 0 or 1, got {inc:g}")
    mmax = values.get("mmax", 10.0)
    if mmax == 0:  # timm reads mmax0 as 'no mmax' (``magnitude_max or 10``): say so
        raise _bad(name, "mmax0 is not a clip (timm ignores it); give mmax in 1-10 or omit it")
    try:
        return TimmRandAugment(
            n=int(values.get("n", 2.0)),
            m=values.get("m", 10.0),
            mstd=values.get("mstd", 0.0),
            mmax=mmax,
            prob=values.get("p", 0.5),
            increasing=inc == 1.0,
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
