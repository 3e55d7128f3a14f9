#!/usr/bin/env bash
# Every GPU check of the suite in one command that fits a lent GPU's budget (10 minutes a
# command, 15 minutes in all, start-up included). Each step has its own limit (`timeout -k`,
# so a child that ignores SIGTERM is killed too), the limits add up to 520 s or less, the plan is
# printed before anything starts, and each step leaves its output in $OUT as soon as it ends, so
# a cut loses only the step it cut:
#   gpu_check.log         versions, nvidia-smi, every step's log and exit status
#   runs.jsonl            the notebook configuration, eager and compiled: one JSON line each
#   runs.sqlite           the notebook grid's store, trained packed (K by a probe of the GPU), as many
#                         complete seeds as the probe predicts fit the step (seed-major: a balanced design)
#   bench-<suite>.json    one pytest-benchmark file per suite, model step first; bench-epoch.json also
#                         holds the packed step at K = 1..16 against the unpacked step
#   report.tgz            the grid's report with the benchmark tables
# At most 8 files: what a lent machine sends back.
#
# MNIST travels with the working tree, compressed (12 MB instead of 55), since the GPU machine
# has no network; the script unpacks it and points ABLATIONS_DATA_ROOT at it:
#   mkdir -p .gpu-data/MNIST/raw && echo /.gpu-data/ >> .git/info/exclude
#   for f in ../shared/data/MNIST/raw/*; do gzip -c "$f" > .gpu-data/MNIST/raw/"$(basename "$f")".gz; done
# It installs nothing: the machine's Python must already have torch; the suite runs from the
# checkout (PYTHONPATH), and its other dependencies travel as wheels if that Python lacks them.
#
#   bash scripts/gpu_check.sh                     # on the GPU machine, from the repository root
#   GPU_CHECK_TINY=1 bash scripts/gpu_check.sh    # the same steps in the same order, tiny, on a CPU
#   GPU_CHECK_PLAN=1 bash scripts/gpu_check.sh    # print the plan and stop
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
KILL_AFTER=5  # seconds between SIGTERM and SIGKILL; counted in each step's limit below

# Plain strings, split into words where used, so that the steps' subshells can read them.
if [ -n "${GPU_CHECK_TINY:-}" ]; then
  RUN_ARGS="--dataset synthetic --train-subset 256 --test-subset 64 --epochs 1 --device cpu"
  # 56 px and batch 16 keep the notebook ResNet's CPU steps short; K=2 trains packs (auto picks 1 on a CPU)
  GRID_ARGS="--set dataset=synthetic --set train_subset=128 --set val_subset=64 --set test_subset=64 --set epochs=1
             --set milestones=0.5 --set device=cpu --set image_size=56 --set batch_size=16 --seeds 1"
  GRID_PACK=2
  BENCH_ARGS="--benchmark-only --benchmark-min-rounds=1 --benchmark-max-time=0.05 --benchmark-warmup=off -x"
  BENCH_K="(28px and not 256) or none"
else
  RUN_ARGS="--dataset mnist --epochs 5"
  GRID_ARGS=""
  GRID_PACK=auto
  BENCH_ARGS="--benchmark-only"
  BENCH_K=""
fi

# step name, limit in seconds (SIGKILL grace included), what it does
PLAN=(
  "versions        15  torch, CUDA, cuDNN, the GPU"
  "run-eager       60  the notebook configuration (96 px, notebook_resnet, notebook policy, step decay), eager"
  "run-compiled    90  the same, torch.compile with CUDA graphs (compile time included)"
  "memory          45  bytes in use stay flat over an epoch on the device (tests/test_memory.py)"
  "grid           110  the notebook grid packed, as many whole seeds as a probe predicts fit; store copied at once"
  "bench-model     60  forward and train step per model, precision and memory format"
  "bench-trans     30  transforms: per-sample PIL vs batched on the device"
  "bench-loading   20  DataLoader vs device-resident batches"
  "bench-epoch     70  the suite's epoch vs the notebook loop vs the bare step; the packed step vs unpacked"
  "report          20  the grid's report with the benchmark tables"
)
total=0
echo "plan (limit per step, seconds):" | tee "$OUT/gpu_check.log"
for entry in "${PLAN[@]}"; do
  read -r name limit what <<<"$entry"
  total=$((total + limit))
  printf '  %-14s %4d s  %s\n' "$name" "$limit" "$what" | tee -a "$OUT/gpu_check.log"
done
printf '  %-14s %4d s\n' "total" "$total" | tee -a "$OUT/gpu_check.log"
[ -n "${GPU_CHECK_PLAN:-}" ] && exit 0

limit_of() { for entry in "${PLAN[@]}"; do read -r n l _ <<<"$entry"; [ "$n" = "$1" ] && echo "$l"; done; }
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log"; }
# step NAME FUNCTION [ARGS]: run a function below in its own shell under the step's limit (the
# SIGKILL grace inside it) and log its exit status; a cut or failed step never stops the next.
step() {
  local name=$1 fn=$2; shift 2
  local limit; limit=$(limit_of "$name")
  log "start $name (limit $limit s)"
  STEP_LIMIT=$limit timeout -k "$KILL_AFTER" "$((limit - KILL_AFTER))" \
    bash -c "$(declare -f "$fn"); $fn $*" >> "$OUT/gpu_check.log" 2>&1
  local rc=$?
  log "end $name: exit $rc$([ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo ' (cut at its limit)')"
}

# A machine without the network reads MNIST from the carried copy when one is there.
if [ -z "${ABLATIONS_DATA_ROOT:-}" ] && [ -d "$PWD/.gpu-data/MNIST/raw" ]; then
  (cd "$PWD/.gpu-data/MNIST/raw" && for f in *.gz; do [ -e "${f%.gz}" ] || gunzip -k "$f"; done)
  export ABLATIONS_DATA_ROOT=$PWD/.gpu-data
fi

versions() {
  nvidia-smi || echo "no nvidia-smi"
  "$PY" -c "import torch, torchvision, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), 'torchvision', torchvision.__version__, 'python', platform.python_version());
print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
  git rev-parse HEAD 2>/dev/null || true
}
notebook_run() {  # the notebook's configuration; its JSON summary line goes to runs.jsonl
  local output rc
  # shellcheck disable=SC2086
  output=$("$PY" -m ablations.train --model notebook_resnet --augment notebook --schedule step --precision fp32 \
    --batch-size 64 $RUN_ARGS "$@" --json); rc=$?
  echo "$output"  # into the log (a `tee /dev/stderr` would reopen the log and truncate it)
  echo "$output" | tail -n 1 >> "$OUT/runs.jsonl"
  return "$rc"
}
memory() {
  ABLATIONS_TEST_DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')") \
    "$PY" -m pytest tests/test_memory.py -q -p no:cacheprovider
}
grid() {  # the store is copied as soon as the grid stops, cut or not (sqlite's backup reads a consistent copy)
  local results="$OUT/.grid/notebook"
  # --fit-seconds counts from the command's start, so the probe's own seconds are inside it
  # shellcheck disable=SC2086
  timeout -k 2 "$((STEP_LIMIT - 15))" "$PY" -m ablations.run_grid --grid notebook --results "$results" --no-report \
    --pack "$GRID_PACK" --fit-seconds "$((STEP_LIMIT - 25))" $GRID_ARGS 2>&1 | tr '\r' '\n' | grep -vE '[0-9]+/[0-9]+ \['
  "$PY" -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
    "$results/runs.sqlite" "$OUT/runs.sqlite"
}
bench() {  # bench NAME [SUITE...]: one JSON per step (bench-NAME.json; suites default to NAME), written when it ends
  local name=$1 files=() suite; shift
  for suite in "${@:-$name}"; do files+=("bench/test_$suite.py"); done
  # shellcheck disable=SC2086
  "$PY" -m pytest "${files[@]}" -q -p no:cacheprovider $BENCH_ARGS ${BENCH_K:+-k "$BENCH_K"} \
    --benchmark-json="$OUT/bench-$name.json"
}
report() {
  local results="$OUT/.grid/notebook" args=()
  for f in "$OUT"/bench-*.json; do [ -s "$f" ] && args+=(--bench "$f"); done
  "$PY" -m ablations.report --results "$results" --out "$results" "${args[@]}" \
    && tar czf "$OUT/report.tgz" -C "$OUT/.grid" notebook
}

export PY OUT RUN_ARGS GRID_ARGS GRID_PACK BENCH_ARGS BENCH_K
step versions     versions
step run-eager    notebook_run
step run-compiled notebook_run --compile
step memory       memory
step grid         grid
step bench-model  bench model
step bench-trans  bench transforms
step bench-loading bench loading
step bench-epoch  bench epoch epoch packed
step report       report
rm -rf "$OUT/.grid"  # the report.tgz and runs.sqlite hold what it had
log "done: $(ls "$OUT" | tr '\n' ' ')"
