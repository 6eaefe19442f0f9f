#!/usr/bin/env bash
# Online learner, dense vs 80 % sparse hidden projections (docs/online.md): one training step of 700-256-256-20,
# batch 32, T = 100, for each delay kind -> benchmarks/results/cpu-online-c<connectivity>-<delays>.json
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
for delays in none axonal synaptic; do
  for c in 1.0 0.2; do
    spiketime bench --device cpu --batch 32 --T 100 --learner online --peers none --delays "$delays" \
      --connectivity "$c" --repeats 2 --warmup 1 --quiet --json "benchmarks/results/cpu-online-c$c-$delays.json" "$@"
  done
done
