#include "teacher/native_teacher.h"

#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/checkpoint_file.h"

namespace retort::teacher {

absl::StatusOr<std::unique_ptr<NativeTeacher>> NativeTeacher::Create(const Options& options) {
  RETORT_ASSIGN_OR_RETURN(models::LoadedCheckpoint loaded,
                          models::ReadCheckpoint(options.checkpoint_path));
  return FromModel(std::move(loaded.model), options.max_batch, options.bf16);
}

std::unique_ptr<NativeTeacher> NativeTeacher::FromModel(std::shared_ptr<models::Classifier> model,
                                                        int64_t max_batch, bool bf16) {
  return std::unique_ptr<NativeTeacher>(new NativeTeacher(std::move(model), max_batch, bf16));
}

NativeTeacher::NativeTeacher(std::shared_ptr<models::Classifier> model, int64_t max_batch,
                             bool bf16)
    : model_(std::move(model)), max_batch_(max_batch), bf16_(bf16) {
  model_->eval();
  const models::ModelSpec& spec = model_->spec();
  fingerprint_.set_weights_sha256(models::WeightsSha256(*model_));
  fingerprint_.set_architecture(spec.Describe());
  for (int64_t d : spec.input_shape) fingerprint_.add_input_shape(d);
  fingerprint_.set_input_dtype(v1::DTYPE_FLOAT32);
  fingerprint_.set_num_classes(spec.num_classes);
  for (const models::HiddenLayer& layer : model_->HiddenLayers()) {
    v1::HiddenLayerInfo* info = fingerprint_.add_hidden_layers();
    info->set_name(layer.name);
    for (int64_t d : layer.shape) info->add_shape(d);
  }
  if (bf16_) model_->to(torch::kBFloat16);
}

absl::StatusOr<TeacherOutput> NativeTeacher::Forward(
    const torch::Tensor& inputs, const std::vector<std::string>& hidden_layers) {
  return TorchCall("teacher forward", [&] {
    torch::InferenceMode guard;
    TeacherOutput out;
    torch::Tensor x = bf16_ ? inputs.to(torch::kBFloat16) : inputs;
    out.logits = model_->ForwardWithHidden(x, hidden_layers, &out.hidden);
    if (bf16_) {
      out.logits = out.logits.to(torch::kFloat32);
      for (auto& [name, h] : out.hidden) h = h.to(torch::kFloat32);
    }
    return out;
  });
}

}  // namespace retort::teacher
