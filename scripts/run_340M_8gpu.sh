#!/bin/bash
# 340M pretraining on one node with 8 GPUs, one process per GPU (doc/multi_gpu.md).
#   LAUNCH=mpi  mpirun -np 8 (needs the MPI build: mpicc present at `make`, no NO_USE_MPI=1)
#   LAUNCH=tcp  8 background processes with RANK/WORLD_SIZE/LOCAL_RANK, NCCL id over TCP 127.0.0.1:$PORT
#   LAUNCH=fs   the same, NCCL id through the directory $OUT/rendezvous
# usage: [LAUNCH=mpi|tcp|fs] [ATTN=moba|dense] [T=32768] [B=1] [TOTAL=524288] [STEPS=...] [ZERO=1]
#        [DATA=dir] [OUT=dir] [NGPU=8] bash scripts/run_340M_8gpu.sh [extra trainer flags]
#
# The trainer's multi-GPU flags (./train_gpt_moba_cu -h):
#   -P  process group: auto | single | mpi | fs:<dir> | tcp:<host:port> | env     default auto
#   -G  run tag naming the fs rendezvous files             default $SLURM_JOB_ID, else moba
#   -O  ZeRO stage: 0 all-reduce, 1 sharded AdamW state    default 1
#   -T  seconds a collective may take before all ranks exit (watchdog)   default 300
#   -b / -t are per GPU; -d is the GLOBAL batch in tokens, a multiple of b * t * GPUs
#   (grad accum = d / (b * t * GPUs)).
set -euo pipefail
cd "$(dirname "$0")/.."
LAUNCH=${LAUNCH:-mpi}; NGPU=${NGPU:-8}; ATTN=${ATTN:-moba}; ZERO=${ZERO:-1}
T=${T:-32768}; B=${B:-1}; TOTAL=${TOTAL:-524288}; STEPS=${STEPS:-20000}
DATA=${DATA:-data/fineweb_edu}; OUT=${OUT:-runs/340M_${ATTN}_${NGPU}gpu}; PORT=${PORT:-29500}
mkdir -p "$OUT"
make -s train_gpt_moba_cu
FLAGS=(-i "$DATA/train_*.bin" -j "$DATA/val_*.bin" -o "$OUT" -p 340M -A "$ATTN" -b "$B" -t "$T" -d "$TOTAL"
       -x "$STEPS" -v 250 -m 20 -n 1000 -y 1 -O "$ZERO" -T 300 "$@")
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}  # NVLink multicast off unless the cluster allows it

case "$LAUNCH" in
  mpi)
    exec mpirun -np "$NGPU" --bind-to none ./train_gpt_moba_cu "${FLAGS[@]}" -P mpi ;;
  tcp|fs)
    if [ "$LAUNCH" = tcp ]; then PG=tcp:127.0.0.1:$PORT; else PG=fs:$OUT/rendezvous; mkdir -p "$OUT/rendezvous"; fi
    pids=()
    for ((r = 0; r < NGPU; r++)); do
      RANK=$r WORLD_SIZE=$NGPU LOCAL_RANK=$r ./train_gpt_moba_cu "${FLAGS[@]}" -P "$PG" &
      pids+=($!)
    done
    # The first rank to fail ends the job: the others are stopped instead of waiting out their timeout.
    rc=0
    for ((i = 0; i < NGPU; i++)); do
      if ! wait -n; then rc=1; kill "${pids[@]}" 2>/dev/null || true; fi
    done
    exit $rc ;;
  *) echo "LAUNCH=$LAUNCH: mpi, tcp or fs" >&2; exit 1 ;;
esac
