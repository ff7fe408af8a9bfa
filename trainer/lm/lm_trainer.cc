#include "trainer/lm/lm_trainer.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace retort::trainer {

absl::Status LmTrainerOptions::Validate() const {
  RETORT_RETURN_IF_ERROR(model.Validate());
  RETORT_RETURN_IF_ERROR(loss.Validate());
  if (epochs != 0) {
    return absl::InvalidArgumentError("language models train for --steps, not --epochs");
  }
  if (eval_sequences < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--eval_sequences must be >= 0 (0: all), got ", eval_sequences));
  }
  return TrainingLoopOptions::Validate();
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
                           {"skew", loss.skew},
                           {"js_beta", loss.js_beta}}},
                         {"steps", steps},
                         {"batch_size", batch_size},
                         {"seed", seed},
                         {"clip_grad_norm", clip_grad_norm}};
  if (features.enabled()) json["features"] = features.ToJson();
  if (on_policy.enabled()) {
    json["on_policy"] = {{"fraction", on_policy.fraction},
                         {"prompts", on_policy.prompts.size()},
                         {"prompt_tokens", on_policy.prompt_tokens},
                         {"rollout_tokens", on_policy.rollout_tokens},
                         {"rollout_temperature", on_policy.rollout_temperature},
                         {"rollout_top_k", on_policy.rollout_top_k},
                         {"rollout_top_p", on_policy.rollout_top_p},
                         {"loss", OnPolicyLossName(on_policy.loss)},
                         {"candidates", on_policy.candidates},
                         {"max_staleness", on_policy.max_staleness}};
  }
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
          {"model_dir", model_dir},
          {"last_checkpoint", last_checkpoint},
          {"preempted", preempted}};
}

absl::StatusOr<std::unique_ptr<LmTrainer>> LmTrainer::Create(
    LmTrainerOptions o, std::shared_ptr<const data::Dataset> train,
    std::shared_ptr<const data::Dataset> validation,
    std::shared_ptr<client::TeacherClient> teacher) {
  if (teacher == nullptr) o.loss.alpha = 0.0;
  RETORT_RETURN_IF_ERROR(o.Validate());
  std::unique_ptr<LmTrainer> t(new LmTrainer());
  RETORT_ASSIGN_OR_RETURN(t->task_, LmTask::Create({.model = o.model,
                                                    .init_from = o.init_from,
                                                    .init_layers = o.init_layers,
                                                    .loss = o.loss,
                                                    .seed = o.seed,
                                                    .eval_batch_size = o.batch_size,
                                                    .eval_sequences = o.eval_sequences,
                                                    .tokenizer_model = o.tokenizer_model,
                                                    .tokenizer_sha256 = o.tokenizer_sha256,
                                                    .device = o.device,
                                                    .on_policy = o.on_policy},
                                                   train, validation, std::move(teacher)));
  if (o.on_policy.enabled() && o.on_policy.max_staleness > 0 && o.teacher_prefetch < 1) {
    return absl::InvalidArgumentError(
        "--max_staleness=1 generates the next step's rollout ahead, which needs the next step "
        "prepared: --teacher_prefetch of at least 1");
  }
  TrainingLoopOptions loop = o;  // the loop's part
  loop.ask_teacher = o.loss.alpha > 0 || o.on_policy.enabled();
  loop.config = o.ToJson();
  loop.config["train_sequences"] = train->size();
  loop.config["sequence_length"] = train->example_shape()[0];
  RETORT_ASSIGN_OR_RETURN(t->loop_, TrainingLoop::Create(std::move(loop), t->task_));
  return t;
}

absl::StatusOr<LmTrainResult> LmTrainer::Run() {
  RETORT_ASSIGN_OR_RETURN(TrainingLoopResult run, loop_->Run());
  if (!run.completed && !run.preempted) {
    return absl::CancelledError(
        absl::StrCat("stopped after step ", run.steps, " as asked (--stop_after_steps)"));
  }
  LmTrainResult result;
  result.steps = run.steps;
  result.tokens = run.units;
  result.train_seconds = run.train_seconds;
  result.tokens_per_second = run.units_per_second;
  result.teacher_wait_seconds = run.teacher_wait_seconds;
  result.resumed_from_step = run.resumed_from_step;
  result.final_validation = task_->last_evaluation();
  result.parameters_sha256 = run.parameters_sha256;
  result.model_dir = run.task_result.is_object() ? run.task_result.value("model_dir", "") : "";
  result.last_checkpoint = run.last_checkpoint;
  result.preempted = run.preempted;
  return result;
}

}  // namespace retort::trainer
