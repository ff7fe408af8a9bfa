// retort train, retort distill, retort eval.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "models/llama_checkpoint.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/pipeline.h"

namespace retort::cli {
namespace {

absl::Status Train(bool distill) {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainerOptions options, TrainerOptionsFromFlags());
  options.label = distill ? "distill" : "train";
  if (options.out_dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--out_dir must be set (where retort ",
                                                   options.label, " writes checkpoints)"));
  }
  RETORT_ASSIGN_OR_RETURN(options.communicator, CommunicatorFromFlags());
  std::shared_ptr<client::TeacherClient> teacher;
  if (distill) {
    RETORT_ASSIGN_OR_RETURN(std::string target, TeacherTargetFromFlags());
    RETORT_ASSIGN_OR_RETURN(teacher, OpenTeacher(absl::GetFlag(FLAGS_teacher), target));
  }
  RETORT_ASSIGN_OR_RETURN(data::TrainValidationSplit data,
                          data::LoadFashionMnistTrain(DataOptionsFromFlags()));
  return TrainModel(options, data, std::move(teacher)).status();
}

}  // namespace

absl::Status RunTrain() { return Train(/*distill=*/false); }
absl::Status RunDistill() { return Train(/*distill=*/true); }

absl::Status RunEval() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string path = absl::GetFlag(FLAGS_checkpoint);
  if (path.empty()) return absl::InvalidArgumentError("--checkpoint must name a checkpoint");
  if (models::IsLlamaCheckpoint(path)) return RunLmEval();
  const std::string split = absl::GetFlag(FLAGS_split);
  std::shared_ptr<const data::Dataset> dataset;
  if (split == "test") {
    RETORT_ASSIGN_OR_RETURN(dataset, data::LoadFashionMnistTest(DataOptionsFromFlags()));
  } else if (split == "validation") {
    RETORT_ASSIGN_OR_RETURN(data::TrainValidationSplit data,
                            data::LoadFashionMnistTrain(DataOptionsFromFlags()));
    dataset = data.validation;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--split must be validation or test, got '", split, "'"));
  }
  RETORT_ASSIGN_OR_RETURN(CheckpointReport report, EvaluateCheckpoint(path, *dataset));
  std::printf("%s: %s | %s accuracy %.4f (%lld errors of %lld) | loss %.4f | %lld parameters\n",
              path.c_str(), report.architecture.c_str(), split.c_str(), report.eval.accuracy(),
              static_cast<long long>(report.eval.errors()),
              static_cast<long long>(report.eval.examples), report.eval.mean_loss,
              static_cast<long long>(report.parameters));
  const std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (!json_out.empty()) {
    nlohmann::json json = report.ToJson();
    json["checkpoint"] = path;
    json["split"] = split;
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(json_out, json.dump(2) + "\n"));
  }
  return absl::OkStatus();
}

}  // namespace retort::cli
