// A TeacherClient that calls a Teacher in the same process: the teacher's
// forward pass runs on the trainer's thread, when the request is submitted.
// Any teacher: a classifier's answer has a row per input, a language
// model's a row per position ([B, T] tokens give B * T rows, row-major).
#ifndef RETORT_CLIENT_IN_PROCESS_TEACHER_CLIENT_H_
#define RETORT_CLIENT_IN_PROCESS_TEACHER_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client/teacher_client.h"
#include "teacher/teacher.h"

namespace retort::client {

class InProcessTeacherClient : public TeacherClient {
 public:
  struct Options {
    // Answer in top-k form with the tail mass (as a server's top-k output
    // does); 0, or k >= the number of classes, answers dense.
    int64_t top_k = 0;
    // Answer with this many draws per row from the distribution instead
    // (as a server's sampled output does, with the same per-row seeds); 0:
    // off. Takes precedence over top_k.
    int64_t samples = 0;
  };

  explicit InProcessTeacherClient(std::shared_ptr<teacher::Teacher> teacher)
      : InProcessTeacherClient(std::move(teacher), Options()) {}
  InProcessTeacherClient(std::shared_ptr<teacher::Teacher> teacher, Options options)
      : teacher_(std::move(teacher)), options_(options) {}

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return teacher_->fingerprint(); }
  // Runs the teacher now (validating the inputs and layer names).
  TargetsFuture SubmitTargets(const Request& request) override;

 private:
  absl::StatusOr<Targets> Answer(const Request& request);

  std::shared_ptr<teacher::Teacher> teacher_;
  const Options options_;
};

}  // namespace retort::client

#endif  // RETORT_CLIENT_IN_PROCESS_TEACHER_CLIENT_H_
