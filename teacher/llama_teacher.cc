#include "teacher/llama_teacher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/tokenizer_files.h"
#include "common/torch_status.h"
#include "models/checkpoint_file.h"
#include "models/llama_checkpoint.h"

namespace retort::teacher {

absl::StatusOr<std::unique_ptr<LlamaTeacher>> LlamaTeacher::Create(const Options& options) {
  if (options.max_batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch must be at least 1, got ", options.max_batch));
  }
  RETORT_ASSIGN_OR_RETURN(
      std::shared_ptr<models::LlamaModel> model,
      models::LoadLlamaCheckpoint(options.checkpoint_dir, {.keep_file_dtype = options.bf16}));
  std::string tokenizer_sha;
  const std::string tokenizer = FindTokenizerFile(options.checkpoint_dir);
  if (!tokenizer.empty()) {
    RETORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(tokenizer));
    tokenizer_sha = Sha256Hex(bytes);
  }
  return FromModel(std::move(model), tokenizer_sha, options.max_batch, options.bf16);
}

std::unique_ptr<LlamaTeacher> LlamaTeacher::FromModel(std::shared_ptr<models::LlamaModel> model,
                                                      const std::string& tokenizer_sha256,
                                                      int64_t max_batch, bool bf16) {
  return std::unique_ptr<LlamaTeacher>(
      new LlamaTeacher(std::move(model), tokenizer_sha256, max_batch, bf16));
}

LlamaTeacher::LlamaTeacher(std::shared_ptr<models::LlamaModel> model,
                           const std::string& tokenizer_sha256, int64_t max_batch, bool bf16)
    : model_(std::move(model)), max_batch_(max_batch), bf16_(bf16) {
  model_->eval();
  const models::LlamaConfig& config = model_->config();
  // As float32 values: a checkpoint served from its bfloat16 file and the
  // same checkpoint served in float32 are one teacher.
  fingerprint_.set_weights_sha256(models::WeightsSha256(*model_, /*as_float32=*/true));
  fingerprint_.set_architecture(config.Describe());
  fingerprint_.add_input_shape(-1);
  fingerprint_.set_input_dtype(v1::DTYPE_INT32);
  fingerprint_.set_num_classes(config.vocab_size);
  fingerprint_.set_tokenizer_sha256(tokenizer_sha256);
  for (const models::HiddenLayer& layer : model_->HiddenLayers()) {
    v1::HiddenLayerInfo* info = fingerprint_.add_hidden_layers();
    info->set_name(layer.name);
    for (int64_t d : layer.shape) info->add_shape(d);
  }
  if (bf16_) model_->to(torch::kBFloat16);
}

absl::StatusOr<TeacherOutput> LlamaTeacher::Forward(const torch::Tensor& inputs,
                                                    const std::vector<std::string>& hidden_layers) {
  if (inputs.dim() != 2 || inputs.is_floating_point() || inputs.size(1) < 1 ||
      inputs.size(1) > model_->config().max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a language-model teacher takes token ids [rows, T] with 1 <= T <= ",
        model_->config().max_position_embeddings, ", got shape [",
        absl::StrJoin(inputs.sizes(), ","), "] of ", c10::toString(inputs.scalar_type())));
  }
  return TorchCall("teacher forward pass", [&] {
    torch::InferenceMode guard;
    TeacherOutput out;
    models::HiddenStates hidden;
    out.logits = model_->ForwardWithHidden(inputs.to(torch::kInt64), hidden_layers, &hidden)
                     .to(torch::kFloat32);
    for (auto& [name, h] : hidden) out.hidden[name] = h.to(torch::kFloat32);
    return out;
  });
}

}  // namespace retort::teacher
