// Trains a byte-level BPE tokenizer.json configured like Qwen2's or Llama
// 3's with Hugging Face's own `tokenizers` library, for
// tests/student/llama_cpp_check.sh:
//
//   node make_bpe_tokenizer.mjs CORPUS.txt OUT.json qwen2|llama3
//
// qwen2:  NFC, Qwen2's published regex split, ByteLevel without a regex,
//         <|endoftext|> as the one special added token, no bos.
// llama3: Llama 3's published regex split, ByteLevel without a regex,
//         ignore_merges, <|begin_of_text|> and <|end_of_text|>, the
//         template putting <|begin_of_text|> first.
// The library's trainer takes its defaults (it cannot be configured from
// Node.js): every merge the corpus supports up to 30,000 tokens.
import { readFileSync, writeFileSync } from "node:fs";
import { Tokenizer } from "tokenizers";

const [corpus, out, style] = process.argv.slice(2);
const PATTERNS = {
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  llama3: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
if (!(style in PATTERNS)) throw new Error(`style must be qwen2 or llama3, got ${style}`);
const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
const config = {
  version: "1.0", truncation: null, padding: null, added_tokens: [],
  normalizer: style === "qwen2" ? { type: "NFC" } : null,
  pre_tokenizer: {
    type: "Sequence",
    pretokenizers: [
      { type: "Split", pattern: { Regex: PATTERNS[style] }, behavior: "Isolated", invert: false },
      byteLevel,
    ],
  },
  post_processor: byteLevel,
  decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null,
    end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
    vocab: {}, merges: [],
  },
};
const tokenizer = Tokenizer.fromString(JSON.stringify(config));
tokenizer.train([corpus]);
tokenizer.save(out);
// The special tokens after the trained vocabulary, as both families have them.
const json = JSON.parse(readFileSync(out, "utf8"));
const size = Object.keys(json.model.vocab).length;
const names = style === "qwen2" ? ["<|endoftext|>"] : ["<|begin_of_text|>", "<|end_of_text|>"];
json.added_tokens = names.map((content, i) => ({
  id: size + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false,
  special: true,
}));
if (style === "llama3") {
  json.model.ignore_merges = true;
  const bos = { SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } };
  json.post_processor = {
    type: "Sequence",
    processors: [byteLevel, {
      type: "TemplateProcessing",
      single: [bos, { Sequence: { id: "A", type_id: 0 } }],
      pair: [bos, { Sequence: { id: "A", type_id: 0 } }, bos, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [size], tokens: ["<|begin_of_text|>"] } },
    }],
  };
}
writeFileSync(out, JSON.stringify(json));
// The library reads back what it wrote.
Tokenizer.fromString(readFileSync(out, "utf8"));
console.error(`${out}: ${size + names.length} tokens, ${json.model.merges.length} merges`);
