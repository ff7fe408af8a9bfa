// TorchScriptTeacher: serves a TorchScript module exported by the user
// (torch.jit.script or torch.jit.trace, then .save()).
//
// The module's forward takes one float32 tensor [B, ...input_shape] and
// returns either the logits [B, classes], or a tuple (logits, hidden) where
// hidden is a Dict[str, Tensor] of named activations [B, ...]. The input
// shape cannot be read from a TorchScript file, so it is given; the number of
// classes and the hidden layers are found by a warm-up forward pass at load.
#ifndef RETORT_TEACHER_TORCHSCRIPT_TEACHER_H_
#define RETORT_TEACHER_TORCHSCRIPT_TEACHER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "teacher/teacher.h"

namespace retort::teacher {

class TorchScriptTeacher : public Teacher {
 public:
  struct Options {
    std::string path;
    std::vector<int64_t> input_shape = {1, 28, 28};
    int64_t max_batch = 8192;
    bool bf16 = false;  // convert the module's float parameters to bfloat16
  };

  // Loads and warms up the module. INVALID_ARGUMENT naming the file when it
  // is not TorchScript, or its forward does not accept the input shape or
  // returns something other than logits or (logits, dict).
  static absl::StatusOr<std::unique_ptr<TorchScriptTeacher>> Create(const Options& options);
  ~TorchScriptTeacher() override;

  const v1::TeacherFingerprint& fingerprint() const override { return fingerprint_; }
  int64_t max_batch() const override { return options_.max_batch; }
  absl::StatusOr<TeacherOutput> Forward(const torch::Tensor& inputs,
                                        const std::vector<std::string>& hidden_layers) override;

 private:
  struct Module;  // hides torch::jit from includers
  TorchScriptTeacher(Options options, std::unique_ptr<Module> module);

  const Options options_;
  std::unique_ptr<Module> module_;
  v1::TeacherFingerprint fingerprint_;
};

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_TORCHSCRIPT_TEACHER_H_
