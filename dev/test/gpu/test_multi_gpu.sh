#!/bin/bash
# Multi-GPU checks of the CUDA trainer in one command, on every GPU of this machine (1, 2, 4 or 8):
#  1. world 1 (always): the trainer's 20-step losses and norms are bit-identical across -O 0 / -O 1,
#     -P single (NCCL communicator of one) / local (no NCCL, the default) / fs / tcp / mpi (mpirun -np 1),
#     the NO_MULTI_GPU=1 build (whose -O 0 runs exactly the single-GPU kernels in their order: its
#     collectives are no-ops) and $BASELINE (a trainer binary from before the multi-GPU change, when
#     given): the world-1 path adds nothing to the arithmetic
#  2. for each N in 2 4 8 up to the GPU count: the collective layer first (dev/cuda/multi_gpu_check:
#     all-reduce, ZeRO-1 reduce-scatter / all-gather, buckets, checksum against host references, through
#     fs, tcp and mpirun; faults kill / hang / drift must end every rank in time), then 20-step losses of N GPUs vs 1 GPU with the same global
#     batch (8 micro-batches of 4 x 256: 1 GPU accum 8, N GPUs accum 8/N), -O 0 and -O 1; every run ends
#     with the cross-rank parameter checksum (the trainer dies if the ranks differ). Step 1 must agree
#     within 1e-6 (same weights, same tokens; only the double mean of the micro-batch losses is
#     reordered). Steps 2-20 differ only by the order of the gradient sums (per-rank accumulation, NCCL's
#     reduction order), which AdamW carries into the weights and the run amplifies (chaotic after the
#     step-5 loss spike). The noise scale S of that is measured here on 1 GPU: the same global batch
#     split as b 2 x 16 and b 8 x 4 instead of b 4 x 8 (max |dloss| over steps 2-20, the larger of the two).
#     - fp32 build (PRECISION=FP32, no TF32): the sharp match, N GPUs via tcp, -O 0 and -O 1. Each
#       reordered fp32 sum differs by ~1e-7 relative (2^-24 per addition, a few additions deep); the bf16
#       runs show a 20-step loss deviation ~5x the per-element gradient noise (0.018 for 2^-8), so fp32
#       should land near 1e-6. Required: max |dloss| <= max(FP32_FLOOR = 1e-5, FP32_MULT = 8 x S_fp32).
#       8x: the 2-GPU bf16 deviation was 2-2.6x its split noise; the floor, ~10x the expected level,
#       covers a split noise that happens to be tiny. Any real error (a wrong shard, a lost micro-batch,
#       a wrong 1/(W k) scale) moves the loss by 1e-3 or more.
#     - bf16 build: reported as a multiple of S_bf16 (2^-8 relative per sum: no sharp bound), via
#       mpirun, tcp and fs; a run must still finish its 20 steps with step 1 within 1e-6
#     Same N and launch-independent settings must agree exactly (tcp vs fs)
#  3. resume: a checkpoint of step 10 resumed on the same GPU count gives the step-20 loss and norm of the
#     uninterrupted run exactly (-z 1; every rank's loader position restored); with N > 1 also resumed on
#     1 GPU (gathered ZeRO-1 state, same global batch) within $TOL (bf16, default 0.02)
#  4. N > 1: one rank SIGKILLed mid-run (tcp launch, -T 15): every other rank must exit non-zero with the
#     watchdog's message within -T + 10 s grace + 10 s
#  5. SCALING=1 (default): 340M dense T 8192 b 4 and MoBA (B 128 K 8 kconv 3) T 32768 b 1, -O 1, one
#     micro-batch per GPU per step, on 1, 2, 4, 8 GPUs (as many as present): tokens/s per GPU (median of
#     steps 3-8) and the efficiency against 1 GPU
# A table is printed last (also $LOG/table.txt).
#   usage: [BIN=dir with train_gpt_moba_cu] [SINGLE_BIN=NO_MULTI_GPU=1 build] [FP32_BIN=PRECISION=FP32 build]
#          [BASELINE=old binary] [SCALING=0] [TOL=0.02] [FP32_FLOOR=1e-5] [FP32_MULT=8] [LOG=dir]
#          [NGPU=n: use the first n GPUs] bash dev/test/gpu/test_multi_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-/tmp/moba_multi_gpu}; TOL=${TOL:-0.02}; SCALING=${SCALING:-1}; LIMIT=${LIMIT:-300}
FP32_FLOOR=${FP32_FLOOR:-1e-5}; FP32_MULT=${FP32_MULT:-8}
mkdir -p "$LOG"
W=$(mktemp -d /tmp/moba_mgpu_work.XXXX)
TABLE="$LOG/table.txt"
: > "$TABLE"
row() { printf '%-46s %s\n' "$1" "$2" | tee -a "$TABLE"; }
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}  # NVLink multicast off (not allowed on the lent machines)

# ---- build: the NCCL (+ MPI when present) trainer, and the NO_MULTI_GPU=1 and PRECISION=FP32 ones next to it
# variant OUT PREBUILT MAKEVARS...: copies PREBUILT when given, else runs the Makefile's own command for
# train_gpt_moba_cu under MAKEVARS with the output renamed (in the background; the pid is in $!)
variant() {
  local out=$1 prebuilt=$2; shift 2
  BUILD_PID=""
  if [ -n "$prebuilt" ]; then cp "$prebuilt" "$out"; return; fi
  local cmd; cmd=$(make -s -n -B "$@" train_gpt_moba_cu | tail -1)
  eval "${cmd/-o train_gpt_moba_cu/-o $out}" > "$out.build.log" 2>&1 &
  BUILD_PID=$!
}
variant "$W/train_single" "${SINGLE_BIN:-}" NO_MULTI_GPU=1; single_build=$BUILD_PID
variant "$W/train_fp32" "${FP32_BIN:-}" PRECISION=FP32; fp32_build=$BUILD_PID
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
if [ "$NGPU" -gt 1 ] && [ -z "${BIN:-}" ]; then make -s build/cuda/multi_gpu_check > "$LOG/build_check.log" 2>&1 & check_build=$!; fi
if [ -n "${BIN:-}" ]; then
  TRAIN=$BIN/train_gpt_moba_cu
else
  make -s train_gpt_moba_cu || { echo "build failed"; exit 1; }
  TRAIN=./train_gpt_moba_cu
fi
cp "$TRAIN" "$W/train" && TRAIN=$W/train
[ -n "$single_build" ] && { wait "$single_build" || echo "NO_MULTI_GPU build failed (see $LOG/train_single.build.log)"; }
[ -n "$fp32_build" ] && { wait "$fp32_build" || echo "PRECISION=FP32 build failed (see $LOG/train_fp32.build.log)"; }
cp "$W"/*.build.log "$LOG/" 2>/dev/null
[ -n "${check_build:-}" ] && { wait "$check_build" || echo "multi_gpu_check build failed (see $LOG/build_check.log)"; }
CHECK=${BIN:-build/cuda}/multi_gpu_check
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1 | tee "$LOG/device.txt"
MPI=""
if command -v mpirun >/dev/null && ldd "$TRAIN" | grep -q libmpi; then
  MPI="mpirun --bind-to none -x NCCL_NVLS_ENABLE"
  [ "$(id -u)" = 0 ] && MPI="$MPI --allow-run-as-root"
fi
NS=""; for n in 2 4 8; do [ "$n" -le "$NGPU" ] && NS="$NS $n"; done
echo "GPUs: $NGPU; multi-GPU sizes:${NS:- none}; mpirun: ${MPI:-none (no mpirun or no MPI build)}"

# launch NAME N MODE [trainer flags...]: N processes, MODE local | single | mpi | tcp | fs; output dir $W/NAME,
# console $LOG/NAME.log (rank 0) and $LOG/NAME.rankR.log; returns the worst exit status.
PORT=$((29500 + RANDOM % 2000))
launch() {
  local name=$1 n=$2 mode=$3; shift 3
  local out=$W/$name rc=0
  mkdir -p "$out"
  case $mode in
    single|local) timeout "$LIMIT" "$TRAIN" -o "$out" -P "$mode" "$@" > "$LOG/$name.log" 2>&1; rc=$? ;;
    mpi) timeout "$LIMIT" $MPI -np "$n" "$TRAIN" -o "$out" -P mpi "$@" > "$LOG/$name.log" 2>&1; rc=$? ;;
    tcp|fs)
      local spec pids=()
      PORT=$((PORT + 1))
      if [ "$mode" = tcp ]; then spec=tcp:127.0.0.1:$PORT; else spec=fs:$out/rendezvous; mkdir -p "$out/rendezvous"; fi
      for ((r = 0; r < n; r++)); do
        RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r timeout "$LIMIT" "$TRAIN" -o "$out" -P "$spec" -G "$name" "$@" \
          > "$LOG/$name.rank$r.log" 2>&1 &
        pids+=($!)
      done
      for p in "${pids[@]}"; do wait "$p" || rc=$?; done
      cp "$LOG/$name.rank0.log" "$LOG/$name.log"
      for ((r = 1; r < n; r++)); do cat "$LOG/$name.rank$r.log" >> "$LOG/$name.log"; done ;;
  esac
  return $rc
}

losses() { awk '$3 == "train_loss" {print $2, $4, $8}' "$W/$1/log.txt" 2>/dev/null; }  # step loss norm
# maxdiff A B: "max|dloss| over steps 2.., |dloss| at step 1, steps compared"
maxdiff() {
  awk 'FNR == NR && $3 == "train_loss" {a[$2] = $4; next}
       $3 == "train_loss" && ($2 in a) {d = $4 - a[$2]; if (d < 0) d = -d; if ($2 == 1) s1 = d; else if (d > m) m = d; n++}
       END {printf "%.3g %.3g %d\n", m, s1, n}' "$W/$1/log.txt" "$W/$2/log.txt" 2>/dev/null || echo "nan nan 0"
}
checksum() { grep -ho 'parameter checksum [0-9a-f]*' "$LOG/$1.log" | head -1 | awk '{print $3}'; }
status() { [ "$1" = 0 ] && echo ok || echo "FAILED rc $1: $(grep -h 'error' "$LOG/$2.log" | head -1 | cut -c1-140)"; }

B=4; T=256; GLOBAL=$((8 * B * T))
BASE0=(-p tiny -b $B -t $T -d $GLOBAL -x 20 -v 0 -m 1 -s 0 -z 1 -l 3e-3 -u 5)  # flags older trainers know too
BASE=("${BASE0[@]}" -T 60)

# ---- 1. world 1: one arithmetic whatever the launch
launch w1_O1 1 single "${BASE[@]}" -O 1; rc=$?
row "world 1 -O 1 (reference)" "$(status $rc w1_O1); step 20 loss $(losses w1_O1 | awk '$1 == 20 {print $2}'), checksum $(checksum w1_O1)"
REF=$(losses w1_O1)
same_as_ref() {  # NAME LABEL
  local got; got=$(losses "$1")
  if [ -n "$REF" ] && [ "$(echo "$REF" | wc -l)" = 20 ] && [ "$got" = "$REF" ]; then row "$2" "IDENTICAL (20 steps, loss and norm)"
  else row "$2" "DIFFERENT: $(maxdiff w1_O1 "$1") | $(grep -h 'error' "$LOG/$1.log" | head -1 | cut -c1-100)"; fi
}
launch w1_O0 1 single "${BASE[@]}" -O 0; same_as_ref w1_O0 "world 1 -O 0 vs -O 1"
launch w1_local 1 local "${BASE[@]}" -O 1; same_as_ref w1_local "world 1 -P local (the default: no NCCL) vs single"
launch w1_tcp 1 tcp "${BASE[@]}" -O 1; same_as_ref w1_tcp "world 1 -P tcp vs single"
launch w1_fs 1 fs "${BASE[@]}" -O 1; same_as_ref w1_fs "world 1 -P fs vs single"
if [ -n "$MPI" ]; then launch w1_mpi 1 mpi "${BASE[@]}" -O 1; same_as_ref w1_mpi "world 1 mpirun -np 1 vs single"
else row "world 1 mpirun -np 1" "skipped: ${MPI:-no mpirun / no MPI build}"; fi
if [ -x "$W/train_single" ]; then
  SAVED=$TRAIN; TRAIN=$W/train_single
  launch w1_nonccl 1 single "${BASE[@]}" -O 1; same_as_ref w1_nonccl "world 1 NO_MULTI_GPU build vs NCCL build"
  # NO_MULTI_GPU with -O 0 runs the single-GPU trainer's kernels in its order (the collectives are no-ops)
  launch w1_nonccl_O0 1 single "${BASE[@]}" -O 0; same_as_ref w1_nonccl_O0 "world 1 NO_MULTI_GPU -O 0 (no collectives)"
  TRAIN=$SAVED
else
  row "world 1 NO_MULTI_GPU build" "BUILD FAILED: $(grep -m1 error "$LOG/train_single.build.log" | cut -c1-120)"
fi
if [ -n "${BASELINE:-}" ]; then
  mkdir -p "$W/w1_base"
  timeout "$LIMIT" "$BASELINE" -o "$W/w1_base" "${BASE0[@]}" > "$LOG/w1_base.log" 2>&1
  same_as_ref w1_base "world 1 vs BASELINE (before multi-GPU)"
fi

# ---- 1b. the noise scale of reordered sums: 1 GPU, the same global batch split differently
# noise PREFIX LABEL: runs PREFIX_b2 and PREFIX_b8 next to the b 4 reference PREFIX_O1; prints S
noise() {
  local a b; launch "$1_b2" 1 single "${BASE[@]}" -O 1 -b 2 >/dev/null; launch "$1_b8" 1 single "${BASE[@]}" -O 1 -b 8 >/dev/null
  read -r a _ <<< "$(maxdiff "$1_O1" "$1_b2")"; read -r b _ <<< "$(maxdiff "$1_O1" "$1_b8")"
  row "$2 noise S: 1 GPU b2x16 / b8x4 vs b4x8" "max|dloss| steps 2-20: $a / $b" >&2
  awk -v a="$a" -v b="$b" 'BEGIN {print (a > b) ? a : b}'
}
S16=$(noise w1 bf16)
FP32=no
if [ -x "$W/train_fp32" ]; then
  SAVED=$TRAIN; TRAIN=$W/train_fp32
  launch w1fp_O1 1 single "${BASE[@]}" -O 1; launch w1fp_O0 1 single "${BASE[@]}" -O 0
  a=$(losses w1fp_O1); b=$(losses w1fp_O0)
  row "fp32 world 1 -O 0 vs -O 1" "$([ "$(echo "$a" | wc -l)" = 20 ] && [ "$a" = "$b" ] && echo IDENTICAL || echo "DIFFERENT: $(maxdiff w1fp_O1 w1fp_O0)")"
  S32=$(noise w1fp fp32)
  TOL32=$(awk -v s="$S32" -v m="$FP32_MULT" -v f="$FP32_FLOOR" 'BEGIN {t = m * s; printf "%.3g", (t > f) ? t : f}')
  [ "$(echo "$a" | wc -l)" = 20 ] && FP32=yes
  TRAIN=$SAVED
else
  row "fp32 build" "BUILD FAILED: $(grep -m1 error "$LOG/train_fp32.build.log" 2>/dev/null | cut -c1-120)"
fi

# ---- 2. N GPUs: the collective layer, then the trainer vs 1 GPU with the same global batch
summary() { grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG/$1.log" | tail -1; }
for n in $NS; do
  if [ -x "$CHECK" ]; then
    PORT=$((PORT + 1)); mkdir -p "$W/rdv_$n"
    timeout 900 "$CHECK" -n "$n" -P fs -E "$W/rdv_$n" -G "chk$n" > "$LOG/check_fs_$n.log" 2>&1
    row "multi_gpu_check $n GPUs fs" "$(summary check_fs_$n)"
    timeout 900 "$CHECK" -n "$n" -P tcp -E 127.0.0.1:$PORT > "$LOG/check_tcp_$n.log" 2>&1
    row "multi_gpu_check $n GPUs tcp" "$(summary check_tcp_$n)"
    if [ -n "$MPI" ]; then
      timeout 900 $MPI -np "$n" "$CHECK" -P mpi > "$LOG/check_mpi_$n.log" 2>&1
      row "multi_gpu_check $n GPUs mpirun" "$(grep -cE '^[1-9][0-9]* passed, 0 failed' "$LOG/check_mpi_$n.log") of $n ranks: N passed, 0 failed (last: $(summary check_mpi_$n))"
    fi
    for fault in kill hang drift; do
      PORT=$((PORT + 1))
      timeout 300 "$CHECK" -n "$n" -P tcp -E 127.0.0.1:$PORT -T 10 -x $fault > "$LOG/check_${fault}_$n.log" 2>&1
      row "multi_gpu_check $n GPUs -x $fault (-T 10)" "$(summary check_${fault}_$n); $(grep -o 'all ranks gone [0-9.]* s' "$LOG/check_${fault}_$n.log")"
    done
  else
    row "multi_gpu_check $n GPUs" "not built: $(tail -1 "$LOG/build_check.log" 2>/dev/null)"
  fi
  for mode in mpi tcp fs; do
    [ "$mode" = mpi ] && [ -z "$MPI" ] && { row "$n GPUs mpi" "skipped: no mpirun / no MPI build"; continue; }
    for zero in 0 1; do
      name=w${n}_${mode}_O$zero
      launch "$name" "$n" "$mode" "${BASE[@]}" -O "$zero"; rc=$?
      read -r m s1 cnt <<< "$(maxdiff w1_O$zero "$name")"
      verdict=$(awk -v m="$m" -v s="$s1" -v c="$cnt" -v S="$S16" 'BEGIN {
        printf "%s: max|dloss| %s = %s x S_bf16", (c == 20 && s <= 1e-6) ? "REPORT" : "FAIL", m, (S > 0) ? sprintf("%.2f", m / S) : "inf"}')
      row "bf16 $n GPUs $mode -O $zero vs 1 GPU" "$verdict (step 1: $s1, $cnt steps); $(status $rc "$name"); checksum $(checksum "$name")"
    done
  done
  if [ $FP32 = yes ]; then  # the sharp match
    SAVED=$TRAIN; TRAIN=$W/train_fp32
    for zero in 0 1; do
      name=w${n}fp_tcp_O$zero
      launch "$name" "$n" tcp "${BASE[@]}" -O "$zero"; rc=$?
      read -r m s1 cnt <<< "$(maxdiff w1fp_O1 "$name")"
      verdict=$(awk -v m="$m" -v s="$s1" -v c="$cnt" -v t="$TOL32" 'BEGIN {print (c == 20 && s <= 1e-6 && m <= t) ? "PASS" : "FAIL"}')
      row "fp32 $n GPUs tcp -O $zero vs 1 GPU" "$verdict: max|dloss| $m (step 1: $s1) over $cnt steps, tol $TOL32 = max($FP32_FLOOR, $FP32_MULT x S_fp32 $S32); $(status $rc "$name")"
    done
    TRAIN=$SAVED
  fi
  for zero in 0 1; do  # the launch method must not change the arithmetic
    a=$(losses w${n}_tcp_O$zero); b=$(losses w${n}_fs_O$zero)
    row "$n GPUs -O $zero: tcp vs fs launch" "$([ -n "$a" ] && [ "$a" = "$b" ] && echo IDENTICAL || echo DIFFERENT)"
  done
done

# ---- 3. resume: same GPU count exactly, and (N > 1) on 1 GPU
NMAX=1; for n in $NS; do NMAX=$n; done
MODE=single; [ "$NMAX" -gt 1 ] && MODE=tcp
RES=("${BASE[@]}" -O 1)
launch resA "$NMAX" $MODE "${RES[@]}" -n 10 -Z 5 >/dev/null
mkdir -p "$W/resB" "$W/res1" && cp "$W/resA/ckpt_00000010.bin" "$W/resB/" && cp "$W/resA/ckpt_00000010.bin" "$W/res1/"
launch resB "$NMAX" $MODE "${RES[@]}" -y 1; rc=$?
a=$(losses resA | awk '$1 == 20'); b=$(losses resB | awk '$1 == 20')
row "resume step 10 on $NMAX GPU(s), -O 1" "$([ -n "$a" ] && [ "$a" = "$b" ] && echo IDENTICAL || echo DIFFERENT) step 20 loss,norm A: ${a#20 } | B: ${b#20 }; $(status $rc resB)"
if [ "$NMAX" -gt 1 ]; then
  launch res1 1 single "${RES[@]}" -y 1; rc=$?
  read -r m s1 cnt <<< "$(maxdiff resA res1)"
  row "resume $NMAX-GPU ckpt on 1 GPU" "$(awk -v m="$m" -v c="$cnt" -v t="$TOL" 'BEGIN {print (c == 10 && m <= t) ? "PASS" : "FAIL"}'): max|dloss| $m over $cnt steps (11-20); $(status $rc res1)"
fi

# ---- 4. a killed rank: the others exit within the watchdog's bound
if [ "$NMAX" -gt 1 ]; then
  n=$NMAX; KT=15; out=$W/kill; mkdir -p "$out"; PORT=$((PORT + 1)); pids=()
  for ((r = 0; r < n; r++)); do  # exec: $! is the trainer itself, the process the test kills
    (export RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r; exec "$TRAIN" -o "$out" -P tcp:127.0.0.1:$PORT -p tiny -b $B -t $T \
      -x 100000 -v 0 -s 0 -T $KT > "$LOG/kill.rank$r.log" 2>&1) &
    pids+=($!)
  done
  (sleep 200; kill -9 "${pids[@]}" 2>/dev/null) &  # never leave a rank behind, whatever happens
  reaper=$!
  running=no
  for ((i = 0; i < 240; i++)); do grep -q '^step    20/' "$LOG/kill.rank0.log" 2>/dev/null && { running=yes; break; }; sleep 0.5; done
  kill -9 "${pids[$((n - 1))]}" 2>/dev/null; t0=$(date +%s.%N)
  codes=""; for ((r = 0; r < n - 1; r++)); do wait "${pids[$r]}"; codes="$codes $?"; done
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  wait "${pids[$((n - 1))]}" 2>/dev/null || true
  kill "$reaper" 2>/dev/null
  msg=$(grep -ho 'error: rank [0-9]*: NCCL[^;]*' "$LOG"/kill.rank*.log | head -1)
  ok=$(awk -v d="$dt" -v b=$((KT + 20)) 'BEGIN {print (d <= b) ? "PASS" : "FAIL"}')
  { echo "$codes" | grep -qw 0 || [ -z "$msg" ] || [ $running = no ]; } && ok=FAIL
  row "kill rank $((n - 1)) of $n (-T $KT)" "$ok: reached step 20: $running; others exited with codes$codes after $dt s (bound $((KT + 20)) s): ${msg:-no watchdog message; $(grep -h error "$LOG/kill.rank0.log" | head -1 | cut -c1-80)}"
fi

# ---- 5. scaling: tokens/s per GPU, one micro-batch per GPU per step
if [ "$SCALING" = 1 ]; then
  SMODE=${SMODE:-tcp}
  declare -A BASE_TOK
  for cfg in "dense_T8192_b4:-A dense -W 0 -b 4 -t 8192" "moba_B128K8_kconv3_T32768_b1:-A moba -B 128 -K 8 -W 3 -b 1 -t 32768"; do
    label=${cfg%%:*}; flags=${cfg#*:}
    for n in 1 $NS; do
      name=sc_${label}_$n; mode=$SMODE; [ "$n" = 1 ] && mode=single
      # val = train shards: the synthetic val shard holds too few 32k samples for 8 ranks
      # NCCL_DEBUG=INFO: the transport NCCL picked (NVLink P2P, SHM through host memory, ...) explains the scaling
      NCCL_DEBUG=INFO launch "$name" "$n" "$mode" -p 340M $flags -j "data/synthetic/train_*.bin" -x 8 -v 0 -m 1 -s 0 -u 1 -O 1 -T 300; rc=$?
      rm -f "$W/$name"/ckpt_*.bin
      [ "$n" != 1 ] && row "nccl transport $label $n GPU" "$(grep -o 'via [A-Za-z0-9/_]*' "$LOG/$name.log" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
      tok=$(awk '$3 == "train_loss" && $2 >= 3 {print $10}' "$W/$name/log.txt" 2>/dev/null | sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}')
      if [ -z "$tok" ]; then row "scaling $label $n GPU" "$(status $rc "$name")"; continue; fi
      per=$(awk -v t="$tok" -v n="$n" 'BEGIN {printf "%.0f", t / n}')
      [ "$n" = 1 ] && BASE_TOK[$label]=$per
      eff=$(awk -v p="$per" -v b="${BASE_TOK[$label]:-0}" 'BEGIN {if (b > 0) printf "%.1f%%", 100 * p / b; else print "n/a"}')
      row "scaling $label $n GPU" "$per tok/s per GPU ($tok total), efficiency $eff"
    done
  done
fi

rm -rf "$W"
echo "======== summary ($(cat "$LOG/device.txt"), $NGPU GPUs) ========"
cat "$TABLE"
