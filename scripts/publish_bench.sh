#!/usr/bin/env bash
# Run the whole benchmark suite on this machine and publish it as results/bench/<label>.json,
# then render its tables with the report. Run it on a quiet machine: the numbers are timings.
#
#   scripts/publish_bench.sh                 # every suite (~10-15 minutes on a quiet 2-core CPU)
#   scripts/publish_bench.sh -k model_step   # extra arguments go to pytest
#   ABLATIONS_BENCH_DEVICE=cpu scripts/publish_bench.sh   # the CPU of a machine that has a GPU
#
# <label> names the hardware (python -m bench.label): the CPU's vendor and family plus what it
# runs bf16 matrix math on (intel-xeon-amx-bf16, amd-epyc-avx2), or the GPU (nvidia-h200).
# One file per machine: a rerun on the same hardware replaces its file, and a run that fails
# or is interrupted leaves the published file as it was.
#
# Once, if not done yet: the AMD EPYC run published as results/bench-cpu.json belongs under
# results/bench/ like the others (the script reminds you while the old file is there):
#   mkdir -p results/bench && git mv results/bench-cpu.json results/bench/amd-epyc-avx2.json
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
# Offline checkouts keep MNIST beside the repo (as conftest.py does); a set variable always wins.
if [[ -z "${ABLATIONS_DATA_ROOT:-}" && -d ../shared/data/MNIST/raw ]]; then
  export ABLATIONS_DATA_ROOT=../shared/data
fi

label=$("$PY" -m bench.label)
out="results/bench/$label.json"
mkdir -p results/bench
if [[ -f results/bench-cpu.json && ! -f results/bench/amd-epyc-avx2.json ]]; then
  echo "note: results/bench-cpu.json is the AMD EPYC run; move it once with" >&2
  echo "  git mv results/bench-cpu.json results/bench/amd-epyc-avx2.json" >&2
fi

partial=$(mktemp "results/bench/.$label.XXXXXX.json")
trap 'rm -f "$partial"' EXIT
echo "benchmarking as $label -> $out" >&2
"$PY" -m pytest bench --benchmark-only --benchmark-json "$partial" -p no:cacheprovider "$@"
mv "$partial" "$out"
trap - EXIT

"$PY" -m ablations.report --bench "$out" --out "results/bench/$label"
