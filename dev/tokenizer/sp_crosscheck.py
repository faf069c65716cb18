"""SentencePiece cross-check (needs Debian's python3-sentencepiece; run by dev/test/tokenizer_crosscheck.sh).
Trains small BPE models on local text with Llama-2's settings (byte_fallback, split_digits, identity
normalization, whitespace-only pieces) and variations (extra-whitespace removal on, user-defined pieces,
no dummy prefix), encodes TEXT line by line with SentencePiece and with build/tokenize, and requires
identical ids; then checks that a unigram model is refused with a clear error. Prints one "ok"/"FAIL" line
per check and the "N passed, N failed" summary.
If given, EXTRA_MODEL (the Llama model extracted by llama_js_check.mjs) is compared the same way.
    /usr/bin/python3 dev/tokenizer/sp_crosscheck.py WORKDIR TEXT [EXTRA_MODEL]
"""
import os
import subprocess
import sys

import sentencepiece as spm

work, text_path = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok: passed += 1; print("ok   " + what)
    else: failed += 1; print("FAIL " + what)


with open(text_path, "rb") as f:
    lines = f.read().split(b"\n")[:-1]
train_path = os.path.join(work, "sp_train.txt")
with open(train_path, "wb") as f:  # train on a third of the lines (valid UTF-8 ones: the trainer wants text)
    f.write(b"\n".join(l for l in lines[::3] if l.decode("utf-8", "ignore").encode() == l) + b"\n")

llama = dict(model_type="bpe", byte_fallback=True, split_digits=True, normalization_rule_name="identity",
             remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, character_coverage=0.995,
             max_sentence_length=1 << 20, minloglevel=2)
models = {
    "llama2_settings_v4000": dict(llama, vocab_size=4000),
    "llama2_settings_v1000": dict(llama, vocab_size=1000),
    "remove_extra_ws_user_defined": dict(llama, vocab_size=3000, remove_extra_whitespaces=True,
                                         user_defined_symbols=["<tool>", "##", "\u4e00\u4e01"]),
    "no_dummy_prefix": dict(llama, vocab_size=2000, add_dummy_prefix=False),
}
if len(sys.argv) > 3:
    models["extracted_llama"] = None
for name, opts in models.items():
    prefix = os.path.join(work, name) if opts else sys.argv[3][:-len(".model")]
    if opts:
        spm.SentencePieceTrainer.train(input=train_path, model_prefix=prefix, **opts)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    want = [" ".join(map(str, sp.encode(l))) for l in lines]
    got = subprocess.run(["build/tokenize", "-t", prefix + ".model", "-l", text_path], capture_output=True, check=True).stdout.decode().split("\n")[:-1]
    bad = [i for i in range(len(lines)) if i >= len(got) or got[i] != want[i]]
    ntok = sum(len(w.split()) for w in want)
    check(not bad and len(got) == len(lines), "%s: %d lines, %.2f MB, %d tokens, %d mismatched lines%s" % (
        name, len(lines), sum(map(len, lines)) / 1e6, ntok, len(bad),
        "" if not bad else " (first: line %d %r: want %s got %s)" % (bad[0] + 1, lines[bad[0]][:80], want[bad[0]][:120], got[bad[0]][:120] if bad[0] < len(got) else "nothing")))
    # newlines inside the text (the line-by-line check has none): the first 3000 lines in one piece
    block_path = os.path.join(work, "block.txt")
    with open(block_path, "wb") as f:
        f.write(b"\n".join(lines[:3000]))
    want = " ".join(map(str, sp.encode(b"\n".join(lines[:3000]))))
    got = subprocess.run(["build/tokenize", "-t", prefix + ".model", block_path], capture_output=True, check=True).stdout.decode().strip()
    check(got == want, "%s: 3000 lines in one piece: %d tokens, %s" % (name, len(want.split()), "identical" if got == want else "DIFFERENT"))
    # decode: valid UTF-8 lines without leading/trailing/double spaces decode back exactly
    sample = [l for l in lines[:3000] if l.decode("utf-8", "ignore").encode() == l]
    ids_path = os.path.join(work, name + ".ids")
    with open(ids_path, "w") as f:
        f.write("\n".join(" ".join(map(str, sp.encode(l.decode()))) for l in sample) + "\n")
    back = subprocess.run(["build/tokenize", "-t", prefix + ".model", "-d", ids_path], capture_output=True, check=True).stdout.split(b"\n")[:-1]
    ref = [sp.decode(sp.encode(l.decode())).encode() for l in sample]
    check(back == ref, "%s: decode of %d lines equals SentencePiece's" % (name, len(sample)))

prefix = os.path.join(work, "unigram")
spm.SentencePieceTrainer.train(input=train_path, model_prefix=prefix, model_type="unigram", vocab_size=2000, minloglevel=2)
r = subprocess.run(["build/tokenize", "-t", prefix + ".model", text_path], capture_output=True)
check(r.returncode != 0 and b"is a UNIGRAM model" in r.stderr and b"only BPE" in r.stderr, "unigram model refused: %s" % r.stderr.decode().strip())
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
