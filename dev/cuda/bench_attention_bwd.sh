#!/usr/bin/env bash
# Device script of session 3's dense HD 64 backward (llmc/attention_bwd_hopper.cuh), everything in one call
# with prebuilt binaries: checks of version 7 and the new versions, timings; if the fastest new version
# beats version 7 and passed its check, the trainer built with that version's ATTN_BWD_WGMMA_KW:
# test_gpt_moba on the dense CPU debug states and the 340M dense step (step_phases with KW 1 and the new
# one, and the trainer); then Nsight Compute on chosen versions' dK/dV kernels (T 8192: key metrics, stall
# reasons, the per-SASS-instruction source page and the SASS in the logs) and PyTorch's FA2 / cuDNN at the
# same shapes. Summary last.
# usage: BIN=dir [NEW="9 10 11"] [NCU="9 10"] [DEADLINE=s] bash dev/cuda/bench_attention_bwd.sh
#   (from the repository root; summary + logs.tgz under $OUT)
# BIN holds attention_dense, step_phases_kw1, and per new version v with trainer builds: train_kw<k>,
# test_kw<k>, step_phases_kw<k> where k = ATTN_BWD_WGMMA_KW of version v (9 -> 10, 10 -> 11), and states/*.bin (CPU debug
# states: ./train_gpt_moba -p tiny -V 512 -A dense -W 0|3 -b 2 -t 256 -D states/<name>.bin).
# Every program runs under a timeout (a hung kernel costs one step, not the call).
set -u
BIN=${BIN:?BIN=dir of prebuilt binaries}
OUT=${OUT:-/tmp/bwd_out}
NEW=${NEW:-9 10 11}
NCU=${NCU:-9 10}
DEADLINE=${DEADLINE:-400}
declare -A KW_OF=([9]=10 [10]=11)
L=$(mktemp -d)  # every log; packed into $OUT/bwd_logs.tgz at the end (the device tool returns few files)
mkdir -p "$OUT"
S=$OUT/summary.txt
: > "$S"
start=$SECONDS
note() { echo "$*" | tee -a "$S"; }
in_time() { [ $((SECONDS - start)) -lt "$DEADLINE" ] || { note "skipped (deadline): $1"; return 1; }; }
nvidia-smi -L | tee -a "$S"

# ---- checks (fresh random inputs vs a double-precision CPU reference, poisoned outputs)
declare -A passed
for v in 7 $NEW; do
  in_time "check v$v" || break
  timeout 60 "$BIN/attention_dense" $v check > "$L/check_v$v.log" 2>&1
  rc=$?
  worst=$(grep -oE "rel_l2 [^ ]*" "$L/check_v$v.log" | awk '{print $2}' | sort -g | tail -1)
  note "check v$v: $(tail -1 "$L/check_v$v.log") (rc $rc; worst rel L2 $worst)"
  [ $rc -eq 0 ] && passed[$v]=1
done

# ---- timings
table=$L/table.txt
: > "$table"
for v in 7 $NEW; do
  in_time "time v$v" || break
  timeout 90 "$BIN/attention_dense" $v time 64 8192 32768 >> "$table" 2>&1
done
ms() { awk -F'|' -v impl="ours-v$1" '$2 ~ impl" " && $5+0 == 8192 {print $8+0}' "$table"; }
best=""; best_ms=$(ms 7)
for v in $NEW; do
  [ -n "${KW_OF[$v]:-}" ] && [ -n "${passed[$v]:-}" ] && [ -n "$(ms $v)" ] || continue
  awk -v a="$(ms $v)" -v b="$best_ms" 'BEGIN { exit !(a < b) }' && { best=$v; best_ms=$(ms $v); }
done
note "fwd+bwd ms at T 8192: v7 $(ms 7); $(for v in $NEW; do printf 'v%s %s; ' $v "$(ms $v)"; done)best new version beating v7: ${best:-none}"

# ---- the trainer with the best new version's backward
if [ -n "$best" ]; then
  kw=${KW_OF[$best]}
  for st in "$BIN"/states/*.bin; do
    in_time "test_gpt_moba $st" || break
    name=$(basename "$st" .bin)
    timeout 60 "$BIN/test_kw$kw" "$st" > "$L/test_$name.log" 2>&1
    note "test_gpt_moba (KW=$kw) $name: $(tail -1 "$L/test_$name.log")"
  done
  for k in 1 $kw; do
    in_time "step_phases kw$k" || break
    timeout 100 "$BIN/step_phases_kw$k" -p 340M -A dense -W 0 -b 4 -t 8192 > "$L/phases_kw$k.txt" 2>&1
    note "== step_phases KW=$k, 340M dense T 8192 x 4"
    grep -E "^\| attention|^\| all events|^step wall" "$L/phases_kw$k.txt" | tee -a "$S"
  done
  if in_time "trainer 340M"; then
    timeout 120 "$BIN/train_kw$kw" -p 340M -x 8 -v 0 -s 0 -u 1 -m 1 -A dense -W 0 -b 4 -t 8192 -o /tmp/kwrun > "$L/train_kw$kw.log" 2>&1
    note "train (KW=$kw) 340M dense 8192 x 4: $(grep -E '^step +8/8' "$L/train_kw$kw.log" | tail -1)"
  fi
  if in_time "step_phases kw$kw T 32768"; then
    timeout 100 "$BIN/step_phases_kw$kw" -p 340M -A dense -W 0 -b 1 -t 32768 > "$L/phases_kw${kw}_32k.txt" 2>&1
    note "== step_phases KW=$kw, 340M dense T 32768 x 1"
    grep -E "^\| attention|^\| all events|^step wall" "$L/phases_kw${kw}_32k.txt" | tee -a "$S"
  fi
fi
# ---- SASS of the TMA kernels (register use, where ptxas serialised wgmma), for reading afterwards
command -v cuobjdump > /dev/null && cuobjdump -sass "$BIN/attention_dense" 2>/dev/null \
  | awk '/Function : /{keep = /dkdv_tma/} keep' > "$L/sass_dkdv_tma.txt"

# ---- Nsight Compute: one dK/dV launch each (the third), full set
for v in $NCU; do
  in_time "ncu v$v" || break
  timeout 150 ncu --set full --import-source no --clock-control none -k regex:dkdv --launch-skip 2 --launch-count 1 \
    -o "$L/ncu_v$v" "$BIN/attention_dense" $v time 64 8192 > "$L/ncu_v$v.log" 2>&1
  ncu -i "$L/ncu_v$v.ncu-rep" --page raw > "$L/ncu_v$v.txt" 2>&1
  ncu -i "$L/ncu_v$v.ncu-rep" --page source --csv --print-source sass > "$L/sass_v$v.csv" 2>&1
  note "== ncu v$v (dK/dV kernel, HD 64, T 8192, B 2, 32 heads)"
  grep -E "^ *(gpu__time_duration.sum|sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed|sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32_sparsity_off.avg.pct_of_peak_sustained_elapsed|lts__throughput.avg.pct_of_peak_sustained_elapsed|lts__t_sectors_srcunit_tex_op_read.sum|lts__t_sectors_op_red.sum|sm__warps_active.avg.pct_of_peak_sustained_active|launch__registers_per_thread|smsp__issue_active.avg.pct_of_peak_sustained_active|smsp__inst_executed.sum) " \
    "$L/ncu_v$v.txt" | awk '{print "  " $1, $(NF-1), $NF}' | tee -a "$S"
  note "  top stalls (warps per issue):"
  grep -E "smsp__average_warps_issue_stalled_.*_per_issue_active.ratio " "$L/ncu_v$v.txt" | awk '{print $NF, $1}' \
    | sort -gr | head -5 | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//; s/^/    /' | tee -a "$S"
  rm -f "$L/ncu_v$v.ncu-rep"
done

in_time anchors && PYTHONUNBUFFERED=1 timeout 120 python3 dev/cuda/attention_anchor.py 64 8192 32768 >> "$table" 2>&1

note "elapsed $((SECONDS - start)) s"
tar czf "$OUT/bwd_logs.tgz" -C "$L" .
echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
grep '^|' "$table"
grep -v '^|' "$table" | head -5
