// LmTask: causal language modelling as a task of the training loop: a
// Llama-family model (or a sliced one, models::CausalLm) trained on
// next-token cross-entropy, or distilled from a teacher's per-token top-k
// log-probabilities with the tail mass through a TeacherClient
// (LmDistillationLoss).
//
// A row of a batch is one token sequence; its units are tokens. Evaluation
// is validation perplexity, top-1 accuracy and, with a teacher, agreement
// with the teacher's most likely token; each rank evaluates its share. The
// export at the end is the model in Hugging Face's layout (config.json,
// model.safetensors, tokenizer.model) under <out_dir>/model, or a sliced
// model's directory.
#ifndef RETORT_TRAINER_LM_TASK_H_
#define RETORT_TRAINER_LM_TASK_H_

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/teacher_client.h"
#include "data/dataset.h"
#include "models/causal_lm.h"
#include "models/llama_config.h"
#include "trainer/lm/lm_distillation_loss.h"
#include "trainer/lm/lm_evaluate.h"
#include "trainer/lm/on_policy.h"
#include "trainer/task.h"

namespace retort::trainer {

class LmTask : public Task {
 public:
  struct Options {
    models::LlamaConfig model;
    // A checkpoint directory that initialises the student; empty: fresh
    // weights from `seed`. A Llama checkpoint gives its layers
    // (LlamaFromLayers: `model` may have fewer layers, widths must match). A
    // sliced checkpoint (retort slice) is trained whole: `model` must be its
    // config and `init_layers` empty.
    std::string init_from;
    std::vector<int64_t> init_layers;  // empty: spread evenly
    LmLossOptions loss;                // alpha is forced to 0 without a teacher
    uint64_t seed = 1;
    int64_t eval_batch_size = 16;
    int64_t eval_sequences = 0;  // validation sequences per evaluation; 0: all
    // The tokenizer of the data: copied into the exported model, and checked
    // against the teacher's fingerprint.
    std::string tokenizer_model;
    std::string tokenizer_sha256;
    torch::Device device = torch::kCPU;  // where the model and every step tensor live
    // On-policy steps (trainer/lm/on_policy.h); off unless fraction > 0,
    // which needs a teacher that answers query ids (a live one, not a
    // cache).
    OnPolicyOptions on_policy;
  };

  // `train` and `validation` yield int64 inputs and labels [B, T]
  // (data::TokenSequenceDataset). `teacher` may be null. Errors:
  // INVALID_ARGUMENT for data that does not fit the model or an --init_from
  // of another shape; FAILED_PRECONDITION for a teacher of another
  // vocabulary or tokenizer.
  static absl::StatusOr<std::unique_ptr<LmTask>> Create(
      Options options, std::shared_ptr<const data::Dataset> train,
      std::shared_ptr<const data::Dataset> validation,
      std::shared_ptr<client::TeacherClient> teacher);

  torch::Device device() const override { return options_.device; }
  const char* unit() const override { return "tokens"; }
  int64_t units_per_row() const override { return sequence_length_; }
  int64_t train_size() const override { return train_->size(); }
  torch::nn::Module& model() override { return *model_; }
  std::vector<models::HiddenLayer> HiddenLayers() override { return model_->HiddenLayers(); }
  bool has_teacher() const override { return teacher_ != nullptr; }
  absl::StatusOr<v1::TeacherFingerprint> TeacherFingerprint() override;
  std::unique_ptr<TaskBatch> Prepare(const std::vector<int64_t>& indices, int64_t step,
                                     bool ask_teacher,
                                     const std::vector<std::string>& hidden_layers) override;
  absl::Status AwaitTeacher(TaskBatch& batch) override;
  absl::StatusOr<TaskLoss> Loss(TaskBatch& batch, int64_t begin, int64_t end,
                                FeatureAdapters* adapters, double feature_weight) override;
  absl::Status BeforeWeightUpdate() override;
  absl::StatusOr<TaskEvaluation> Evaluate(distributed::Communicator* communicator, int rank,
                                          int world_size) override;
  absl::Status SaveCheckpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                              const checkpoint::TrainingState& state,
                              const checkpoint::AdapterState& adapters) override;
  absl::StatusOr<checkpoint::TrainingState> LoadCheckpoint(
      const std::string& path, torch::optim::Optimizer& optimizer,
      const checkpoint::AdapterState& adapters) override;
  absl::StatusOr<nlohmann::json> Export(const std::string& out_dir) override;

  models::CausalLm& causal_lm() { return *model_; }
  const Options& options() const { return options_; }
  const LmEvalResult& last_evaluation() const { return last_evaluation_; }
  int64_t sequence_length() const { return sequence_length_; }

 private:
  LmTask() = default;

  Options options_;
  std::shared_ptr<const data::Dataset> train_, validation_;
  std::shared_ptr<client::TeacherClient> teacher_;
  std::shared_ptr<models::CausalLm> model_;
  int64_t sequence_length_ = 0;
  LmEvalResult last_evaluation_;
  // On-policy steps this process ran, and the seconds their rollouts
  // (generation) and scoring (the teacher's answer) took: evaluations
  // report them (metrics.jsonl) so a step's split can be read off.
  int64_t on_policy_steps_ = 0;
  double rollout_seconds_ = 0, scoring_seconds_ = 0;

  // --max_staleness=1: the rollout of step s + 1 is generated from the
  // weights step s starts from, on another thread while step s trains (it
  // only reads the weights; BeforeWeightUpdate waits for it). Step 0's, and
  // the first of a run that has none queued, come from the current weights.
  // A checkpoint of step s holds step s's rollout, so a resumed run trains
  // on the same rollouts as one that never stopped.
  struct StepRollout {
    int64_t step = -1;
    std::shared_future<absl::StatusOr<Rollout>> rollout;
  };
  // The rollout of `step`: queued, restored or generated now.
  absl::StatusOr<Rollout> RolloutFor(int64_t step,
                                     const std::vector<std::vector<int64_t>>& prompts);
  // Starts the rollout of `step + 1` beside step `step`, when that step is
  // on-policy and prepared.
  void QueueNextRollout(int64_t step);
  std::map<int64_t, std::vector<std::vector<int64_t>>> upcoming_prompts_;
  StepRollout queued_;     // generating on another thread
  StepRollout last_used_;  // the rollout the current step trains on
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_TASK_H_
