// model init: a randomly initialised checkpoint of a named real shape
// (models/named_shapes.h), for tests and benchmarks without downloads.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "models/llama.h"
#include "models/llama_checkpoint.h"
#include "models/named_shapes.h"
#include "models/safetensors_shards.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"

ABSL_FLAG(std::string, shape, "",
          "model init: the published shape to build (llama-3.2-1b, qwen3-0.6b, qwen2.5-0.5b, "
          "mistral-7b-v0.1) or a tiny one of a family's features (tiny-llama3, tiny-qwen2, "
          "tiny-qwen3, tiny-mistral).");
ABSL_FLAG(std::string, tokenizer_file, "",
          "model init: a tokenizer.json or tokenizer.model to copy into the checkpoint.");

namespace retort::cli {

absl::Status RunModelInit() {
  const std::string shape = absl::GetFlag(FLAGS_shape);
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  if (shape.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--shape is required: one of ",
                                                   absl::StrJoin(models::NamedShapeNames(), ", ")));
  }
  if (out_dir.empty()) return absl::InvalidArgumentError("--out_dir is required");
  RETORT_ASSIGN_OR_RETURN(models::LlamaConfig config, models::NamedShape(shape));
  models::LlamaSaveOptions save;
  RETORT_ASSIGN_OR_RETURN(save.dtype, WeightsDtypeFromFlags());
  save.max_shard_bytes = absl::GetFlag(FLAGS_max_shard_bytes);
  save.tokenizer_model = absl::GetFlag(FLAGS_tokenizer_file);
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const auto started = std::chrono::steady_clock::now();
  torch::manual_seed(absl::GetFlag(FLAGS_seed));
  std::fprintf(stderr, "[model init] %s: %s, random weights (seed %llu)\n", shape.c_str(),
               config.Describe().c_str(),
               static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)));
  models::LlamaModel model(config);
  RETORT_RETURN_IF_ERROR(models::SaveLlamaCheckpoint(model, out_dir, save));
  RETORT_ASSIGN_OR_RETURN(int64_t bytes, models::SafetensorsWeightsBytes(out_dir));
  std::printf("%s: %s, %s weights, %lld bytes%s in %.1f s\n", out_dir.c_str(),
              config.Describe().c_str(), absl::GetFlag(FLAGS_weights_dtype).c_str(),
              static_cast<long long>(bytes),
              PathExists(out_dir + "/" + models::kSafetensorsIndexFileName) ? " (sharded)" : "",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return absl::OkStatus();
}

}  // namespace retort::cli
