#include "models/llama_checkpoint.h"

#include <limits>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/tokenizer_files.h"
#include "models/safetensors_shards.h"

namespace retort::models {
namespace {

std::string ShapeString(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ","), "]");
}

}  // namespace

nlohmann::json QuantizationJson(const WeightQuantization& q) {
  return {{"bits", q.bits},
          {"group_size", q.group_size},
          {"embeddings", q.embeddings},
          {"scheme", "symmetric block, see docs/compaction.md"}};
}

absl::StatusOr<WeightQuantization> QuantizationFromJson(const nlohmann::json& json,
                                                        const std::string& source) {
  WeightQuantization q;
  if (!json.is_object() || !json.contains("bits") || !json["bits"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat(source, ": retort_quantization needs integer 'bits'"));
  }
  q.bits = json["bits"].get<int>();
  if (json.contains("group_size")) {
    if (!json["group_size"].is_number_integer()) {
      return absl::DataLossError(
          absl::StrCat(source, ": retort_quantization.group_size must be an integer"));
    }
    q.group_size = json["group_size"].get<int64_t>();
  }
  if (json.contains("embeddings")) {
    if (!json["embeddings"].is_boolean()) {
      return absl::DataLossError(
          absl::StrCat(source, ": retort_quantization.embeddings must be true or false"));
    }
    q.embeddings = json["embeddings"].get<bool>();
  }
  if ((q.bits != 4 && q.bits != 8) || q.group_size < 0) {
    return absl::DataLossError(absl::StrCat(source, ": retort_quantization bits ", q.bits,
                                            " / group_size ", q.group_size,
                                            " (bits 4 or 8, group_size >= 0)"));
  }
  return q;
}

bool IsLlamaCheckpoint(const std::string& path) { return PathExists(path + "/config.json"); }

namespace {

// The parameter name of the model's embedding matrix.
std::string EmbeddingKey(CausalLm& model) {
  const torch::Tensor embedding = model.EmbeddingWeight();
  for (const auto& p : model.named_parameters()) {
    if (p.value().is_same(embedding)) return p.key();
  }
  return "";
}

}  // namespace

NamedTensors LlamaTensors(CausalLm& model, torch::ScalarType dtype) {
  NamedTensors out;
  torch::NoGradGuard no_grad;
  std::map<std::string, Projection> quantized;
  for (auto& [name, p] : model.Projections()) {
    if (p->is_quantized()) quantized.emplace(name + ".weight", p);
  }
  const WeightQuantization& q = model.quantization;
  const std::string embedding = EmbeddingKey(model);
  auto emit = [&](const std::string& name, const BlockQuantized& b) {
    out.tensors.emplace_back(name, b.bits == 4 ? PackInt4(b.codes) : b.codes);
    out.tensors.emplace_back(name + "_scale", b.scales.to(torch::kCPU, torch::kFloat32));
  };
  for (const auto& p : model.named_parameters()) {
    auto it = quantized.find(p.key());
    if (it != quantized.end()) {
      emit(p.key(), it->second->Quantized());
    } else if (q.quantized() && q.embeddings && p.key() == embedding) {
      // Held dequantized; quantizing it again gives back the same codes.
      emit(p.key(), QuantizeWithFallback(p.value(), q.bits, q.group_size).value());
    } else {
      out.tensors.emplace_back(p.key(), p.value().detach().to(torch::kCPU, dtype).contiguous());
    }
  }
  out.metadata["format"] = "pt";
  if (q.quantized()) out.metadata["retort.quantization"] = QuantizationJson(q).dump();
  return out;
}

namespace {

// Loads a quantized tensor pair `name` (codes) and `name`_scale for a weight
// shaped like `like`. Each pair describes itself: int8 codes are 8-bit,
// uint8 codes 4-bit packed, and the scales' columns give the group.
absl::StatusOr<BlockQuantized> ReadQuantized(
    const std::map<std::string, const torch::Tensor*>& by_name, const std::string& name,
    const std::string& source, const torch::Tensor& like) {
  auto codes = by_name.find(name);
  auto scales = by_name.find(name + "_scale");
  if (codes == by_name.end() || scales == by_name.end()) {
    return absl::DataLossError(
        absl::StrCat(source, ": quantized tensor ", name, " or its ", name, "_scale is missing"));
  }
  const int64_t rows = like.size(0), cols = like.size(1);
  const torch::Tensor& c = *codes->second;
  const torch::Tensor& s = *scales->second;
  const int bits = c.scalar_type() == torch::kInt8 ? 8 : c.scalar_type() == torch::kUInt8 ? 4 : 0;
  const bool codes_ok = bits != 0 && c.dim() == 2 && c.size(0) == rows &&
                        c.size(1) == (bits == 8 ? cols : cols / 2) && (bits == 8 || cols % 2 == 0);
  const bool scales_ok = s.scalar_type() == torch::kFloat32 && s.dim() == 2 && s.size(0) == rows &&
                         s.size(1) > 0 && cols % s.size(1) == 0 &&
                         (bits == 8 || (cols / s.size(1)) % 2 == 0);
  if (!codes_ok || !scales_ok) {
    return absl::DataLossError(absl::StrCat(
        source, ": quantized tensor ", name, " is ", c10::toString(c.scalar_type()), " ",
        ShapeString(c), " with scales ", c10::toString(s.scalar_type()), " ", ShapeString(s),
        "; a [", rows, ",", cols, "] weight needs Char [", rows, ",", cols, "] (int8) or Byte [",
        rows, ",", cols / 2, "] (int4) codes and Float [", rows, ", groups] scales"));
  }
  // Finite scales small enough that no code times its scale overflows.
  if (!torch::isfinite(s).all().item<bool>() ||
      s.abs().max().item<float>() > std::numeric_limits<float>::max() / 128) {
    return absl::DataLossError(absl::StrCat(source, ": ", name, "_scale holds NaN or infinity"));
  }
  BlockQuantized b;
  b.bits = bits;
  b.block_size = cols / s.size(1);
  b.codes = bits == 4 ? UnpackInt4(c) : c.clone();
  b.scales = s.clone();
  if (bits == 8 && (b.codes == -128).any().item<bool>()) {
    return absl::DataLossError(
        absl::StrCat(source, ": ", name, " holds the code -128 (int8 codes are -127..127)"));
  }
  return b;
}

}  // namespace

absl::Status LoadQuantizedLlamaTensors(const NamedTensors& tensors, const std::string& source,
                                       const WeightQuantization& q, CausalLm* model) {
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors.tensors) by_name[name] = &t;
  // Float tensors (norms, and the embeddings when they were not quantized)
  // load as usual; the quantized ones are put in place below.
  NamedTensors plain;
  std::set<std::string> quantized_names;
  for (auto& [name, p] : model->Projections()) quantized_names.insert(name + ".weight");
  const std::string embedding = EmbeddingKey(*model);
  if (q.embeddings) quantized_names.insert(embedding);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (quantized_names.count(p.key()) != 0) continue;
    auto it = by_name.find(p.key());
    if (it == by_name.end()) {
      return absl::DataLossError(absl::StrCat(source, ": tensor ", p.key(), " is missing"));
    }
    if (it->second->sizes() != p.value().sizes() || !it->second->is_floating_point()) {
      return absl::DataLossError(absl::StrCat(source, ": tensor ", p.key(), " is ",
                                              ShapeString(*it->second), " but the config needs ",
                                              ShapeString(p.value())));
    }
    p.value().copy_(it->second->to(torch::kFloat32));
  }
  if (q.embeddings) {
    torch::Tensor w = model->EmbeddingWeight();
    RETORT_ASSIGN_OR_RETURN(BlockQuantized b, ReadQuantized(by_name, embedding, source, w));
    w.copy_(b.Dequantize());
  }
  for (auto& [name, p] : model->Projections()) {
    RETORT_ASSIGN_OR_RETURN(BlockQuantized b,
                            ReadQuantized(by_name, name + ".weight", source, p->weight));
    p->SetQuantized(std::move(b));
  }
  model->quantization = q;
  return absl::OkStatus();
}

absl::Status LoadLlamaTensors(const NamedTensors& tensors, const std::string& source,
                              LlamaModel* model, bool keep_dtype) {
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors.tensors) by_name[name] = &t;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  torch::ScalarType dtype = torch::kFloat32;
  if (auto embed = by_name.find("model.embed_tokens.weight");
      keep_dtype && embed != by_name.end()) {
    dtype = embed->second->scalar_type();
  }
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
    // The parameter takes the tensor's storage (a view of the mapped file
    // when the dtype is already right): no copy.
    p.value().set_data(t.to(dtype));
    used.insert(p.key());
  }
  for (const auto& [name, t] : tensors.tensors) {
    if (used.count(name) != 0 || absl::EndsWith(name, "rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && model->config().tie_word_embeddings) continue;
    return absl::DataLossError(absl::StrCat(source, ": unexpected tensor ", name,
                                            " for this config (", model->config().Describe(), ")"));
  }
  return absl::OkStatus();
}

nlohmann::json LlamaModel::ShapeJson() const {
  return {{"architecture", "llama"}, {"config", config_.ToHuggingFaceJson()}};
}

absl::Status LlamaModel::Save(const std::string& dir, const std::string& tokenizer_model) {
  LlamaSaveOptions options;
  options.tokenizer_model = tokenizer_model;
  return SaveLlamaCheckpoint(*this, dir, options);
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
  RETORT_RETURN_IF_ERROR(WriteSafetensorsWeights(dir, tensors, options.max_shard_bytes));
  nlohmann::json config = model.config().ToHuggingFaceJson();
  if (model.quantization.quantized()) {
    config["retort_quantization"] = QuantizationJson(model.quantization);
  }
  config["torch_dtype"] = options.dtype == torch::kFloat32    ? "float32"
                          : options.dtype == torch::kBFloat16 ? "bfloat16"
                                                              : "float16";
  RETORT_RETURN_IF_ERROR(CopyTokenizerInto(options.tokenizer_model, dir));
  // config.json last: a directory with a config is a whole checkpoint.
  return WriteFileAtomically(dir + "/config.json", config.dump(2) + "\n");
}

absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!PathExists(path)) {
    if (PathExists(dir + "/model.safetensors.index.json")) {
      return absl::NotFoundError(absl::StrCat(
          dir,
          " holds sharded weights (model.safetensors.index.json) but no config.json; copy "
          "config.json from the same repository"));
    }
    return absl::NotFoundError(
        absl::StrCat(path,
                     " does not exist; a Llama checkpoint is a directory with config.json and "
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

absl::StatusOr<std::shared_ptr<LlamaModel>> LoadLlamaCheckpoint(const std::string& dir,
                                                                const LlamaLoadOptions& options) {
  RETORT_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(dir));
  const std::string weights =
      PathExists(dir + "/" + kSafetensorsFileName) || !HasSafetensorsWeights(dir)
          ? dir + "/" + kSafetensorsFileName
          : dir + "/" + kSafetensorsIndexFileName;
  RETORT_ASSIGN_OR_RETURN(NamedTensors tensors, ReadSafetensorsWeights(dir));
  auto model = std::make_shared<LlamaModel>(config, WeightInit::kUninitialized);
  RETORT_ASSIGN_OR_RETURN(std::string config_text, ReadFile(dir + "/config.json"));
  const nlohmann::json json = nlohmann::json::parse(config_text, nullptr, false);
  if (json.contains("retort_slicing")) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir,
        " holds a SliceGPT-sliced model (retort_slicing in config.json): `retort eval` "
        "reads it; other commands take an unsliced Llama checkpoint"));
  }
  if (json.contains("retort_quantization")) {
    RETORT_ASSIGN_OR_RETURN(WeightQuantization q, QuantizationFromJson(json["retort_quantization"],
                                                                       dir + "/config.json"));
    RETORT_RETURN_IF_ERROR(LoadQuantizedLlamaTensors(tensors, weights, q, model.get()));
  } else {
    RETORT_RETURN_IF_ERROR(
        LoadLlamaTensors(tensors, weights, model.get(), options.keep_file_dtype));
  }
  model->eval();
  return model;
}

}  // namespace retort::models
