// retort chain: a teacher-assistant chain for classifiers. Stage 1 distills
// the teacher (--teacher checkpoint or --teachers servers) into an
// intermediate-size assistant (--assistant_arch, --assistant_hidden) in
// OUT/assistant; stage 2 distills the student (--arch, --hidden) from the
// assistant's best.pt, run in this process, in OUT/student. Each stage is an
// ordinary `retort distill` run (training and feature-matching flags apply
// to both; --match must fit both pairs), so each can also run alone, and the
// assistant can be served like any teacher (`retort teacher serve
// --checkpoint=OUT/assistant/best.pt`). With --resume=auto a finished stage
// is not trained again. Writes OUT/chain.json with both stages' results and
// their test accuracies.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "models/classifier.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/pipeline.h"

ABSL_FLAG(std::string, assistant_arch, "mlp", "Teacher-assistant architecture (retort chain).");
ABSL_FLAG(std::vector<std::string>, assistant_hidden, std::vector<std::string>({"512"}),
          "Teacher-assistant hidden widths (retort chain).");
ABSL_FLAG(double, assistant_dropout, 0.0, "Teacher-assistant dropout (retort chain).");
ABSL_FLAG(int64_t, assistant_epochs, 0,
          "Epochs of the assistant stage (retort chain); 0: --epochs.");

namespace retort::cli {

absl::Status RunChain() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainerOptions student, TrainerOptionsFromFlags());
  const std::string out_dir = student.out_dir;
  if (out_dir.empty()) {
    return absl::InvalidArgumentError(
        "--out_dir must be set (where retort chain writes both stages)");
  }
  if (!student.init_from.empty()) {
    return absl::InvalidArgumentError(
        "retort chain does not take --init_from (the assistant and the student differ); "
        "start a single `retort distill --init_from` instead");
  }
  if (student.stop_after_steps > 0) {
    return absl::InvalidArgumentError(
        "retort chain does not take --stop_after_steps (the assistant must finish before the "
        "student learns from it); interrupt it and rerun with --resume=auto instead");
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<distributed::Communicator> communicator,
                          CommunicatorFromFlags());
  if (communicator != nullptr) {
    return absl::FailedPreconditionError(
        "retort chain runs in one process; under a launcher, run its stages as separate "
        "`retort distill` jobs (OUT/assistant, then OUT/student from OUT/assistant/best.pt)");
  }
  trainer::ClassifierTrainerOptions assistant = student;
  RETORT_ASSIGN_OR_RETURN(
      assistant.model,
      ModelSpecFrom("assistant_", absl::GetFlag(FLAGS_assistant_arch),
                    absl::GetFlag(FLAGS_assistant_hidden), absl::GetFlag(FLAGS_assistant_dropout),
                    /*input_dropout=*/0.0));
  if (absl::GetFlag(FLAGS_assistant_epochs) < 0) {
    return absl::InvalidArgumentError("--assistant_epochs must be >= 0 (0: --epochs)");
  }
  if (absl::GetFlag(FLAGS_assistant_epochs) > 0) {
    assistant.epochs = absl::GetFlag(FLAGS_assistant_epochs);
  }
  assistant.out_dir = out_dir + "/assistant";
  assistant.label = "chain:assistant";
  student.out_dir = out_dir + "/student";
  student.label = "chain:student";
  if (student.features.enabled()) {
    // --match pairs the student with the assistant in stage 2: check that
    // mapping too before stage 1 trains.
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::Classifier> a,
                            models::CreateClassifier(assistant.model));
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::Classifier> s,
                            models::CreateClassifier(student.model));
    absl::Status mapping =
        trainer::ResolveLayerMapping(student.features.match, s->HiddenLayers(), a->HiddenLayers())
            .status();
    if (!mapping.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stage 2 (assistant -> student): ", mapping.message()));
    }
  }
  RETORT_ASSIGN_OR_RETURN(data::TrainValidationSplit data,
                          data::LoadFashionMnistTrain(DataOptionsFromFlags()));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<const data::Dataset> test,
                          data::LoadFashionMnistTest(DataOptionsFromFlags()));

  // Stage 1: teacher -> assistant.
  RETORT_ASSIGN_OR_RETURN(std::string target, TeacherTargetFromFlags());
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherClient> teacher,
                          OpenTeacher(absl::GetFlag(FLAGS_teacher), target));
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainResult first,
                          TrainModel(assistant, data, teacher));
  teacher.reset();
  // Stage 2: assistant (in this process) -> student.
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherClient> assistant_teacher,
                          OpenTeacher(first.best_checkpoint, ""));
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainResult second,
                          TrainModel(student, data, assistant_teacher));

  RETORT_ASSIGN_OR_RETURN(CheckpointReport assistant_test,
                          EvaluateCheckpoint(first.best_checkpoint, *test));
  RETORT_ASSIGN_OR_RETURN(CheckpointReport student_test,
                          EvaluateCheckpoint(second.best_checkpoint, *test));
  std::printf("%-10s %-28s %10s %10s %10s\n", "stage", "model", "params", "val acc", "test acc");
  std::printf("%-10s %-28s %10lld %10.4f %10.4f\n", "assistant",
              assistant_test.architecture.c_str(),
              static_cast<long long>(assistant_test.parameters), first.best_validation_accuracy,
              assistant_test.eval.accuracy());
  std::printf("%-10s %-28s %10lld %10.4f %10.4f\n", "student", student_test.architecture.c_str(),
              static_cast<long long>(student_test.parameters), second.best_validation_accuracy,
              student_test.eval.accuracy());
  const nlohmann::json summary = {
      {"assistant", {{"train", first.ToJson()}, {"test", assistant_test.ToJson()}}},
      {"student", {{"train", second.ToJson()}, {"test", student_test.ToJson()}}}};
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/chain.json", summary.dump(2) + "\n"));
  std::printf("chain summary: %s/chain.json; student: %s\n", out_dir.c_str(),
              second.best_checkpoint.c_str());
  return absl::OkStatus();
}

}  // namespace retort::cli
