// retort bench generate: generation throughput with the key/value cache
// against recomputing the prefix for every new token, greedy, on a batch of
// random prompts, each mode timed on the same model in this process. The
// model is --checkpoint, or a fresh one of --model written under
// --work_dir/bench_generate/model so that tools/bench/pytorch_generate.py
// can time a PyTorch loop on the same weights (tools/bench/generate.sh runs
// both).
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "models/causal_lm.h"
#include "models/generation.h"
#include "models/llama.h"
#include "models/llama_checkpoint.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(int64_t, prompt_tokens);
ABSL_DECLARE_FLAG(int64_t, max_new_tokens);

namespace retort::cli {

const std::vector<std::string> kBenchGenerateFlags = {
    "checkpoint", "model",    "batch_size", "prompt_tokens", "max_new_tokens",
    "seed",       "work_dir", "json_out",   "threads"};

absl::Status RunBenchGenerate() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const int64_t batch = absl::GetFlag(FLAGS_batch_size);
  const int64_t prompt = absl::GetFlag(FLAGS_prompt_tokens);
  const int64_t fresh = absl::GetFlag(FLAGS_max_new_tokens);
  if (batch < 1 || prompt < 1 || fresh < 1) {
    return absl::InvalidArgumentError(
        "--batch_size, --prompt_tokens and --max_new_tokens must be positive");
  }
  std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  if (checkpoint.empty()) {
    RETORT_ASSIGN_OR_RETURN(models::LlamaConfig config,
                            models::LlamaConfig::Parse(absl::GetFlag(FLAGS_model), {}));
    torch::manual_seed(absl::GetFlag(FLAGS_seed));
    models::LlamaModel model(config);
    checkpoint = absl::GetFlag(FLAGS_work_dir) + "/bench_generate/model";
    RETORT_RETURN_IF_ERROR(MakeDirs(checkpoint));
    RETORT_RETURN_IF_ERROR(models::SaveLlamaCheckpoint(model, checkpoint));
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::CausalLm> model,
                          models::LoadCausalLm(checkpoint));
  const models::LlamaConfig& config = model->config();
  if (prompt + fresh > config.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("--prompt_tokens + --max_new_tokens exceed the model's ",
                     config.max_position_embeddings, " positions"));
  }
  // Prompts: ids from a generator of their own (the Python loop draws the
  // same ones from the same seed with the same rule).
  std::vector<std::vector<int64_t>> prompts(batch);
  uint64_t x = absl::GetFlag(FLAGS_seed);
  for (auto& p : prompts) {
    for (int64_t t = 0; t < prompt; ++t) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      p.push_back(static_cast<int64_t>((x >> 33) % static_cast<uint64_t>(config.vocab_size)));
    }
  }
  nlohmann::json report = {{"model", config.Describe()},
                           {"checkpoint", checkpoint},
                           {"batch", batch},
                           {"prompt_tokens", prompt},
                           {"new_tokens", fresh},
                           {"threads", absl::GetFlag(FLAGS_threads)}};
  std::vector<std::vector<int64_t>> tokens[2];
  for (int cached = 1; cached >= 0; --cached) {
    models::GenerationOptions o;
    o.temperature = 0;
    o.use_cache = cached == 1;
    o.max_new_tokens = 2;  // warm-up
    RETORT_RETURN_IF_ERROR(models::Generate(*model, prompts, o).status());
    o.max_new_tokens = fresh;
    const absl::Time start = absl::Now();
    RETORT_ASSIGN_OR_RETURN(tokens[cached], models::Generate(*model, prompts, o));
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const double rate = static_cast<double>(batch * fresh) / seconds;
    const char* name = cached ? "cache" : "recompute";
    report[name] = {{"seconds", seconds}, {"tokens_per_second", rate}};
    std::fprintf(stderr, "[bench generate] %s: %lld new tokens in %.3f s, %.1f tokens/s\n", name,
                 static_cast<long long>(batch * fresh), seconds, rate);
  }
  report["speedup"] = report["cache"]["tokens_per_second"].get<double>() /
                      report["recompute"]["tokens_per_second"].get<double>();
  report["same_tokens"] = tokens[0] == tokens[1];
  report["tokens"] = tokens[1];
  std::printf("%s\n", report.dump().c_str());
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(path, report.dump(2) + "\n"));
  }
  return absl::OkStatus();
}

}  // namespace retort::cli
