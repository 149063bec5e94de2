#!/usr/bin/env bash
# One-shot GPU check: bash benchmarks/gpu_check.sh [--dry-run] OUTDIR
#
# For a GPU machine with torch + CuPy and no network (DALI and Kornia absent
# unless their wheels were installed: the DALI stages then skip). Runs, each stage under its own
# time limit (about 8 minutes in all), and writes everything as JSON under OUTDIR:
#   env.json        GPU, torch, CuPy, DALI availability
#   tests.json      the CUDA tests: both kernels against their torch references, the torch
#                   backend on CUDA, the training step on CUDA, the DALI GPU pipeline when
#                   DALI imports (from tests.xml, pytest's JUnit report)
#   bench.json      dali-aug bench --device cuda --stages augment (batch 256 at 224 px):
#                   dali-aug vs Kornia and DALI auto_aug where they import
#   keep_step.json, meta_step.json, vfa_step.json
#                   the method step benchmarks on ResNet-50 bf16 (those that exist)
#   summary.json    per stage: command, exit code, seconds, outputs
# --dry-run writes plan.json (the stages and their commands) and summary.json without
# running anything; --only NAME[,NAME] runs those stages alone (the CPU tests run
# --only install,env).
set -uo pipefail

usage() {
    echo "usage: bash benchmarks/gpu_check.sh [--dry-run] [--only STAGE[,STAGE]] OUTDIR" >&2
    exit 2
}

dry=0
only=""
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --only) [ $# -ge 2 ] || usage; only=",$2,"; shift ;;
        -h|--help) usage ;;
        -*) echo "error: unknown option $1" >&2; usage ;;
        *) [ -z "$out" ] || { echo "error: one OUTDIR only" >&2; usage; }; out="$1" ;;
    esac
    shift
done
[ -n "$out" ] || usage

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
mkdir -p "$out" || { echo "error: cannot create $out" >&2; exit 2; }
out="$(cd "$out" && pwd)"
work="$out/work"
mkdir -p "$work"

# stage name | time limit (s) | command (run in $work, with PYTHONPATH at the install)
stages=(
    "install|60|$python -m pip install --no-deps --no-build-isolation --target $work/site $root"
    "env|20|$python $root/benchmarks/_gpu_env.py $out/env.json"
    "tests|150|$python -m pytest -q -p no:cacheprovider --rootdir $root -c $root/pyproject.toml --continue-on-collection-errors --junitxml $out/tests.xml $root/tests/test_region_select.py $root/tests/test_label_sample.py $root/tests/test_ops_contract.py $root/tests/test_step.py $root/tests/test_gpu.py"
    "tests-json|10|$python $root/benchmarks/_gpu_env.py --junit $out/tests.xml $out/tests.json"
    "bench|120|$python -m dali_aug.cli bench --device cuda --stages augment --stage-batch 256 --size 224 --out $out/bench.json --no-chart"
    "keep_step|40|$python $root/benchmarks/keep/step.py --model resnet50 --size 224 --batch-size 64 --amp bf16 --device cuda --rounds 3 --steps 5 --out $out/keep_step.json"
    "meta_step|40|$python $root/benchmarks/meta/step.py --model resnet50 --size 224 --batch-size 64 --device cuda --rounds 3 --steps 3 --out $out/meta_step.json"
    "vfa_step|40|$python $root/benchmarks/vfa/step.py speed --model resnet50 --size 224 --batch-size 64 --amp bf16 --device cuda --rounds 3 --out $out/vfa_step.json"
)

json_escape() { "$python" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

if [ "$dry" = 1 ]; then
    {
        echo "{\"root\": $(json_escape "$root"), \"out\": $(json_escape "$out"), \"stages\": ["
        sep=""
        for s in "${stages[@]}"; do
            IFS="|" read -r name limit cmd <<< "$s"
            echo "$sep{\"name\": \"$name\", \"timeout_s\": $limit, \"command\": $(json_escape "$cmd")}"
            sep=","
        done
        echo "]}"
    } > "$out/plan.json"
fi

export PYTHONPATH="$work/site:$root"  # the install first; the lab scripts import benchmarks.*
export DALI_AUG_CACHE="$work/cache"
summary="$out/summary.json"
echo "{\"dry_run\": $([ "$dry" = 1 ] && echo true || echo false), \"stages\": [" > "$summary"
sep=""
for s in "${stages[@]}"; do
    IFS="|" read -r name limit cmd <<< "$s"
    script=$(echo "$cmd" | grep -o "$root/benchmarks/[a-z_/]*\.py" | head -1)
    if [ -n "$only" ] && [[ "$only" != *",$name,"* ]]; then
        continue
    elif [ "$dry" = 1 ]; then
        code="null"; seconds=0; status="dry run"
    elif [ -n "$script" ] && [ ! -f "$script" ]; then
        code="null"; seconds=0; status="skipped: $(basename "$script") does not exist"
    else
        echo "== $name (limit ${limit} s): $cmd"
        start=$(date +%s)
        (cd "$work" && timeout "$limit" bash -c "$cmd") > "$out/$name.log" 2>&1
        code=$?
        seconds=$(( $(date +%s) - start ))
        status=$([ "$code" = 0 ] && echo ok || { [ "$code" = 124 ] && echo "timed out" || echo failed; })
        echo "   $status (exit $code, ${seconds} s; log: $out/$name.log)"
    fi
    echo "$sep{\"name\": \"$name\", \"exit_code\": $code, \"seconds\": $seconds, \"status\": $(json_escape "$status"), \"log\": $(json_escape "$out/$name.log")}" >> "$summary"
    sep=","
done
echo "]}" >> "$summary"
echo "wrote $summary"
