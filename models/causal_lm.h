// CausalLm: what trainers and evaluators need from a decoder-only language
// model, whatever its layout: a standard Llama (models/llama.h) or one whose
// residual stream SliceGPT has cut (models/sliced_llama.h). The language
// model trainer trains any CausalLm, so a sliced or pruned model is
// distilled back ("recovery") with the same tools that trained it.
//
// Implementations are torch modules: parameters() are what training updates
// and what training checkpoints hold, under the module names.
#ifndef RETORT_MODELS_CAUSAL_LM_H_
#define RETORT_MODELS_CAUSAL_LM_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/hidden_layer.h"
#include "models/kv_cache.h"
#include "models/llama_config.h"
#include "models/projection.h"

namespace retort::models {

// How a model's weights are held: float (bits 0), or block-quantized
// (models/block_quant.h) projections, dequantized on the fly, with
// `embeddings` saying whether the embedding matrix was quantized too (it is
// then held as its dequantized values).
struct WeightQuantization {
  int bits = 0;            // 0 (float), 8 or 4
  int64_t group_size = 0;  // columns per scale; 0 = one scale per output row
  bool embeddings = false;

  bool quantized() const { return bits != 0; }
  // "float32", "int8 per-channel", "int4 g64 (+ embeddings)".
  std::string Describe() const;
};

class CausalLm : public torch::nn::Module {
 public:
  ~CausalLm() override = default;

  // tokens int64 [B, T], 1 <= T <= max_position_embeddings, ids in the
  // vocabulary (callers validate) -> logits float [B, T, vocab]. Position t
  // sees tokens 0..t only.
  virtual torch::Tensor forward(const torch::Tensor& tokens) = 0;

  // forward(), also storing in `hidden` the residual streams named in
  // `names` ("embed", "block.<i>", "final_norm"); names not in
  // HiddenLayers() are ignored (callers validate them).
  virtual torch::Tensor ForwardWithHidden(const torch::Tensor& tokens,
                                          const std::vector<std::string>& names,
                                          HiddenStates* hidden) = 0;
  virtual std::vector<HiddenLayer> HiddenLayers() const = 0;

  // Incremental forward (models/kv_cache.h): tokens int64 [B, T] appended
  // to what `cache` holds, `valid` bool [B, T] false for left padding ->
  // logits float [B, T, vocab], equal (to rounding) to forward() over each
  // row's real tokens so far. Callers keep every row's length (cache
  // lengths() plus new real tokens) within max_position_embeddings. Use in
  // inference mode; the cache must have been made for this model's layers.
  virtual torch::Tensor Decode(const torch::Tensor& tokens, const torch::Tensor& valid,
                               KvCache* cache) = 0;

  // The Llama shape (for a sliced model, the one it was sliced from).
  virtual const LlamaConfig& config() const = 0;

  // {"architecture": ..., "config": <config.json>, ...}: everything that
  // fixes the parameter shapes, stored in training checkpoints so that a
  // checkpoint of another shape is refused on resume.
  virtual nlohmann::json ShapeJson() const = 0;

  // Writes the model as a checkpoint directory that LoadCausalLm (and, for
  // a standard Llama, transformers) reads; `tokenizer_model` is copied in
  // as tokenizer.model when not empty.
  virtual absl::Status Save(const std::string& dir, const std::string& tokenizer_model) = 0;

  // Every projection (attention, MLP, and the output head when it is one)
  // under its module name, the parameter name less ".weight":
  // "model.layers.0.self_attn.q_proj" ... "lm_head" for a Llama.
  std::vector<std::pair<std::string, Projection>> Projections();
  // The token embedding matrix [vocab, *], a parameter of this model (the
  // output head too when tied).
  virtual torch::Tensor EmbeddingWeight() const = 0;

  WeightQuantization quantization;  // set by whoever quantizes the projections
};

// Loads either kind from a checkpoint directory: a sliced model when its
// config.json says "retort_slicing", a Llama otherwise. Errors as
// LoadLlamaCheckpoint / LoadSlicedLlama.
absl::StatusOr<std::shared_ptr<CausalLm>> LoadCausalLm(const std::string& dir);

}  // namespace retort::models

#endif  // RETORT_MODELS_CAUSAL_LM_H_
