#!/usr/bin/env bash
# GPU benchmark: batch 256, T = 250, 1000, 3000; fp32 and bf16 (autocast); spiketime without, with axonal and with
# synaptic delays (the peers have no delays: they are the same in every file).
# One JSON per setting: benchmarks/results/gpu-<precision>-<delays>.json (and a .txt with the table).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
for precision in fp32 bf16; do
  for delays in none axonal synaptic; do
    name="gpu-${precision}-${delays}"
    echo "== ${name}"
    spiketime bench --device cuda --batch 256 --T 250,1000,3000 --precision "${precision}" --delays "${delays}" \
      --json "benchmarks/results/${name}.json" "$@" | tee "benchmarks/results/${name}.txt"
  done
done
