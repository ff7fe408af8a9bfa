#include "trainer/trainer.h"

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/checkpoint_file.h"

namespace retort::trainer {
namespace {

constexpr char kTrainingFile[] = "training.pt";

std::string BestPath(const std::string& dir) { return dir + "/best.pt"; }
std::string CheckpointsDir(const std::string& dir) { return dir + "/checkpoints"; }

}  // namespace

absl::Status TrainerOptions::Validate() const {
  RETORT_RETURN_IF_ERROR(model.Validate());
  RETORT_RETURN_IF_ERROR(optimizer.Validate());
  RETORT_RETURN_IF_ERROR(loss.Validate());
  RETORT_RETURN_IF_ERROR(features.Validate());
  if (epochs <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--epochs must be positive, got ", epochs));
  }
  if (batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--batch_size must be positive, got ", batch_size));
  }
  if (jitter_pixels < 0 || jitter_pixels > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("--jitter must be in [0, 8] pixels, got ", jitter_pixels));
  }
  if (!(clip_grad_norm >= 0 && std::isfinite(clip_grad_norm))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--clip_grad_norm must be >= 0 (0 disables), got ", clip_grad_norm));
  }
  if (checkpoint_every_steps < 0 || log_every_steps < 0 || stop_after_steps < 0) {
    return absl::InvalidArgumentError("step intervals must be >= 0");
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

nlohmann::json TrainerOptions::ToJson() const {
  nlohmann::json json = {{"model", model.ToJson()},
                         {"optimizer",
                          {{"kind", optimizer.kind},
                           {"learning_rate", optimizer.learning_rate},
                           {"momentum", optimizer.momentum},
                           {"weight_decay", optimizer.weight_decay},
                           {"warmup_fraction", optimizer.warmup_fraction},
                           {"min_lr_ratio", optimizer.min_lr_ratio}}},
                         {"temperature", loss.temperature},
                         {"alpha", loss.alpha},
                         {"epochs", epochs},
                         {"batch_size", batch_size},
                         {"seed", seed},
                         {"jitter_pixels", jitter_pixels},
                         {"clip_grad_norm", clip_grad_norm}};
  // Only when on, so checkpoints of runs without them still resume.
  if (features.enabled()) json["features"] = features.ToJson();
  if (!init_from.empty()) json["init_from"] = init_from;
  return json;
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    TrainerOptions options, std::shared_ptr<const data::Dataset> train,
    std::shared_ptr<const data::Dataset> validation, std::shared_ptr<TeacherClient> teacher) {
  RETORT_RETURN_IF_ERROR(options.Validate());
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out_dir must be set");
  if (train == nullptr || validation == nullptr) {
    return absl::InvalidArgumentError("the trainer needs a training and a validation set");
  }
  if (train->example_shape() != options.model.input_shape ||
      train->num_classes() != options.model.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model ", options.model.Describe(), " does not fit the data (examples of shape [",
        absl::StrJoin(train->example_shape(), ","), "], ", train->num_classes(), " classes)"));
  }
  if (teacher == nullptr) options.loss.alpha = 0.0;
  if (teacher == nullptr && options.features.enabled()) {
    return absl::InvalidArgumentError(
        "--feature_weight > 0 matches the teacher's hidden layers, but there is no teacher");
  }

  std::unique_ptr<Trainer> t(new Trainer());
  t->options_ = std::move(options);
  t->train_ = std::move(train);
  t->validation_ = std::move(validation);
  t->teacher_ = std::move(teacher);
  const TrainerOptions& o = t->options_;

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
  RETORT_ASSIGN_OR_RETURN(t->model_, models::CreateClassifier(o.model, o.seed));
  if (!o.init_from.empty()) {
    absl::StatusOr<nlohmann::json> meta = models::ReadCheckpointInto(o.init_from, *t->model_);
    if (!meta.ok()) {
      return absl::Status(meta.status().code(),
                          absl::StrCat("--init_from: ", meta.status().message()));
    }
  }
  if (t->world_size_ > 1) {
    // Every rank starts from rank 0's weights, and draws its own dropout
    // masks (rank 0 keeps the single-process stream).
    RETORT_RETURN_IF_ERROR(o.communicator->Broadcast(t->model_->parameters(), 0));
    if (t->rank_ > 0) torch::manual_seed(o.seed * 1000003 + static_cast<uint64_t>(t->rank_));
  }
  RETORT_ASSIGN_OR_RETURN(t->optimizer_, CreateOptimizer(o.optimizer, t->model_->parameters()));
  nlohmann::json feature_pairs;
  if (o.features.enabled()) {
    RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, t->teacher_->Fingerprint());
    RETORT_ASSIGN_OR_RETURN(
        FeatureMatchingSetup setup,
        SetUpFeatureMatching(o.features, t->model_->HiddenLayers(), fingerprint, o.optimizer));
    t->adapters_ = std::move(setup.adapters);
    t->adapter_optimizer_ = std::move(setup.optimizer);
    feature_pairs = std::move(setup.pairs);
    if (t->world_size_ > 1) {
      RETORT_RETURN_IF_ERROR(o.communicator->Broadcast(t->adapters_->parameters(), 0));
    }
  }
  RETORT_ASSIGN_OR_RETURN(data::ShuffleSampler sampler,
                          data::ShuffleSampler::Create({.dataset_size = t->train_->size(),
                                                        .batch_size = o.batch_size / t->world_size_,
                                                        .seed = o.seed,
                                                        .rank = t->rank_,
                                                        .world_size = t->world_size_}));
  t->sampler_ = std::make_unique<data::ShuffleSampler>(std::move(sampler));
  t->total_steps_ = o.epochs * t->sampler_->batches_per_epoch();

  t->state_.config = o.ToJson();
  t->state_.config["train_examples"] = t->train_->size();
  t->state_.config["validation_examples"] = t->validation_->size();
  t->state_.config["world_size"] = t->world_size_;
  if (t->adapters_ != nullptr) t->state_.config["feature_pairs"] = feature_pairs;
  if (t->teacher_ != nullptr) {
    RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, t->teacher_->Fingerprint());
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
  RETORT_ASSIGN_OR_RETURN(
      t->checkpoints_,
      CheckpointStore::Create({.dir = CheckpointsDir(o.out_dir), .keep_last = o.keep_checkpoints}));
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
    // Adapters are synchronised with the student.
    std::vector<torch::Tensor> params = t->model_->parameters();
    if (t->adapters_ != nullptr) {
      for (const torch::Tensor& p : t->adapters_->parameters()) params.push_back(p);
    }
    RETORT_ASSIGN_OR_RETURN(t->gradient_sync_,
                            o.communicator->CreateGradientSync(params, o.bucket_bytes));
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

absl::Status Trainer::Resume() {
  std::vector<std::string> warnings;
  RETORT_ASSIGN_OR_RETURN(std::optional<CheckpointStore::Checkpoint> latest,
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
  RETORT_ASSIGN_OR_RETURN(
      TrainingState loaded,
      LoadTrainingCheckpoint(path, *model_, *optimizer_, /*restore_rng=*/true, Adapters()));
  RETORT_RETURN_IF_ERROR(
      CheckResumable(path, loaded, state_.config, state_.teacher_weights_sha256));
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
    std::fprintf(stderr, "[%s] resuming from %s at step %lld\n", options_.label.c_str(),
                 latest->dir.c_str(), static_cast<long long>(state_.step));
  }
  return absl::OkStatus();
}

absl::Status Trainer::TrainStep(BatchPipeline::Prepared& prepared, bool* teacher_failed) {
  *teacher_failed = false;
  torch::Tensor teacher_log_probs;
  std::map<std::string, torch::Tensor> teacher_hidden;
  if (prepared.teacher.valid()) {
    const absl::Time t0 = absl::Now();
    const absl::StatusOr<TeacherClient::Targets>& answer = prepared.teacher.get();
    last_teacher_wait_ = absl::ToDoubleSeconds(absl::Now() - t0);
    teacher_wait_seconds_ += last_teacher_wait_;
    if (!answer.ok()) {
      *teacher_failed = true;
      return answer.status();
    }
    teacher_log_probs = answer->log_probs;
    teacher_hidden = answer->hidden;
  }
  // The pipeline drew the same batch from its own copy of the sampler.
  const std::vector<int64_t> indices = sampler_->Next();
  if (indices != prepared.indices) {
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
  // over the whole batch.
  const int64_t rows = prepared.inputs.size(0);
  const int64_t micro = options_.accumulation_steps;
  double total = 0, hard = 0, soft = 0, feature = 0;
  const std::vector<std::string> student_layers =
      adapters_ != nullptr ? adapters_->student_layers() : std::vector<std::string>();
  for (int64_t i = 0; i < micro; ++i) {
    const int64_t begin = i * rows / micro;
    const int64_t end = (i + 1) * rows / micro;
    auto rows_of = [&](const torch::Tensor& t) {
      return micro == 1 || !t.defined() ? t : t.slice(0, begin, end);
    };
    models::HiddenStates student_hidden;
    torch::Tensor output =
        adapters_ != nullptr
            ? model_->ForwardWithHidden(rows_of(prepared.inputs), student_layers, &student_hidden)
            : model_->forward(rows_of(prepared.inputs));
    LossTerms terms = DistillationLoss(output, rows_of(teacher_log_probs), rows_of(prepared.labels),
                                       options_.loss);
    torch::Tensor step_objective = terms.total;
    if (adapters_ != nullptr) {
      std::map<std::string, torch::Tensor> targets;
      for (const auto& [name, value] : teacher_hidden) targets[name] = rows_of(value);
      FeatureAdapters::Terms features = adapters_->Loss(student_hidden, targets);
      step_objective = step_objective + options_.features.weight * features.total;
      feature += static_cast<double>(end - begin) / static_cast<double>(rows) *
                 features.total.item<double>();
    }
    const double share = static_cast<double>(end - begin) / static_cast<double>(rows);
    torch::Tensor objective = micro == 1 ? step_objective : step_objective * share;
    // Only the last micro-batch's backward all-reduces; the others
    // accumulate into .grad locally.
    if (gradient_sync_ != nullptr && i == micro - 1) {
      RETORT_RETURN_IF_ERROR(gradient_sync_->PrepareForBackward(objective));
    }
    objective.backward();
    total += share * step_objective.item<double>();
    hard += share * terms.hard.item<double>();
    if (terms.soft.defined()) soft += share * terms.soft.item<double>();
  }
  if (options_.clip_grad_norm > 0) {
    std::vector<torch::Tensor> params = model_->parameters();
    if (adapters_ != nullptr) {
      for (const torch::Tensor& p : adapters_->parameters()) params.push_back(p);
    }
    torch::nn::utils::clip_grad_norm_(params, options_.clip_grad_norm);
  }
  optimizer_->step();
  if (adapters_ != nullptr) adapter_optimizer_->step();
  const double loss = total;
  if (!std::isfinite(loss)) {
    return absl::OutOfRangeError(
        absl::StrCat("the loss became ", loss, " at step ", state_.step,
                     "; training diverged: lower --lr or set --clip_grad_norm"));
  }
  ++state_.step;
  ++state_.epoch_steps;
  last_step_loss_ = loss;
  state_.epoch_loss_sum += loss;
  state_.epoch_hard_sum += hard;
  state_.epoch_soft_sum += soft;
  state_.epoch_feature_sum += feature;
  return absl::OkStatus();
}

std::string Trainer::RankFile() const {
  return world_size_ == 1 ? kTrainingFile : absl::StrCat("training-rank", rank_, ".pt");
}

absl::Status Trainer::CheckRanksAgree() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> sums;
  std::vector<torch::Tensor> params = model_->parameters();
  if (adapters_ != nullptr) {
    for (const torch::Tensor& p : adapters_->parameters()) params.push_back(p);
  }
  for (const torch::Tensor& p : params) {
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

absl::Status Trainer::WriteCheckpoint() {
  if (checkpointed_step_ == state_.step) return absl::OkStatus();
  // Rank 0 opens the staging directory, every rank writes its file (its own
  // generator state; model and optimizer are the same on all), rank 0
  // commits once all have written.
  Communicator* comm = options_.communicator.get();
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(CheckRanksAgree());
  std::unique_ptr<CheckpointStore::Pending> pending;
  if (Leader()) {
    RETORT_ASSIGN_OR_RETURN(pending, checkpoints_->Begin(state_.step));
  }
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(comm->Barrier());
  RETORT_RETURN_IF_ERROR(SaveTrainingCheckpoint(checkpoints_->StagingPath(state_.step, RankFile()),
                                                *model_, *optimizer_, state_, Adapters()));
  if (options_.crash_while_checkpointing_step > 0 &&
      state_.step == options_.crash_while_checkpointing_step) {
    std::fprintf(stderr, "[%s] crashing while writing the checkpoint of step %lld (testing)\n",
                 options_.label.c_str(), static_cast<long long>(state_.step));
    std::raise(SIGKILL);
  }
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(comm->Barrier());
  if (Leader()) {
    RETORT_RETURN_IF_ERROR(
        pending->Commit({{"step", state_.step},
                         {"epoch", sampler_->state().epoch},
                         {"world_size", world_size_},
                         {"teacher_weights_sha256", state_.teacher_weights_sha256},
                         {"config", state_.config}}));
  }
  if (comm != nullptr) RETORT_RETURN_IF_ERROR(comm->Barrier());
  checkpointed_step_ = state_.step;
  last_checkpoint_dir_ = absl::StrCat(CheckpointsDir(options_.out_dir), "/ckpt-",
                                      absl::StrFormat("%012d", state_.step));
  return absl::OkStatus();
}

absl::StatusOr<EvalResult> Trainer::EvaluateValidation() {
  if (world_size_ == 1) return Evaluate(*model_, *validation_);
  const int64_t n = validation_->size();
  RETORT_ASSIGN_OR_RETURN(
      EvalResult mine,
      EvaluateRange(*model_, *validation_, n * rank_ / world_size_, n * (rank_ + 1) / world_size_));
  torch::Tensor sums =
      torch::tensor({static_cast<double>(mine.examples), static_cast<double>(mine.correct),
                     mine.mean_loss * static_cast<double>(mine.examples)},
                    torch::kFloat64);
  RETORT_RETURN_IF_ERROR(options_.communicator->AllReduceMean({sums}));
  sums.mul_(world_size_);
  const auto v = sums.accessor<double, 1>();
  EvalResult all;
  all.examples = std::llround(v[0]);
  all.correct = std::llround(v[1]);
  all.mean_loss = all.examples > 0 ? v[2] / static_cast<double>(all.examples) : 0.0;
  return all;
}

absl::Status Trainer::EndEpoch(int64_t epoch, double epoch_seconds) {
  RETORT_ASSIGN_OR_RETURN(EvalResult validation, EvaluateValidation());
  state_.last_validation = validation.ToJson();
  const bool best = validation.accuracy() > state_.best_validation_accuracy;
  if (best) {
    state_.best_validation_accuracy = validation.accuracy();
    state_.best_epoch = epoch;
  }
  RETORT_ASSIGN_OR_RETURN(EpochMeans means, AggregateEpochMeans());
  const double samples_per_second =
      epoch_seconds > 0
          ? static_cast<double>(state_.epoch_steps * options_.batch_size) / epoch_seconds
          : 0.0;
  nlohmann::json record = {{"event", "epoch"},
                           {"epoch", epoch},
                           {"step", state_.step},
                           {"train_loss", means.loss},
                           {"train_hard_loss", means.hard},
                           {"validation", state_.last_validation},
                           {"best_validation_accuracy", state_.best_validation_accuracy},
                           {"learning_rate", optimizer_->param_groups()[0].options().get_lr()},
                           {"samples_per_second", samples_per_second},
                           {"train_seconds", state_.train_seconds}};
  if (teacher_ != nullptr) {
    record["train_soft_loss"] = means.soft;
    record["teacher_wait_seconds"] = teacher_wait_seconds_;
  }
  if (adapters_ != nullptr) record["train_feature_loss"] = means.feature;
  RETORT_RETURN_IF_ERROR(metrics_->Write(record));
  if (Leader())
    std::fprintf(stderr,
                 "[%s] epoch %lld/%lld | train loss %.4f | val acc %.4f (%lld errors)%s | "
                 "%.0f samples/s\n",
                 options_.label.c_str(), static_cast<long long>(epoch) + 1,
                 static_cast<long long>(options_.epochs), means.loss, validation.accuracy(),
                 static_cast<long long>(validation.errors()), best ? " best" : "",
                 samples_per_second);
  state_.epoch_loss_sum = state_.epoch_soft_sum = state_.epoch_hard_sum = 0;
  state_.epoch_feature_sum = 0;
  state_.epoch_steps = 0;
  RETORT_RETURN_IF_ERROR(WriteCheckpoint());
  if (best && Leader()) {
    RETORT_RETURN_IF_ERROR(
        SaveTrainingCheckpoint(BestPath(options_.out_dir), *model_, *optimizer_, state_));
  }
  return absl::OkStatus();
}

nlohmann::json TrainResult::ToJson() const {
  return {{"steps", steps},
          {"epochs", epochs},
          {"best_validation_accuracy", best_validation_accuracy},
          {"best_epoch", best_epoch},
          {"final_validation", final_validation.ToJson()},
          {"train_seconds", train_seconds},
          {"samples_per_second", samples_per_second},
          {"teacher_wait_seconds", teacher_wait_seconds},
          {"resumed_from_step", resumed_from_step},
          {"parameters_sha256", parameters_sha256},
          {"best_checkpoint", best_checkpoint},
          {"last_checkpoint", last_checkpoint}};
}

absl::StatusOr<Trainer::EpochMeans> Trainer::AggregateEpochMeans() {
  const double steps = static_cast<double>(std::max<int64_t>(state_.epoch_steps, 1));
  EpochMeans means{.loss = state_.epoch_loss_sum / steps,
                   .hard = state_.epoch_hard_sum / steps,
                   .soft = state_.epoch_soft_sum / steps,
                   .step_loss = last_step_loss_,
                   .teacher_wait_ms = 1e3 * last_teacher_wait_,
                   .feature = state_.epoch_feature_sum / steps};
  if (world_size_ == 1) return means;
  torch::Tensor values = torch::tensor(
      {means.loss, means.hard, means.soft, means.step_loss, means.teacher_wait_ms, means.feature},
      torch::kFloat64);
  RETORT_RETURN_IF_ERROR(options_.communicator->AllReduceMean({values}));
  const auto v = values.accessor<double, 1>();
  return EpochMeans{.loss = v[0],
                    .hard = v[1],
                    .soft = v[2],
                    .step_loss = v[3],
                    .teacher_wait_ms = v[4],
                    .feature = v[5]};
}

absl::StatusOr<TrainResult> Trainer::Run() {
  absl::StatusOr<TrainResult> result = RunSteps();
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

absl::StatusOr<TrainResult> Trainer::RunSteps() {
  const Clock& clock = *options_.clock;
  const int64_t start_step = state_.step;
  const int64_t batches = sampler_->batches_per_epoch();
  const int64_t end_step = options_.stop_after_steps > 0
                               ? std::min(options_.stop_after_steps, total_steps_)
                               : total_steps_;
  BatchPipeline pipeline(
      {.depth = options_.teacher_prefetch,
       .jitter_pixels = options_.jitter_pixels,
       .seed = options_.seed,
       .temperature = options_.loss.temperature,
       .ask_teacher = teacher_ != nullptr && (options_.loss.alpha > 0 || adapters_ != nullptr),
       .hidden_layers =
           adapters_ != nullptr ? adapters_->teacher_layers() : std::vector<std::string>()},
      train_, teacher_, *sampler_, state_.step, std::max(end_step, state_.step));
  ProgressLine progress({.label = absl::StrCat("[", options_.label, "]"),
                         .total_units = total_steps_,
                         .clock = options_.clock});
  model_->train();
  double work_seconds = 0;  // this process's optimizer time
  double epoch_seconds = 0;
  while (state_.step < end_step) {
    const int64_t epoch = sampler_->state().epoch;
    const absl::Time t0 = clock.Now();
    BatchPipeline::Prepared prepared;
    bool teacher_failed = false;
    absl::Status step = TorchCall("training step", [&] {
      prepared = pipeline.Next();
      return TrainStep(prepared, &teacher_failed);
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
              step.message(), "; ",
              saved.ok() ? absl::StrCat("training state of step ", state_.step, " is in ",
                                        last_checkpoint_dir_, ": continue with --resume=auto")
                         : absl::StrCat("and writing a checkpoint failed too: ", saved.message())));
    }
    state_.sampler = sampler_->state();
    const double dt = absl::ToDoubleSeconds(clock.Now() - t0);
    work_seconds += dt;
    epoch_seconds += dt;
    state_.train_seconds += dt;

    if (Leader() && progress.Due()) {
      const int64_t done = state_.step - start_step;
      std::string detail = absl::StrFormat(
          "epoch %d/%d loss %.4f", epoch + 1, options_.epochs,
          state_.epoch_loss_sum / static_cast<double>(std::max<int64_t>(state_.epoch_steps, 1)));
      if (adapters_ != nullptr) {
        absl::StrAppendFormat(&detail, " feature %.4f",
                              state_.epoch_feature_sum /
                                  static_cast<double>(std::max<int64_t>(state_.epoch_steps, 1)));
      }
      if (teacher_ != nullptr) {
        absl::StrAppendFormat(&detail, " teacher wait %.1f ms/step",
                              1e3 * teacher_wait_seconds_ / static_cast<double>(done));
      }
      progress.Update(state_.step, done * options_.batch_size, detail);
    }
    if (options_.log_every_steps > 0 && state_.step % options_.log_every_steps == 0) {
      RETORT_ASSIGN_OR_RETURN(EpochMeans means, AggregateEpochMeans());
      nlohmann::json line = {{"event", "step"},
                             {"step", state_.step},
                             {"epoch", epoch},
                             {"step_loss", means.step_loss},
                             {"loss", means.loss},
                             {"learning_rate", optimizer_->param_groups()[0].options().get_lr()}};
      if (teacher_ != nullptr) line["teacher_wait_ms"] = means.teacher_wait_ms;
      RETORT_RETURN_IF_ERROR(metrics_->Write(line));
    }
    if (state_.step % batches == 0) {
      progress.Finish();
      RETORT_RETURN_IF_ERROR(
          TorchCall("end of epoch", [&] { return EndEpoch(epoch, epoch_seconds); }));
      epoch_seconds = 0;
    } else if (options_.checkpoint_every_steps > 0 &&
               state_.step % options_.checkpoint_every_steps == 0) {
      RETORT_RETURN_IF_ERROR(WriteCheckpoint());
    }
  }
  progress.Finish();
  // Stopped early (--stop_after_steps): keep where it stopped.
  RETORT_RETURN_IF_ERROR(WriteCheckpoint());

  TrainResult result;
  result.steps = state_.step;
  result.epochs = state_.step / batches;
  result.best_validation_accuracy = state_.best_validation_accuracy;
  result.best_epoch = state_.best_epoch;
  RETORT_ASSIGN_OR_RETURN(result.final_validation, EvaluateValidation());
  result.train_seconds = state_.train_seconds;
  const int64_t samples = (state_.step - start_step) * options_.batch_size;
  result.samples_per_second = work_seconds > 0 ? static_cast<double>(samples) / work_seconds : 0;
  result.teacher_wait_seconds = teacher_wait_seconds_;
  result.resumed_from_step = start_step;
  result.parameters_sha256 = models::WeightsSha256(*model_);
  result.best_checkpoint = BestPath(options_.out_dir);
  result.last_checkpoint = last_checkpoint_dir_;
  if (Leader()) {
    RETORT_RETURN_IF_ERROR(
        WriteFileAtomically(options_.out_dir + "/result.json", result.ToJson().dump(2) + "\n"));
  }
  return result;
}

}  // namespace retort::trainer
