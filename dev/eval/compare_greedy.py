#!/usr/bin/env python3
"""Compares two greedy traces written by `-G FILE` of build/eval (CPU) and eval_gpt_moba_cu (GPU): lines
"prompt step token top1 top2". Per prompt: tokens identical, or the first divergence with both sides'
margins (top1 - top2 logit) there, which says whether it is a near-tie. Prints one summary line.
   usage: compare_greedy.py NAME REF_TRACE TRACE"""
import sys


def read(path):
    rows = {}
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 5:
                sys.exit(f"{path}:{ln}: expected 'prompt step token top1 top2'")
            p, s, tok = int(parts[0]), int(parts[1]), int(parts[2])
            rows.setdefault(p, []).append((tok, float(parts[3]) - float(parts[4])))
    return rows


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    name, ref, run = sys.argv[1], read(sys.argv[2]), read(sys.argv[3])
    if sorted(ref) != sorted(run):
        sys.exit(f"{name}: the traces hold different prompts")
    same, total, notes = 0, 0, []
    for p in sorted(ref):
        a, b = ref[p], run[p]
        n = min(len(a), len(b))
        total += len(a)
        k = next((i for i in range(n) if a[i][0] != b[i][0]), n)
        same += k
        if k < n:
            notes.append(f"prompt {p} diverges at token {k}: margins {a[k][1]:.3g} (ref) {b[k][1]:.3g}")
    status = "IDENTICAL" if same == total else "DIFFERENT"
    print(f"{name}: {status}: {same}/{total} tokens before the first divergence of each prompt"
          + ("; " + "; ".join(notes) if notes else ""))


if __name__ == "__main__":
    main()
