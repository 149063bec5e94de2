"""Config files for the command line: YAML -> flags (the command line wins), args.yaml back."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dali_aug._config import config_argv, write_args_yaml


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("-c", "--config")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--opt", choices=["sgd", "adamw"], default="adamw")
    p.add_argument("--method", nargs="+", default=[], dest="methods")
    p.add_argument("--no-flip", action="store_false", dest="flip")
    p.add_argument("--model-ema", action="store_true")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--out", type=Path, default=Path("runs/latest"))
    return p


def _parse(tmp_path: Path, text: str, argv: list[str]) -> argparse.Namespace:
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(text)
    p = _parser()
    return p.parse_args([*config_argv(cfg, p), *argv])


def test_config_sets_flags_and_the_command_line_wins(tmp_path: Path) -> None:
    text = "lr: 0.1\nweight-decay: 5.0e-4\n--opt: sgd\nmethod: [cutout, keep]\nmodel_ema: true\n"
    args = _parse(tmp_path, text + "flip: false\namp: true\n", ["--lr", "0.2"])
    assert args.lr == 0.2 and args.weight_decay == 5e-4 and args.opt == "sgd"
    assert args.methods == ["cutout", "keep"] and args.model_ema and not args.flip and args.amp
    assert _parse(tmp_path, "amp: false\nmodel_ema: false\n", []).amp is False


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lerning_rate: 0.1\n", "unknown flag 'lerning_rate'"),
        ("weight_decy: 0.1\n", "did you mean weight_decay"),
        ("model_ema: yes please\n", "true or false"),
        ("lr: [0.1, 0.2]\n", "one value"),
        ("- lr\n- 0.1\n", "mapping"),
        ("lr: {a: 1}\n", "not a mapping"),
        ("lr: 0.1\n  bad: [\n", "YAML"),
        ("config: other.yaml\n", "unknown flag"),
    ],
)
def test_bad_configs_name_the_file_and_the_key(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        config_argv(cfg, _parser())
    assert "bad.yaml" in str(info.value)


def test_values_go_through_the_flags_own_checks(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _parse(tmp_path, "opt: lamb\n", [])
    with pytest.raises(SystemExit):
        _parse(tmp_path, "lr: fast\n", [])


def test_args_yaml_round_trips(tmp_path: Path) -> None:
    p = _parser()
    args = p.parse_args(["--lr", "0.3", "--opt", "sgd", "--method", "keep", "--no-flip", "--amp"])
    path = write_args_yaml(tmp_path / "args.yaml", args, p)
    text = path.read_text()
    assert "config" not in text and "lr: 0.3" in text
    again = p.parse_args(config_argv(path, p))
    assert vars(again) == vars(args)
    with pytest.raises(ValueError, match="does not exist"):
        config_argv(tmp_path / "nope.yaml", p)
