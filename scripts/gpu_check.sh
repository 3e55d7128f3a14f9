#!/usr/bin/env bash
# Every GPU check of the suite in one go, sized for a lent GPU (< 8 minutes on an H200):
#   1. versions and nvidia-smi
#   2. one `seed` run: MNIST at 96 px, notebook_resnet, 20 epochs x 60,000 images (target: <= 30 s)
#   3. memory: the bytes in use stay flat over an epoch on the device (tests/test_memory.py)
#   4. the `seed` grid, several runs sharing the GPU (target: <= 10 minutes; resumable, so a cut
#      leaves finished runs in the store)
#   5. the benchmarks (model step, transforms, loading, epoch), saved as JSON
#   6. the report of the seed grid with the benchmark throughput tables, packed into one archive
# A GPU machine without the network needs MNIST carried in, compressed (12 MB instead of 55):
#   mkdir -p .gpu-data/MNIST/raw && echo /.gpu-data/ >> .git/info/exclude
#   for f in ../shared/data/MNIST/raw/*; do gzip -c "$f" > .gpu-data/MNIST/raw/"$(basename "$f")".gz; done
# Figures go to $OUT (default ./gpu-out). Usage:
#   bash scripts/gpu_check.sh                 # on the GPU machine, from the repository root
#   GPU_CHECK_TINY=1 bash scripts/gpu_check.sh   # plumbing check on a CPU in about 3 minutes
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# A machine without the network reads MNIST from a carried copy when one is there.
if [ -z "${ABLATIONS_DATA_ROOT:-}" ] && [ -d "$PWD/.gpu-data/MNIST/raw" ]; then
  (cd "$PWD/.gpu-data/MNIST/raw" && for f in *.gz; do [ -e "${f%.gz}" ] || gunzip -k "$f"; done)
  export ABLATIONS_DATA_ROOT=$PWD/.gpu-data
fi
PY=${PYTHON:-python3}
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log"; }

if [ -n "${GPU_CHECK_TINY:-}" ]; then
  RUN_ARGS=(--train-subset 512 --test-subset 256 --epochs 1)
  GRID_ARGS=(--set train_subset=256 --set test_subset=256 --set epochs=1 --set milestones=0.5 --seeds 1)
  BENCH_ARGS=(-k "epoch and 28px" --benchmark-disable)
  T_RUN=300; T_GRID=300; T_BENCH=300
else
  RUN_ARGS=(--epochs 20)
  GRID_ARGS=(--workers "${GRID_WORKERS:-4}")
  BENCH_ARGS=(--benchmark-only)
  T_RUN=120; T_GRID=330; T_BENCH=150
fi

log "1/6 versions"
{
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" -c "import torch, torchvision, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'torchvision', torchvision.__version__, 'python', platform.python_version()); print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
  git rev-parse HEAD 2>/dev/null
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt" >> "$OUT/gpu_check.log"

log "2/6 one seed run"
timeout "$T_RUN" "$PY" -m ablations.train --dataset mnist --model notebook_resnet --augment seed --schedule step \
  --batch-size 64 "${RUN_ARGS[@]}" --json > "$OUT/seed_run.log" 2>&1
log "seed run exit $?: $(tail -n 2 "$OUT/seed_run.log" | head -n 1)"

log "3/6 memory over an epoch"
DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
ABLATIONS_TEST_DEVICE=$DEVICE timeout 60 "$PY" -m pytest tests/test_memory.py -q -p no:cacheprovider \
  >> "$OUT/gpu_check.log" 2>&1
log "memory ($DEVICE) exit $?"

log "4/6 seed grid"
RESULTS=$(mktemp -d)/seed
# the progress bar's carriage-return updates are dropped; every other line is kept
timeout "$T_GRID" "$PY" -m ablations.run_grid --grid seed --results "$RESULTS" --no-report "${GRID_ARGS[@]}" 2>&1 \
  | tr '\r' '\n' | grep -vE '[0-9]+/[0-9]+ \[' > "$OUT/seed_grid.log"
log "seed grid exit ${PIPESTATUS[0]}: $(tail -n 1 "$OUT/seed_grid.log")"

log "5/6 benchmarks"
timeout "$T_BENCH" "$PY" -m pytest bench -q -p no:cacheprovider "${BENCH_ARGS[@]}" \
  --benchmark-json="$OUT/bench-gpu.json" > "$OUT/bench.log" 2>&1
log "bench exit $?: $(tail -n 1 "$OUT/bench.log")"

log "6/6 report"
REPORT_ARGS=(--results "$RESULTS" --out "$RESULTS")
[ -s "$OUT/bench-gpu.json" ] && REPORT_ARGS+=(--bench "$OUT/bench-gpu.json")
"$PY" -m ablations.report "${REPORT_ARGS[@]}" >> "$OUT/gpu_check.log" 2>&1
log "report exit $?"
tar czf "$OUT/seed-grid-results.tgz" -C "$(dirname "$RESULTS")" seed
log "done: $(ls "$OUT" | tr '\n' ' ')"
