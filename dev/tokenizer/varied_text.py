"""Writes a few MB of deliberately varied text for the tokenizer cross-checks (dev/test/tokenizer_crosscheck.sh):
this repository's sources and docs (code, English prose), generated lines in non-Latin scripts (CJK,
Cyrillic, Greek, Arabic, Devanagari, Hangul, Thai), emoji with modifiers and ZWJ sequences, long runs of
spaces, tabs and digits, and (unless --valid-utf8) lines with bytes that are not valid UTF-8.
Deterministic (fixed seed).
    python3 dev/tokenizer/varied_text.py OUT [MB] [--valid-utf8]
"""
import glob
import os
import random
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out_path = sys.argv[1]
mb = float(sys.argv[2]) if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else 2.0
valid_only = "--valid-utf8" in sys.argv
rng = random.Random(1234)

sources = []
for pattern in ("llmc/*.h", "llmc/*.cuh", "data/*.c", "dev/test/*.c", "doc/*.md", "README.md", "*.c"):
    for path in sorted(glob.glob(os.path.join(root, pattern))):
        with open(path, "rb") as f:
            sources.append(f.read())
code = b"".join(sources).decode("utf-8", "replace").splitlines()

scripts = [(0x4E00, 0x9FA5), (0x0410, 0x044F), (0x0391, 0x03C9), (0x0621, 0x064A), (0x0905, 0x0939),
           (0xAC00, 0xD7A3), (0x0E01, 0x0E2E), (0x3041, 0x3096)]
emoji = ["\U0001F999", "\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467",
         "\u2764\ufe0f", "\U0001F1FA\U0001F1F8", "\U0001F525", "\u2615"]


def script_line():
    lo, hi = rng.choice(scripts)
    words = ["".join(chr(lo + int(rng.paretovariate(0.8)) % (hi - lo + 1)) for _ in range(rng.randint(1, 8)))  # frequent and rare characters
             for _ in range(rng.randint(3, 20))]
    sep = "" if lo >= 0x3000 and rng.random() < 0.5 else " "
    return sep.join(words)


def mixed_line():
    parts = []
    for _ in range(rng.randint(2, 12)):
        k = rng.random()
        if k < 0.2: parts.append(rng.choice(emoji))
        elif k < 0.35: parts.append(" " * rng.randint(2, 40))
        elif k < 0.5: parts.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30))))
        elif k < 0.6: parts.append("\t" * rng.randint(1, 5))
        elif k < 0.8: parts.append(script_line())
        else: parts.append(rng.choice(code).strip() if code else "x")
    return "".join(parts)


lines = []
size = 0
i = 0
while size < mb * 1e6:
    k = i % 10
    if k < 4 and code: line = code[rng.randrange(len(code))].encode()
    elif k < 6: line = script_line().encode()
    elif k < 9: line = mixed_line().encode()
    elif valid_only: line = (" " * rng.randint(0, 3) + mixed_line() + " " * rng.randint(0, 3)).encode()
    else:
        b = bytearray(mixed_line().encode())
        for _ in range(rng.randint(1, 4)):  # bytes that are not valid UTF-8: stray continuation, truncated sequences
            b[rng.randrange(len(b) + 1):0] = bytes([rng.choice([0x80, 0xBF, 0xC0, 0xC3, 0xE2, 0xED, 0xF0, 0xF5, 0xFF])])
        line = bytes(b).replace(b"\n", b" ")
    lines.append(line)
    size += len(line) + 1
    i += 1
with open(out_path, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
