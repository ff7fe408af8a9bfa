// LmTeacherClient: how the language-model trainer asks a teacher for
// per-token soft targets. The answer to a batch of token sequences [B, T] is
// the teacher's log-probabilities at temperature T for each of the B*T
// positions (row-major), in top-k form with the tail mass
// (teacher::TopKLogProbs; a dense answer is the k = vocabulary case).
//
// InProcessLmTeacher runs a teacher::Teacher in the trainer's process;
// RemoteLmTeacher asks a pool of teacher servers (TeacherPoolClient) and
// keeps their top-k answers sparse end to end. Fakes for tests implement the
// interface directly.
#ifndef RETORT_TRAINER_LM_TEACHER_CLIENT_H_
#define RETORT_TRAINER_LM_TEACHER_CLIENT_H_

#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "retort/v1/teacher.pb.h"
#include "teacher/teacher.h"
#include "teacher/wire_codec.h"
#include "trainer/teacher_pool_client.h"

namespace retort::trainer {

class LmTeacherClient {
 public:
  virtual ~LmTeacherClient() = default;
  virtual absl::StatusOr<v1::TeacherFingerprint> Fingerprint() = 0;

  using Future = std::shared_future<absl::StatusOr<teacher::TopKLogProbs>>;
  // `tokens` int64 [B, T]; must stay unmodified until the future is ready.
  // The future may be deferred: wait on it with get().
  virtual Future Submit(const torch::Tensor& tokens, double temperature) = 0;

  // The targets plus, for feature matching, the teacher's hidden layers
  // `hidden_layers` (names from the fingerprint), float32 [B, T, d] or
  // [B*T, d].
  struct Targets {
    teacher::TopKLogProbs log_probs;
    std::map<std::string, torch::Tensor> hidden;
  };
  using TargetsFuture = std::shared_future<absl::StatusOr<Targets>>;
  // The default serves an empty `hidden_layers` through Submit and answers
  // UNIMPLEMENTED otherwise.
  virtual TargetsFuture SubmitTargets(const torch::Tensor& tokens, double temperature,
                                      const std::vector<std::string>& hidden_layers);
};

// A teacher in this process. `top_k` = 0 answers dense.
class InProcessLmTeacher : public LmTeacherClient {
 public:
  InProcessLmTeacher(std::shared_ptr<teacher::Teacher> teacher, int64_t top_k)
      : teacher_(std::move(teacher)), top_k_(top_k) {}
  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return teacher_->fingerprint(); }
  Future Submit(const torch::Tensor& tokens, double temperature) override;
  TargetsFuture SubmitTargets(const torch::Tensor& tokens, double temperature,
                              const std::vector<std::string>& hidden_layers) override;

 private:
  absl::StatusOr<Targets> Answer(const torch::Tensor& tokens, double temperature,
                                 const std::vector<std::string>& hidden_layers);

  std::shared_ptr<teacher::Teacher> teacher_;
  int64_t top_k_;
};

// Teacher servers over gRPC; the pool's output spec (dense or top-k, value
// dtype) decides what travels. The pool must have been created with
// output.keep_top_k set.
class RemoteLmTeacher : public LmTeacherClient {
 public:
  explicit RemoteLmTeacher(std::shared_ptr<TeacherPoolClient> pool) : pool_(std::move(pool)) {}
  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return pool_->Fingerprint(); }
  Future Submit(const torch::Tensor& tokens, double temperature) override;
  TargetsFuture SubmitTargets(const torch::Tensor& tokens, double temperature,
                              const std::vector<std::string>& hidden_layers) override;
  TeacherPoolClient& pool() { return *pool_; }

 private:
  std::shared_ptr<TeacherPoolClient> pool_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_TEACHER_CLIENT_H_
