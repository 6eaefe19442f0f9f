#!/usr/bin/env bash
# Wall times of the commands that docs/runs.md "How long things take" and the README quote, on this machine.
# Usage: bash benchmarks/times.sh [WORKDIR]   (default /tmp/spiketime-times; about 15 minutes on 2 idle cores)
# Run it on an idle machine: every other busy process slows each line down (one line measures that on purpose).
set -u
work=${1:-/tmp/spiketime-times}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work" && cd "$work" && rm -rf runs fresh-cache sd ed
t() { local name=$1; shift; local s e; s=$(date +%s.%N); "$@" > "$name.out" 2> "$name.err"; local rc=$?
      e=$(date +%s.%N); printf "%-22s rc=%s %7.1f s\n" "$name" "$rc" "$(echo "$e - $s" | bc)" | tee -a times.txt; }
echo "nproc=$(nproc) $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null)" | tee times.txt
t default_first env XDG_CACHE_HOME="$work/fresh-cache" spiketime train --out runs/first --quiet  # kernels compiled
t default spiketime train --out runs/default --quiet
t threads1 spiketime train --out runs/th1 --set train.epochs=2 --set train.threads=1 --quiet
t threads2 spiketime train --out runs/th2 --set train.epochs=2 --set train.threads=2 --quiet
python3 -c "while True: pass" & l1=$!; python3 -c "while True: pass" & l2=$!
t default_loaded spiketime train --out runs/loaded --quiet  # two busy processes share the cores
kill $l1 $l2
t speech_digits_data spiketime data speech-digits --out sd --quiet
t event_digits_data spiketime data event-digits --out ed --quiet
t event_digits spiketime train --config "$repo/experiments/event_digits.yaml" --out runs/ed --quiet
t event_digits_1thread spiketime train --config "$repo/experiments/event_digits.yaml" --out runs/ed1 --set train.threads=1 --quiet
t speech_digits spiketime train --config "$repo/experiments/speech_digits.yaml" --out runs/sd --quiet
t speech_digits_1thread spiketime train --config "$repo/experiments/speech_digits.yaml" --out runs/sd1 --set train.threads=1 --quiet
t speech_digits_gamma spiketime train --config "$repo/experiments/speech_digits_gamma.yaml" --out runs/gsd --quiet
for r in runs/*/; do python3 -c "import json,sys; m=json.load(open('$r/metrics.json')); print(f\"{'$r':18} test {m['test_accuracy']:.4f} epochs {m['epochs']} threads {m['threads']}\")"; done | tee -a times.txt
