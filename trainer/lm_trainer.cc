#include "trainer/lm_trainer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/checkpoint_file.h"
#include "models/llama_checkpoint.h"
#include "models/sliced_llama.h"

namespace retort::trainer {
namespace {

constexpr char kCheckpointFile[] = "training.pt";

std::string CheckpointsDir(const std::string& dir) { return dir + "/checkpoints"; }

}  // namespace

absl::Status LmTrainerOptions::Validate() const {
  RETORT_RETURN_IF_ERROR(model.Validate());
  RETORT_RETURN_IF_ERROR(optimizer.Validate());
  RETORT_RETURN_IF_ERROR(loss.Validate());
  RETORT_RETURN_IF_ERROR(features.Validate());
  if (steps < 1)
    return absl::InvalidArgumentError(absl::StrCat("--steps must be at least 1, got ", steps));
  if (batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--batch_size must be at least 1, got ", batch_size));
  }
  if (!(clip_grad_norm >= 0)) return absl::InvalidArgumentError("--clip_grad_norm must be >= 0");
  if (eval_every_steps < 0 || eval_sequences < 0 || checkpoint_every_steps < 0 ||
      teacher_prefetch < 0 || log_every_steps < 0 || stop_after_steps < 0) {
    return absl::InvalidArgumentError(
        "--eval_every, --eval_sequences, --checkpoint_every, --teacher_prefetch and "
        "--log_every must not be negative");
  }
  if (keep_checkpoints < 2)
    return absl::InvalidArgumentError("--keep_checkpoints must be at least 2");
  if (out_dir.empty()) return absl::InvalidArgumentError("--out_dir is required");
  return absl::OkStatus();
}

nlohmann::json LmTrainerOptions::ToJson() const {
  nlohmann::json json = {{"model", model.ToHuggingFaceJson()},
                         {"init_from", init_from},
                         {"init_layers", init_layers},
                         {"optimizer",
                          {{"kind", optimizer.kind},
                           {"learning_rate", optimizer.learning_rate},
                           {"weight_decay", optimizer.weight_decay},
                           {"warmup_fraction", optimizer.warmup_fraction},
                           {"min_lr_ratio", optimizer.min_lr_ratio}}},
                         {"loss",
                          {{"temperature", loss.temperature},
                           {"alpha", loss.alpha},
                           {"divergence", DivergenceName(loss.divergence)},
                           {"skew", loss.skew}}},
                         {"steps", steps},
                         {"batch_size", batch_size},
                         {"seed", seed},
                         {"clip_grad_norm", clip_grad_norm}};
  if (features.enabled()) json["features"] = features.ToJson();
  return json;
}

nlohmann::json LmTrainResult::ToJson() const {
  return {{"steps", steps},
          {"tokens", tokens},
          {"train_seconds", train_seconds},
          {"tokens_per_second", tokens_per_second},
          {"teacher_wait_seconds", teacher_wait_seconds},
          {"resumed_from_step", resumed_from_step},
          {"final_validation", final_validation.ToJson()},
          {"parameters_sha256", parameters_sha256},
          {"model_dir", model_dir}};
}

absl::StatusOr<std::unique_ptr<LmTrainer>> LmTrainer::Create(
    LmTrainerOptions o, std::shared_ptr<const data::Dataset> train,
    std::shared_ptr<const data::Dataset> validation, std::shared_ptr<LmTeacherClient> teacher) {
  if (teacher == nullptr) o.loss.alpha = 0.0;
  RETORT_RETURN_IF_ERROR(o.Validate());
  if (teacher == nullptr && o.features.enabled()) {
    return absl::InvalidArgumentError(
        "--feature_weight > 0 matches the teacher's hidden layers, but there is no teacher");
  }
  if (train == nullptr || validation == nullptr) {
    return absl::InvalidArgumentError("training and validation data are required");
  }
  for (const auto* d : {train.get(), validation.get()}) {
    if (d->example_shape().size() != 1 || d->num_classes() > o.model.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the token data (vocabulary ", d->num_classes(), ") does not fit the model (",
          o.model.Describe(), "); set the model's vocab to the tokenizer's"));
    }
    if (d->example_shape()[0] > o.model.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequences of ", d->example_shape()[0], " tokens exceed the model's ",
          o.model.max_position_embeddings, " positions; raise ctx or lower --seq_len"));
    }
  }
  auto t = std::unique_ptr<LmTrainer>(new LmTrainer());
  t->train_ = std::move(train);
  t->validation_ = std::move(validation);
  t->teacher_ = std::move(teacher);
  if (t->teacher_ != nullptr) {
    RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, t->teacher_->Fingerprint());
    if (fingerprint.num_classes() != o.model.vocab_size) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the teacher's vocabulary has ", fingerprint.num_classes(), " tokens but the student's ",
          o.model.vocab_size, "; distill with the tokenizer the teacher was trained with"));
    }
    if (!fingerprint.tokenizer_sha256().empty() && !o.tokenizer_sha256.empty() &&
        fingerprint.tokenizer_sha256() != o.tokenizer_sha256) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the teacher's tokenizer (sha256 ", fingerprint.tokenizer_sha256().substr(0, 12),
          ") is not the data's (", o.tokenizer_sha256.substr(0, 12),
          "); prepare the data with the teacher's tokenizer.model"));
    }
    t->state_.teacher_weights_sha256 = fingerprint.weights_sha256();
  }
  torch::manual_seed(o.seed);
  if (o.init_from.empty()) {
    t->model_ = std::make_shared<models::LlamaModel>(o.model);
  } else if (models::IsSlicedLlamaCheckpoint(o.init_from)) {
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::SlicedLlamaModel> sliced,
                            models::LoadSlicedLlama(o.init_from));
    if (sliced->config() != o.model || !o.init_layers.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(o.init_from, " is a sliced model (", sliced->config().Describe(), ", width ",
                       sliced->width(), "); it trains whole: leave --model and --init_layers out"));
    }
    t->model_ = std::move(sliced);
  } else {
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::LlamaModel> source,
                            models::LoadLlamaCheckpoint(o.init_from));
    RETORT_ASSIGN_OR_RETURN(t->model_, models::LlamaFromLayers(*source, o.model, o.init_layers));
  }
  t->model_->train();
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
  }
  RETORT_ASSIGN_OR_RETURN(
      data::ShuffleSampler sampler,
      data::ShuffleSampler::Create(
          {.dataset_size = t->train_->size(), .batch_size = o.batch_size, .seed = o.seed}));
  t->sampler_ = std::make_unique<data::ShuffleSampler>(std::move(sampler));
  t->tokens_per_step_ = o.batch_size * t->train_->example_shape()[0];
  t->state_.config = o.ToJson();
  t->state_.config["train_sequences"] = t->train_->size();
  t->state_.config["sequence_length"] = t->train_->example_shape()[0];
  if (t->adapters_ != nullptr) t->state_.config["feature_pairs"] = feature_pairs;

  RETORT_RETURN_IF_ERROR(MakeDirs(o.out_dir));
  if (o.overwrite && !o.resume) {
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
  t->options_ = std::move(o);
  if (t->options_.resume) {
    RETORT_RETURN_IF_ERROR(t->Resume());
  } else if (!complete.empty() && !t->options_.overwrite) {
    return absl::FailedPreconditionError(absl::StrCat(
        t->options_.out_dir, " already holds checkpoints (the newest of step ", complete.back(),
        "); pass --resume=auto to continue, --overwrite to start afresh, or choose another "
        "--out_dir"));
  }
  const std::string metrics = t->options_.out_dir + "/metrics.jsonl";
  if (t->state_.step == 0) {
    std::remove(metrics.c_str());
  } else {
    RETORT_RETURN_IF_ERROR(DropRecordsAfterStep(metrics, t->state_.step));
  }
  RETORT_ASSIGN_OR_RETURN(t->metrics_, MetricsWriter::Create(metrics));
  return t;
}

absl::Status LmTrainer::Resume() {
  std::vector<std::string> warnings;
  RETORT_ASSIGN_OR_RETURN(std::optional<CheckpointStore::Checkpoint> latest,
                          checkpoints_->Latest(&warnings));
  for (const std::string& w : warnings) {
    std::fprintf(stderr, "[%s] warning: %s\n", options_.label.c_str(), w.c_str());
  }
  if (!latest.has_value()) {
    std::fprintf(stderr, "[%s] no complete checkpoint in %s; starting afresh\n",
                 options_.label.c_str(), CheckpointsDir(options_.out_dir).c_str());
    return absl::OkStatus();
  }
  const std::string path = latest->dir + "/" + kCheckpointFile;
  RETORT_ASSIGN_OR_RETURN(TrainingState loaded,
                          LoadTrainingCheckpoint(path, *model_, model_->ShapeJson(), *optimizer_,
                                                 /*restore_rng=*/true, Adapters()));
  RETORT_RETURN_IF_ERROR(
      CheckResumable(path, loaded, state_.config, state_.teacher_weights_sha256));
  if (loaded.step != latest->step) {
    return absl::DataLossError(absl::StrCat(path, ": step ", loaded.step,
                                            " disagrees with its manifest's ", latest->step));
  }
  RETORT_RETURN_IF_ERROR(sampler_->Restore(loaded.sampler));
  state_ = std::move(loaded);
  checkpointed_step_ = state_.step;
  last_checkpoint_dir_ = latest->dir;
  std::fprintf(stderr, "[%s] resumed from %s (step %lld)\n", options_.label.c_str(),
               latest->dir.c_str(), static_cast<long long>(state_.step));
  return absl::OkStatus();
}

void LmTrainer::Prefetch() {
  const int64_t remaining = options_.steps - state_.step;
  while (static_cast<int64_t>(prefetched_.size()) <
         std::min<int64_t>(std::max<int64_t>(options_.teacher_prefetch, 1), remaining)) {
    Prefetched p;
    p.before = sampler_->state();
    p.batch = train_->GetBatch(sampler_->Next());
    if (teacher_ != nullptr) {
      p.teacher = teacher_->SubmitTargets(
          p.batch.inputs, options_.loss.temperature,
          adapters_ != nullptr ? adapters_->teacher_layers() : std::vector<std::string>());
    }
    prefetched_.push_back(std::move(p));
  }
}

absl::Status LmTrainer::WriteCheckpoint() {
  if (checkpointed_step_ == state_.step) return absl::OkStatus();
  // The sampler state of the first batch not yet trained: prefetched batches
  // are drawn again after a resume.
  TrainingState saved = state_;
  saved.sampler = prefetched_.empty() ? sampler_->state() : prefetched_.front().before;
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointStore::Pending> pending,
                          checkpoints_->Begin(state_.step));
  RETORT_RETURN_IF_ERROR(SaveTrainingCheckpoint(pending->Path(kCheckpointFile), *model_,
                                                model_->ShapeJson(), *optimizer_, saved,
                                                Adapters()));
  RETORT_RETURN_IF_ERROR(pending->Commit({{"step", state_.step}, {"label", options_.label}}));
  checkpointed_step_ = state_.step;
  last_checkpoint_dir_ =
      absl::StrFormat("%s/ckpt-%012d", CheckpointsDir(options_.out_dir), state_.step);
  return absl::OkStatus();
}

absl::StatusOr<LmEvalResult> LmTrainer::Evaluate() {
  return EvaluateLm(*model_, *validation_,
                    {.batch_size = options_.batch_size, .max_sequences = options_.eval_sequences},
                    teacher_.get());
}

absl::StatusOr<LmTrainResult> LmTrainer::Run() {
  LmTrainResult result;
  result.resumed_from_step = state_.step;
  ProgressLine progress({.label = absl::StrCat("[", options_.label, "]"),
                         .total_units = options_.steps,
                         .clock = options_.clock,
                         .rate_unit = "tokens"});
  double run_seconds = 0, teacher_wait = 0;
  int64_t run_tokens = 0;
  double last_loss = 0;
  while (state_.step < options_.steps) {
    Prefetch();
    Prefetched p = std::move(prefetched_.front());
    prefetched_.pop_front();
    const absl::Time start = options_.clock->Now();
    std::optional<teacher::TopKLogProbs> targets;
    std::map<std::string, torch::Tensor> teacher_hidden;
    if (teacher_ != nullptr) {
      const absl::StatusOr<LmTeacherClient::Targets>& answer = p.teacher.get();
      if (!answer.ok()) {
        prefetched_.push_front(std::move(p));
        absl::Status saved = WriteCheckpoint();
        return absl::Status(
            answer.status().code(),
            absl::StrCat("teacher failed at step ", state_.step, ": ", answer.status().message(),
                         saved.ok() ? absl::StrCat("; checkpoint of step ", state_.step,
                                                   " written, continue with --resume=auto")
                                    : absl::StrCat("; checkpoint failed too: ", saved.message())));
      }
      targets = answer->log_probs;
      teacher_hidden = answer->hidden;
    }
    const absl::Time teacher_ready = options_.clock->Now();
    teacher_wait += absl::ToDoubleSeconds(teacher_ready - start);
    const double lr = LearningRateAt(options_.optimizer, state_.step, options_.steps);
    double feature = 0;
    absl::StatusOr<LmLossTerms> terms = TorchCall("training step", [&] {
      SetLearningRate(*optimizer_, lr);
      optimizer_->zero_grad();
      models::HiddenStates student_hidden;
      const torch::Tensor logits =
          adapters_ != nullptr ? model_->ForwardWithHidden(
                                     p.batch.inputs, adapters_->student_layers(), &student_hidden)
                               : model_->forward(p.batch.inputs);
      LmLossTerms t =
          LmDistillationLoss(logits, targets ? &*targets : nullptr, p.batch.labels, options_.loss);
      std::vector<torch::Tensor> params = model_->parameters();
      if (adapters_ != nullptr) {
        SetLearningRate(*adapter_optimizer_, lr);
        adapter_optimizer_->zero_grad();
        FeatureAdapters::Terms f = adapters_->Loss(student_hidden, teacher_hidden,
                                                   p.batch.labels != options_.loss.ignore_index);
        feature = f.total.item<double>();
        t.total = t.total + options_.features.weight * f.total;
        for (const torch::Tensor& a : adapters_->parameters()) params.push_back(a);
      }
      t.total.backward();
      if (options_.clip_grad_norm > 0) {
        torch::nn::utils::clip_grad_norm_(params, options_.clip_grad_norm);
      }
      optimizer_->step();
      if (adapters_ != nullptr) adapter_optimizer_->step();
      return t;
    });
    if (!terms.ok()) return terms.status();
    const double step_seconds = absl::ToDoubleSeconds(options_.clock->Now() - teacher_ready);
    run_seconds += step_seconds;
    state_.train_seconds += step_seconds;
    run_tokens += tokens_per_step_;
    ++state_.step;
    last_loss = terms->total.item<double>();
    if (!std::isfinite(last_loss)) {
      return absl::InternalError(absl::StrCat("the loss is ", last_loss, " at step ", state_.step,
                                              "; lower the learning rate"));
    }
    const double hard = terms->hard.item<double>();
    const double soft = terms->soft.defined() ? terms->soft.item<double>() : 0.0;
    const double rate = run_seconds > 0 ? run_tokens / run_seconds : 0;
    if (options_.log_every_steps > 0 && state_.step % options_.log_every_steps == 0) {
      nlohmann::json line = {{"step", state_.step},
                             {"loss", last_loss},
                             {"hard", hard},
                             {"soft", soft},
                             {"lr", lr},
                             {"tokens", state_.step * tokens_per_step_},
                             {"tokens_per_second", rate}};
      if (adapters_ != nullptr) line["feature"] = feature;
      RETORT_RETURN_IF_ERROR(metrics_->Write(line));
    }
    if (progress.Due() || state_.step == options_.steps) {
      progress.Update(state_.step, run_tokens,
                      absl::StrFormat("loss %.3f (ce %.3f)", last_loss, hard),
                      state_.step == options_.steps);
    }
    if (options_.eval_every_steps > 0 && state_.step % options_.eval_every_steps == 0 &&
        state_.step < options_.steps) {
      RETORT_ASSIGN_OR_RETURN(LmEvalResult eval, Evaluate());
      nlohmann::json record = eval.ToJson();
      record["step"] = state_.step;
      record["split"] = "validation";
      RETORT_RETURN_IF_ERROR(metrics_->Write(record));
      state_.last_validation = eval.ToJson();
    }
    if (options_.checkpoint_every_steps > 0 && state_.step % options_.checkpoint_every_steps == 0) {
      RETORT_RETURN_IF_ERROR(WriteCheckpoint());
    }
    if (options_.stop_after_steps > 0 && state_.step >= options_.stop_after_steps &&
        state_.step < options_.steps) {
      RETORT_RETURN_IF_ERROR(WriteCheckpoint());
      progress.Finish();
      return absl::CancelledError(
          absl::StrCat("stopped after step ", state_.step, " as asked (--stop_after_steps)"));
    }
  }
  progress.Finish();
  prefetched_.clear();
  RETORT_RETURN_IF_ERROR(WriteCheckpoint());
  RETORT_ASSIGN_OR_RETURN(result.final_validation, Evaluate());
  nlohmann::json record = result.final_validation.ToJson();
  record["step"] = state_.step;
  record["split"] = "validation";
  RETORT_RETURN_IF_ERROR(metrics_->Write(record));
  result.steps = state_.step;
  result.tokens = state_.step * tokens_per_step_;
  result.train_seconds = state_.train_seconds;
  result.tokens_per_second = run_seconds > 0 ? run_tokens / run_seconds : 0;
  result.teacher_wait_seconds = teacher_wait;
  result.parameters_sha256 = models::WeightsSha256(*model_);
  result.model_dir = options_.out_dir + "/model";
  RETORT_RETURN_IF_ERROR(model_->Save(result.model_dir, options_.tokenizer_model));
  RETORT_RETURN_IF_ERROR(
      WriteFileAtomically(options_.out_dir + "/result.json", result.ToJson().dump(2) + "\n"));
  return result;
}

}  // namespace retort::trainer
