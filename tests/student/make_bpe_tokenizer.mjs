// Trains a byte-level BPE tokenizer.json configured like Qwen2's (NFC, its
// published regex split, ByteLevel without a regex, <|endoftext|> as the one
// special added token) with Hugging Face's own `tokenizers` library, for
// tests/student/llama_cpp_check.sh:
//
//   node make_bpe_tokenizer.mjs CORPUS.txt OUT.json
//
// The library's trainer takes its defaults (it cannot be configured from
// Node.js): every merge the corpus supports up to 30,000 tokens.
import { readFileSync, writeFileSync } from "node:fs";
import { Tokenizer } from "tokenizers";

const [corpus, out] = process.argv.slice(2);
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
const config = {
  version: "1.0", truncation: null, padding: null, added_tokens: [],
  normalizer: { type: "NFC" },
  pre_tokenizer: {
    type: "Sequence",
    pretokenizers: [
      { type: "Split", pattern: { Regex: QWEN2_PATTERN }, behavior: "Isolated", invert: false },
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
// <|endoftext|> after the trained vocabulary, as Qwen's follows its own.
const json = JSON.parse(readFileSync(out, "utf8"));
json.added_tokens = [{
  id: Object.keys(json.model.vocab).length, content: "<|endoftext|>", single_word: false,
  lstrip: false, rstrip: false, normalized: false, special: true,
}];
writeFileSync(out, JSON.stringify(json));
// The library reads back what it wrote.
Tokenizer.fromString(readFileSync(out, "utf8"));
console.error(`${out}: ${json.added_tokens[0].id + 1} tokens, ${json.model.merges.length} merges`);
