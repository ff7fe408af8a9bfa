// LmTrainer: trains a Llama-family language model on token sequences, from
// scratch on next-token cross-entropy or distilled from a teacher's
// per-token (top-k) distributions through an LmTeacherClient.
//
// Files in `out_dir`:
//   checkpoints/ckpt-<step>/  training checkpoints (CheckpointStore, atomic,
//                  the newest `keep_checkpoints` kept) every
//                  `checkpoint_every_steps`, at the end and when stopped
//                  early; `resume` continues from the newest exactly (same
//                  batches, same parameters bit for bit, given a
//                  deterministic teacher)
//   model/         the final model in Hugging Face's layout (config.json,
//                  model.safetensors, tokenizer.model), or a sliced model's
//                  directory when a sliced one was trained; feature
//                  adapters, if any, live only in the training checkpoints
//   metrics.jsonl  one JSON object per logged step and per evaluation
//   result.json    the LmTrainResult of the last Run
//
// Teacher answers for the next `teacher_prefetch` steps are requested while
// a step trains. Not thread-safe: one thread calls Run().
#ifndef RETORT_TRAINER_LM_TRAINER_H_
#define RETORT_TRAINER_LM_TRAINER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/metrics_writer.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "models/causal_lm.h"
#include "models/llama.h"
#include "trainer/checkpoint_store.h"
#include "trainer/feature_matching.h"
#include "trainer/lm_distillation_loss.h"
#include "trainer/lm_evaluate.h"
#include "trainer/lm_teacher_client.h"
#include "trainer/optimizer.h"
#include "trainer/training_checkpoint.h"

namespace retort::trainer {

struct LmTrainerOptions {
  models::LlamaConfig model;
  // A checkpoint directory that initialises the student; empty: fresh
  // weights from `seed`. A Llama checkpoint gives its layers
  // (LlamaFromLayers: `model` may have fewer layers, widths must match). A
  // sliced checkpoint (retort slice) is trained whole, as it is: `model`
  // must be its config and `init_layers` empty. Either way this is how a
  // pruned or sliced model is distilled back ("recovery").
  std::string init_from;
  std::vector<int64_t> init_layers;  // empty: spread evenly
  OptimizerOptions optimizer;
  LmLossOptions loss;  // alpha is forced to 0 without a teacher
  // Feature matching of residual streams through adapters (needs a teacher).
  FeatureMatchOptions features;
  int64_t steps = 1000;
  int64_t batch_size = 16;  // sequences per step
  uint64_t seed = 1;
  double clip_grad_norm = 1.0;   // 0 disables clipping
  int64_t eval_every_steps = 0;  // 0: only at the end
  int64_t eval_sequences = 0;    // validation sequences per evaluation; 0: all
  std::string out_dir;
  bool resume = false;
  bool overwrite = false;
  int64_t checkpoint_every_steps = 0;  // 0: only at the end (and when stopped early)
  int keep_checkpoints = 3;
  int64_t teacher_prefetch = 2;
  int64_t log_every_steps = 50;
  int64_t stop_after_steps = 0;  // testing: stop (after a checkpoint) once this many are done
  // The tokenizer of the data: copied into the exported model, and checked
  // against the teacher's fingerprint (a teacher with another tokenizer
  // speaks another language).
  std::string tokenizer_model;
  std::string tokenizer_sha256;
  std::string label = "lm";
  const Clock* clock = Clock::Real();

  absl::Status Validate() const;
  // Settings that determine the course of training; a resumed run must match.
  nlohmann::json ToJson() const;
};

struct LmTrainResult {
  int64_t steps = 0;
  int64_t tokens = 0;  // trained this run and before it (resumes included)
  double train_seconds = 0;
  double tokens_per_second = 0;  // of the training work of this process
  double teacher_wait_seconds = 0;
  int64_t resumed_from_step = 0;
  LmEvalResult final_validation;
  std::string parameters_sha256;
  std::string model_dir;
  nlohmann::json ToJson() const;
};

class LmTrainer {
 public:
  // `train` and `validation` yield int64 inputs and labels [B, T]
  // (data::TokenSequenceDataset). `teacher` may be null. Errors:
  // INVALID_ARGUMENT for bad options or data that does not fit the model;
  // FAILED_PRECONDITION for a teacher of another vocabulary or tokenizer, or
  // out_dir holding checkpoints without resume/overwrite.
  static absl::StatusOr<std::unique_ptr<LmTrainer>> Create(
      LmTrainerOptions options, std::shared_ptr<const data::Dataset> train,
      std::shared_ptr<const data::Dataset> validation, std::shared_ptr<LmTeacherClient> teacher);

  absl::StatusOr<LmTrainResult> Run();
  models::CausalLm& model() { return *model_; }
  // The feature-matching adapters; null without feature matching.
  FeatureAdapters* adapters() { return adapters_.get(); }
  int64_t step() const { return state_.step; }

 private:
  struct Prefetched {
    data::SamplerState before;  // the sampler's state before this batch was drawn
    data::Batch batch;
    LmTeacherClient::TargetsFuture teacher;
  };

  LmTrainer() = default;
  absl::Status Resume();
  void Prefetch();
  absl::Status WriteCheckpoint();
  absl::StatusOr<LmEvalResult> Evaluate();
  AdapterState Adapters() { return {adapters_.get(), adapter_optimizer_.get()}; }

  LmTrainerOptions options_;
  std::shared_ptr<const data::Dataset> train_, validation_;
  std::shared_ptr<LmTeacherClient> teacher_;
  std::shared_ptr<models::CausalLm> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<FeatureAdapters> adapters_;  // null without feature matching
  std::unique_ptr<torch::optim::Optimizer> adapter_optimizer_;
  std::unique_ptr<data::ShuffleSampler> sampler_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::deque<Prefetched> prefetched_;
  TrainingState state_;
  int64_t tokens_per_step_ = 0;
  int64_t checkpointed_step_ = -1;
  std::string last_checkpoint_dir_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_TRAINER_H_
