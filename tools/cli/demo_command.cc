// retort demo: trains a teacher (reused from the work directory when a valid
// one is there), a student from scratch, and the same student distilled from
// the teacher with the same budget and seed; evaluates all three on the test
// set; prints a table and writes summary.json.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "models/checkpoint_file.h"
#include "student/quantize.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/pipeline.h"
#include "tools/cli/teacher_process.h"
#include "trainer/classifier/evaluate.h"

namespace retort::cli {
namespace {

// --quick: few epochs, to see the whole pipeline in about two minutes. The
// teacher needs the full training set to end up ahead of the students (on a
// 20k subset for 2 epochs it did not).
constexpr int64_t kQuickTeacherEpochs = 2;
constexpr int64_t kQuickStudentEpochs = 3;

struct Stage {
  std::string name;
  std::string checkpoint;
  double train_seconds = 0;  // optimizer time
  double wall_seconds = 0;   // whole stage, this invocation
  double samples_per_second = 0;
  bool cached = false;
  CheckpointReport test;
};

enum class TeacherCache { kReusable, kInterrupted, kStale };

// The teacher in `dir` is reusable when training finished (teacher.json is
// written last), it was trained with `config`, and best.pt is byte-identical
// to what was recorded then. Without teacher.json, training was interrupted
// and may resume; anything else is stale and is trained anew.
TeacherCache CheckTeacher(const std::string& dir, const nlohmann::json& config, Stage& stage) {
  absl::StatusOr<std::string> record = ReadFile(dir + "/teacher.json");
  if (!record.ok()) return TeacherCache::kInterrupted;
  nlohmann::json json = nlohmann::json::parse(*record, nullptr, false);
  if (!json.is_object() || json.value("config", nlohmann::json()) != config) {
    std::fprintf(stderr, "[teacher] %s was trained with other settings; training anew\n",
                 dir.c_str());
    return TeacherCache::kStale;
  }
  absl::StatusOr<std::string> weights = ReadFile(dir + "/best.pt");
  if (!weights.ok() || Sha256Hex(*weights) != json.value("best_sha256", "")) {
    std::fprintf(stderr, "[teacher] %s/best.pt is missing or changed; training anew\n",
                 dir.c_str());
    return TeacherCache::kStale;
  }
  stage.train_seconds = json.value("train_seconds", 0.0);
  stage.samples_per_second = json.value("samples_per_second", 0.0);
  return TeacherCache::kReusable;
}

absl::StatusOr<Stage> TeacherStage(const std::string& work_dir, bool quick,
                                   const trainer::ClassifierTrainerOptions& student_options,
                                   const data::TrainValidationSplit& data) {
  trainer::ClassifierTrainerOptions o = student_options;
  RETORT_ASSIGN_OR_RETURN(o.model, ModelSpecFrom("teacher_", absl::GetFlag(FLAGS_teacher_arch),
                                                 absl::GetFlag(FLAGS_teacher_hidden),
                                                 absl::GetFlag(FLAGS_teacher_dropout),
                                                 absl::GetFlag(FLAGS_teacher_input_dropout)));
  o.epochs = quick ? kQuickTeacherEpochs : absl::GetFlag(FLAGS_teacher_epochs);
  o.optimizer.learning_rate = absl::GetFlag(FLAGS_teacher_lr);
  o.jitter_pixels = absl::GetFlag(FLAGS_teacher_jitter);
  o.loss = trainer::DistillationLossOptions();  // hard labels: T and alpha do not apply
  o.features = trainer::FeatureMatchOptions();  // nor feature matching
  o.out_dir = work_dir + "/teacher";
  o.label = "teacher";
  o.resume = true;  // an interrupted teacher continues where it stopped
  o.overwrite = true;
  RETORT_RETURN_IF_ERROR(o.Validate());

  nlohmann::json config = o.ToJson();
  config["train_examples"] = data.train->size();
  config["validation_examples"] = data.validation->size();
  Stage stage;
  stage.name = "teacher";
  stage.checkpoint = o.out_dir + "/best.pt";
  const absl::Time start = absl::Now();
  switch (CheckTeacher(o.out_dir, config, stage)) {
    case TeacherCache::kReusable:
      stage.cached = true;
      std::fprintf(stderr, "[teacher] reusing %s (trained earlier with the same settings)\n",
                   stage.checkpoint.c_str());
      return stage;
    case TeacherCache::kStale:
      std::remove((o.out_dir + "/teacher.json").c_str());
      o.resume = false;
      break;
    case TeacherCache::kInterrupted:
      break;
  }
  absl::StatusOr<trainer::ClassifierTrainResult> trained = TrainModel(o, data, nullptr);
  if (absl::IsFailedPrecondition(trained.status())) {
    // An interrupted teacher from other settings: start it afresh.
    std::fprintf(stderr, "[teacher] cannot resume (%s); training anew\n",
                 std::string(trained.status().message()).c_str());
    o.resume = false;
    trained = TrainModel(o, data, nullptr);
  }
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainResult result, std::move(trained));
  stage.train_seconds = result.train_seconds;
  stage.samples_per_second = result.samples_per_second;
  stage.wall_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  RETORT_ASSIGN_OR_RETURN(std::string weights, ReadFile(stage.checkpoint));
  nlohmann::json record = {{"config", config},
                           {"best_sha256", Sha256Hex(weights)},
                           {"train_seconds", stage.train_seconds},
                           {"samples_per_second", stage.samples_per_second}};
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(o.out_dir + "/teacher.json", record.dump(2) + "\n"));
  return stage;
}

absl::StatusOr<Stage> StudentStage(const std::string& name, trainer::ClassifierTrainerOptions o,
                                   const std::string& work_dir,
                                   const data::TrainValidationSplit& data,
                                   std::shared_ptr<client::TeacherClient> teacher) {
  o.out_dir = work_dir + "/" + name;
  o.label = name;
  o.resume = false;
  o.overwrite = true;  // students are the measurement: always retrained
  Stage stage;
  stage.name = name;
  stage.checkpoint = o.out_dir + "/best.pt";
  const absl::Time start = absl::Now();
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainResult result,
                          TrainModel(o, data, std::move(teacher)));
  stage.train_seconds = result.train_seconds;
  stage.samples_per_second = result.samples_per_second;
  stage.wall_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return stage;
}

std::string Megabytes(int64_t bytes) {
  return absl::StrFormat("%.2f MB", static_cast<double>(bytes) / 1e6);
}

void PrintTable(const std::vector<Stage>& stages) {
  std::printf("\n%-10s %-52s %10s %10s %9s %7s %10s %10s\n", "stage", "model", "params", "ckpt",
              "test acc", "errors", "train", "samples/s");
  for (const Stage& s : stages) {
    std::printf("%-10s %-52s %10lld %10s %9.4f %7lld %10s %10.0f%s\n", s.name.c_str(),
                s.test.architecture.c_str(), static_cast<long long>(s.test.parameters),
                Megabytes(s.test.file_bytes).c_str(), s.test.eval.accuracy(),
                static_cast<long long>(s.test.eval.errors()),
                HumanDuration(absl::Seconds(s.train_seconds)).c_str(), s.samples_per_second,
                s.cached ? "  (cached)" : "");
  }
}

}  // namespace

absl::Status RunDemo() {
  const absl::Time demo_start = absl::Now();
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const bool quick = absl::GetFlag(FLAGS_quick);
  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  if (quick) work_dir += "/quick";  // never clobbers the full run's teacher
  RETORT_RETURN_IF_ERROR(MakeDirs(work_dir));

  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainerOptions student, TrainerOptionsFromFlags());
  const data::FashionMnistOptions data_options = DataOptionsFromFlags();
  if (quick) student.epochs = kQuickStudentEpochs;
  RETORT_ASSIGN_OR_RETURN(data::TrainValidationSplit data,
                          data::LoadFashionMnistTrain(data_options));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<data::TensorDataset> test,
                          data::LoadFashionMnistTest(data_options));

  std::vector<Stage> stages;
  RETORT_ASSIGN_OR_RETURN(Stage teacher_stage, TeacherStage(work_dir, quick, student, data));
  stages.push_back(teacher_stage);

  trainer::ClassifierTrainerOptions scratch = student;
  scratch.features = trainer::FeatureMatchOptions();  // hard labels only
  RETORT_ASSIGN_OR_RETURN(Stage scratch_stage,
                          StudentStage("scratch", scratch, work_dir, data, nullptr));
  stages.push_back(scratch_stage);

  // The distilled student asks a teacher server process over gRPC on
  // loopback (the deployment shape), or the teacher in this process.
  const std::string teacher_mode = absl::GetFlag(FLAGS_teacher_mode);
  if (teacher_mode != "remote" && teacher_mode != "local") {
    return absl::InvalidArgumentError(
        absl::StrCat("--teacher_mode must be remote or local, got '", teacher_mode, "'"));
  }
  std::unique_ptr<TeacherProcess> server;
  if (teacher_mode == "remote") {
    TeacherProcess::Options serve;
    serve.checkpoint = teacher_stage.checkpoint;
    serve.scratch_dir = work_dir + "/teacher_server";
    RETORT_ASSIGN_OR_RETURN(server, TeacherProcess::Start(serve));
    std::fprintf(stderr, "[teacher] server process on %s (log: %s)\n", server->address().c_str(),
                 server->log_path().c_str());
  }
  {
    RETORT_ASSIGN_OR_RETURN(
        std::shared_ptr<client::TeacherClient> teacher,
        OpenTeacher(teacher_stage.checkpoint, server != nullptr ? server->address() : ""));
    RETORT_ASSIGN_OR_RETURN(Stage distilled_stage,
                            StudentStage("distilled", student, work_dir, data, teacher));
    stages.push_back(distilled_stage);
  }
  if (server != nullptr) {
    RETORT_ASSIGN_OR_RETURN(int exit_code, server->Stop(absl::Seconds(60)));
    if (exit_code != 0) {
      return absl::InternalError(absl::StrCat("the teacher server exited with status ", exit_code,
                                              "; see ", server->log_path()));
    }
  }

  std::fprintf(stderr,
               "[eval] evaluating the three best checkpoints on the %lld-example test set\n",
               static_cast<long long>(test->size()));
  for (Stage& s : stages) {
    RETORT_ASSIGN_OR_RETURN(s.test, EvaluateCheckpoint(s.checkpoint, *test));
  }
  PrintTable(stages);
  const Stage& sc = stages[1];
  const Stage& di = stages[2];
  const double gain = 100.0 * (di.test.eval.accuracy() - sc.test.eval.accuracy());
  std::printf(
      "\ndistillation (T=%g, alpha=%g) %s %.2f points of test accuracy over the scratch "
      "student (%lld vs %lld errors); teacher %.4f\n",
      student.loss.temperature, student.loss.alpha, gain >= 0 ? "gained" : "lost", std::abs(gain),
      static_cast<long long>(di.test.eval.errors()), static_cast<long long>(sc.test.eval.errors()),
      stages[0].test.eval.accuracy());

  // The compact student: the distilled one with int8 per-channel weights
  // (student/quantize.h), evaluated again.
  RETORT_ASSIGN_OR_RETURN(models::LoadedCheckpoint compact, models::ReadCheckpoint(di.checkpoint));
  const student::QuantizeOptions int8;
  RETORT_ASSIGN_OR_RETURN(student::QuantizeReport quantized,
                          student::QuantizeClassifier(int8, compact.model.get()));
  const std::string compact_path = work_dir + "/compact_student.pt";
  compact.meta["quantization"] = int8.Describe();
  RETORT_RETURN_IF_ERROR(models::WriteCheckpoint(compact_path, *compact.model, compact.meta));
  RETORT_ASSIGN_OR_RETURN(trainer::EvalResult compact_eval,
                          trainer::Evaluate(*compact.model, *test));
  std::printf(
      "compact student (the distilled one, %s weights): test accuracy %.4f (%+.2f points), "
      "%s of weights instead of %s (%.2fx smaller); %s\n",
      int8.Describe().c_str(), compact_eval.accuracy(),
      100.0 * (compact_eval.accuracy() - di.test.eval.accuracy()),
      Megabytes(quantized.quantized_bytes).c_str(), Megabytes(quantized.float_bytes).c_str(),
      static_cast<double>(quantized.float_bytes) / static_cast<double>(quantized.quantized_bytes),
      compact_path.c_str());

  nlohmann::json summary = {
      {"quick", quick},
      {"teacher_mode", teacher_mode},
      {"seed", student.seed},
      {"temperature", student.loss.temperature},
      {"alpha", student.loss.alpha},
      {"student_epochs", student.epochs},
      {"teacher_epochs", quick ? kQuickTeacherEpochs : absl::GetFlag(FLAGS_teacher_epochs)},
      {"train_examples", data.train->size()},
      {"validation_examples", data.validation->size()},
      {"test_examples", test->size()},
      {"distillation_gain_points", gain},
      {"total_wall_seconds", absl::ToDoubleSeconds(absl::Now() - demo_start)}};
  for (const Stage& s : stages) {
    nlohmann::json json = s.test.ToJson();
    json["checkpoint"] = s.checkpoint;
    json["train_seconds"] = s.train_seconds;
    json["wall_seconds"] = s.wall_seconds;
    json["train_samples_per_second"] = s.samples_per_second;
    json["cached"] = s.cached;
    summary[s.name] = json;
  }
  summary["compact"] = {{"checkpoint", compact_path},
                        {"scheme", int8.Describe()},
                        {"test_accuracy", compact_eval.accuracy()},
                        {"errors", compact_eval.errors()},
                        {"weight_bytes_float32", quantized.float_bytes},
                        {"weight_bytes_quantized", quantized.quantized_bytes}};
  const std::string summary_path = work_dir + "/summary.json";
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(summary_path, summary.dump(2) + "\n"));
  std::printf("summary: %s\n", summary_path.c_str());
  return absl::OkStatus();
}

}  // namespace retort::cli
