#include "trainer/training_loop.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoint/checkpoint_store.h"
#include "common/file_util.h"
#include "common/metrics_writer.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "data/sampler.h"
#include "distributed/communicator.h"
#include "models/checkpoint_file.h"
#include "trainer/batch_pipeline.h"

namespace retort::trainer {
namespace {

constexpr char kTrainingFile[] = "training.pt";

std::string BestPath(const std::string& dir) { return dir + "/best.pt"; }
std::string CheckpointsDir(const std::string& dir) { return dir + "/checkpoints"; }

double Mean(double sum, int64_t steps) {
  return sum / static_cast<double>(std::max<int64_t>(steps, 1));
}

}  // namespace

absl::Status TrainingLoopOptions::Validate() const {
  RETORT_RETURN_IF_ERROR(ValidateSettings());
  if (out_dir.empty()) return absl::InvalidArgumentError("--out_dir must be set");
  return absl::OkStatus();
}

absl::Status TrainingLoopOptions::ValidateSettings() const {
  RETORT_RETURN_IF_ERROR(optimizer.Validate());
  RETORT_RETURN_IF_ERROR(features.Validate());
  if (epochs < 0 || (epochs == 0 && steps < 1)) {
    return absl::InvalidArgumentError(
        epochs < 0 ? absl::StrCat("--epochs must be positive, got ", epochs)
                   : absl::StrCat("--steps must be at least 1, got ", steps));
  }
  if (batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--batch_size must be positive, got ", batch_size));
  }
  if (!(clip_grad_norm >= 0 && std::isfinite(clip_grad_norm))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--clip_grad_norm must be >= 0 (0 disables), got ", clip_grad_norm));
  }
  if (checkpoint_every_steps < 0 || log_every_steps < 0 || stop_after_steps < 0 ||
      eval_every_steps < 0) {
    return absl::InvalidArgumentError(
        "--checkpoint_every_steps, --log_every_steps, --eval_every and --stop_after_steps must "
        "be >= 0");
  }
  if (keep_checkpoints < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--keep_checkpoints must be at least 2 (a crash while writing one must leave another), "
        "got ",
        keep_checkpoints));
  }
  if (accumulation_steps < 1 || accumulation_steps > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grad_accum_steps must be in [1, 1024], got ", accumulation_steps));
  }
  if (teacher_prefetch < 0 || teacher_prefetch > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("--teacher_prefetch must be in [0, 64] steps, got ", teacher_prefetch));
  }
  return absl::OkStatus();
}

nlohmann::json TrainingLoopResult::ToJson(const char* unit) const {
  nlohmann::json json = {{"steps", steps},
                         {"epochs", epochs},
                         {unit, units},
                         {"train_seconds", train_seconds},
                         {absl::StrCat(unit, "_per_second"), units_per_second},
                         {"teacher_wait_seconds", teacher_wait_seconds},
                         {"resumed_from_step", resumed_from_step},
                         {"final_validation", final_validation},
                         {"parameters_sha256", parameters_sha256},
                         {"last_checkpoint", last_checkpoint}};
  if (task_result.is_object()) {
    for (const auto& [key, value] : task_result.items()) json[key] = value;
  }
  return json;
}

struct TrainingLoop::Means {
  double loss = 0, hard = 0, soft = 0, feature = 0;  // of the epoch so far
  double step_loss = 0, teacher_wait_ms = 0;         // of the latest step
};

TrainingLoop::~TrainingLoop() = default;

absl::StatusOr<std::unique_ptr<TrainingLoop>> TrainingLoop::Create(TrainingLoopOptions options,
                                                                   std::shared_ptr<Task> task) {
  RETORT_RETURN_IF_ERROR(options.Validate());
  if (task == nullptr) return absl::InvalidArgumentError("the training loop needs a task");
  if (!task->has_teacher() && options.features.enabled()) {
    return absl::InvalidArgumentError(
        "--feature_weight > 0 matches the teacher's hidden layers, but there is no teacher");
  }
  std::unique_ptr<TrainingLoop> t(new TrainingLoop());
  t->options_ = std::move(options);
  t->task_ = std::move(task);
  const TrainingLoopOptions& o = t->options_;
  if (o.communicator != nullptr) {
    t->rank_ = o.communicator->rank();
    t->world_size_ = o.communicator->world_size();
  }
  if (o.batch_size % t->world_size_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--batch_size=", o.batch_size,
                                                   " must divide among the ", t->world_size_,
                                                   " ranks (it is the global batch)"));
  }
  if (o.batch_size / t->world_size_ < o.accumulation_steps) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grad_accum_steps=", o.accumulation_steps, " splits each rank's ",
                     o.batch_size / t->world_size_,
                     " rows of a step into more micro-batches than rows; "
                     "lower it or raise --batch_size"));
  }
  torch::nn::Module& model = t->task_->model();
  if (t->world_size_ > 1) {
    // Every rank starts from rank 0's weights, and draws its own dropout
    // masks (rank 0 keeps the single-process stream).
    RETORT_RETURN_IF_ERROR(o.communicator->Broadcast(model.parameters(), 0));
    if (t->rank_ > 0) torch::manual_seed(o.seed * 1000003 + static_cast<uint64_t>(t->rank_));
  }
  RETORT_ASSIGN_OR_RETURN(t->optimizer_, CreateOptimizer(o.optimizer, model.parameters()));
  t->state_.config = o.config;
  if (o.features.enabled()) {
    RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, t->task_->TeacherFingerprint());
    RETORT_ASSIGN_OR_RETURN(
        FeatureMatchingSetup setup,
        SetUpFeatureMatching(o.features, t->task_->HiddenLayers(), fingerprint, o.optimizer));
    t->adapters_ = std::move(setup.adapters);
    t->adapter_optimizer_ = std::move(setup.optimizer);
    t->state_.config["feature_pairs"] = std::move(setup.pairs);
    if (t->world_size_ > 1) {
      RETORT_RETURN_IF_ERROR(o.communicator->Broadcast(t->adapters_->parameters(), 0));
    }
  }
  RETORT_ASSIGN_OR_RETURN(data::ShuffleSampler sampler,
                          data::ShuffleSampler::Create({.dataset_size = t->task_->train_size(),
                                                        .batch_size = o.batch_size / t->world_size_,
                                                        .seed = o.seed,
                                                        .rank = t->rank_,
                                                        .world_size = t->world_size_}));
  t->sampler_ = std::make_unique<data::ShuffleSampler>(std::move(sampler));
  t->total_steps_ = o.epochs > 0 ? o.epochs * t->sampler_->batches_per_epoch() : o.steps;
  t->state_.config["world_size"] = t->world_size_;
  if (t->task_->has_teacher()) {
    RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, t->task_->TeacherFingerprint());
    t->state_.teacher_weights_sha256 = fingerprint.weights_sha256();
  }

  RETORT_RETURN_IF_ERROR(MakeDirs(o.out_dir));
  if (o.overwrite && !o.resume && t->Leader()) {
    // Starting afresh: checkpoints of the old run must not be resumed later.
    std::error_code error;
    std::filesystem::remove_all(CheckpointsDir(o.out_dir), error);
    if (error) {
      return absl::InternalError(absl::StrCat("--overwrite: cannot remove ",
                                              CheckpointsDir(o.out_dir), ": ", error.message()));
    }
  }
  if (o.communicator != nullptr) RETORT_RETURN_IF_ERROR(o.communicator->Barrier());
  RETORT_ASSIGN_OR_RETURN(t->checkpoints_,
                          checkpoint::CheckpointStore::Create(
                              {.dir = CheckpointsDir(o.out_dir), .keep_last = o.keep_checkpoints}));
  RETORT_ASSIGN_OR_RETURN(std::vector<int64_t> complete, t->checkpoints_->CompleteSteps());
  if (o.resume) {
    RETORT_RETURN_IF_ERROR(t->Resume());
  } else if (!complete.empty() && !o.overwrite) {
    return absl::FailedPreconditionError(absl::StrCat(
        o.out_dir, " already holds checkpoints (the newest of step ", complete.back(),
        "); pass --resume=auto to continue, --overwrite to start afresh, or choose another "
        "--out_dir"));
  }
  if (t->world_size_ > 1) {
    // Built on the final weights: loading a checkpoint replaces the
    // parameters' storage, and a Reducer built before that would no longer
    // see their gradients (the ranks would drift apart unsynchronised).
    RETORT_ASSIGN_OR_RETURN(t->gradient_sync_, o.communicator->CreateGradientSync(
                                                   t->TrainedParameters(), o.bucket_bytes));
  }
  if (o.communicator != nullptr) RETORT_RETURN_IF_ERROR(o.communicator->Barrier());
  const std::string metrics = t->Leader() ? o.out_dir + "/metrics.jsonl"
                                          : absl::StrCat(o.out_dir, "/.metrics-rank", t->rank_);
  if (t->state_.step == 0) {
    // A fresh run truncates any old metrics so the file describes this run.
    std::remove(metrics.c_str());
  } else {
    // Steps after the checkpoint will be trained (and logged) again.
    RETORT_RETURN_IF_ERROR(DropRecordsAfterStep(metrics, t->state_.step));
  }
  RETORT_ASSIGN_OR_RETURN(t->metrics_, MetricsWriter::Create(metrics));
  return t;
}

std::vector<torch::Tensor> TrainingLoop::TrainedParameters() {
  std::vector<torch::Tensor> params = task_->model().parameters();
  if (adapters_ != nullptr) {
    for (const torch::Tensor& p : adapters_->parameters()) params.push_back(p);
  }
  return params;
}

std::string TrainingLoop::RankFile() const {
  return world_size_ == 1 ? kTrainingFile : absl::StrCat("training-rank", rank_, ".pt");
}

absl::Status TrainingLoop::Resume() {
  std::vector<std::string> warnings;
  RETORT_ASSIGN_OR_RETURN(std::optional<checkpoint::CheckpointStore::Checkpoint> latest,
                          checkpoints_->Latest(&warnings));
  for (const std::string& warning : warnings) {
    std::fprintf(stderr, "[%s] warning: %s\n", options_.label.c_str(), warning.c_str());
  }
  if (!latest.has_value()) {
    std::fprintf(stderr, "[%s] no complete checkpoint in %s; starting afresh\n",
                 options_.label.c_str(), CheckpointsDir(options_.out_dir).c_str());
    return absl::OkStatus();
  }
  const std::string path = latest->dir + "/" + RankFile();
  // The model was built (and the generator seeded) exactly as in the original
  // run; the checkpoint overwrites weights, optimizer state and generator.
  RETORT_ASSIGN_OR_RETURN(checkpoint::TrainingState loaded,
                          task_->LoadCheckpoint(path, *optimizer_, Adapters()));
  RETORT_RETURN_IF_ERROR(
      checkpoint::CheckResumable(path, loaded, state_.config, state_.teacher_weights_sha256));
  RETORT_RETURN_IF_ERROR(sampler_->Restore(loaded.sampler));
  if (loaded.step != latest->step ||
      loaded.step !=
          sampler_->state().epoch * sampler_->batches_per_epoch() + sampler_->state().next_batch) {
    return absl::DataLossError(absl::StrCat(path, ": step ", loaded.step,
                                            " disagrees with its manifest or sampler position"));
  }
  state_ = std::move(loaded);
  checkpointed_step_ = state_.step;
  last_checkpoint_dir_ = latest->dir;
  if (Leader()) {
    std::fprintf(stderr, "[%s] resuming from %s (state resumed from step %lld)\n",
                 options_.label.c_str(), latest->dir.c_str(), static_cast<long long>(state_.step));
  }
  return absl::OkStatus();
}

absl::Status TrainingLoop::TrainStep(TaskBatch& batch, const std::vector<int64_t>& indices,
                                     bool* teacher_failed) {
  *teacher_failed = false;
  if (task_->has_teacher()) {
    const absl::Time t0 = absl::Now();
    absl::Status answer = task_->AwaitTeacher(batch);
    last_teacher_wait_ = absl::ToDoubleSeconds(absl::Now() - t0);
    teacher_wait_seconds_ += last_teacher_wait_;
    if (!answer.ok()) {
      *teacher_failed = true;
      return answer;
    }
  }
  // The pipeline drew the same rows from its own copy of the sampler.
  if (sampler_->Next() != indices) {
    return absl::InternalError(absl::StrCat("batch pipeline out of step at step ", state_.step));
  }
  const double lr = LearningRateAt(options_.optimizer, state_.step, total_steps_);
  SetLearningRate(*optimizer_, lr);
  optimizer_->zero_grad();
  if (adapters_ != nullptr) {
    SetLearningRate(*adapter_optimizer_, lr);
    adapter_optimizer_->zero_grad();
  }
  // Micro-batches of as equal size as can be; each one's loss is weighted by
  // its share of the rows, so the summed gradients are those of the mean
  // over the whole batch. The terms stay on the device until the step ends.
  const int64_t rows = batch.rows();
  const int64_t micro = options_.accumulation_steps;
  torch::Tensor total, hard, soft, feature;
  auto add = [](torch::Tensor& sum, const torch::Tensor& term, double share) {
    if (!term.defined()) return;
    torch::Tensor weighted = term.detach().to(torch::kFloat64) * share;
    sum = sum.defined() ? sum + weighted : weighted;
  };
  for (int64_t i = 0; i < micro; ++i) {
    const int64_t begin = i * rows / micro;
    const int64_t end = (i + 1) * rows / micro;
    RETORT_ASSIGN_OR_RETURN(
        TaskLoss loss, task_->Loss(batch, begin, end, adapters_.get(), options_.features.weight));
    const double share = static_cast<double>(end - begin) / static_cast<double>(rows);
    torch::Tensor objective = micro == 1 ? loss.objective : loss.objective * share;
    // Only the last micro-batch's backward all-reduces; the others
    // accumulate into .grad locally.
    if (gradient_sync_ != nullptr && i == micro - 1) {
      RETORT_RETURN_IF_ERROR(gradient_sync_->PrepareForBackward(objective));
    }
    objective.backward();
    add(total, loss.objective, share);
    add(hard, loss.hard, share);
    add(soft, loss.soft, share);
    add(feature, loss.feature, share);
  }
  if (options_.clip_grad_norm > 0) {
    torch::nn::utils::clip_grad_norm_(TrainedParameters(), options_.clip_grad_norm);
  }
  RETORT_RETURN_IF_ERROR(task_->BeforeWeightUpdate());
  optimizer_->step();
  if (adapters_ != nullptr) adapter_optimizer_->step();
  // One read of the step's terms (the only device-to-host copy of a step).
  const torch::Tensor zero = torch::zeros({}, total.options());
  const torch::Tensor terms =
      torch::stack({total, hard.defined() ? hard : zero, soft.defined() ? soft : zero,
                    feature.defined() ? feature : zero})
          .to(torch::kCPU);
  const auto v = terms.accessor<double, 1>();
  if (!std::isfinite(v[0])) {
    return absl::OutOfRangeError(
        absl::StrCat("the loss became ", v[0], " at step ", state_.step,
                     "; training diverged: lower --lr or set --clip_grad_norm"));
  }
  ++state_.step;
  ++state_.epoch_steps;
  last_step_loss_ = v[0];
  last_hard_ = v[1];
  last_soft_ = v[2];
  last_feature_ = v[3];
  state_.epoch_loss_sum += v[0];
  state_.epoch_hard_sum += v[1];
  state_.epoch_soft_sum += v[2];
  state_.epoch_feature_sum += v[3];
  return absl::OkStatus();
}

absl::Status TrainingLoop::CheckRanksAgree() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> sums;
  for (const torch::Tensor& p : TrainedParameters()) {
    sums.push_back(p.to(torch::kFloat64).sum());
    sums.push_back(p.to(torch::kFloat64).abs().sum());
  }
  const torch::Tensor mine = torch::stack(sums);
  torch::Tensor leaders = mine.clone();
  RETORT_RETURN_IF_ERROR(options_.communicator->Broadcast({leaders}, 0));
  if (!torch::equal(mine, leaders)) {
    return absl::InternalError(absl::StrCat(
        "rank ", rank_, "'s parameters differ from rank 0's at step ", state_.step,
        " (the gradient all-reduce did not cover them): not checkpointing a diverged model"));
  }
  return absl::OkStatus();
}

absl::Status TrainingLoop::WriteCheckpoint() {
  if (checkpointed_step_ == state_.step) return absl::OkStatus();
  // Rank 0 opens the staging directory, every rank writes its file (its own
  // generator state; model and optimizer are the same on all), rank 0
  // commits once all have written.
  distributed::Communicator* comm = world_size_ > 1 ? options_.communicator.get() : nullptr;
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(CheckRanksAgree());
  std::unique_ptr<checkpoint::CheckpointStore::Pending> pending;
  if (Leader()) {
    RETORT_ASSIGN_OR_RETURN(pending, checkpoints_->Begin(state_.step));
  }
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(comm->Barrier());
  state_.sampler = sampler_->state();
  RETORT_RETURN_IF_ERROR(task_->SaveCheckpoint(checkpoints_->StagingPath(state_.step, RankFile()),
                                               *optimizer_, state_, Adapters()));
  if (options_.after_checkpoint_file_written) options_.after_checkpoint_file_written(state_.step);
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(comm->Barrier());
  if (Leader()) {
    RETORT_RETURN_IF_ERROR(
        pending->Commit({{"step", state_.step},
                         {"epoch", sampler_->state().epoch},
                         {"world_size", world_size_},
                         {"label", options_.label},
                         {"teacher_weights_sha256", state_.teacher_weights_sha256},
                         {"config", state_.config}}));
  }
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(comm->Barrier());
  checkpointed_step_ = state_.step;
  last_checkpoint_dir_ = absl::StrCat(CheckpointsDir(options_.out_dir), "/ckpt-",
                                      absl::StrFormat("%012d", state_.step));
  return absl::OkStatus();
}

absl::StatusOr<TrainingLoop::Means> TrainingLoop::AggregateMeans() {
  Means means{.loss = Mean(state_.epoch_loss_sum, state_.epoch_steps),
              .hard = Mean(state_.epoch_hard_sum, state_.epoch_steps),
              .soft = Mean(state_.epoch_soft_sum, state_.epoch_steps),
              .feature = Mean(state_.epoch_feature_sum, state_.epoch_steps),
              .step_loss = last_step_loss_,
              .teacher_wait_ms = 1e3 * last_teacher_wait_};
  if (world_size_ == 1) return means;
  torch::Tensor values = torch::tensor(
      {means.loss, means.hard, means.soft, means.feature, means.step_loss, means.teacher_wait_ms},
      torch::kFloat64);
  RETORT_RETURN_IF_ERROR(options_.communicator->AllReduceMean({values}));
  const auto v = values.accessor<double, 1>();
  return Means{.loss = v[0],
               .hard = v[1],
               .soft = v[2],
               .feature = v[3],
               .step_loss = v[4],
               .teacher_wait_ms = v[5]};
}

absl::StatusOr<TaskEvaluation> TrainingLoop::EvaluateAndRecord(int64_t epoch) {
  RETORT_ASSIGN_OR_RETURN(TaskEvaluation evaluation, TorchCall("evaluation", [&] {
                            return task_->Evaluate(options_.communicator.get(), rank_, world_size_);
                          }));
  state_.last_validation = evaluation.json;
  last_evaluation_step_ = state_.step;
  if (options_.epochs == 0) {
    // Epoch runs record evaluations in their epoch record.
    RETORT_RETURN_IF_ERROR(metrics_->Write({{"event", "eval"},
                                            {"step", state_.step},
                                            {"epoch", epoch},
                                            {"split", "validation"},
                                            {"validation", evaluation.json}}));
  }
  return evaluation;
}

absl::Status TrainingLoop::EndEpoch(int64_t epoch, double epoch_seconds) {
  RETORT_ASSIGN_OR_RETURN(TaskEvaluation validation, EvaluateAndRecord(epoch));
  const bool best = task_->keeps_best() && validation.score > state_.best_validation_accuracy;
  if (best) {
    state_.best_validation_accuracy = validation.score;
    state_.best_epoch = epoch;
  }
  RETORT_ASSIGN_OR_RETURN(Means means, AggregateMeans());
  const double rate =
      epoch_seconds > 0
          ? static_cast<double>(state_.epoch_steps * options_.batch_size * task_->units_per_row()) /
                epoch_seconds
          : 0.0;
  nlohmann::json record = {{"event", "epoch"},
                           {"epoch", epoch},
                           {"step", state_.step},
                           {"train_loss", means.loss},
                           {"train_hard_loss", means.hard},
                           {"validation", state_.last_validation},
                           {"learning_rate", optimizer_->param_groups()[0].options().get_lr()},
                           {absl::StrCat(task_->unit(), "_per_second"), rate},
                           {"train_seconds", state_.train_seconds}};
  if (task_->keeps_best()) record["best_validation_accuracy"] = state_.best_validation_accuracy;
  if (task_->has_teacher()) {
    record["train_soft_loss"] = means.soft;
    record["teacher_wait_seconds"] = teacher_wait_seconds_;
  }
  if (adapters_ != nullptr) record["train_feature_loss"] = means.feature;
  RETORT_RETURN_IF_ERROR(metrics_->Write(record));
  if (Leader()) {
    std::fprintf(stderr, "[%s] epoch %lld/%lld | train loss %.4f | %s%s | %.0f %s/s\n",
                 options_.label.c_str(), static_cast<long long>(epoch) + 1,
                 static_cast<long long>(options_.epochs), means.loss, validation.summary.c_str(),
                 best ? " best" : "", rate, task_->unit());
  }
  state_.epoch_loss_sum = state_.epoch_soft_sum = state_.epoch_hard_sum = 0;
  state_.epoch_feature_sum = 0;
  state_.epoch_steps = 0;
  RETORT_RETURN_IF_ERROR(WriteCheckpoint());
  if (best && Leader()) {
    RETORT_RETURN_IF_ERROR(task_->SaveCheckpoint(BestPath(options_.out_dir), *optimizer_, state_,
                                                 checkpoint::AdapterState{}));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> TrainingLoop::StopRequested() {
  if (!options_.stop_requested) return false;
  const bool mine = options_.stop_requested();
  if (world_size_ == 1) return mine;
  // Ranks see a signal at different steps: they agree on the first step at
  // which any of them saw it.
  torch::Tensor flag = torch::tensor({mine ? 1.0 : 0.0}, torch::kFloat64);
  RETORT_RETURN_IF_ERROR(options_.communicator->AllReduceMean({flag}));
  return flag.item<double>() > 0;
}

absl::StatusOr<TrainingLoopResult> TrainingLoop::Run() {
  absl::StatusOr<TrainingLoopResult> result = RunSteps();
  if (result.ok() || world_size_ == 1) return result;
  const absl::Status& error = result.status();
  return absl::Status(
      error.code(),
      absl::StrCat("rank ", rank_, " of ", world_size_, ": ", error.message(),
                   "; if a rank died or was stopped, every rank fails like this within "
                   "--dist_timeout: restart them all with --resume=auto to continue from ",
                   last_checkpoint_dir_.empty() ? std::string("the newest complete checkpoint")
                                                : last_checkpoint_dir_));
}

absl::StatusOr<TrainingLoopResult> TrainingLoop::RunSteps() {
  const Clock& clock = *options_.clock;
  const int64_t start_step = state_.step;
  const int64_t batches = sampler_->batches_per_epoch();
  const int64_t end_step = options_.stop_after_steps > 0
                               ? std::min(options_.stop_after_steps, total_steps_)
                               : total_steps_;
  const int64_t units_per_step = options_.batch_size * task_->units_per_row();
  const bool ask_teacher = task_->has_teacher() && (options_.ask_teacher || adapters_ != nullptr);
  BatchPipeline pipeline({.depth = options_.teacher_prefetch,
                          .ask_teacher = ask_teacher,
                          .hidden_layers = adapters_ != nullptr ? adapters_->teacher_layers()
                                                                : std::vector<std::string>()},
                         // Prepared as far as an uninterrupted run would, so
                         // that a stop leaves the same state (an on-policy
                         // rollout generated ahead) as a preemption.
                         *task_, *sampler_, state_.step, std::max(total_steps_, state_.step));
  ProgressLine progress({.label = absl::StrCat("[", options_.label, "]"),
                         .total_units = total_steps_,
                         .clock = options_.clock,
                         .rate_unit = task_->unit()});
  task_->model().train();
  TrainingLoopResult result;
  result.resumed_from_step = start_step;
  double work_seconds = 0;  // this process's step time, teacher waits included
  double epoch_seconds = 0;
  while (state_.step < end_step) {
    const int64_t epoch = sampler_->state().epoch;
    const absl::Time t0 = clock.Now();
    bool teacher_failed = false;
    absl::Status step = TorchCall("training step", [&] {
      BatchPipeline::Prepared prepared = pipeline.Next();
      return TrainStep(*prepared.batch, prepared.indices, &teacher_failed);
    });
    if (!step.ok()) {
      progress.Finish();
      if (!teacher_failed || world_size_ > 1)
        return step;  // a lone checkpoint would hang the others
      // Nothing of the failed step was applied: keep what was done.
      absl::Status saved = WriteCheckpoint();
      return absl::Status(
          step.code(),
          absl::StrCat(
              "teacher failed at step ", state_.step, ": ", step.message(), "; ",
              saved.ok() ? absl::StrCat("training state of step ", state_.step, " is in ",
                                        last_checkpoint_dir_, ": continue with --resume=auto")
                         : absl::StrCat("and writing a checkpoint failed too: ", saved.message())));
    }
    const double dt = absl::ToDoubleSeconds(clock.Now() - t0);
    work_seconds += dt;
    epoch_seconds += dt;
    state_.train_seconds += dt;
    const int64_t done = state_.step - start_step;

    if (Leader() && (progress.Due() || state_.step == end_step)) {
      std::string detail = absl::StrFormat("loss %.4f", last_step_loss_);
      if (options_.epochs > 0) {
        detail = absl::StrFormat("epoch %d/%d loss %.4f", epoch + 1, options_.epochs,
                                 Mean(state_.epoch_loss_sum, state_.epoch_steps));
      } else if (task_->has_teacher()) {
        absl::StrAppendFormat(&detail, " (hard %.4f)", last_hard_);
      }
      if (adapters_ != nullptr) absl::StrAppendFormat(&detail, " feature %.4f", last_feature_);
      if (task_->has_teacher()) {
        absl::StrAppendFormat(&detail, " teacher wait %.1f ms/step",
                              1e3 * teacher_wait_seconds_ / static_cast<double>(done));
      }
      progress.Update(state_.step, done * units_per_step, detail, state_.step == end_step);
    }
    if (options_.log_every_steps > 0 && state_.step % options_.log_every_steps == 0) {
      RETORT_ASSIGN_OR_RETURN(Means means, AggregateMeans());
      nlohmann::json line = {{"event", "step"},
                             {"step", state_.step},
                             {"epoch", epoch},
                             {"step_loss", means.step_loss},
                             {"loss", means.step_loss},
                             {"epoch_loss", means.loss},
                             {"lr", optimizer_->param_groups()[0].options().get_lr()},
                             {task_->unit(), state_.step * units_per_step},
                             {absl::StrCat(task_->unit(), "_per_second"),
                              work_seconds > 0 ? done * units_per_step / work_seconds : 0.0}};
      line["hard"] = last_hard_;
      if (task_->has_teacher()) {
        line["teacher_wait_ms"] = means.teacher_wait_ms;
        line["soft"] = last_soft_;
      }
      if (adapters_ != nullptr) line["feature"] = last_feature_;
      RETORT_RETURN_IF_ERROR(metrics_->Write(line));
    }
    bool checkpointed = false;
    if (options_.epochs > 0 && state_.step % batches == 0) {
      progress.Finish();
      RETORT_RETURN_IF_ERROR(
          TorchCall("end of epoch", [&] { return EndEpoch(epoch, epoch_seconds); }));
      epoch_seconds = 0;
      checkpointed = true;
    } else if (options_.eval_every_steps > 0 && state_.step % options_.eval_every_steps == 0 &&
               state_.step < total_steps_) {
      RETORT_ASSIGN_OR_RETURN(TaskEvaluation evaluation, EvaluateAndRecord(epoch));
      if (Leader()) {
        std::fprintf(stderr, "[%s] step %lld | %s\n", options_.label.c_str(),
                     static_cast<long long>(state_.step), evaluation.summary.c_str());
      }
    }
    if (!checkpointed && options_.checkpoint_every_steps > 0 &&
        state_.step % options_.checkpoint_every_steps == 0) {
      RETORT_RETURN_IF_ERROR(WriteCheckpoint());
    }
    RETORT_ASSIGN_OR_RETURN(bool stop, StopRequested());
    if (stop && state_.step < end_step) {
      progress.Finish();
      RETORT_RETURN_IF_ERROR(WriteCheckpoint());
      result.preempted = true;
      result.steps = state_.step;
      result.last_checkpoint = last_checkpoint_dir_;
      return result;
    }
  }
  progress.Finish();
  // The end, or stopped early (--stop_after_steps): keep where it stopped.
  RETORT_RETURN_IF_ERROR(WriteCheckpoint());
  result.completed = state_.step >= total_steps_;
  result.steps = state_.step;
  result.epochs = state_.step / batches;
  result.units = state_.step * units_per_step;
  if (last_evaluation_step_ != state_.step) {
    RETORT_RETURN_IF_ERROR(EvaluateAndRecord(sampler_->state().epoch).status());
  }
  result.final_validation = state_.last_validation;
  result.train_seconds = state_.train_seconds;
  result.units_per_second =
      work_seconds > 0
          ? static_cast<double>((state_.step - start_step) * units_per_step) / work_seconds
          : 0;
  result.teacher_wait_seconds = teacher_wait_seconds_;
  result.parameters_sha256 = models::WeightsSha256(task_->model());
  result.last_checkpoint = last_checkpoint_dir_;
  result.best_score = state_.best_validation_accuracy;
  result.best_epoch = state_.best_epoch;
  result.task_result = nlohmann::json::object();
  if (Leader() && result.completed) {
    RETORT_ASSIGN_OR_RETURN(result.task_result, task_->Export(options_.out_dir));
  }
  if (task_->keeps_best()) {
    result.task_result["best_validation_accuracy"] = state_.best_validation_accuracy;
    result.task_result["best_epoch"] = state_.best_epoch;
    result.task_result["best_checkpoint"] = BestPath(options_.out_dir);
  }
  if (Leader()) {
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(options_.out_dir + "/result.json",
                                               result.ToJson(task_->unit()).dump(2) + "\n"));
  }
  return result;
}

}  // namespace retort::trainer
