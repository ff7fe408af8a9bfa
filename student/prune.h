// Pruning a trained student.
//
// Unstructured: each weight matrix loses the lowest-scoring `sparsity` share
// of its entries (set to zero; the tensors keep their shape). Scores:
//   magnitude   |W_ij|, compared within the whole matrix;
//   activation  |W_ij| * ||X_j||, where ||X_j|| is the L2 norm of input
//               column j over calibration data, compared within each
//               output row (Wanda, Sun et al. 2023).
// Structured: whole units go, and the model really shrinks (a smaller dense
// model):
//   a Llama's MLP neurons (intermediate_size; gate and up rows, down
//     columns). Score ||down[:, j]|| * ||H_j|| (activation: H the neuron's
//     output on calibration data) or ||gate[j]|| * ||up[j]|| * ||down[:, j]||
//     (magnitude);
//   a Llama's attention heads, as whole key/value groups (one key/value
//     head and the query heads that share it; each head with grouped-query
//     attention off). The heads keep their width, so the pruned config sets
//     head_dim explicitly. Score of a group: the norm over its o_proj
//     columns c of ||o_proj[:, c]|| * ||A_c|| (activation: A the attention
//     output on calibration data), or ||v rows|| * ||o_proj columns||
//     (magnitude). Every family: Qwen2's q/k/v biases go with their rows,
//     Qwen3's q/k norms (one scale over head_dim) stay as they are;
//   an MLP classifier's hidden units, ||in[j]|| * ||out[:, j]|| (magnitude)
//     or ||out[:, j]|| * ||H_j|| (activation);
//   a CNN's channels (both convolutions) and fully connected units, the
//     same scores with whole filters: ||conv[k]|| * ||next[:, k]||, or
//     ||next[:, k]|| * ||H_k|| over the channel's map.
// Every block (layer) keeps the same number of units, rounded to a multiple
// of `multiple_of` (heads: at least one group).
//
// Calibration statistics come from CollectLlamaInputNorms /
// CollectClassifierInputNorms: a map from weight name to the per-column
// input norms of that weight.
#ifndef RETORT_STUDENT_PRUNE_H_
#define RETORT_STUDENT_PRUNE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "data/dataset.h"
#include "models/causal_lm.h"
#include "models/classifier.h"
#include "models/llama.h"

namespace retort::student {

enum class PruneScore { kMagnitude, kActivation };

// "magnitude" or "activation".
absl::StatusOr<PruneScore> ParsePruneScore(const std::string& name);

// Weight name ("model.layers.0.mlp.up_proj.weight", "fc1.weight") -> float64
// [in] L2 norms of its input columns over the calibration data.
using InputNorms = std::map<std::string, torch::Tensor>;

// Runs the first `sequences` sequences of `dataset` (inputs int64 [B, T])
// through `model` (a Llama or a sliced one) in eval mode, recording every
// projection's inputs.
absl::StatusOr<InputNorms> CollectLlamaInputNorms(models::CausalLm& model,
                                                  const data::Dataset& dataset, int64_t sequences,
                                                  int64_t batch_size = 16);
// The same for a classifier over `examples` examples. MLP: fc0's input is
// the flattened image, fc<i>'s the ReLU output of fc<i-1>. CNN: per input
// channel for the convolutions (conv1.weight [image channels], conv2.weight
// [conv1 channels], over every position), per column for fc and classifier.
absl::StatusOr<InputNorms> CollectClassifierInputNorms(models::Classifier& model,
                                                       const data::Dataset& dataset,
                                                       int64_t examples);

struct PruneReport {
  int64_t weights = 0;  // entries of the matrices considered
  int64_t zeroed = 0;   // of which now zero
  int64_t parameters_before = 0;
  int64_t parameters_after = 0;
};

// Zeroes `sparsity` (in [0, 1)) of every projection matrix (Llama: attention
// and MLP; the embeddings and output head are kept) or every Linear / Conv2d
// weight (classifiers). `norms` is required for kActivation.
absl::StatusOr<PruneReport> PruneLlamaUnstructured(double sparsity, PruneScore score,
                                                   const InputNorms* norms,
                                                   models::CausalLm* model);
absl::StatusOr<PruneReport> PruneClassifierUnstructured(double sparsity, PruneScore score,
                                                        const InputNorms* norms,
                                                        models::Classifier* model);

// A new model with `fraction` (in [0, 1)) of each block's MLP neurons
// removed. The source must not be quantized.
absl::StatusOr<std::shared_ptr<models::LlamaModel>> PruneLlamaMlpNeurons(
    models::LlamaModel& model, double fraction, PruneScore score, const InputNorms* norms,
    int64_t multiple_of, PruneReport* report);
// A new model with `fraction` (in [0, 1)) of each block's attention heads
// removed, in whole key/value groups (at least one group is kept). `norms`
// is required for kActivation. The source must not be quantized.
absl::StatusOr<std::shared_ptr<models::LlamaModel>> PruneLlamaAttentionHeads(
    models::LlamaModel& model, double fraction, PruneScore score, const InputNorms* norms,
    PruneReport* report);
// A new classifier with `fraction` of each hidden layer's units removed (an
// MLP's hidden units; a CNN's conv1 and conv2 channels and fc units).
absl::StatusOr<std::shared_ptr<models::Classifier>> PruneClassifierNeurons(
    models::Classifier& model, double fraction, PruneScore score, const InputNorms* norms,
    int64_t multiple_of, PruneReport* report);

}  // namespace retort::student

#endif  // RETORT_STUDENT_PRUNE_H_
