// LlamaModel: a decoder-only transformer in the Llama family, laid out like
// Hugging Face transformers' LlamaForCausalLM so that named_parameters() are
// exactly its tensor names ("model.embed_tokens.weight",
// "model.layers.0.self_attn.q_proj.weight", ..., "lm_head.weight" unless the
// embeddings are tied) and the arithmetic is the same: pre-norm blocks with
// RMSNorm, rotary position embeddings in the rotate-half convention,
// grouped-query causal attention (LibTorch's fused scaled_dot_product_attention
// on LibTorch 2.x, a masked matmul with a float32 softmax on 1.13), and a
// SwiGLU MLP, all without biases.
//
// Modules are not thread-safe for training; concurrent inference in eval
// mode (under torch::InferenceMode) is safe.
#ifndef RETORT_MODELS_LLAMA_H_
#define RETORT_MODELS_LLAMA_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "models/causal_lm.h"
#include "models/classifier.h"
#include "models/llama_config.h"
#include "models/projection.h"

namespace retort::models {

// weight * x / sqrt(sum(x^2) / mean_dim + eps): the mean over the width
// unless `mean_dim` says otherwise (a SliceGPT-sliced stream keeps dividing
// by the original width).
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t width, double eps, int64_t mean_dim = 0);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
  int64_t width_, mean_dim_;
};
TORCH_MODULE(RmsNorm);

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& config, WeightInit init = WeightInit::kRandom);
  // Reading an `in_width` stream and writing an `out_width` one (heads and
  // head_dim from `config`), as in a sliced model.
  LlamaAttentionImpl(const LlamaConfig& config, int64_t in_width, int64_t out_width,
                     WeightInit init = WeightInit::kRandom);
  // x [B, T, hidden]; cos/sin [T, head_dim] (float32). With a sliding
  // window W, position t attends to positions t-W+1..t.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  // Incremental: x [B, T, in_width] are new tokens; appends their keys and
  // values to `kv` and attends as `step` allows (models/kv_cache.h).
  torch::Tensor Decode(const torch::Tensor& x, const DecodeStep& step, LayerKv* kv);
  Projection q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RmsNorm q_norm{nullptr}, k_norm{nullptr};  // over head_dim; only with config.qk_norm

 private:
  // q [B, heads, T, d], k and v [B, kv_heads, T, d], not yet rotated.
  void Project(const torch::Tensor& x, torch::Tensor* q, torch::Tensor* k, torch::Tensor* v);
  // Attention of rotated q over k/v, then o_proj. `allowed` (bool,
  // broadcastable to [B, heads, Tq, Tk]) says which keys each query sees;
  // undefined: all of them, or the causal ones when `causal`.
  torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& allowed, bool causal);

  int64_t heads_, kv_heads_, head_dim_, sliding_window_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMlpImpl : public torch::nn::Module {
 public:
  explicit LlamaMlpImpl(const LlamaConfig& config, WeightInit init = WeightInit::kRandom);
  LlamaMlpImpl(const LlamaConfig& config, int64_t in_width, int64_t out_width,
               WeightInit init = WeightInit::kRandom);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))
  Projection gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& config, WeightInit init = WeightInit::kRandom);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  torch::Tensor Decode(const torch::Tensor& x, const DecodeStep& step, LayerKv* kv);
  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// The body ("model." in the tensor names): embeddings, blocks, final norm.
class LlamaBackboneImpl : public torch::nn::Module {
 public:
  explicit LlamaBackboneImpl(const LlamaConfig& config, WeightInit init = WeightInit::kRandom);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
};
TORCH_MODULE(LlamaBackbone);

class LlamaModel : public CausalLm {
 public:
  // Fresh weights as transformers initialises them (normal, std 0.02; norm
  // scales 1), drawn from LibTorch's default generator: seed it first
  // (torch::manual_seed) for reproducible weights; with kUninitialized,
  // allocated but unwritten (for a loader to replace). `config` must be
  // valid.
  explicit LlamaModel(const LlamaConfig& config, WeightInit init = WeightInit::kRandom);

  // tokens int64 [B, T] with 1 <= T <= max_position_embeddings, every id in
  // the vocabulary (callers validate) -> logits float [B, T, vocab]. Position
  // t sees tokens 0..t only.
  torch::Tensor forward(const torch::Tensor& tokens) override;

  // forward(), also storing in `hidden` the residual streams named in
  // `names` as [B, T, hidden_size]: "embed" (the embeddings), "block.<i>"
  // (after block i), "final_norm" (what the output head reads). Names not in
  // HiddenLayers() are ignored; callers validate them.
  torch::Tensor ForwardWithHidden(const torch::Tensor& tokens,
                                  const std::vector<std::string>& names,
                                  HiddenStates* hidden) override;
  // The residual streams ForwardWithHidden can record; each shape is one
  // token's: {hidden_size}.
  std::vector<HiddenLayer> HiddenLayers() const override;

  torch::Tensor Decode(const torch::Tensor& tokens, const torch::Tensor& valid,
                       KvCache* cache) override;

  const LlamaConfig& config() const override { return config_; }
  // {"architecture": "llama", "config": <config.json>}.
  nlohmann::json ShapeJson() const override;
  // SaveLlamaCheckpoint in float32 (or the quantized layout).
  absl::Status Save(const std::string& dir, const std::string& tokenizer_model) override;
  // The output projection: lm_head (dequantized when quantized), or the
  // embedding matrix when tied.
  torch::Tensor OutputWeight() const;

  torch::Tensor EmbeddingWeight() const override;

  LlamaBackbone model{nullptr};
  Projection lm_head{nullptr};  // null when the embeddings are tied

 private:
  LlamaConfig config_;
  torch::Tensor cos_, sin_;  // float32 [max_position_embeddings, head_dim], not parameters
};

// The rotary tables, float32 [max_position_embeddings, head_dim]: cos and
// sin of position times each frequency, the halves repeated (rotate-half).
void RotaryTables(const LlamaConfig& config, torch::Tensor* cos, torch::Tensor* sin);

// A model of `config`'s shape whose embeddings, final norm, output head and
// blocks are copies of `source`'s; block j of the result is source block
// layers[j]. Initialising a student from a teacher by dropping layers needs
// every width to match (hidden, intermediate, heads, vocabulary):
// INVALID_ARGUMENT names the first that differs, or a layer index out of
// range. Empty `layers` picks config.num_hidden_layers blocks spread evenly
// from the first to the last.
absl::StatusOr<std::shared_ptr<LlamaModel>> LlamaFromLayers(const LlamaModel& source,
                                                            const LlamaConfig& config,
                                                            std::vector<int64_t> layers);

}  // namespace retort::models

#endif  // RETORT_MODELS_LLAMA_H_
