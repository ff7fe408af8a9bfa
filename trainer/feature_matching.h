// Feature matching through assistant adapters (hint layers, as in FitNets):
// the student's hidden activation at a chosen layer goes through a small
// learned adapter that maps it to the width of a chosen teacher layer, and a
// loss pulls the two together. The objective becomes
//
//   loss = distillation loss + weight * sum_p w_p * L_p(adapter_p(s_p), t_p)
//
// with L_p the mean squared error or the cosine distance (1 - cos, per
// example or token). Adapters train with the student (their own optimizer,
// same schedule), live in training checkpoints (to resume), and are never
// part of the student: best.pt and exported models hold no adapter tensors.
//
// Layer names are those of models::Classifier::HiddenLayers (fc0, conv1, ...)
// and models::LlamaModel::HiddenLayers (embed, block.<i>, final_norm); the
// teacher's are the hidden layers its fingerprint lists.
#ifndef RETORT_TRAINER_FEATURE_MATCHING_H_
#define RETORT_TRAINER_FEATURE_MATCHING_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "models/hidden_layer.h"
#include "retort/v1/teacher.pb.h"
#include "trainer/optimizer.h"

namespace retort::trainer {

enum class FeatureLoss { kMse, kCosine };

struct FeatureMatchOptions {
  // The weight of the whole feature term; 0 turns feature matching off.
  double weight = 0;
  // Which layers to pair (the --match flag): comma-separated "S:T" or
  // "S:T:W" entries, where S is "s<i>" (the student's i-th hidden layer,
  // counting from 0 in network order) or a student layer name, T likewise
  // "t<j>" or a teacher layer name, and W the pair's weight (default 1). For
  // a transformer, s<i> is the residual stream after i blocks (s0 is the
  // embeddings). Empty: the uniform default (see ResolveLayerMapping).
  std::string match;
  FeatureLoss loss = FeatureLoss::kMse;
  // Adapters are linear maps; with `nonlinear`, Linear-GELU-Linear.
  bool nonlinear = false;

  bool enabled() const { return weight > 0; }
  // INVALID_ARGUMENT for a negative or non-finite weight.
  absl::Status Validate() const;
  nlohmann::json ToJson() const;
  // "mse" or "cosine".
  static absl::StatusOr<FeatureLoss> ParseLoss(const std::string& name);
  // "linear" or "mlp" (Linear-GELU-Linear): the value of `nonlinear`.
  static absl::StatusOr<bool> ParseAdapter(const std::string& name);
};

struct LayerPair {
  std::string student;
  std::string teacher;
  double weight = 1;
  std::vector<int64_t> student_shape;  // one example's (or token's) activation
  std::vector<int64_t> teacher_shape;
  nlohmann::json ToJson() const;
};

// The hidden layers a teacher's fingerprint exposes.
std::vector<models::HiddenLayer> TeacherHiddenLayers(const v1::TeacherFingerprint& fingerprint);

// Resolves a --match value against the student's and teacher's hidden
// layers. An empty `match` pairs the intermediate layers uniformly: the
// candidates are every hidden layer except a transformer's "embed" and
// "final_norm"; with n student and m teacher candidates, student candidate i
// (1-based) goes to teacher candidate ceil(i * m / n), so the last layers meet
// and the rest spread evenly. INVALID_ARGUMENT, listing what exists, for a
// layer either side lacks, a malformed entry, a repeated pair, or a teacher
// that exposes no layers.
absl::StatusOr<std::vector<LayerPair>> ResolveLayerMapping(
    const std::string& match, const std::vector<models::HiddenLayer>& student,
    const std::vector<models::HiddenLayer>& teacher);

// One adapter per layer pair, mapping a student activation onto the shape
// of the teacher's:
//   [d_s] -> [d_t]                      Linear (applied per token for
//                                       transformers: [B, T, d_s])
//   [C_s, H, W] -> [C_t, H', W']        adaptive average pooling to H' x W'
//                                       (when they differ), then a 1x1
//                                       convolution
//   [C_s, H, W] -> [d_t]                global average pooling, then Linear
// A vector layer cannot be mapped onto a feature map (INVALID_ARGUMENT).
class FeatureAdapters : public torch::nn::Module {
 public:
  static absl::StatusOr<std::shared_ptr<FeatureAdapters>> Create(
      std::vector<LayerPair> pairs, const FeatureMatchOptions& options);

  const std::vector<LayerPair>& pairs() const { return pairs_; }
  std::vector<std::string> student_layers() const;
  std::vector<std::string> teacher_layers() const;

  struct Terms {
    torch::Tensor total;                // sum over pairs of weight * loss (unscaled by
                                        // FeatureMatchOptions::weight); differentiable
    std::vector<torch::Tensor> losses;  // each pair's loss, in pairs() order
  };
  // `student` holds every student layer of pairs() as [N, ...shape] (or
  // [B, T, d] for tokens); `teacher` every teacher layer with the same
  // number of examples or tokens ([B*T, d] is fine). `keep`, when defined,
  // is a bool mask over those N examples or B*T tokens (padding excluded):
  // only kept rows count. Throws c10::Error when a tensor is missing or
  // shapes disagree (call inside TorchCall).
  Terms Loss(const models::HiddenStates& student,
             const std::map<std::string, torch::Tensor>& teacher,
             const torch::Tensor& keep = torch::Tensor());

  // Pair i's adapter applied to a student activation.
  torch::Tensor Adapt(size_t i, const torch::Tensor& student);

 private:
  FeatureAdapters(std::vector<LayerPair> pairs, const FeatureMatchOptions& options);

  std::vector<LayerPair> pairs_;
  FeatureLoss loss_;
  torch::nn::ModuleList adapters_;
};

// Everything a trainer needs to match features: the adapters for the
// student's layers against those `teacher` exposes (resolved from
// options.match), their optimizer (`optimizer` options, the student's), and
// the resolved pairs as JSON for the run's configuration.
struct FeatureMatchingSetup {
  std::shared_ptr<FeatureAdapters> adapters;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  nlohmann::json pairs;
};
absl::StatusOr<FeatureMatchingSetup> SetUpFeatureMatching(
    const FeatureMatchOptions& options, const std::vector<models::HiddenLayer>& student,
    const v1::TeacherFingerprint& teacher, const OptimizerOptions& optimizer);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_FEATURE_MATCHING_H_
