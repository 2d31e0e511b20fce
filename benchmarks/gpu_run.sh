#!/usr/bin/env bash
# One GPU session: every CUDA test, then the benchmarks. Logs go to $OUT (or ./gpu_out).
# Usage: bash benchmarks/gpu_run.sh [tests|bench|linear|probe|all]
#   probe: the open questions of docs/inductor.md (K-major storage; per-row reductions at M=2-8).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
what=${1:-all}
if [[ $what == tests || $what == all ]]; then
  python3 -m pytest -q -m cuda -p no:cacheprovider tests > "$OUT/cuda_tests.log" 2>&1
  grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/cuda_tests.log" | tail -25
fi
if [[ $what == bench || $what == all ]]; then
  for script in pack convert mask; do
    [[ -f benchmarks/$script.py ]] && timeout 150 python3 benchmarks/$script.py > "$OUT/$script.log" 2>&1
    grep -vE "^\s*$|Warning|warn" "$OUT/$script.log" | tail -22
  done
fi
if [[ $what == linear || $what == all ]]; then
  timeout ${LINEAR_TIMEOUT:-300} python3 benchmarks/linear.py ${LINEAR_ARGS:-} --csv "$OUT/linear.csv" > "$OUT/linear.log" 2>&1
  grep -E "^ +[0-9]+x[0-9]+ +[0-9]|FAILED|copy bandwidth|#" "$OUT/linear.log" | tail -40
fi
if [[ $what == probe ]]; then
  timeout 300 python3 benchmarks/probe_linear.py --m 1,16,64 --bits 4 \
    --variants mm-t-iq-ma,mm-kmajor-iq-ma,groupsum-cdt,gemv-kmajor-groupsum-cdt > "$OUT/probe_kmajor.log" 2>&1
  tail -14 "$OUT/probe_kmajor.log"
  timeout 240 python3 benchmarks/linear.py --m 2,4,8 --formats INT4,INT2 --gemv-max-rows 8 > "$OUT/rows.log" 2>&1
  grep -E "M=|FAILED" "$OUT/rows.log" | cut -c1-150
fi
