#!/usr/bin/env python3
"""Cross-check of moba.c's evaluation text rules (build/metrics_cli) against Python references: the
scoring rules of LongBench (metrics.py), RULER (string_match_all / part) and lm-evaluation-harness
(acc_norm, HellaSwag preprocessing, WikiText detokenizer and word count), written here from their
published behaviour, and Debian's fuzzywuzzy + python-Levenshtein for code_sim (what LongBench uses).
Runs a few thousand generated cases, ASCII and Unicode, and prints "N passed, N failed".
    python3 dev/eval/crosscheck.py build/metrics_cli [CASES=600 per function]
"""
import json
import os
import random
import re
import string
import subprocess
import sys
import tempfile
from collections import Counter

from fuzzywuzzy import fuzz

# ---- references --------------------------------------------------------------------------------------


def normalize_answer(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def qa_f1(pred, gt):
    p, g = normalize_answer(pred).split(), normalize_answer(gt).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = 1.0 * same / len(p), 1.0 * same / len(g)
    return (2 * precision * recall) / (precision + recall)


def lcs_words(x, y):
    """The set of words of x's and y's LCS, reconstructed from the end as the rouge package does."""
    n, m = len(x), len(y)
    t = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(t[i - 1][j], t[i][j - 1])
    out, i, j = set(), n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            out.add(x[i - 1])
            i, j = i - 1, j - 1
        elif t[i - 1][j] > t[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out


def rouge_l(pred, gt):
    hyp = [" ".join(p.split()) for p in pred.split(".") if len(p) > 0]
    ref = [" ".join(p.split()) for p in gt.split(".") if len(p) > 0]
    if not hyp or not ref:
        return 0.0
    m = len(set(w for s in ref for w in s.split(" ")))
    n = len(set(w for s in hyp for w in s.split(" ")))
    union = set()
    for r in ref:
        for h in hyp:
            union |= lcs_words(r.split(" "), h.split(" "))
    r_lcs, p_lcs = len(union) / m, len(union) / n
    return 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8))


def classification(pred, gt, classes):
    match = [c for c in classes if c in pred]
    for term in match:  # removing while iterating, as LongBench does
        if term in gt and term != gt:
            match.remove(term)
    return 1.0 / len(match) if gt in match else 0.0


def retrieval(pred, gt):
    gid = re.findall(r"Paragraph (\d+)", gt)[0]
    nums = re.findall(r"\d+", pred)
    return 0.0 if not nums else sum(1 for x in nums if x == gid) / len(nums)


def count(pred, gt):
    nums = re.findall(r"\d+", pred)
    return 0.0 if not nums else sum(1 for x in nums if x == gt) / len(nums)


def code_sim(pred, gt):
    line = ""
    for ln in pred.lstrip("\n").split("\n"):
        if "`" not in ln and "#" not in ln and "//" not in ln:
            line = ln
            break
    return fuzz.ratio(line, gt) / 100


def ruler_all(pred, refs):
    return sum(1.0 if r.lower() in pred.lower() else 0.0 for r in refs) / len(refs)


def ruler_part(pred, refs):
    return max(1.0 if r.lower() in pred.lower() else 0.0 for r in refs)


def hellaswag(text):
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def detok(s):
    s = s.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    for a, b in [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "), (" . ", ". "), (" ! ", "! "), (" ? ", "? "), (" , ", ", ")]:
        s = s.replace(a, b)
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    for a, b in [("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \u00b0 ", "\u00b0"), (" \n", "\n"), ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s")]:
        s = s.replace(a, b)
    return s


def acc_norm(lls, choices):
    scores = [ll / len(c) for ll, c in zip(lls, choices)]
    return scores.index(max(scores))  # np.argmax: the first maximum


# ---- generated cases -----------------------------------------------------------------------------------

WORDS = ["the", "a", "an", "The", "THE", "An", "cat", "Paris", "paris", "émile", "Émile", "ÉMILE", "naïve", "Œuvre", "straße",
         "İstanbul", "ĳssel", "Łódź", "Ångström", "ǅemal", "σοφία", "ΣΟΦΙΑ", "Москва", "МОСКВА", "東京", "x_y", "don't",
         "3", "42", "٧", "７", "Paragraph", "code", "return", "x = 1", "the_end", "ﬁne", "ß", "and"]
SEPS = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u2003", "\u2009", "\u202f", "\u3000", "\u2028", "\x1c", "\x85",
        "\u2014", "\u2013", "\u2019", "\u201c", ", ", ". ", "!", "?", "-", "'", "\"", "(", ")", "[", "]", "{", "}", "…", "·", "¿", "°", " ° "]
CHARS = list(string.printable) + list("éÉàÀçÇñÑüÜöÖøØåÅæÆœŒßÿŸıİĲĳǄǅǆΣσΩωЖжЁё·¿¡«»—–‘’“”…€°\u00a0\u2003\u200b\u0301ﬁﬀ٣٧७") + ["\U0001d400", "\U00010400"]


def text(rng, words=(0, 12)):
    n = rng.randint(*words)
    out = []
    for _ in range(n):
        out.append(rng.choice(WORDS) if rng.random() < 0.7 else "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 6))))
        out.append(rng.choice(SEPS))
    return "".join(out).rstrip() if rng.random() < 0.5 else "".join(out)


def cases(rng, per):
    for _ in range(per):
        a, b = text(rng), text(rng)
        yield {"f": "qa_f1", "a": a, "b": b if rng.random() < 0.6 else a.upper()}, lambda c: qa_f1(c["a"], c["b"])
        yield {"f": "rouge_l", "a": a, "b": b if rng.random() < 0.5 else a.replace(" ", ". ", 2)}, lambda c: rouge_l(c["a"], c["b"])
        classes = [rng.choice(WORDS) for _ in range(rng.randint(1, 5))]
        yield {"f": "classification", "a": a + " " + rng.choice(classes), "b": rng.choice(classes), "list": classes}, lambda c: classification(c["a"], c["b"], c["list"])
        num = str(rng.randint(0, 30))
        yield {"f": "retrieval", "a": a + " " + rng.choice([num, "Paragraph " + num, "٣", "7"]), "b": "Paragraph " + num}, lambda c: retrieval(c["a"], c["b"])
        yield {"f": "count", "a": a + " " + rng.choice([num, "١٢", "12", ""]), "b": num}, lambda c: count(c["a"], c["b"])
        code_a = "\n".join(rng.choice(["", "# note", "x = f(1)", "// c", "`x`", a, b, "return y"]) for _ in range(rng.randint(0, 4)))
        code_b = rng.choice([b, code_a.split("\n")[-1], "", "x = f(2)", "return ÿ"])
        yield {"f": "code_sim", "a": code_a, "b": code_b}, lambda c: code_sim(c["a"], c["b"])
        refs = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
        yield {"f": "ruler_all", "a": a + " " + rng.choice(refs).upper(), "list": refs}, lambda c: ruler_all(c["a"], c["list"])
        yield {"f": "ruler_part", "a": a, "list": refs}, lambda c: ruler_part(c["a"], c["list"])
        yield {"f": "normalize", "a": a}, lambda c: normalize_answer(c["a"])
        yield {"f": "lower", "a": a}, lambda c: c["a"].lower()
        yield {"f": "capitalize", "a": a}, lambda c: c["a"].capitalize()
        yield {"f": "hellaswag", "a": rng.choice(["", " [title] ", "[header] ", "[step] x\n]"]) + a + rng.choice(["", " [title]", "  [x]  y"])}, lambda c: hellaswag(c["a"])
        yield {"f": "detok", "a": " ".join(rng.choice(["(", ")", "[", "]", "{", "}", "\"", "'", "@-@", "@,@", "@.@", ",", ".", ":", ";", "!", "?", "= =",
                                                         "°", "N", "'s", "s", "\n", "/'", "5/", a, b]) for _ in range(rng.randint(0, 25)))}, lambda c: detok(c["a"])
        yield {"f": "words", "a": a}, lambda c: len(re.split(r"\s+", c["a"]))
        choices = [text(rng, (1, 3)) or "x" for _ in range(rng.randint(2, 5))]
        lls = [-rng.randint(1, 60) / rng.choice([1, 2, 4]) for _ in choices]
        yield {"f": "acc_norm", "nums": lls, "list": choices}, lambda c: acc_norm(c["nums"], c["list"])


def main():
    prog, per = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 600
    rng = random.Random(18)
    pairs = list(cases(rng, per))
    # capital sigma lowers by context in Python (final sigma), always to U+03C3 in moba.c (doc/eval.md)
    pairs = [(c, f) for c, f in pairs if "Σ" not in json.dumps(c, ensure_ascii=False) or c["f"] not in ("lower", "capitalize", "normalize", "qa_f1", "ruler_all", "ruler_part")]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for c, _ in pairs:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
        path = f.name
    try:
        out = subprocess.run([prog, path], check=True, capture_output=True, text=True, encoding="utf-8").stdout.split("\n")[:-1]
    finally:
        os.unlink(path)
    if len(out) != len(pairs):
        print(f"{prog} printed {len(out)} results for {len(pairs)} cases")
        print(f"0 passed, {len(pairs)} failed")
        return 1
    passed = failed = 0
    by_fn = Counter()
    for (c, ref), got in zip(pairs, out):
        want = ref(c)
        ok = json.loads(got) == want if isinstance(want, str) else abs(float(got) - want) <= 1e-12
        by_fn[c["f"]] += 1
        if ok:
            passed += 1
        else:
            failed += 1
            if failed <= 20:
                print(f"MISMATCH {c['f']}: {json.dumps(c, ensure_ascii=False)} -> moba.c {got}, Python {json.dumps(want, ensure_ascii=False)}")
    unicode_cases = sum(1 for c, _ in pairs if any(ord(ch) > 127 for ch in json.dumps(c, ensure_ascii=False)))
    print(f"crosscheck: {len(pairs)} cases ({unicode_cases} with non-ASCII text) over {len(by_fn)} functions, {failed} mismatches")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


sys.exit(main())
