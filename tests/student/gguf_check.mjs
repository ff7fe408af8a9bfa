// Reads GGUF files that `retort export` wrote with two independent
// implementations and compares what they compute with retort's own logits:
//
//   node gguf_check.mjs REFERENCE.json FILE.gguf:MAX_KL [FILE.gguf:MAX_KL ...]
//
// REFERENCE.json is `retort generate --logits_out`: the prompt's token ids
// and retort's float32 logits at every prompt position.
// - @huggingface/gguf (Hugging Face's JavaScript GGUF parser) reads the
//   header: architecture, hyper-parameters, every tensor's type and shape.
// - llama.cpp (node-llama-cpp's prebuilt CPU build) loads the model and
//   evaluates the same token ids; its logits must match ours: mean
//   KL(retort || llama.cpp) over positions at most MAX_KL, and the same
//   most likely token at (almost) every position.
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
for (const spec of specs) {
  const cut = spec.lastIndexOf(":");
  const path = spec.slice(0, cut);
  const maxKl = Number(spec.slice(cut + 1));
  const problems = [];

  const { metadata, tensorInfos } = await gguf(path, { allowLocalFile: true });
  if (metadata["general.architecture"] !== "llama") problems.push("architecture is not llama");
  const layers = Number(metadata["llama.block_count"]);
  const expectTensors = 2 + 9 * layers + (tensorInfos.some((t) => t.name === "output.weight") ? 1 : 0);
  if (tensorInfos.length !== expectTensors) {
    problems.push(`@huggingface/gguf lists ${tensorInfos.length} tensors, expected ${expectTensors}`);
  }
  const embd = tensorInfos.find((t) => t.name === "token_embd.weight");
  if (!embd || Number(embd.shape[1]) !== vocab) problems.push("token_embd.weight's shape is not [hidden, vocab]");
  if (metadata["tokenizer.ggml.tokens"]?.length !== vocab) problems.push("tokenizer.ggml.tokens is not the vocabulary");

  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 256, batchSize: 256, threads: 2 });
  const sequence = context.getSequence();
  const out = await sequence.controlledEvaluate(
    tokens.map((t) => [t, { generateNext: { logits: true } }]),
  );
  let klSum = 0, maxAbs = 0, agree = 0;
  for (let p = 0; p < tokens.length; ++p) {
    const theirs = new Array(vocab).fill(-Infinity);
    for (const [token, value] of out[p].next.logits) theirs[token] = value;
    const ours = reference.logits[p];
    const lp = logSoftmax(ours), lq = logSoftmax(theirs);
    let kl = 0;
    for (let i = 0; i < vocab; ++i) {
      kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
      maxAbs = Math.max(maxAbs, Math.abs(ours[i] - theirs[i]));
    }
    klSum += kl;
    if (argmax(ours) === argmax(theirs)) agree += 1;
  }
  await context.dispose();
  await model.dispose();
  const meanKl = klSum / tokens.length;
  const agreement = agree / tokens.length;
  if (!(meanKl <= maxKl)) problems.push(`mean KL ${meanKl} above ${maxKl}`);
  if (agreement < 0.9) problems.push(`top-1 agreement ${agreement} below 0.9`);
  console.log(JSON.stringify({
    file: path, type: metadata["general.file_type"], tensors: tensorInfos.length,
    positions: tokens.length, mean_kl: meanKl, max_abs_logit_diff: maxAbs,
    top1_agreement: agreement, ok: problems.length === 0, problems,
  }));
  if (problems.length) failed = true;
}
process.exit(failed ? 1 : 0);
