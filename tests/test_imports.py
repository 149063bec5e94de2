"""Imports without the optional dependencies: ``dali_aug.ops`` and ``dali_aug.policies`` work
where NVIDIA DALI and Kornia are not installed (GPU machines with torch and CuPy only), and
the DALI backend says what to install.

Each check runs in a fresh interpreter (:func:`run_without`) whose import system refuses the
given packages, as if they were not installed. Reuse :func:`run_without` for other packages
of dali_aug (the trainer, the methods): ``run_without(["nvidia.dali"], "import dali_aug.x")``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The optional packages the ops, the policies and the torch backend must do without.
OPTIONAL = ("nvidia.dali", "kornia")

_BLOCKER = '''
import importlib.abc
import sys

_BLOCKED = {blocked!r}


class _Missing(importlib.abc.MetaPathFinder):
    """Refuses the blocked packages and their submodules, as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in _BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _Missing())
for _name in list(sys.modules):
    if any(_name == b or _name.startswith(b + ".") for b in _BLOCKED):
        del sys.modules[_name]
'''


def run_without(
    modules: Sequence[str], code: str, *, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh ``sys.executable`` where ``modules`` cannot be imported.

    Args:
        modules: top-level or dotted module names (``"nvidia.dali"``, ``"kornia"``); they and
            their submodules raise ModuleNotFoundError on import.
        code: Python source, dedented; it fails the run by raising (e.g. ``assert``).
        timeout: seconds before the run is killed.

    Returns:
        the finished process (text stdout/stderr); check ``returncode`` (see
        :func:`assert_runs`).
    """
    source = _BLOCKER.format(blocked=tuple(modules)) + "\n" + textwrap.dedent(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "")
    return subprocess.run(
        [sys.executable, "-c", source],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_runs(modules: Sequence[str], code: str) -> str:
    """:func:`run_without` and fail the test with the child's output unless it exits 0;
    returns its stdout."""
    proc = run_without(modules, code)
    assert proc.returncode == 0, (
        f"without {', '.join(modules)} the code failed (exit {proc.returncode}):\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc.stdout


def test_blocker_blocks() -> None:
    """The harness itself: a blocked package does not import, others do."""
    out = assert_runs(
        OPTIONAL,
        """
        import json
        for name in ("nvidia.dali", "nvidia.dali.fn", "kornia", "kornia.enhance"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise AssertionError(f"{name} imported")
        print("blocked")
        """,
    )
    assert out.strip() == "blocked"


def test_ops_and_policies_without_dali_and_kornia() -> None:
    out = assert_runs(
        OPTIONAL,
        """
        import sys

        import numpy as np
        import torch

        import dali_aug.ops as ops
        import dali_aug.policies as policies

        x = np.random.default_rng(0).integers(0, 256, (2, 16, 20, 3), dtype=np.uint8)
        out = ops.apply("Rotate", x, 9, backend="torch")
        assert out.shape == x.shape and out.dtype == np.uint8
        assert (ops.apply("Invert", x, 0, backend="torch") == 255 - x).all()
        g = torch.Generator().manual_seed(0)
        params = policies.RandAugment(n=2, m=9).sample(4, generator=g)
        assert params.op_ids.shape == (4, 2)
        nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        y = ops.apply_params(nchw, params.select(slice(0, 2)))
        assert y.shape == (2, 3, 16, 20)
        ops.normalize(y)
        try:
            ops.apply("Rotate", x, 9, backend="dali")
        except ImportError as err:
            assert "nvidia-dali" in str(err), str(err)
            assert ops.DALI_PACKAGE in str(err), str(err)
        else:
            raise AssertionError("backend='dali' ran without DALI")
        try:
            import dali_aug.ops._dali
        except ImportError as err:
            assert "pip install nvidia-dali" in str(err), str(err)
        else:
            raise AssertionError("dali_aug.ops._dali imported without DALI")
        leaked = sorted(m for m in sys.modules if m.startswith(("nvidia.dali", "kornia")))
        assert not leaked, leaked
        print("ok")
        """,
    )
    assert out.strip() == "ok"


def test_viz_without_dali() -> None:
    """The pictures' normalisation comes from the ops, not from the Loader's DALI graph."""
    pytest.importorskip("PIL")
    assert_runs(
        ["nvidia.dali"],
        """
        import torch
        from dali_aug import viz
        x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
        assert (viz.denormalize(viz.normalize(x)) == x.permute(0, 2, 3, 1).numpy()).all()
        """,
    )


def test_trainer_and_methods_train_without_dali_and_kornia() -> None:
    """The torch side (batch, trainer, the methods, the CLI module and the method registry)
    imports and trains a step without DALI and Kornia; the Loader says what to install."""
    out = assert_runs(
        OPTIONAL,
        """
        import sys

        import torch

        import dali_aug
        import dali_aug.cli
        from dali_aug.batch import Batch
        from dali_aug.methods import REGISTRY, cli_module
        from dali_aug.methods.cutout import CutoutMethod
        from dali_aug.methods.keep import KeepMethod
        from dali_aug.methods.lbaug import Actor, ActorConfig, LBAugMethod
        from dali_aug.models import build_model
        from dali_aug.train import Trainer

        for name in REGISTRY:
            cli_module(name)
        torch.manual_seed(0)
        model = build_model("small", 4)
        methods = [CutoutMethod(seed=0), KeepMethod(model, 4, saliency_mode="early")]
        trainer = Trainer(model, torch.optim.AdamW(model.parameters(), lr=1e-3), methods=methods)
        x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        loss = trainer.step(Batch(x, y, torch.arange(4)))
        assert loss > 0
        LBAugMethod(Actor(ActorConfig(num_labels=3)), seed=0)
        try:
            dali_aug.Loader
        except ImportError as err:
            assert "dali_aug.Loader needs NVIDIA DALI" in str(err), str(err)
            assert "pip install nvidia-dali" in str(err), str(err)
        else:
            raise AssertionError("dali_aug.Loader imported without DALI")
        leaked = sorted(m for m in sys.modules if m.startswith(("nvidia.dali", "kornia")))
        assert not leaked, leaked
        print("ok")
        """,
    )
    assert out.strip() == "ok"


def test_the_cli_imports_no_method_dali_or_bench_code_until_a_verb_needs_it() -> None:
    """Building the parser of `train` imports neither DALI, the benchmark code nor the
    methods' implementations (only their argparse glue, and VFA's presets, plain data)."""
    out = assert_runs(
        (),
        """
        import sys
        from dali_aug.cli import _parser
        _parser("train").parse_args(["train", "--method", "keep"])
        loaded = sorted(
            m for m in sys.modules
            if m.startswith(("nvidia.dali", "kornia", "dali_aug.bench", "dali_aug.loader"))
            or (m.startswith("dali_aug.methods.") and not m.endswith((".cli", "._presets"))
                and m.count(".") > 2)
        )
        print(loaded)
        """,
    )
    assert out.strip() == "[]", out
