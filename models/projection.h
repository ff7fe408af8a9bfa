// Projection: a linear map without bias, y = x W^T, that can hold its weight
// either as a float matrix or block-quantized (models/block_quant.h). A
// quantized projection dequantizes its weight on every forward call, so it
// keeps only the codes and scales in memory, as the buffers "weight_codes"
// and "weight_scale" (so weight digests and device moves see them); its
// float `weight` parameter is then an empty tensor.
//
// named_parameters() is {"weight"}, as torch::nn::Linear without bias, and
// the constructor draws its initial weight exactly as Linear does, so models
// built from Projections have the same tensor names and the same seeded
// initial weights as before.
//
// Not thread-safe for training or for SetQuantized; concurrent forward calls
// in eval mode are safe.
#ifndef RETORT_MODELS_PROJECTION_H_
#define RETORT_MODELS_PROJECTION_H_

#include <cstdint>
#include <optional>

#include <torch/torch.h>

#include "models/block_quant.h"

namespace retort::models {

// How a freshly built model's weights start: drawn as transformers does, or
// allocated and left unwritten, for a model whose weights are about to be
// replaced by a checkpoint's (untouched pages take no resident memory).
enum class WeightInit { kRandom, kUninitialized };

class ProjectionImpl : public torch::nn::Module {
 public:
  // With `bias`, y = x W^T + b (b a parameter "bias", initialised as
  // torch::nn::Linear's).
  ProjectionImpl(int64_t in_features, int64_t out_features, WeightInit init = WeightInit::kRandom,
                 bool bias = false);

  torch::Tensor forward(const torch::Tensor& x);

  // Replaces the float weight by `quantized` ([out, in] codes); 4-bit codes
  // are kept packed two a byte. The caller checked the shape.
  void SetQuantized(BlockQuantized quantized);
  bool is_quantized() const { return quantized_.has_value(); }
  // The quantization, codes unpacked; only when is_quantized().
  BlockQuantized Quantized() const;
  // The weight this projection computes with: the float weight, or the
  // dequantized one.
  torch::Tensor EffectiveWeight() const;
  // Bytes of the weight as held: float weight, or packed codes + float32 scales.
  int64_t WeightBytes() const;

  // Calibration statistics for pruning: after StartInputStats(), every
  // forward() adds each input column's sum of squares (over all tokens or
  // examples) to a float64 [in] accumulator; StopInputStats() returns it
  // and stops recording.
  void StartInputStats();
  torch::Tensor StopInputStats();

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  torch::Tensor weight;  // float [out, in]; empty once quantized
  torch::Tensor bias;    // float [out], or undefined

 private:
  struct Held {
    int bits;
    int64_t block_size;
    torch::Tensor codes;   // int8 [out, in] (8-bit) or uint8 [out, in / 2] (4-bit, packed)
    torch::Tensor scales;  // float32 [out, in / block_size]
  };
  int64_t in_features_, out_features_;
  std::optional<Held> quantized_;
  torch::Tensor input_sq_sums_;  // defined while recording
};
TORCH_MODULE(Projection);

}  // namespace retort::models

#endif  // RETORT_MODELS_PROJECTION_H_
