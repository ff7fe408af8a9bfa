#include "models/llama_checkpoint.h"

#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort::models {
namespace {

std::string ShapeString(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ","), "]");
}

}  // namespace

bool IsLlamaCheckpoint(const std::string& path) {
  return PathExists(path + "/config.json");
}

NamedTensors LlamaTensors(LlamaModel& model, torch::ScalarType dtype) {
  NamedTensors out;
  torch::NoGradGuard no_grad;
  for (const auto& p : model.named_parameters()) {
    out.tensors.emplace_back(p.key(), p.value().detach().to(torch::kCPU, dtype).contiguous());
  }
  out.metadata["format"] = "pt";
  return out;
}

absl::Status LoadLlamaTensors(const NamedTensors& tensors, const std::string& source,
                              LlamaModel* model) {
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors.tensors) by_name[name] = &t;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    auto it = by_name.find(p.key());
    if (it == by_name.end()) {
      return absl::DataLossError(absl::StrCat(
          source, ": tensor ", p.key(), " is missing; it is not a checkpoint of this config (",
          model->config().Describe(), ")"));
    }
    const torch::Tensor& t = *it->second;
    if (t.sizes() != p.value().sizes()) {
      return absl::DataLossError(absl::StrCat(source, ": tensor ", p.key(), " has shape ",
                                              ShapeString(t), " but the config needs ",
                                              ShapeString(p.value())));
    }
    if (t.scalar_type() != torch::kFloat32 && t.scalar_type() != torch::kBFloat16 &&
        t.scalar_type() != torch::kFloat16) {
      return absl::DataLossError(absl::StrCat(source, ": tensor ", p.key(), " is ",
                                              c10::toString(t.scalar_type()),
                                              "; weights must be float32, bfloat16 or float16"));
    }
    p.value().copy_(t.to(torch::kFloat32));
    used.insert(p.key());
  }
  for (const auto& [name, t] : tensors.tensors) {
    if (used.count(name) != 0 || absl::EndsWith(name, "rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && model->config().tie_word_embeddings) continue;
    return absl::DataLossError(absl::StrCat(source, ": unexpected tensor ", name,
                                            " for this config (", model->config().Describe(),
                                            ")"));
  }
  return absl::OkStatus();
}

absl::Status SaveLlamaCheckpoint(LlamaModel& model, const std::string& dir,
                                 const LlamaSaveOptions& options) {
  if (options.dtype != torch::kFloat32 && options.dtype != torch::kBFloat16 &&
      options.dtype != torch::kFloat16) {
    return absl::InvalidArgumentError("weights are stored as float32, bfloat16 or float16");
  }
  RETORT_RETURN_IF_ERROR(MakeDirs(dir));
  NamedTensors tensors = LlamaTensors(model, options.dtype);
  for (const auto& [k, v] : options.metadata) tensors.metadata[k] = v;
  RETORT_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", tensors));
  nlohmann::json config = model.config().ToHuggingFaceJson();
  config["torch_dtype"] = options.dtype == torch::kFloat32    ? "float32"
                          : options.dtype == torch::kBFloat16 ? "bfloat16"
                                                              : "float16";
  if (!options.tokenizer_model.empty()) {
    RETORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(options.tokenizer_model));
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(dir + "/tokenizer.model", bytes));
  }
  // config.json last: a directory with a config is a whole checkpoint.
  return WriteFileAtomically(dir + "/config.json", config.dump(2) + "\n");
}

absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!PathExists(path)) {
    if (PathExists(dir + "/model.safetensors.index.json")) {
      return absl::UnimplementedError(absl::StrCat(dir, " holds a sharded checkpoint without config.json"));
    }
    return absl::NotFoundError(absl::StrCat(
        path, " does not exist; a Llama checkpoint is a directory with config.json and "
              "model.safetensors (as transformers' save_pretrained writes)"));
  }
  RETORT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not valid JSON"));
  }
  absl::StatusOr<LlamaConfig> config = LlamaConfig::FromHuggingFaceJson(json);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::StatusOr<std::shared_ptr<LlamaModel>> LoadLlamaCheckpoint(const std::string& dir) {
  RETORT_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(dir));
  const std::string weights = dir + "/model.safetensors";
  if (!PathExists(weights)) {
    if (PathExists(dir + "/model.safetensors.index.json")) {
      return absl::UnimplementedError(absl::StrCat(
          dir, " holds a sharded checkpoint (model.safetensors.index.json); save it unsharded "
               "(save_pretrained(..., max_shard_size=\"100GB\"))"));
    }
    return absl::NotFoundError(absl::StrCat(weights, " does not exist"));
  }
  RETORT_ASSIGN_OR_RETURN(NamedTensors tensors, ReadSafetensors(weights));
  auto model = std::make_shared<LlamaModel>(config);
  RETORT_RETURN_IF_ERROR(LoadLlamaTensors(tensors, weights, model.get()));
  model->eval();
  return model;
}

}  // namespace retort::models
