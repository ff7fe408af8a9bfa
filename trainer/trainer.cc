#include "trainer/trainer.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "data/augment.h"

namespace retort::trainer {
namespace {

std::string LastPath(const std::string& dir) { return dir + "/last.pt"; }
std::string BestPath(const std::string& dir) { return dir + "/best.pt"; }

// Keys of the stored configuration whose values differ from `now`.
std::vector<std::string> DifferingKeys(const nlohmann::json& stored, const nlohmann::json& now) {
  std::vector<std::string> keys;
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (!stored.contains(it.key()) || stored[it.key()] != it.value()) keys.push_back(it.key());
  }
  return keys;
}

}  // namespace

absl::Status TrainerOptions::Validate() const {
  RETORT_RETURN_IF_ERROR(model.Validate());
  RETORT_RETURN_IF_ERROR(optimizer.Validate());
  RETORT_RETURN_IF_ERROR(loss.Validate());
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
  return absl::OkStatus();
}

nlohmann::json TrainerOptions::ToJson() const {
  return {{"model", model.ToJson()},
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

  std::unique_ptr<Trainer> t(new Trainer());
  t->options_ = std::move(options);
  t->train_ = std::move(train);
  t->validation_ = std::move(validation);
  t->teacher_ = std::move(teacher);
  const TrainerOptions& o = t->options_;

  RETORT_ASSIGN_OR_RETURN(t->model_, models::CreateClassifier(o.model, o.seed));
  RETORT_ASSIGN_OR_RETURN(t->optimizer_, CreateOptimizer(o.optimizer, t->model_->parameters()));
  RETORT_ASSIGN_OR_RETURN(
      data::ShuffleSampler sampler,
      data::ShuffleSampler::Create(
          {.dataset_size = t->train_->size(), .batch_size = o.batch_size, .seed = o.seed}));
  t->sampler_ = std::make_unique<data::ShuffleSampler>(std::move(sampler));
  t->total_steps_ = o.epochs * t->sampler_->batches_per_epoch();

  t->state_.config = o.ToJson();
  t->state_.config["train_examples"] = t->train_->size();
  t->state_.config["validation_examples"] = t->validation_->size();
  if (t->teacher_ != nullptr) {
    RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, t->teacher_->Fingerprint());
    t->state_.teacher_weights_sha256 = fingerprint.weights_sha256();
  }

  RETORT_RETURN_IF_ERROR(MakeDirs(o.out_dir));
  const std::string last = LastPath(o.out_dir);
  if (PathExists(last)) {
    if (o.resume) {
      RETORT_RETURN_IF_ERROR(t->Resume(last));
    } else if (!o.overwrite) {
      return absl::FailedPreconditionError(absl::StrCat(
          o.out_dir, " already holds a checkpoint (", last,
          "); pass --resume to continue it, --overwrite to start afresh, or choose another "
          "--out_dir"));
    }
  }
  if (t->state_.step == 0) {
    // A fresh run truncates any old metrics so the file describes this run.
    std::remove((o.out_dir + "/metrics.jsonl").c_str());
  }
  RETORT_ASSIGN_OR_RETURN(t->metrics_, MetricsWriter::Create(o.out_dir + "/metrics.jsonl"));
  return t;
}

absl::Status Trainer::Resume(const std::string& path) {
  // The model was built (and the generator seeded) exactly as in the original
  // run; the checkpoint overwrites weights, optimizer state and generator.
  RETORT_ASSIGN_OR_RETURN(TrainingState loaded, LoadTrainingCheckpoint(path, *model_, *optimizer_));
  std::vector<std::string> differing = DifferingKeys(loaded.config, state_.config);
  if (!differing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot resume ", path, ": this run's settings differ from the checkpoint's in: ",
        absl::StrJoin(differing, ", "), "; resume with the original flags or use --overwrite"));
  }
  if (loaded.teacher_weights_sha256 != state_.teacher_weights_sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot resume ", path, ": it was distilled from teacher weights ",
        loaded.teacher_weights_sha256.empty() ? "(none)"
                                              : loaded.teacher_weights_sha256.substr(0, 12),
        " but this run's teacher is ",
        state_.teacher_weights_sha256.empty() ? "(none)"
                                              : state_.teacher_weights_sha256.substr(0, 12)));
  }
  RETORT_RETURN_IF_ERROR(sampler_->Restore(loaded.sampler));
  if (loaded.step !=
      sampler_->state().epoch * sampler_->batches_per_epoch() + sampler_->state().next_batch) {
    return absl::DataLossError(
        absl::StrCat(path, ": step ", loaded.step, " disagrees with the sampler position"));
  }
  state_ = std::move(loaded);
  std::fprintf(stderr, "[%s] resuming from %s at step %lld\n", options_.label.c_str(), path.c_str(),
               static_cast<long long>(state_.step));
  return absl::OkStatus();
}

absl::Status Trainer::TrainStep(const std::vector<int64_t>& indices) {
  data::Batch batch = train_->GetBatch(indices);
  torch::Tensor inputs = data::JitterImages(batch.inputs, options_.jitter_pixels,
                                            at::detail::getDefaultCPUGenerator());
  torch::Tensor teacher_log_probs;
  if (teacher_ != nullptr && options_.loss.alpha > 0) {
    RETORT_ASSIGN_OR_RETURN(teacher_log_probs,
                            teacher_->LogProbs(inputs, options_.loss.temperature));
  }
  SetLearningRate(*optimizer_, LearningRateAt(options_.optimizer, state_.step, total_steps_));
  optimizer_->zero_grad();
  LossTerms terms =
      DistillationLoss(model_->forward(inputs), teacher_log_probs, batch.labels, options_.loss);
  terms.total.backward();
  if (options_.clip_grad_norm > 0) {
    torch::nn::utils::clip_grad_norm_(model_->parameters(), options_.clip_grad_norm);
  }
  optimizer_->step();
  const double loss = terms.total.item<double>();
  if (!std::isfinite(loss)) {
    return absl::OutOfRangeError(
        absl::StrCat("the loss became ", loss, " at step ", state_.step,
                     "; training diverged: lower --lr or set --clip_grad_norm"));
  }
  ++state_.step;
  ++epoch_steps_;
  epoch_loss_sum_ += loss;
  epoch_hard_sum_ += terms.hard.item<double>();
  if (terms.soft.defined()) epoch_soft_sum_ += terms.soft.item<double>();
  return absl::OkStatus();
}

absl::Status Trainer::WriteLast() {
  return SaveTrainingCheckpoint(LastPath(options_.out_dir), *model_, *optimizer_, state_);
}

absl::Status Trainer::EndEpoch(int64_t epoch, double epoch_seconds) {
  RETORT_ASSIGN_OR_RETURN(EvalResult validation, Evaluate(*model_, *validation_));
  state_.last_validation = validation.ToJson();
  const bool best = validation.accuracy() > state_.best_validation_accuracy;
  if (best) {
    state_.best_validation_accuracy = validation.accuracy();
    state_.best_epoch = epoch;
  }
  RETORT_RETURN_IF_ERROR(WriteLast());
  if (best) {
    RETORT_RETURN_IF_ERROR(
        SaveTrainingCheckpoint(BestPath(options_.out_dir), *model_, *optimizer_, state_));
  }
  const double steps = static_cast<double>(std::max<int64_t>(epoch_steps_, 1));
  const double samples_per_second =
      epoch_seconds > 0 ? static_cast<double>(epoch_steps_ * options_.batch_size) / epoch_seconds
                        : 0.0;
  nlohmann::json record = {{"event", "epoch"},
                           {"epoch", epoch},
                           {"step", state_.step},
                           {"train_loss", epoch_loss_sum_ / steps},
                           {"train_hard_loss", epoch_hard_sum_ / steps},
                           {"validation", state_.last_validation},
                           {"best_validation_accuracy", state_.best_validation_accuracy},
                           {"learning_rate", optimizer_->param_groups()[0].options().get_lr()},
                           {"samples_per_second", samples_per_second},
                           {"train_seconds", state_.train_seconds}};
  if (teacher_ != nullptr) record["train_soft_loss"] = epoch_soft_sum_ / steps;
  RETORT_RETURN_IF_ERROR(metrics_->Write(record));
  std::fprintf(stderr,
               "[%s] epoch %lld/%lld | train loss %.4f | val acc %.4f (%lld errors)%s | "
               "%.0f samples/s\n",
               options_.label.c_str(), static_cast<long long>(epoch) + 1,
               static_cast<long long>(options_.epochs), epoch_loss_sum_ / steps,
               validation.accuracy(), static_cast<long long>(validation.errors()),
               best ? " best" : "", samples_per_second);
  epoch_loss_sum_ = epoch_soft_sum_ = epoch_hard_sum_ = 0;
  epoch_steps_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> Trainer::Run() {
  const Clock& clock = *options_.clock;
  const int64_t start_step = state_.step;
  const int64_t batches = sampler_->batches_per_epoch();
  ProgressLine progress({.label = absl::StrCat("[", options_.label, "]"),
                         .total_units = total_steps_,
                         .clock = options_.clock});
  model_->train();
  double work_seconds = 0;  // this process's optimizer time
  double epoch_seconds = 0;
  while (state_.step < total_steps_) {
    const int64_t epoch = sampler_->state().epoch;
    const absl::Time t0 = clock.Now();
    absl::Status step = TorchCall("training step", [&] { return TrainStep(sampler_->Next()); });
    if (!step.ok()) {
      progress.Finish();
      return step;
    }
    state_.sampler = sampler_->state();
    const double dt = absl::ToDoubleSeconds(clock.Now() - t0);
    work_seconds += dt;
    epoch_seconds += dt;
    state_.train_seconds += dt;

    if (progress.Due()) {
      progress.Update(state_.step, (state_.step - start_step) * options_.batch_size,
                      absl::StrFormat("epoch %d/%d loss %.4f", epoch + 1, options_.epochs,
                                      epoch_loss_sum_ / std::max<int64_t>(epoch_steps_, 1)));
    }
    if (options_.log_every_steps > 0 && state_.step % options_.log_every_steps == 0) {
      RETORT_RETURN_IF_ERROR(
          metrics_->Write({{"event", "step"},
                           {"step", state_.step},
                           {"epoch", epoch},
                           {"loss", epoch_loss_sum_ / std::max<int64_t>(epoch_steps_, 1)},
                           {"learning_rate", optimizer_->param_groups()[0].options().get_lr()}}));
    }
    const bool epoch_done = state_.step % batches == 0;
    if (epoch_done) {
      progress.Finish();
      RETORT_RETURN_IF_ERROR(
          TorchCall("end of epoch", [&] { return EndEpoch(epoch, epoch_seconds); }));
      epoch_seconds = 0;
    } else if (options_.checkpoint_every_steps > 0 &&
               state_.step % options_.checkpoint_every_steps == 0) {
      RETORT_RETURN_IF_ERROR(WriteLast());
    }
    if (options_.stop_after_steps > 0 && state_.step >= options_.stop_after_steps &&
        state_.step < total_steps_) {
      progress.Finish();
      if (!epoch_done) RETORT_RETURN_IF_ERROR(WriteLast());
      break;
    }
  }
  progress.Finish();

  TrainResult result;
  result.steps = state_.step;
  result.epochs = state_.step / batches;
  result.best_validation_accuracy = state_.best_validation_accuracy;
  result.best_epoch = state_.best_epoch;
  RETORT_ASSIGN_OR_RETURN(result.final_validation, Evaluate(*model_, *validation_));
  result.train_seconds = state_.train_seconds;
  const int64_t samples = (state_.step - start_step) * options_.batch_size;
  result.samples_per_second = work_seconds > 0 ? static_cast<double>(samples) / work_seconds : 0;
  result.best_checkpoint = BestPath(options_.out_dir);
  result.last_checkpoint = LastPath(options_.out_dir);
  return result;
}

}  // namespace retort::trainer
