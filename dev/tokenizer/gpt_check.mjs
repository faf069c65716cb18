// Checks moba.c's tokenizer.json reader against npm's gpt-tokenizer (run by
// dev/test/tokenizer_crosscheck.sh, which installs the package): from the package's real GPT-2 (r50k_base)
// and cl100k_base rank tables it builds two tokenizer.json files (byte-level BPE with the GPT-2 regex;
// Split by the Llama-3 regex + ByteLevel with ignore_merges, the Llama-3 layout), deriving each
// token's merge as the last step of BPE over its bytes with the lower ranks (how tokenizers converts
// tiktoken files), then encodes TEXT line by line with gpt-tokenizer and with build/tokenize and
// compares the ids. Prints ok/FAIL lines and the "N passed, N failed" summary.
//   node dev/tokenizer/gpt_check.mjs NPM_PREFIX WORKDIR TEXT
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [prefix, work, textPath] = process.argv.slice(2);
const require = createRequire(path.resolve(prefix, 'node_modules', 'x.js'));
let passed = 0, failed = 0;
const check = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.log('FAIL ' + what); } };

// GPT-2's byte -> character alphabet
const byteChar = [];
let next = 256;
for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    byteChar[b] = String.fromCodePoint(printable ? b : next++);
}
const mapBytes = (bytes) => Array.from(bytes, (b) => byteChar[b]).join('');

function buildJson(ranks, preTokenizer, ignoreMerges, eot) {
    const tokens = ranks.map((t) => (typeof t === 'string' ? Buffer.from(t, 'utf8') : Buffer.from(t)));
    const rankOf = new Map(tokens.map((b, r) => [b.toString('latin1'), r]));
    const vocab = {}, merges = [];
    tokens.forEach((b, r) => { vocab[mapBytes(b)] = r; });
    tokens.forEach((b, r) => {
        if (b.length < 2) { return; }
        let parts = Array.from(b, (x) => Buffer.from([x]));
        while (parts.length > 2) {  // BPE with the ranks below r, lowest first
            let best = -1, bestRank = Infinity;
            for (let i = 0; i + 1 < parts.length; i++) {
                const k = rankOf.get(Buffer.concat([parts[i], parts[i + 1]]).toString('latin1'));
                if (k !== undefined && k < r && k < bestRank) { best = i; bestRank = k; }
            }
            if (best < 0) { return; }  // not reachable by merges: no merge makes it
            parts.splice(best, 2, Buffer.concat([parts[best], parts[best + 1]]));
        }
        merges.push([mapBytes(parts[0]), mapBytes(parts[1])]);
    });
    return {
        version: '1.0', added_tokens: [{ id: eot, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
        normalizer: null, pre_tokenizer: preTokenizer, post_processor: null, decoder: { type: 'ByteLevel' },
        model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
                 fuse_unk: false, byte_fallback: false, ignore_merges: ignoreMerges, vocab, merges },
    };
}

const gpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const cases = [
    { name: 'r50k_base (GPT-2), ByteLevel pre-tokenizer', enc: 'r50k_base', eot: 50256, ignore: false,
      pre: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true } },
    { name: 'cl100k_base, Split(Llama-3 regex) + ByteLevel, ignore_merges', enc: 'cl100k_base', eot: 100257, ignore: true,
      pre: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: llama3Regex }, behavior: 'Isolated', invert: false },
                                               { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] } },
];
const lines = fs.readFileSync(textPath, 'utf8').split('\n').slice(0, -1);
for (const c of cases) {
    const ranks = require(`gpt-tokenizer/cjs/bpeRanks/${c.enc}`).default;
    const json = buildJson(ranks, c.pre, c.ignore, c.eot);
    const jsonPath = path.join(work, `${c.enc}.json`);
    fs.writeFileSync(jsonPath, JSON.stringify(json));
    const ref = require(`gpt-tokenizer/cjs/encoding/${c.enc}`);
    const got = execFileSync('build/tokenize', ['-t', jsonPath, '-l', textPath], { maxBuffer: 1 << 30 }).toString().split('\n');
    let bad = 0, tokens = 0;
    for (let i = 0; i < lines.length; i++) {
        const want = ref.encode(lines[i], { disallowedSpecial: new Set() }).join(' ');
        tokens += want ? want.split(' ').length : 0;
        if (got[i] !== want && bad++ === 0) { console.log(`first mismatch, line ${i + 1}: ${JSON.stringify(lines[i].slice(0, 80))}\n  want ${want.slice(0, 200)}\n  got  ${(got[i] || '').slice(0, 200)}`); }
    }
    // newlines inside the text (the line-by-line check has none): blocks of lines, some with \r\n and blank lines
    const block = lines.slice(0, 2000).map((l, i) => (i % 7 === 0 ? l + '\r' : i % 5 === 0 ? l + '\n  \n' : l)).join('\n');
    const blockPath = path.join(work, 'block.txt');
    fs.writeFileSync(blockPath, block);
    const blockWant = ref.encode(block, { disallowedSpecial: new Set() }).join(' ');
    const blockGot = execFileSync('build/tokenize', ['-t', jsonPath, blockPath], { maxBuffer: 1 << 30 }).toString().trim();
    check(blockGot === blockWant, `${c.name}: ${block.length} characters with newlines in one piece: ${blockWant.split(' ').length} tokens, ${blockGot === blockWant ? 'identical' : 'DIFFERENT'}`);
    check(bad === 0, `${c.name}: ${Object.keys(json.model.vocab).length} tokens, ${json.model.merges.length} merges; ${lines.length} lines, ${tokens} tokens, ${bad} mismatched lines against gpt-tokenizer`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
