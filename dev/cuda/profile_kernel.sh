#!/usr/bin/env bash
# Device script: Nsight Compute profile of one kernel launch of a dev program, for the "why is it slow"
# step of a kernel's history: speed-of-light / occupancy / warp-state sections as text, the per-SASS-line
# stall samples as CSV, and the SASS of the matching kernels.
# KERNEL is matched against the kernel's plain function name (e.g. dkdv_tma_kernel), not the mangled one; the
# clocks are left alone (--clock-control none), as the device README asks.
#   usage: KERNEL=regex OUT=dir bash dev/cuda/profile_kernel.sh <program> <args...>
set -u
K=${KERNEL:?KERNEL=regex of the kernel name}
P=${OUT:-/tmp}/profile; mkdir -p "$P"
timeout 240 ncu --clock-control none --kernel-name "regex:$K" --launch-count 1 --set full -f -o "$P/rep" "$@" > "$P/ncu_run.log" 2>&1
ncu -i "$P/rep.ncu-rep" --page details > "$P/details.txt" 2>&1
ncu -i "$P/rep.ncu-rep" --page source --csv --print-source sass > "$P/source.csv" 2>&1
cuobjdump -sass "$1" 2>/dev/null | awk -v k="$K" '/Function :/ {p = ($0 ~ k)} p' > "$P/kernel.sass"  # every instantiation
grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Executed Ipc|Issue Slots Busy|Registers Per|Achieved Occupancy|L2 Hit|Stall|Tensor|No Eligible|Active Warps" "$P/details.txt" | head -60
wc -l "$P/source.csv" "$P/kernel.sass"
