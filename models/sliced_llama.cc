#include "models/sliced_llama.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/tokenizer_files.h"
#include "models/llama_checkpoint.h"
#include "models/safetensors_file.h"

namespace retort::models {

SlicedBlockImpl::SlicedBlockImpl(const LlamaConfig& config, int64_t width) {
  self_attn = register_module("self_attn", LlamaAttention(config, width, width));
  mlp = register_module("mlp", LlamaMlp(config, width, width));
  input_layernorm =
      register_module("input_layernorm", RmsNorm(width, config.rms_norm_eps, config.hidden_size));
  post_attention_layernorm = register_module(
      "post_attention_layernorm", RmsNorm(width, config.rms_norm_eps, config.hidden_size));
  attn_shortcut_Q = register_parameter("attn_shortcut_Q", torch::eye(width));
  mlp_shortcut_Q = register_parameter("mlp_shortcut_Q", torch::eye(width));
}

torch::Tensor SlicedBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                       const torch::Tensor& sin) {
  const torch::Tensor h =
      torch::matmul(x, attn_shortcut_Q) + self_attn(input_layernorm(x), cos, sin);
  return torch::matmul(h, mlp_shortcut_Q) + mlp(post_attention_layernorm(h));
}

torch::Tensor SlicedBlockImpl::Decode(const torch::Tensor& x, const DecodeStep& step, LayerKv* kv) {
  const torch::Tensor h =
      torch::matmul(x, attn_shortcut_Q) + self_attn->Decode(input_layernorm(x), step, kv);
  return torch::matmul(h, mlp_shortcut_Q) + mlp(post_attention_layernorm(h));
}

SlicedLlamaModel::SlicedLlamaModel(const LlamaConfig& config, int64_t width, double fraction)
    : config_(config), width_(width), fraction_(fraction) {
  const bool tied = config.tie_word_embeddings;
  embed_tokens = register_module(
      "embed_tokens", torch::nn::Embedding(config.vocab_size, tied ? config.hidden_size : width));
  if (tied) {
    embed_Q = register_parameter("embed_Q", torch::eye(config.hidden_size, width));
    head_Q = register_parameter("head_Q", torch::eye(width, config.hidden_size));
    output_scale = register_parameter("output_scale", torch::ones({config.hidden_size}));
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    layers->push_back(SlicedBlock(config, width));
  norm = register_module("norm", RmsNorm(width, config.rms_norm_eps, config.hidden_size));
  if (!tied) lm_head = register_module("lm_head", Projection(width, config.vocab_size));
  RotaryTables(config, &cos_, &sin_);
}

torch::Tensor SlicedLlamaModel::forward(const torch::Tensor& tokens) {
  return ForwardWithHidden(tokens, {}, nullptr);
}

torch::Tensor SlicedLlamaModel::ForwardWithHidden(const torch::Tensor& tokens,
                                                  const std::vector<std::string>& names,
                                                  HiddenStates* hidden) {
  auto keep = [&](const std::string& name, const torch::Tensor& x) {
    if (hidden != nullptr && std::find(names.begin(), names.end(), name) != names.end()) {
      (*hidden)[name] = x;
    }
  };
  const int64_t t = tokens.size(1);
  const torch::Tensor cos = cos_.narrow(0, 0, t), sin = sin_.narrow(0, 0, t);
  const bool tied = config_.tie_word_embeddings;
  torch::Tensor x = embed_tokens(tokens);
  if (tied) x = torch::matmul(x, embed_Q);
  keep("embed", x);
  for (size_t i = 0; i < layers->size(); ++i) {
    x = layers[i]->as<SlicedBlock>()->forward(x, cos, sin);
    keep(absl::StrCat("block.", i), x);
  }
  x = norm(x);
  keep("final_norm", x);
  return Head(x);
}

torch::Tensor SlicedLlamaModel::Head(const torch::Tensor& x) {
  if (!config_.tie_word_embeddings) return lm_head(x);
  return torch::matmul(torch::matmul(x, head_Q) * output_scale, embed_tokens->weight.t());
}

torch::Tensor SlicedLlamaModel::Decode(const torch::Tensor& tokens, const torch::Tensor& valid,
                                       KvCache* cache) {
  const DecodeStep step = cache->Advance(valid, cos_, sin_, config_.sliding_window);
  torch::Tensor x = embed_tokens(tokens);
  if (config_.tie_word_embeddings) x = torch::matmul(x, embed_Q);
  for (size_t i = 0; i < layers->size(); ++i) {
    x = layers[i]->as<SlicedBlock>()->Decode(x, step, &cache->layer(i));
  }
  return Head(norm(x));
}

std::vector<HiddenLayer> SlicedLlamaModel::HiddenLayers() const {
  std::vector<HiddenLayer> out;
  out.push_back({"embed", {width_}});
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    out.push_back({absl::StrCat("block.", i), {width_}});
  }
  out.push_back({"final_norm", {width_}});
  return out;
}

nlohmann::json SlicedLlamaModel::ShapeJson() const {
  return {
      {"architecture", "sliced_llama"}, {"config", config_.ToHuggingFaceJson()}, {"width", width_}};
}

absl::Status SlicedLlamaModel::Save(const std::string& dir, const std::string& tokenizer_model) {
  return SaveSlicedLlama(*this, dir, tokenizer_model);
}

namespace {

// Tensor names in the file: the module path, with "model." before the body.
std::string FileName(const std::string& key) {
  return key.rfind("lm_head", 0) == 0 ? key : "model." + key;
}

}  // namespace

bool IsSlicedLlamaCheckpoint(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadFile(dir + "/config.json");
  if (!text.ok()) return false;
  const nlohmann::json json = nlohmann::json::parse(*text, nullptr, false);
  return json.is_object() && json.contains("retort_slicing");
}

absl::Status SaveSlicedLlama(SlicedLlamaModel& model, const std::string& dir,
                             const std::string& tokenizer_model) {
  RETORT_RETURN_IF_ERROR(MakeDirs(dir));
  // Parameters (or codes and scales, when quantized) under the file's names.
  NamedTensors tensors = LlamaTensors(model);
  for (auto& [name, t] : tensors.tensors) name = FileName(name);
  RETORT_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", tensors));
  RETORT_RETURN_IF_ERROR(CopyTokenizerInto(tokenizer_model, dir));
  nlohmann::json config = model.config().ToHuggingFaceJson();
  config["retort_slicing"] = {{"width", model.width()}, {"fraction", model.fraction()}};
  if (model.quantization.quantized()) {
    config["retort_quantization"] = QuantizationJson(model.quantization);
  }
  return WriteFileAtomically(dir + "/config.json", config.dump(2) + "\n");
}

absl::StatusOr<std::shared_ptr<SlicedLlamaModel>> LoadSlicedLlama(const std::string& dir) {
  RETORT_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(dir));
  RETORT_ASSIGN_OR_RETURN(std::string text, ReadFile(dir + "/config.json"));
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  const std::string weights = dir + "/model.safetensors";
  if (!json.contains("retort_slicing") || !json["retort_slicing"].contains("width") ||
      !json["retort_slicing"]["width"].is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/config.json has no retort_slicing.width: not a sliced checkpoint"));
  }
  const int64_t width = json["retort_slicing"]["width"].get<int64_t>();
  if (width <= 0 || width > config.hidden_size) {
    return absl::DataLossError(absl::StrCat(dir, "/config.json: retort_slicing.width ", width,
                                            " is not in 1..", config.hidden_size));
  }
  double fraction = 1.0 - static_cast<double>(width) / config.hidden_size;
  const nlohmann::json& slicing = json.at("retort_slicing");
  if (auto it = slicing.find("fraction"); it != slicing.end() && it->is_number()) {
    fraction = it->get<double>();
  }
  RETORT_ASSIGN_OR_RETURN(NamedTensors tensors, ReadSafetensors(weights));
  if (json.contains("retort_quantization")) {
    RETORT_ASSIGN_OR_RETURN(WeightQuantization q, QuantizationFromJson(json["retort_quantization"],
                                                                       dir + "/config.json"));
    // The file's names back to parameter names ("model." off the body).
    for (auto& [name, t] : tensors.tensors) {
      if (name.rfind("model.", 0) == 0) name = name.substr(6);
    }
    auto model = std::make_shared<SlicedLlamaModel>(config, width, fraction);
    RETORT_RETURN_IF_ERROR(LoadQuantizedLlamaTensors(tensors, weights, q, model.get()));
    model->eval();
    return model;
  }
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors.tensors) by_name[name] = &t;
  auto model = std::make_shared<SlicedLlamaModel>(config, width, fraction);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const std::string name = FileName(p.key());
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      return absl::DataLossError(absl::StrCat(weights, ": tensor ", name, " is missing"));
    }
    if (it->second->sizes() != p.value().sizes() || it->second->scalar_type() != torch::kFloat32) {
      return absl::DataLossError(absl::StrCat(weights, ": tensor ", name,
                                              " is not float32 of the shape the config needs"));
    }
    p.value().copy_(*it->second);
  }
  model->eval();
  return model;
}

}  // namespace retort::models
