#include "teacher/native_teacher.h"

#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/checkpoint_file.h"

namespace retort::teacher {

absl::StatusOr<std::unique_ptr<NativeTeacher>> NativeTeacher::Create(const Options& options) {
  RETORT_ASSIGN_OR_RETURN(models::LoadedCheckpoint loaded,
                          models::ReadCheckpoint(options.checkpoint_path));
  return FromModel(std::move(loaded.model), options.max_batch);
}

std::unique_ptr<NativeTeacher> NativeTeacher::FromModel(std::shared_ptr<models::Classifier> model,
                                                        int64_t max_batch) {
  return std::unique_ptr<NativeTeacher>(new NativeTeacher(std::move(model), max_batch));
}

NativeTeacher::NativeTeacher(std::shared_ptr<models::Classifier> model, int64_t max_batch)
    : model_(std::move(model)), max_batch_(max_batch) {
  model_->eval();
  const models::ModelSpec& spec = model_->spec();
  fingerprint_.set_weights_sha256(models::WeightsSha256(*model_));
  fingerprint_.set_architecture(spec.Describe());
  for (int64_t d : spec.input_shape) fingerprint_.add_input_shape(d);
  fingerprint_.set_input_dtype(v1::DTYPE_FLOAT32);
  fingerprint_.set_num_classes(spec.num_classes);
}

absl::StatusOr<torch::Tensor> NativeTeacher::LogProbs(const torch::Tensor& inputs,
                                                      double temperature) {
  RETORT_RETURN_IF_ERROR(ValidateTeacherInput(fingerprint_, inputs, temperature, max_batch_));
  return TorchCall("teacher forward", [&] {
    torch::InferenceMode guard;
    return torch::log_softmax(model_->forward(inputs) / temperature, /*dim=*/1);
  });
}

}  // namespace retort::teacher
