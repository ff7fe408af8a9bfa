// Reads GGUF files that `retort export` wrote with two independent
// implementations and compares what they compute with retort's own logits:
//
//   node gguf_check.mjs REFERENCE.json FILE.gguf:MAX_KL[:ARCH] [...]
//
// ARCH is the general.architecture the file must declare (default llama):
// llama, qwen2 (q/k/v biases in every block) or qwen3 (q/k norms).
// REFERENCE.json is `retort generate --logits_out`: the prompt's token ids
// and retort's float32 logits at every prompt position.
// - @huggingface/gguf (Hugging Face's JavaScript GGUF parser) reads the
//   header: architecture, hyper-parameters, every tensor's type and shape;
//   every block holds the tensors its architecture needs.
// - llama.cpp (node-llama-cpp's prebuilt CPU build) loads the model and
//   evaluates the same token ids; its logits must match ours: mean
//   KL(retort || llama.cpp) over positions at most MAX_KL, and the same
//   most likely token at every position where retort's margin between its
//   top two exceeds twice the largest logit difference there (a quantized
//   file may flip a near tie; it may not flip more).
// - With GGUF_CHECK_TEXT set (the text REFERENCE.json's tokens encode),
//   llama.cpp's tokenization of that text with the file's vocabulary must
//   be exactly those tokens.
// Prints one JSON line per file; exits 1 when a check fails.
import { readFileSync } from "node:fs";
import { gguf } from "@huggingface/gguf";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [referencePath, ...specs] = process.argv.slice(2);
const reference = JSON.parse(readFileSync(referencePath, "utf8"));
const tokens = reference.tokens;
const vocab = reference.logits[0].length;

function logSoftmax(row) {
  const max = Math.max(...row);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const log = Math.log(sum) + max;
  return row.map((x) => x - log);
}
const argmax = (row) => row.reduce((best, x, i) => (x > row[best] ? i : best), 0);

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
let failed = false;
// The tensors of block i each architecture reads (llama.cpp's src/models/).
const blockTensors = {
  llama: ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
    "ffn_up", "ffn_down"].map((n) => `${n}.weight`),
};
blockTensors.qwen2 = [...blockTensors.llama, "attn_q.bias", "attn_k.bias", "attn_v.bias"];
blockTensors.qwen3 = [...blockTensors.llama, "attn_q_norm.weight", "attn_k_norm.weight"];

for (const spec of specs) {
  const [path, maxKlText, arch = "llama"] = spec.split(":");
  const maxKl = Number(maxKlText);
  const problems = [];

  const { metadata, tensorInfos } = await gguf(path, { allowLocalFile: true });
  if (metadata["general.architecture"] !== arch) {
    problems.push(`architecture is ${metadata["general.architecture"]}, not ${arch}`);
  }
  const layers = Number(metadata[`${arch}.block_count`]);
  const names = new Set(tensorInfos.map((t) => t.name));
  for (let i = 0; i < layers; ++i) {
    for (const n of blockTensors[arch] ?? []) {
      if (!names.has(`blk.${i}.${n}`)) problems.push(`blk.${i}.${n} is missing`);
    }
  }
  const expectTensors = 2 + (blockTensors[arch]?.length ?? 0) * layers +
    (names.has("output.weight") ? 1 : 0) + (names.has("rope_freqs.weight") ? 1 : 0);
  if (tensorInfos.length !== expectTensors) {
    problems.push(`@huggingface/gguf lists ${tensorInfos.length} tensors, expected ${expectTensors}`);
  }
  const contextLength = Number(metadata[`${arch}.context_length`]);
  if (!(tokens.length <= contextLength)) {
    problems.push(`the prompt's ${tokens.length} tokens do not fit the file's context ${contextLength}`);
  }
  const embd = tensorInfos.find((t) => t.name === "token_embd.weight");
  if (!embd || Number(embd.shape[1]) !== vocab) problems.push("token_embd.weight's shape is not [hidden, vocab]");
  if (metadata["tokenizer.ggml.tokens"]?.length !== vocab) problems.push("tokenizer.ggml.tokens is not the vocabulary");

  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const text = process.env.GGUF_CHECK_TEXT;
  let tokenized = null;
  if (text !== undefined) {
    tokenized = Array.from(model.tokenize(text));
    if (JSON.stringify(tokenized) !== JSON.stringify(tokens)) {
      problems.push(`llama.cpp tokenizes the text as ${JSON.stringify(tokenized)}, retort as ${JSON.stringify(tokens)}`);
    }
  }
  // Within the file's context (Mistral's is its window).
  const size = Math.max(tokens.length, Math.min(256, contextLength));
  const context = await model.createContext({ contextSize: size, batchSize: size, threads: 2 });
  const sequence = context.getSequence();
  const out = await sequence.controlledEvaluate(
    tokens.map((t) => [t, { generateNext: { logits: true } }]),
  );
  let klSum = 0, maxAbs = 0, agree = 0, unexplained = 0;
  for (let p = 0; p < tokens.length; ++p) {
    const theirs = new Array(vocab).fill(-Infinity);
    for (const [token, value] of out[p].next.logits) theirs[token] = value;
    const ours = reference.logits[p];
    const lp = logSoftmax(ours), lq = logSoftmax(theirs);
    let kl = 0, rowMaxAbs = 0;
    for (let i = 0; i < vocab; ++i) {
      kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
      rowMaxAbs = Math.max(rowMaxAbs, Math.abs(ours[i] - theirs[i]));
    }
    maxAbs = Math.max(maxAbs, rowMaxAbs);
    klSum += kl;
    const best = argmax(ours);
    if (best === argmax(theirs)) {
      agree += 1;
    } else {
      // Logits that each moved by at most d can swap two whose gap is at
      // most 2d: a flip beyond that is not rounding.
      const second = Math.max(...ours.filter((_, i) => i !== best));
      if (ours[best] - second > 2 * rowMaxAbs) unexplained += 1;
    }
  }
  await context.dispose();
  await model.dispose();
  const meanKl = klSum / tokens.length;
  const agreement = agree / tokens.length;
  if (!(meanKl <= maxKl)) problems.push(`mean KL ${meanKl} above ${maxKl}`);
  if (unexplained > 0) {
    problems.push(`${unexplained} positions change their most likely token by more than the logits moved`);
  }
  console.log(JSON.stringify({
    file: path, architecture: metadata["general.architecture"],
    type: metadata["general.file_type"], tensors: tensorInfos.length,
    positions: tokens.length, mean_kl: meanKl, max_abs_logit_diff: maxAbs,
    top1_agreement: agreement, unexplained_flips: unexplained, tokenizer: metadata["tokenizer.ggml.model"],
    same_tokens: tokenized === null ? undefined : problems.every((p) => !p.startsWith("llama.cpp tokenizes")),
    ok: problems.length === 0, problems,
  }));
  if (problems.length) failed = true;
}
process.exit(failed ? 1 : 0);
