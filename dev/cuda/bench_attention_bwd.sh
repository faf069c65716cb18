#!/usr/bin/env bash
# Device script of session 3's dense HD 64 backward (llmc/attention_bwd_hopper.cuh), everything in one call
# with prebuilt binaries: Nsight Compute on version 7's and version 9's dK/dV kernels (T 8192), checks of
# versions 7 and 9-11, timings of 7-11 next to PyTorch's FA2 / cuDNN, then, if version 9 passed, the
# trainer built with ATTN_BWD_WGMMA_KW=10 (version 9's kernel): test_gpt_moba on the dense CPU debug states,
# the 340M dense step (step_phases with KW 1 and 10, and the trainer itself). Summary table printed last.
# usage: BIN=dir bash dev/cuda/bench_attention_bwd.sh   (run from the repository root; summary + logs under $OUT)
# BIN holds attention_dense, step_phases_kw1, step_phases_kw10, train_kw10, test_kw10 and states/*.bin
# (CPU debug states: ./train_gpt_moba -p tiny -V 512 -A dense -W 0|3 -b 2 -t 256 -D states/<name>.bin).
# Every program runs under a timeout (a hung kernel costs one step, not the call).
set -u
BIN=${BIN:?BIN=dir of prebuilt binaries}
OUT=${OUT:-/tmp/bwd_out}
DEADLINE=${DEADLINE:-400}
L=$(mktemp -d)  # every log; packed into $OUT/bwd_logs.tgz at the end (the device tool returns few files)
mkdir -p "$OUT"
S=$OUT/summary.txt
: > "$S"
start=$SECONDS
note() { echo "$*" | tee -a "$S"; }
in_time() { [ $((SECONDS - start)) -lt "$DEADLINE" ] || { note "skipped (deadline): $1"; return 1; }; }
nvidia-smi -L | tee -a "$S"

# ---- Nsight Compute: one dK/dV launch each (the third), full set; key metrics to the summary
for v in 7 9; do
  in_time "ncu v$v" || break
  timeout 150 ncu --set full --clock-control none -k regex:dkdv --launch-skip 2 --launch-count 1 --page raw \
    "$BIN/attention_dense" $v time 64 8192 > "$L/ncu_v$v.txt" 2>&1
  note "== ncu v$v (dK/dV kernel, HD 64, T 8192, B 2, 32 heads)"
  grep -E "gpu__time_duration.sum |sm__throughput.avg.pct_of_peak_sustained_elapsed |gmma.*pct|lts__throughput.avg.pct_of_peak_sustained_elapsed |lts__t_sectors_op_(red|atom).sum |lts__t_sectors_srcunit_tex_op_read.sum |sm__warps_active.avg.pct_of_peak_sustained_active |launch__registers_per_thread |launch__occupancy_limit|l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum |smsp__inst_executed.sum |dram__throughput.avg.pct_of_peak_sustained_elapsed " \
    "$L/ncu_v$v.txt" | awk '{print "  " $1, $(NF-1), $NF}' | tee -a "$S"
  note "  top stalls (warps per issue, smsp__average_warps_issue_stalled_*_per_issue_active):"
  grep -E "smsp__average_warps_issue_stalled_.*_per_issue_active.ratio " "$L/ncu_v$v.txt" | awk '{print $NF, $1}' \
    | sort -gr | head -6 | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//; s/^/    /' | tee -a "$S"
done

# ---- checks (fresh random inputs vs a double-precision CPU reference, poisoned outputs)
pass9=0
for v in 7 9 10 11; do
  in_time "check v$v" || break
  timeout 60 "$BIN/attention_dense" $v check > "$L/check_v$v.log" 2>&1
  rc=$?
  worst=$(grep -oE "rel_l2 [^ ]*" "$L/check_v$v.log" | awk "{print \$2}" | sort -g | tail -1)
  note "check v$v: $(tail -1 "$L/check_v$v.log") (rc $rc; worst rel $worst)$(grep -c FAIL "$L/check_v$v.log" | sed 's/^0$//; s/^[1-9].*/ FAIL lines/')"
  [ $v -eq 9 ] && [ $rc -eq 0 ] && pass9=1
done

# ---- timings, PyTorch anchors in the same call
table=$L/table.txt
: > "$table"
for v in 7 9 10 11; do
  in_time "time v$v" || break
  timeout 90 "$BIN/attention_dense" $v time 64 8192 32768 >> "$table" 2>&1
done
in_time anchors && PYTHONUNBUFFERED=1 timeout 120 python3 dev/cuda/attention_anchor.py 64 8192 32768 >> "$table" 2>&1

# ---- the trainer with version 9's backward
if [ $pass9 -eq 1 ]; then
  for st in "$BIN"/states/*.bin; do
    in_time "test_gpt_moba $st" || break
    note "test_kw10 $(basename "$st"): $(timeout 60 "$BIN/test_kw10" "$st" > "$L/test_$(basename "$st" .bin).log" 2>&1; tail -1 "$L/test_$(basename "$st" .bin).log")"
  done
  for kw in 1 10; do
    in_time "step_phases kw$kw" || break
    timeout 100 "$BIN/step_phases_kw$kw" -p 340M -A dense -W 0 -b 4 -t 8192 > "$L/phases_kw$kw.txt" 2>&1
    note "== step_phases KW=$kw, 340M dense T 8192 x 4"
    grep -E "^\| attention|^\| all events|^step wall" "$L/phases_kw$kw.txt" | tee -a "$S"
  done
  if in_time "trainer 340M"; then
    timeout 120 "$BIN/train_kw10" -p 340M -x 8 -v 0 -s 0 -u 1 -m 1 -A dense -W 0 -b 4 -t 8192 -o /tmp/kw10run > "$L/train_kw10.log" 2>&1
    note "train_kw10 340M dense 8192 x 4: $(grep -E '^step +8/8' "$L/train_kw10.log" | tail -1)"
  fi
  if in_time "step_phases kw10 T 32768"; then
    timeout 100 "$BIN/step_phases_kw10" -p 340M -A dense -W 0 -b 1 -t 32768 > "$L/phases_kw10_32k.txt" 2>&1
    note "== step_phases KW=10, 340M dense T 32768 x 1"
    grep -E "^\| attention|^\| all events|^step wall" "$L/phases_kw10_32k.txt" | tee -a "$S"
  fi
else
  note "version 9 failed its check: trainer runs skipped"
fi

note "elapsed $((SECONDS - start)) s"
tar czf "$OUT/bwd_logs.tgz" -C "$L" .
echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
grep '^|' "$table"
grep -v '^|' "$table" | head -5
