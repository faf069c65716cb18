#!/usr/bin/env bash
# scripts/ablate.sh on the CPU: a 2-run sweep of the tiny preset (dense, MoBA + kconv3) killed (-9) while
# the second run trains, then called again: the finished run is skipped, the cut one resumes from its
# checkpoint and completes, both are evaluated, and the grouped report is written; a changed config and a
# bad variant are refused. Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
pass=0; fail=0
check() { if eval "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2"; fi; }
name=ci_test_$$
sweep=runs/ablate/$name
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$sweep"' EXIT
cat > "$tmp/sweep.conf" <<CONF
NAME=$name
BASE="-p tiny -t 64 -b 2 -u 5 -v 0 -s 0 -l 3e-3"
STEPS=60
CKPT_EVERY=5
GRID="dense moba:32/2+k3"
SEEDS="1"
EVAL="-j data/synthetic/val_*.bin -t 64 -b 2 -m 2 -s syn_single -l 64,128 -n 4"
CONF
make -s train_gpt_moba build/eval build/report > /dev/null || { echo "0 passed, 1 failed"; exit 1; }

# first call, killed once the second run has written its second checkpoint
second=$sweep/moba32-2-k3-s1
setsid bash scripts/ablate.sh "$tmp/sweep.conf" > "$tmp/first.out" 2>&1 &
pid=$!
disown "$pid"
for _ in $(seq 1 3000); do
    [ -f "$second/ckpt_00000010.bin" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
kill -9 -- -"$pid" 2>/dev/null
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
check '[ -f "$sweep/dense-s1/eval.json" ]' "the first run was not evaluated before the kill"
check '[ ! -f "$second/eval.json" ] && [ ! -f "$second/ckpt_00000060.bin" ] && [ -f "$second/ckpt_00000010.bin" ]' \
      "the second run was not cut between its checkpoints (kill too late or too early)"

# second call: skip, resume, evaluate, report
bash scripts/ablate.sh "$tmp/sweep.conf" > "$tmp/second.out" 2>&1
rc=$?
check '[ $rc -eq 0 ]' "the resumed sweep exited $rc: $(tail -3 "$tmp/second.out")"
check 'grep -q "^done: .*dense-s1" "$tmp/second.out"' "the finished run was not skipped"
check 'grep -q "^resuming: .*moba32-2-k3-s1" "$tmp/second.out" && grep -q "resumed from" "$second/train.out"' "the cut run did not resume from its checkpoint"
check '[ -f "$second/eval.json" ] && [ -f "$second/ckpt_00000060.bin" ]' "the cut run did not finish and get evaluated"
check '[ "$(grep -c "^step 60 train_loss" "$second/log.txt")" -ge 1 ]' "the resumed run's log has no step 60"
check 'grep -q "^| dense | 1 |" "$sweep/report/report.md" && grep -q "^| moba32-2-k3 | 1 |" "$sweep/report/report.md"' \
      "the report has no sweep row per variant"
check '[ -f "$sweep/report/train_loss.svg" ] && [ -f "$sweep/report/synthetic_vs_length.svg" ]' "the report's plots are missing"
# a third call does nothing but the report
bash scripts/ablate.sh "$tmp/sweep.conf" > "$tmp/third.out" 2>&1
check '[ "$(grep -c "^done:" "$tmp/third.out")" -eq 2 ] && ! grep -q "^training\|^resuming" "$tmp/third.out"' "a finished sweep trained again"

# the report's retrieval-probe column (eval -R) when the runs' eval.json have it: copies with a known score
mkdir -p "$tmp/probes"
for r in dense-s1 moba32-2-k3-s1; do
    cp -r "$sweep/$r" "$tmp/probes/"
    sed -i '1a\  "recall_probes": {"perplexity": 2.0000, "acc": 40.00, "n": 5},' "$tmp/probes/$r/eval.json"
done
build/report -g -o "$tmp/probes/report" "$tmp/probes/dense-s1" "$tmp/probes/moba32-2-k3-s1" > /dev/null
check 'grep -q "| tokens/s | retrieval probes |" "$tmp/probes/report/report.md" && grep -q "^| dense | 1 | .* | 40.0 ± 0.0 |" "$tmp/probes/report/report.md"' \
      "the report has no retrieval-probe column"
check '! grep -q "retrieval probes" "$sweep/report/report.md"' "a sweep without probes got a probe column"

# refusals: another config under the same name, a bad variant
sed 's/^STEPS=60/STEPS=70/' "$tmp/sweep.conf" > "$tmp/changed.conf"
bash scripts/ablate.sh "$tmp/changed.conf" > "$tmp/changed.out" 2>&1
check '[ $? -ne 0 ] && grep -q "started with another config" "$tmp/changed.out"' "a changed config was not refused"
sed -e "s/^NAME=.*/NAME=${name}_bad/" -e 's/^GRID=.*/GRID="dense moba:32"/' "$tmp/sweep.conf" > "$tmp/bad.conf"
bash scripts/ablate.sh "$tmp/bad.conf" > "$tmp/bad.out" 2>&1
check '[ $? -ne 0 ] && grep -q "variant .moba:32." "$tmp/bad.out"' "a bad variant was not refused"
rm -rf "runs/ablate/${name}_bad"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
