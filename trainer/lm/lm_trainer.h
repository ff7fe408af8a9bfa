// LmTrainer: trains a Llama-family language model on token sequences, from
// scratch on next-token cross-entropy or distilled from a teacher's
// per-token (top-k) distributions through a TeacherClient.
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
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "checkpoint/training_checkpoint.h"
#include "client/teacher_client.h"
#include "common/clock.h"
#include "data/dataset.h"
#include "models/causal_lm.h"
#include "models/llama.h"
#include "trainer/feature_matching.h"
#include "trainer/lm/lm_distillation_loss.h"
#include "trainer/lm/lm_evaluate.h"
#include "trainer/lm/lm_task.h"
#include "trainer/lm/on_policy.h"
#include "trainer/optimizer.h"
#include "trainer/training_loop.h"

namespace retort::trainer {

// A language-model run: the loop's options (steps, batches, checkpoints,
// ranks, ...; the language model's defaults below) and the task's.
struct LmTrainerOptions : TrainingLoopOptions {
  LmTrainerOptions() {
    steps = 1000;
    batch_size = 16;  // sequences per step (global: divided among the ranks)
    clip_grad_norm = 1.0;
    log_every_steps = 50;
    teacher_prefetch = 2;
    label = "lm";
  }
  models::LlamaConfig model;
  // A checkpoint directory that initialises the student; empty: fresh
  // weights from `seed`. A Llama checkpoint gives its layers
  // (LlamaFromLayers: `model` may have fewer layers, widths must match). A
  // sliced checkpoint (retort slice) is trained whole, as it is: `model`
  // must be its config and `init_layers` empty. Either way this is how a
  // pruned or sliced model is distilled back ("recovery").
  std::string init_from;
  std::vector<int64_t> init_layers;    // empty: spread evenly
  LmLossOptions loss;                  // alpha is forced to 0 without a teacher
  int64_t eval_sequences = 0;          // validation sequences per evaluation; 0: all
  torch::Device device = torch::kCPU;  // where the model and every step tensor live
  // The tokenizer of the data: copied into the exported model, and checked
  // against the teacher's fingerprint (a teacher with another tokenizer
  // speaks another language).
  std::string tokenizer_model;
  std::string tokenizer_sha256;
  // On-policy steps (trainer/lm/on_policy.h); off by default.
  OnPolicyOptions on_policy;

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
  std::string last_checkpoint;
  bool preempted = false;  // stopped by stop_requested, after a checkpoint
  nlohmann::json ToJson() const;
};

// A language-model run: an LmTask on the TrainingLoop, configured from
// LmTrainerOptions in one place.
class LmTrainer {
 public:
  // `train` and `validation` yield int64 inputs and labels [B, T]
  // (data::TokenSequenceDataset). `teacher` may be null. Errors:
  // INVALID_ARGUMENT for bad options or data that does not fit the model;
  // FAILED_PRECONDITION for a teacher of another vocabulary or tokenizer, or
  // out_dir holding checkpoints without resume/overwrite.
  static absl::StatusOr<std::unique_ptr<LmTrainer>> Create(
      LmTrainerOptions options, std::shared_ptr<const data::Dataset> train,
      std::shared_ptr<const data::Dataset> validation,
      std::shared_ptr<client::TeacherClient> teacher);

  // CANCELLED after the checkpoint when stopped at `stop_after_steps`; OK
  // with `preempted` set when stopped by `stop_requested`.
  absl::StatusOr<LmTrainResult> Run();
  models::CausalLm& model() { return task_->causal_lm(); }
  // The feature-matching adapters; null without feature matching.
  FeatureAdapters* adapters() { return loop_->adapters(); }
  int64_t step() const { return loop_->state().step; }

 private:
  LmTrainer() = default;

  std::shared_ptr<LmTask> task_;
  std::unique_ptr<TrainingLoop> loop_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_TRAINER_H_
