#!/usr/bin/env bash
# One command for the benchmark environment: bash benchmarks/setup_env.sh [VENV_DIR]
# Creates VENV_DIR (default: .venv-bench at the repository root) with the peers of
# benchmarks/requirements.txt (torch 2.14.1, torchvision 0.29.1, timm, DALI, Kornia,
# matplotlib) and dali-aug installed editable without its dependencies.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv-bench}"
python="${PYTHON:-python3}"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip setuptools wheel
"$venv/bin/python" -m pip install -r "$root/benchmarks/requirements.txt"
"$venv/bin/python" -m pip install --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" - <<'PY'
import importlib

for name in ("torch", "torchvision", "timm", "nvidia.dali", "kornia", "dali_aug"):
    mod = importlib.import_module(name)
    print(f"{name:12s} {getattr(mod, '__version__', '?')}")
PY
echo "benchmark env ready: $venv/bin/python -m dali_aug.cli bench --quick"
