// Steps shared by the train, distill, eval and demo commands.
#ifndef RETORT_TOOLS_CLI_PIPELINE_H_
#define RETORT_TOOLS_CLI_PIPELINE_H_

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "client/teacher_client.h"
#include "data/fashion_mnist.h"
#include "trainer/classifier/classifier_trainer.h"
#include "trainer/classifier/evaluate.h"

namespace retort::cli {

// Trains with `options` (teacher may be null) and prints where results went.
absl::StatusOr<trainer::ClassifierTrainResult> TrainModel(
    const trainer::ClassifierTrainerOptions& options, const data::TrainValidationSplit& data,
    std::shared_ptr<client::TeacherClient> teacher);

// A TeacherClient for the teacher servers at `address` (--teachers syntax,
// with the pool and remote-teacher flags), or, when `address` is empty, for
// the checkpoint at `checkpoint` in this process; wrapped in the per-row
// cache unless --teacher_cache_mb=0.
absl::StatusOr<std::shared_ptr<client::TeacherClient>> OpenTeacher(const std::string& checkpoint,
                                                                   const std::string& address);

struct CheckpointReport {
  std::string architecture;
  int64_t parameters = 0;
  int64_t parameter_bytes = 0;
  int64_t file_bytes = 0;
  trainer::EvalResult eval;
  nlohmann::json ToJson() const;
};

// Loads a checkpoint (whatever architecture it holds) and evaluates it.
absl::StatusOr<CheckpointReport> EvaluateCheckpoint(const std::string& path,
                                                    const data::Dataset& dataset);

}  // namespace retort::cli

#endif  // RETORT_TOOLS_CLI_PIPELINE_H_
