#include "trainer/lm/lm_task.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/intra_op_threads.h"
#include "common/status_macros.h"
#include "distributed/communicator.h"
#include "models/checkpoint_file.h"
#include "models/llama.h"
#include "models/llama_checkpoint.h"
#include "models/sliced_llama.h"

namespace retort::trainer {
namespace {

struct LmBatch : TaskBatch {
  torch::Tensor inputs;                          // int64 [B, T]
  torch::Tensor labels;                          // int64 [B, T]
  client::TeacherClient::TargetsFuture teacher;  // valid when the teacher was asked
  client::TeacherClient::Targets targets;        // once AwaitTeacher returned
  teacher::TopKLogProbs top_k;                   // its log-probabilities in top-k form
  bool answered = false;
  // An on-policy step: prompts now, the rollout (inputs, labels, query ids)
  // in AwaitTeacher, from the weights the step starts from.
  bool on_policy = false;
  int64_t step = 0;
  std::vector<std::vector<int64_t>> prompts;
  torch::Tensor query_ids;  // int64 [B, L, 1 + candidates]
  int64_t rows() const override {
    return inputs.defined() ? inputs.size(0) : static_cast<int64_t>(prompts.size());
  }
};

// Rows [begin, end) of a per-position tensor of B * T rows, or of a
// per-sequence one of B rows.
torch::Tensor SequenceRows(const torch::Tensor& t, int64_t batch, int64_t length, int64_t begin,
                           int64_t end) {
  if (!t.defined()) return t;
  if (t.size(0) == batch) return t.slice(0, begin, end);
  return t.slice(0, begin * length, end * length);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LmTask>> LmTask::Create(
    Options o, std::shared_ptr<const data::Dataset> train,
    std::shared_ptr<const data::Dataset> validation,
    std::shared_ptr<client::TeacherClient> teacher) {
  if (teacher == nullptr) o.loss.alpha = 0.0;
  RETORT_RETURN_IF_ERROR(o.model.Validate());
  RETORT_RETURN_IF_ERROR(o.loss.Validate());
  RETORT_RETURN_IF_ERROR(CheckDevice(o.device));
  if (o.eval_batch_size < 1 || o.eval_sequences < 0) {
    return absl::InvalidArgumentError(
        "the evaluation batch must be at least 1 and --eval_sequences >= 0");
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
  if (teacher != nullptr) {
    RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, teacher->Fingerprint());
    if (fingerprint.num_classes() != o.model.vocab_size) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the teacher's vocabulary has ", fingerprint.num_classes(), " tokens but the student's ",
          o.model.vocab_size, "; distill with the tokenizer the teacher was trained with"));
    }
    if (!fingerprint.tokenizer_sha256().empty() && !o.tokenizer_sha256.empty() &&
        fingerprint.tokenizer_sha256() != o.tokenizer_sha256) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the teacher tokenizes differently from the data: the teacher's tokenizer has sha256 ",
          fingerprint.tokenizer_sha256(), ", the data's (", o.tokenizer_model, ") has sha256 ",
          o.tokenizer_sha256,
          "; prepare the data with the teacher's own file (retort data prepare "
          "--tokenizer=TEACHER_DIR/tokenizer.json or tokenizer.model)"));
    }
  }
  RETORT_RETURN_IF_ERROR(o.on_policy.Validate(o.model.vocab_size, o.model.max_position_embeddings,
                                              train->example_shape()[0]));
  if (o.on_policy.enabled() && teacher == nullptr) {
    return absl::InvalidArgumentError(
        "on-policy distillation needs a teacher to score the student's samples (--teachers or "
        "--teacher_checkpoint)");
  }
  std::unique_ptr<LmTask> t(new LmTask());
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
  t->model_->to(o.device);
  t->sequence_length_ = train->example_shape()[0];
  t->options_ = std::move(o);
  t->train_ = std::move(train);
  t->validation_ = std::move(validation);
  t->teacher_ = std::move(teacher);
  return t;
}

absl::StatusOr<v1::TeacherFingerprint> LmTask::TeacherFingerprint() {
  if (teacher_ == nullptr) return absl::FailedPreconditionError("this run has no teacher");
  return teacher_->Fingerprint();
}

std::unique_ptr<TaskBatch> LmTask::Prepare(const std::vector<int64_t>& indices, int64_t step,
                                           bool ask_teacher,
                                           const std::vector<std::string>& hidden_layers) {
  auto b = std::make_unique<LmBatch>();
  const OnPolicyOptions& on_policy = options_.on_policy;
  b->step = step;
  if (IsOnPolicyStep(on_policy, options_.seed, step)) {
    b->on_policy = true;
    if (!on_policy.prompts.empty()) {
      const int64_t n = static_cast<int64_t>(on_policy.prompts.size());
      for (int64_t index : indices) b->prompts.push_back(on_policy.prompts[index % n]);
    } else {
      const torch::Tensor prefixes =
          train_->GetBatch(indices).inputs.narrow(1, 0, on_policy.prompt_tokens).contiguous();
      const int64_t* p = prefixes.data_ptr<int64_t>();
      for (int64_t i = 0; i < prefixes.size(0); ++i) {
        b->prompts.emplace_back(p + i * on_policy.prompt_tokens,
                                p + (i + 1) * on_policy.prompt_tokens);
      }
    }
    if (on_policy.max_staleness > 0) upcoming_prompts_[step] = b->prompts;
    return b;
  }
  data::Batch batch = train_->GetBatch(indices);
  b->inputs = std::move(batch.inputs);
  b->labels = std::move(batch.labels);
  if (ask_teacher && teacher_ != nullptr) {
    b->teacher = teacher_->SubmitTargets({.inputs = b->inputs,
                                          .temperature = options_.loss.temperature,
                                          .hidden_layers = hidden_layers,
                                          .query_ids = {}});
  }
  // After the teacher has its (host) copy.
  b->inputs = b->inputs.to(options_.device);
  b->labels = b->labels.to(options_.device);
  return b;
}

absl::StatusOr<Rollout> LmTask::RolloutFor(int64_t step,
                                           const std::vector<std::vector<int64_t>>& prompts) {
  if (options_.on_policy.max_staleness == 0 || queued_.step != step) {
    // Strictly on-policy, or nothing queued (the run's first on-policy
    // step): from the weights this step starts from.
    last_used_.step = step;
    last_used_.rollout =
        std::async(std::launch::deferred, [&] {
          return MakeRollout(*model_, prompts, options_.on_policy, options_.loss.ignore_index,
                             RolloutSeed(options_.seed, step));
        }).share();
  } else {
    last_used_ = std::move(queued_);
    queued_ = StepRollout();
  }
  return last_used_.rollout.get();
}

void LmTask::QueueNextRollout(int64_t step) {
  if (options_.on_policy.max_staleness == 0) return;
  auto next = upcoming_prompts_.find(step + 1);
  if (next == upcoming_prompts_.end()) return;
  std::vector<std::vector<int64_t>> prompts = std::move(next->second);
  upcoming_prompts_.erase(upcoming_prompts_.begin(), std::next(next));
  // Reads the weights while this step's forward and backward passes run;
  // BeforeWeightUpdate waits for it before they change.
  queued_.step = step + 1;
  queued_.rollout =
      std::async(std::launch::async, [this, prompts = std::move(prompts),
                                      seed = RolloutSeed(options_.seed, step + 1)] {
        InheritIntraOpThreads();
        return MakeRollout(*model_, prompts, options_.on_policy, options_.loss.ignore_index, seed);
      }).share();
}

absl::Status LmTask::BeforeWeightUpdate() {
  if (queued_.rollout.valid()) queued_.rollout.wait();
  return absl::OkStatus();
}

absl::Status LmTask::AwaitTeacher(TaskBatch& batch) {
  auto& b = static_cast<LmBatch&>(batch);
  if (b.on_policy && !b.teacher.valid()) {
    const absl::Time start = absl::Now();
    absl::StatusOr<Rollout> made = RolloutFor(b.step, b.prompts);
    // The next step's rollout generates while this one is scored and trains.
    QueueNextRollout(b.step);
    if (!made.ok()) return made.status();
    Rollout rollout = *made;
    const absl::Time generated = absl::Now();
    b.inputs = rollout.inputs;
    b.labels = rollout.labels;
    b.query_ids = rollout.query_ids;
    b.teacher = teacher_->SubmitTargets({.inputs = b.inputs,
                                         .temperature = options_.loss.temperature,
                                         .hidden_layers = {},
                                         .query_ids = b.query_ids});
    const absl::StatusOr<client::TeacherClient::Targets>& scored = b.teacher.get();
    ++on_policy_steps_;
    rollout_seconds_ += absl::ToDoubleSeconds(generated - start);
    scoring_seconds_ += absl::ToDoubleSeconds(absl::Now() - generated);
    if (scored.ok() && !scored->query_log_probs.defined()) {
      return absl::FailedPreconditionError(
          "the teacher answered without log-probabilities at the student's tokens; on-policy "
          "training needs teachers that answer query ids (retort teacher serve of this version)");
    }
    b.inputs = b.inputs.to(options_.device);
    b.labels = b.labels.to(options_.device);
  }
  if (!b.on_policy) QueueNextRollout(b.step);
  if (!b.teacher.valid()) return absl::OkStatus();
  const absl::StatusOr<client::TeacherClient::Targets>& answer = b.teacher.get();
  if (!answer.ok()) return answer.status();
  b.targets = *answer;
  b.top_k = answer->TopK();
  b.top_k.indices = b.top_k.indices.to(options_.device);
  b.top_k.values = b.top_k.values.to(options_.device);
  b.top_k.tail_log_mass = b.top_k.tail_log_mass.to(options_.device);
  for (auto& [name, value] : b.targets.hidden) value = value.to(options_.device);
  if (b.targets.query_log_probs.defined()) {
    b.targets.query_log_probs = b.targets.query_log_probs.to(options_.device);
    b.query_ids = b.query_ids.to(options_.device);
  }
  b.answered = true;
  return absl::OkStatus();
}

absl::StatusOr<TaskLoss> LmTask::Loss(TaskBatch& batch, int64_t begin, int64_t end,
                                      FeatureAdapters* adapters, double feature_weight) {
  auto& b = static_cast<LmBatch&>(batch);
  const int64_t rows = b.rows();
  const int64_t length = b.inputs.size(1);
  const bool whole = begin == 0 && end == rows;
  const torch::Tensor inputs = whole ? b.inputs : b.inputs.slice(0, begin, end);
  const torch::Tensor labels = whole ? b.labels : b.labels.slice(0, begin, end);
  std::optional<teacher::TopKLogProbs> targets;
  if (b.answered) {
    const teacher::TopKLogProbs& all = b.top_k;
    targets = whole
                  ? all
                  : teacher::TopKLogProbs{
                        .indices = SequenceRows(all.indices, rows, length, begin, end),
                        .values = SequenceRows(all.values, rows, length, begin, end),
                        .tail_log_mass = SequenceRows(all.tail_log_mass, rows, length, begin, end)};
  }
  if (b.on_policy) {
    if (adapters != nullptr) {
      return absl::FailedPreconditionError(
          "feature matching is not available on on-policy steps (the teacher is not asked for "
          "hidden states of rollouts); leave --feature_layers out or --on_policy_fraction=0");
    }
    const torch::Tensor logits = model_->forward(inputs);
    LmLossTerms terms = OnPolicyDistillationLoss(
        logits, labels, whole ? b.query_ids : b.query_ids.slice(0, begin, end),
        SequenceRows(b.targets.query_log_probs, rows, length, begin, end),
        targets ? &*targets : nullptr, options_.on_policy.loss, options_.loss);
    return TaskLoss{
        .objective = terms.total, .hard = terms.hard, .soft = terms.soft, .feature = {}};
  }
  models::HiddenStates student_hidden;
  const torch::Tensor logits =
      adapters != nullptr
          ? model_->ForwardWithHidden(inputs, adapters->student_layers(), &student_hidden)
          : model_->forward(inputs);
  LmLossTerms terms =
      LmDistillationLoss(logits, targets ? &*targets : nullptr, labels, options_.loss);
  TaskLoss loss{.objective = terms.total, .hard = terms.hard, .soft = terms.soft, .feature = {}};
  if (adapters != nullptr) {
    std::map<std::string, torch::Tensor> hidden;
    for (const auto& [name, value] : b.targets.hidden) {
      hidden[name] = whole ? value : SequenceRows(value, rows, length, begin, end);
    }
    FeatureAdapters::Terms f =
        adapters->Loss(student_hidden, hidden, labels != options_.loss.ignore_index);
    loss.objective = loss.objective + feature_weight * f.total;
    loss.feature = f.total;
  }
  return loss;
}

absl::StatusOr<TaskEvaluation> LmTask::Evaluate(distributed::Communicator* communicator, int rank,
                                                int world_size) {
  RETORT_ASSIGN_OR_RETURN(LmEvalResult mine, EvaluateLm(*model_, *validation_,
                                                        {.batch_size = options_.eval_batch_size,
                                                         .max_sequences = options_.eval_sequences,
                                                         .rank = rank,
                                                         .world_size = world_size},
                                                        teacher_.get()));
  LmEvalResult all = mine;
  if (world_size > 1) {
    const double tokens = static_cast<double>(mine.tokens);
    torch::Tensor sums =
        torch::tensor({static_cast<double>(mine.sequences), tokens, mine.loss * tokens,
                       mine.top1_accuracy * tokens, std::max(mine.teacher_agreement, 0.0) * tokens},
                      torch::kFloat64);
    RETORT_RETURN_IF_ERROR(communicator->AllReduceMean({sums}));
    sums.mul_(world_size);
    const auto v = sums.accessor<double, 1>();
    all.sequences = std::llround(v[0]);
    all.tokens = std::llround(v[1]);
    const double n = std::max(v[1], 1.0);
    all.loss = v[2] / n;
    all.perplexity = std::exp(all.loss);
    all.top1_accuracy = v[3] / n;
    all.teacher_agreement = teacher_ != nullptr ? v[4] / n : -1;
  }
  last_evaluation_ = all;
  std::string summary = absl::StrFormat("val perplexity %.3f (loss %.4f), top-1 %.3f",
                                        all.perplexity, all.loss, all.top1_accuracy);
  if (all.teacher_agreement >= 0) {
    absl::StrAppendFormat(&summary, ", teacher agreement %.3f", all.teacher_agreement);
  }
  nlohmann::json json = all.ToJson();
  if (options_.on_policy.enabled()) {
    json["on_policy"] = {{"steps_this_process", on_policy_steps_},
                         {"rollout_seconds", rollout_seconds_},
                         {"scoring_seconds", scoring_seconds_}};
  }
  return TaskEvaluation{.json = json, .score = -all.loss, .summary = summary};
}

namespace {

constexpr char kRolloutStep[] = "on_policy_rollout/step";
constexpr char kRolloutInputs[] = "on_policy_rollout/inputs";
constexpr char kRolloutLabels[] = "on_policy_rollout/labels";
constexpr char kRolloutQueryIds[] = "on_policy_rollout/query_ids";
constexpr char kRolloutGenerated[] = "on_policy_rollout/generated";

}  // namespace

absl::Status LmTask::SaveCheckpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                                    const checkpoint::TrainingState& state,
                                    const checkpoint::AdapterState& adapters) {
  // The rollout of the step a resume starts at, generated from earlier
  // weights than the checkpoint's: kept so the resume trains on it too.
  const StepRollout* ahead = nullptr;
  if (queued_.step == state.step && queued_.rollout.valid()) ahead = &queued_;
  if (last_used_.step == state.step && last_used_.rollout.valid()) ahead = &last_used_;
  if (options_.on_policy.max_staleness == 0 || ahead == nullptr) {
    return checkpoint::SaveTrainingCheckpoint(path, *model_, model_->ShapeJson(), optimizer, state,
                                              adapters);
  }
  const absl::StatusOr<Rollout>& rollout = ahead->rollout.get();
  if (!rollout.ok()) return rollout.status();
  checkpoint::TrainingState with_rollout = state;
  with_rollout.task_tensors[kRolloutStep] = torch::tensor(ahead->step, torch::kInt64);
  with_rollout.task_tensors[kRolloutInputs] = rollout->inputs;
  with_rollout.task_tensors[kRolloutLabels] = rollout->labels;
  with_rollout.task_tensors[kRolloutQueryIds] = rollout->query_ids;
  with_rollout.task_tensors[kRolloutGenerated] = torch::tensor(rollout->generated, torch::kInt64);
  return checkpoint::SaveTrainingCheckpoint(path, *model_, model_->ShapeJson(), optimizer,
                                            with_rollout, adapters);
}

absl::StatusOr<checkpoint::TrainingState> LmTask::LoadCheckpoint(
    const std::string& path, torch::optim::Optimizer& optimizer,
    const checkpoint::AdapterState& adapters) {
  RETORT_ASSIGN_OR_RETURN(
      checkpoint::TrainingState state,
      checkpoint::LoadTrainingCheckpoint(path, *model_, model_->ShapeJson(), optimizer,
                                         /*restore_rng=*/true, adapters));
  const auto& t = state.task_tensors;
  if (t.count(kRolloutStep) > 0) {
    for (const char* key : {kRolloutInputs, kRolloutLabels, kRolloutQueryIds, kRolloutGenerated}) {
      if (t.count(key) == 0) {
        return absl::DataLossError(absl::StrCat(path, " holds a queued rollout without ", key,
                                                "; resume from an earlier checkpoint"));
      }
    }
    Rollout rollout{.inputs = t.at(kRolloutInputs),
                    .labels = t.at(kRolloutLabels),
                    .query_ids = t.at(kRolloutQueryIds),
                    .generated = t.at(kRolloutGenerated).item<int64_t>()};
    queued_.step = t.at(kRolloutStep).item<int64_t>();
    std::promise<absl::StatusOr<Rollout>> ready;
    ready.set_value(std::move(rollout));
    queued_.rollout = ready.get_future().share();
  }
  return state;
}

absl::StatusOr<nlohmann::json> LmTask::Export(const std::string& out_dir) {
  const std::string dir = out_dir + "/model";
  RETORT_RETURN_IF_ERROR(model_->Save(dir, options_.tokenizer_model));
  return nlohmann::json{{"model_dir", dir}};
}

}  // namespace retort::trainer
