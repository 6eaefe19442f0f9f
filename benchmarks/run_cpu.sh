#!/usr/bin/env bash
# CPU benchmark: batch 32, T = 250 and 1000, all peers -> benchmarks/results/cpu.json (and the table on stdout).
# Pin the threads for comparable numbers, e.g. OMP_NUM_THREADS=8 benchmarks/run_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
spiketime bench --device cpu --batch 32 --T 250,1000 --precision fp32 --delays none \
  --json benchmarks/results/cpu.json "$@" | tee benchmarks/results/cpu.txt
