#include "tools/cli/pipeline.h"

#include <cstdio>

#include "absl/flags/flag.h"
#include "client/caching_teacher_client.h"
#include "client/in_process_teacher_client.h"
#include "client/teacher_pool_client.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "distributed/communicator.h"
#include "models/checkpoint_file.h"
#include "student/student.h"
#include "teacher/native_teacher.h"
#include "tools/cli/flags.h"

namespace retort::cli {

absl::StatusOr<trainer::ClassifierTrainResult> TrainModel(
    const trainer::ClassifierTrainerOptions& options, const data::TrainValidationSplit& data,
    std::shared_ptr<client::TeacherClient> teacher) {
  RETORT_ASSIGN_OR_RETURN(
      std::unique_ptr<trainer::ClassifierTrainer> t,
      trainer::ClassifierTrainer::Create(options, data.train, data.validation, teacher));
  const int world = options.communicator == nullptr ? 1 : options.communicator->world_size();
  const bool leader = options.communicator == nullptr || options.communicator->rank() == 0;
  if (leader) {
    std::fprintf(stderr, "[%s] %s on %lld examples, %lld epochs, %s lr %g%s%s\n",
                 options.label.c_str(), options.model.Describe().c_str(),
                 static_cast<long long>(data.train->size()), static_cast<long long>(options.epochs),
                 options.optimizer.kind.c_str(), options.optimizer.learning_rate,
                 teacher != nullptr ? absl::StrCat(", distilled at T=", options.loss.temperature,
                                                   " alpha=", options.loss.alpha)
                                          .c_str()
                                    : ", hard labels",
                 world > 1 ? absl::StrCat(", ", world, " ranks (c10d gloo)").c_str() : "");
  }
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainResult result, t->Run());
  if (result.preempted) {
    return PreemptedAfter(options.label, result.steps, result.last_checkpoint);
  }
  if (leader) {
    std::fprintf(stderr,
                 "[%s] done: best validation accuracy %.4f (epoch %lld), %.0f samples/s; %s\n",
                 options.label.c_str(), result.best_validation_accuracy,
                 static_cast<long long>(result.best_epoch) + 1, result.samples_per_second,
                 result.best_checkpoint.c_str());
  }
  return result;
}

absl::StatusOr<std::shared_ptr<client::TeacherClient>> OpenTeacher(const std::string& checkpoint,
                                                                   const std::string& address) {
  const int64_t cache_mb = absl::GetFlag(FLAGS_teacher_cache_mb);
  if (cache_mb < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--teacher_cache_mb must be >= 0, got ", cache_mb));
  }
  std::shared_ptr<client::TeacherClient> client;
  if (!address.empty()) {
    RETORT_ASSIGN_OR_RETURN(client::TeacherPoolClient::Options options,
                            TeacherPoolOptionsFromFlags(address));
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<client::TeacherPoolClient> pool,
                            client::TeacherPoolClient::Create(options));
    const v1::GetInfoResponse info = pool->info();
    const v1::TeacherFingerprint& fp = info.fingerprint();
    std::fprintf(stderr, "[teacher] %s at %s (weights %s, %s, %s)\n", fp.architecture().c_str(),
                 address.c_str(), fp.weights_sha256().substr(0, 12).c_str(),
                 info.limits().compute_dtype().c_str(), options.endpoint.output.Describe().c_str());
    client = std::move(pool);
  } else {
    if (checkpoint.empty()) {
      return absl::InvalidArgumentError(
          "give --teacher (a teacher checkpoint) or --teachers (teacher servers)");
    }
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::NativeTeacher> native,
                            teacher::NativeTeacher::Create({.checkpoint_path = checkpoint}));
    client = std::make_shared<client::InProcessTeacherClient>(std::move(native));
  }
  if (cache_mb == 0) return client;
  return std::make_shared<client::CachingTeacherClient>(
      client, client::CachingTeacherClient::Options{.capacity_bytes = cache_mb << 20});
}

nlohmann::json CheckpointReport::ToJson() const {
  nlohmann::json json = eval.ToJson();
  json["architecture"] = architecture;
  json["parameters"] = parameters;
  json["parameter_bytes"] = parameter_bytes;
  json["checkpoint_bytes"] = file_bytes;
  return json;
}

absl::StatusOr<CheckpointReport> EvaluateCheckpoint(const std::string& path,
                                                    const data::Dataset& dataset) {
  RETORT_ASSIGN_OR_RETURN(models::LoadedCheckpoint loaded, models::ReadCheckpoint(path));
  if (dataset.example_shape() != loaded.model->spec().input_shape) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " holds a ", loaded.model->spec().Describe(),
                     " whose input shape does not match the dataset"));
  }
  CheckpointReport report;
  report.architecture = loaded.model->spec().Describe();
  student::ModelSize size = student::MeasureModel(*loaded.model);
  report.parameters = size.parameters;
  report.parameter_bytes = size.parameter_bytes;
  RETORT_ASSIGN_OR_RETURN(report.file_bytes, FileSize(path));
  RETORT_ASSIGN_OR_RETURN(report.eval, trainer::Evaluate(*loaded.model, dataset));
  return report;
}

}  // namespace retort::cli
