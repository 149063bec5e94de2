"""Config files for the command line (timm's ``-c/--config FILE.yaml``): a YAML mapping of
flag names to values, read before the command line so that flags given there win, and the
run's resolved arguments written back as ``args.yaml`` (a run is reproducible from it).

A key is a flag's name with or without the dashes, with ``-`` or ``_`` (``weight-decay``,
``weight_decay``, ``--weight-decay``). Values go through the flag's own parsing (its type and
choices), as if typed: a boolean flag takes ``true``/``false``, a flag of several values takes
a list. An unknown key is an error naming it and the closest flags: a typo never silently
does nothing. The file is read with ``yaml.safe_load`` (no code runs from it).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["config_argv", "write_args_yaml"]

_MAX_BYTES = 1 << 20


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every long option of ``parser`` by its normalised name (``weight_decay``)."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt[2:].replace("-", "_")] = action
        if action.option_strings and action.dest not in out:
            out[action.dest] = action
    return out


def _long(action: argparse.Action) -> str:
    return next(o for o in action.option_strings if o.startswith("--"))


def _tokens(key: str, value: Any, action: argparse.Action, where: str) -> list[str]:
    flag = _long(action)
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        return [flag if value else "--no-" + flag[2:]]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        return [flag] if value == isinstance(action, argparse._StoreTrueAction) else []
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        if action.nargs in (None, "?"):
            raise ValueError(f"{where}: {key} takes one value, got the list {value!r}")
        return [flag, *(str(v) for v in value)]
    if isinstance(value, dict):
        raise ValueError(f"{where}: {key} takes a value, not a mapping")
    if action.nargs == 0:
        raise ValueError(f"{where}: {key} is a switch; give true or false")
    return [flag, str(value)]


def config_argv(path: str | Path, parser: argparse.ArgumentParser) -> list[str]:
    """The flags a config file stands for, as command-line tokens for ``parser`` (put them
    before the real command line: argparse keeps the last value of a flag).

    Raises:
        ValueError: the file is missing, too large, not YAML, not a mapping, or has an
            unknown key or a value of the wrong kind (naming the file and the key).
    """
    path = Path(path)
    where = f"config {str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where} does not exist")
    if path.stat().st_size > _MAX_BYTES:
        raise ValueError(f"{where} is larger than 1 MiB; a config is a short list of flags")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{where} is not valid UTF-8 YAML ({first})") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping of flag: value, got {type(data).__name__}")
    options = _options(parser)
    argv: list[str] = []
    for raw, value in data.items():
        key = str(raw).lstrip("-").replace("-", "_")
        action = options.get(key)
        if action is None or key in ("config", "help"):
            close = difflib.get_close_matches(key, list(options), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"{where}: unknown flag {raw!r}{hint}")
        argv += _tokens(str(raw), value, action, where)
    return argv


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_args_yaml(
    path: str | Path,
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    *,
    skip: Sequence[str] = ("config",),
) -> Path:
    """Writes every flag of ``parser`` that ``args`` holds as ``flag_name: value`` YAML (the
    form :func:`config_argv` reads back); ``skip`` leaves some out."""
    out: dict[str, Any] = {}
    for key, action in _options(parser).items():
        if key != action.dest or key in skip or not hasattr(args, key):
            continue
        value = getattr(args, key)
        if value is None:
            continue
        out[key] = _plain(value)
    path = Path(path)
    path.write_text(yaml.safe_dump(out, sort_keys=True), encoding="utf-8")
    return path
