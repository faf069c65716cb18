// Checks moba.c's SentencePiece reader on the real Llama-2/LLaMA vocabulary, which ships inside the npm
// package llama-tokenizer-js (run by dev/test/tokenizer_crosscheck.sh, which installs the package):
//   1. extracts the vocabulary and merges into a SentencePiece tokenizer.model (a protobuf ModelProto
//      with Llama-2's settings; each piece's score is minus the rank of the merge that makes it);
//   2. runs the package's own test cases (its defaultTests) against build/tokenize with that model;
//   3. encodes TEXT line by line with the package and with build/tokenize and compares the ids;
//   4. writes the same vocabulary as Llama-2-style tokenizer.json files (BPE with byte_fallback; the
//      legacy Prepend + Replace normalizer, and the Metaspace pre-tokenizer) and compares those too
//      (the package merges by pair rank with byte fallback per character, as tokenizers does).
// Prints ok/FAIL lines and the "N passed, N failed" summary.
//   node dev/tokenizer/llama_js_check.mjs NPM_PREFIX WORKDIR TEXT
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const [prefix, work, textPath] = process.argv.slice(2);
const llama = (await import(path.resolve(prefix, 'node_modules/llama-tokenizer-js/llama-tokenizer.js'))).default;
let passed = 0, failed = 0;
const check = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.log('FAIL ' + what); } };

// protobuf writing
const varint = (v) => { const b = []; while (v >= 0x80) { b.push((v & 0x7f) | 0x80); v = Math.floor(v / 128); } b.push(v); return b; };
const field = (num, wire, payload) => [...varint(num * 8 + wire), ...payload];
const bytesField = (num, bytes) => field(num, 2, [...varint(bytes.length), ...bytes]);
const floatBytes = (f) => { const b = Buffer.alloc(4); b.writeFloatLE(f); return [...b]; };
const utf8 = (s) => [...Buffer.from(s, 'utf8')];

const vocab = llama.vocabById, n = vocab.length;
const score = new Array(n).fill(-1e9);  // pieces no merge makes (single characters) never win a merge
for (const [key, prio] of llama.merges) {
    const [a, b] = key.split(' ');
    const id = llama.vocabByString.get(a + b);
    if (id !== undefined) { score[id] = Math.max(score[id], -(prio - 1) / 2); }
}
const out = [];
for (let id = 0; id < n; id++) {
    const s = vocab[id];
    const type = id === 0 ? 2 : id <= 2 ? 3 : /^<0x[0-9A-F]{2}>$/.test(s) ? 6 : 1;
    const sc = type === 1 ? score[id] : 0;
    out.push(...bytesField(1, [...bytesField(1, utf8(s)), ...field(2, 5, floatBytes(sc)), ...field(3, 0, varint(type))]));
}
out.push(...bytesField(2, [...field(3, 0, varint(2)), ...field(4, 0, varint(n)), ...field(35, 0, varint(1))]));       // BPE, vocab size, byte_fallback
out.push(...bytesField(3, [...bytesField(1, utf8('identity')), ...field(3, 0, varint(1)), ...field(4, 0, varint(0)), ...field(5, 0, varint(1))]));
const modelPath = path.join(work, 'llama.model');
fs.writeFileSync(modelPath, Buffer.from(out));
console.log(`wrote ${modelPath}: ${n} pieces, ${llama.merges.size} merges`);

// 2. the package's own test cases, with moba.c as the tokenizer under test
const caseFile = path.join(work, 'llama_case.txt');
const ours = {
    encode(text, addBos = true) {
        fs.writeFileSync(caseFile, text);
        const ids = execFileSync('build/tokenize', ['-t', modelPath, caseFile]).toString().trim();
        return [...(addBos ? [1] : []), ...(ids ? ids.split(' ').map(Number) : [])];
    },
    decode(ids, addBos = true, addPrecedingSpace = true) {
        if (!addBos || !addPrecedingSpace) { return llama.decode(ids, addBos, addPrecedingSpace); }  // the JS API's own options
        fs.writeFileSync(caseFile, ids.join(' ') + '\n');
        return execFileSync('build/tokenize', ['-t', modelPath, '-d', caseFile]).toString().replace(/\n$/, '');
    },
};
try { llama.defaultTests(ours); check(true, "llama-tokenizer-js's own test cases (defaultTests) pass with build/tokenize"); }
catch (e) { check(false, "llama-tokenizer-js's own test cases: " + e.message.slice(0, 400)); }

// 3. the same text through both
const lines = fs.readFileSync(textPath, 'utf8').split('\n').slice(0, -1);
const got = execFileSync('build/tokenize', ['-t', modelPath, '-l', textPath], { maxBuffer: 1 << 30 }).toString().split('\n');
let bad = [], tokens = 0;
for (let i = 0; i < lines.length; i++) {
    const want = lines[i].length ? llama.encode(lines[i], false, true).join(' ') : '';
    tokens += want ? want.split(' ').length : 0;
    if (got[i] !== want) { bad.push(i); if (bad.length === 1) { console.log(`first mismatch, line ${i + 1}: ${JSON.stringify(lines[i].slice(0, 80))}\n  want ${want.slice(0, 200)}\n  got  ${(got[i] || '').slice(0, 200)}`); } }
}
check(bad.length === 0, `Llama vocabulary: ${lines.length} lines, ${tokens} tokens, ${bad.length} mismatched lines against llama-tokenizer-js`);
// 4. tokenizer.json, Llama-2 layouts
const vocabObj = {};
vocab.forEach((s, id) => { vocabObj[s] = id; });
const mergesList = [...llama.merges].sort((x, y) => x[1] - y[1]).map(([key]) => key);
const special = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const model = { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
                fuse_unk: true, byte_fallback: true, vocab: vocabObj, merges: mergesList };
const layouts = [
    ['legacy normalizer Prepend + Replace', { normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] }, pre_tokenizer: null }, () => true],
    ['Metaspace pre-tokenizer (prepend_scheme first, split false)', { normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false } }, (l) => !l.startsWith(' ')],
];
for (const [name, layout, comparable] of layouts) {
    const jsonPath = path.join(work, 'llama.json');
    fs.writeFileSync(jsonPath, JSON.stringify({ version: '1.0', added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')], ...layout, model }));
    const gotJ = execFileSync('build/tokenize', ['-t', jsonPath, '-l', textPath], { maxBuffer: 1 << 30 }).toString().split('\n');
    let badJ = 0, compared = 0;
    for (let i = 0; i < lines.length; i++) {
        if (!comparable(lines[i])) { continue; }
        compared++;
        const want = lines[i].length ? llama.encode(lines[i], false, true).join(' ') : '';
        if (gotJ[i] !== want && badJ++ === 0) { console.log(`first mismatch (${name}), line ${i + 1}: ${JSON.stringify(lines[i].slice(0, 80))}\n  want ${want.slice(0, 200)}\n  got  ${(gotJ[i] || '').slice(0, 200)}`); }
    }
    check(badJ === 0, `Llama vocabulary as tokenizer.json, ${name}: ${compared} lines, ${badJ} mismatched lines against llama-tokenizer-js`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
