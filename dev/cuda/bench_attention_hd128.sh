#!/usr/bin/env bash
# One device call for the HD-128 warpgroup-MMA backward (attention_dense versions 17, 18; notes in
# dev/cuda/attention_notes.md, "Session 3 (ATTN-HD128)"). The binaries are built on the dev machine (no GPU):
#   bash dev/cuda/build_variants.sh gpubin_hd128 attention_dense=build/cuda/attention_dense
#   mkdir -p gpucarry_hd128 && tar czf gpucarry_hd128/bin.tgz gpubin_hd128 && cp dev/cuda/bench_attention_hd128.sh gpucarry_hd128/
# and on the device (repository root, carry gpucarry_hd128; ~100-150 s): bash gpucarry_hd128/bench_attention_hd128.sh
# Checks first under short timeouts (a hang costs only its cut), then fwd+bwd at HD 128 of version 16 (its
# backward: mma.sync) against 17 (wgmma, atomic dQ) and 18 (wgmma, deterministic), FA2 / cuDNN rows last.
set -u
[ -x gpubin_hd128/attention_dense ] || tar xzf gpucarry_hd128/bin.tgz
bin=gpubin_hd128/attention_dense
# the HD-128 cases in full (case line, 5 errors, rerun), then each version's summary line
for v in 17 18; do
  timeout 40 "$bin" $v check > /tmp/check_$v.txt 2>&1; echo "exit $?" >> /tmp/check_$v.txt
  grep -A6 "HD=128" /tmp/check_$v.txt | grep -v "^--$"; tail -2 /tmp/check_$v.txt
done
for v in 16 17; do timeout 60 "$bin" $v time 128 16384 65536; done
timeout 30 "$bin" 18 time 128 16384
timeout 60 python3 dev/cuda/attention_anchor.py 128 16384
