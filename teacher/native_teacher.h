// NativeTeacher: serves a classifier checkpoint written by this project.
#ifndef RETORT_TEACHER_NATIVE_TEACHER_H_
#define RETORT_TEACHER_NATIVE_TEACHER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "models/classifier.h"
#include "teacher/teacher.h"

namespace retort::teacher {

class NativeTeacher : public Teacher {
 public:
  struct Options {
    std::string checkpoint_path;
    int64_t max_batch = 8192;
    // Run the forward pass in bfloat16 (weights converted once at load;
    // logits and hidden states are returned as float32). The fingerprint's
    // weights hash is that of the float32 checkpoint.
    bool bf16 = false;
  };

  // Loads the checkpoint; errors name the file and what is wrong with it.
  static absl::StatusOr<std::unique_ptr<NativeTeacher>> Create(const Options& options);

  // Wraps a model already in memory (used by tests and by the trainer when it
  // hands a freshly trained teacher to the next stage). With bf16 the model
  // is converted in place.
  static std::unique_ptr<NativeTeacher> FromModel(std::shared_ptr<models::Classifier> model,
                                                  int64_t max_batch = 8192, bool bf16 = false);

  const v1::TeacherFingerprint& fingerprint() const override { return fingerprint_; }
  int64_t max_batch() const override { return max_batch_; }
  absl::StatusOr<TeacherOutput> Forward(const torch::Tensor& inputs,
                                        const std::vector<std::string>& hidden_layers) override;

 private:
  NativeTeacher(std::shared_ptr<models::Classifier> model, int64_t max_batch, bool bf16);

  std::shared_ptr<models::Classifier> model_;  // eval mode, never trained here
  int64_t max_batch_;
  bool bf16_;
  v1::TeacherFingerprint fingerprint_;
};

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_NATIVE_TEACHER_H_
