// A TeacherClient that calls a Teacher in the same process: the teacher's
// forward pass runs on the trainer's threads, step by step.
#ifndef RETORT_TRAINER_IN_PROCESS_TEACHER_CLIENT_H_
#define RETORT_TRAINER_IN_PROCESS_TEACHER_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "teacher/teacher.h"
#include "trainer/teacher_client.h"

namespace retort::trainer {

class InProcessTeacherClient : public TeacherClient {
 public:
  explicit InProcessTeacherClient(std::shared_ptr<teacher::Teacher> teacher)
      : teacher_(std::move(teacher)) {}

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return teacher_->fingerprint(); }
  absl::StatusOr<torch::Tensor> LogProbs(const torch::Tensor& inputs, double temperature) override {
    return teacher_->LogProbs(inputs, temperature);
  }
  // Runs the teacher now (validating the inputs and layer names).
  TargetsFuture SubmitTargets(const torch::Tensor& inputs, double temperature,
                              const std::vector<std::string>& hidden_layers) override;

 private:
  absl::StatusOr<Targets> Answer(const torch::Tensor& inputs, double temperature,
                                 const std::vector<std::string>& hidden_layers);

  std::shared_ptr<teacher::Teacher> teacher_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_IN_PROCESS_TEACHER_CLIENT_H_
