// SlicedLlamaModel: a Llama whose residual stream has been rotated and cut
// to `width` < hidden_size dimensions by SliceGPT (Ashkboos et al. 2024;
// student/slice.h computes it). Each block reads and writes the narrow
// stream:
//
//   h  = x @ attn_shortcut + o_proj(attention(q/k/v_proj(rmsnorm(x))))
//   x' = h @ mlp_shortcut  + down_proj(swiglu(gate/up_proj(rmsnorm(h))))
//
// where the shortcut matrices [width, width] carry the residual from one
// block's basis to the next, the norm scales are folded into the matrices
// that read them (so every RMSNorm here has scale 1) and RMSNorm divides by
// the original hidden_size, not `width`. Attention keeps its heads and
// head_dim; the MLP keeps its intermediate size. Untied models get
// embeddings and an output head of [vocab, width]. Tied models keep their
// one [vocab, hidden_size] matrix, shared as before, with the rotations
// beside it: x0 = embed(tokens) @ embed_Q ([hidden, width]), and
// logits = (rmsnorm(x) @ head_Q ([width, hidden]) * output_scale) @ embed^T,
// output_scale being the final norm's scale.
//
// Saved as a directory like a Llama checkpoint: config.json (the original
// config plus "retort_slicing": {"width", "fraction"}) and model.safetensors
// with the tensors named below, "model.layers.<i>.attn_shortcut_Q" and
// "model.layers.<i>.mlp_shortcut_Q" added (and for tied models
// "model.embed_Q", "model.head_Q", "model.output_scale"). A quantized sliced
// model (student/quantize.h) is saved in the Llama checkpoints' quantized
// layout (models/llama_checkpoint.h): its projections as codes + scales,
// the shortcut and rotation matrices in float32.
#ifndef RETORT_MODELS_SLICED_LLAMA_H_
#define RETORT_MODELS_SLICED_LLAMA_H_

#include <memory>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "models/causal_lm.h"
#include "models/llama.h"
#include "models/llama_config.h"

namespace retort::models {

class SlicedBlockImpl : public torch::nn::Module {
 public:
  SlicedBlockImpl(const LlamaConfig& config, int64_t width);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  torch::Tensor Decode(const torch::Tensor& x, const DecodeStep& step, LayerKv* kv);
  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  torch::Tensor attn_shortcut_Q, mlp_shortcut_Q;  // [width, width]
};
TORCH_MODULE(SlicedBlock);

class SlicedLlamaModel : public CausalLm {
 public:
  // `config` is the original model's (hidden_size sets the norms' divisor
  // and head_dim); 0 < width <= hidden_size. Weights are uninitialised.
  // `fraction` is the slicing asked for (recorded in config.json).
  SlicedLlamaModel(const LlamaConfig& config, int64_t width, double fraction = 0);

  // tokens int64 [B, T] -> logits float [B, T, vocab], as LlamaModel.
  torch::Tensor forward(const torch::Tensor& tokens) override;
  // Hidden streams ("embed", "block.<i>", "final_norm") are [width] wide,
  // in the rotated basis of the point they are read at.
  torch::Tensor ForwardWithHidden(const torch::Tensor& tokens,
                                  const std::vector<std::string>& names,
                                  HiddenStates* hidden) override;
  std::vector<HiddenLayer> HiddenLayers() const override;

  torch::Tensor Decode(const torch::Tensor& tokens, const torch::Tensor& valid,
                       KvCache* cache) override;

  const LlamaConfig& config() const override { return config_; }
  // {"architecture": "sliced_llama", "config": ..., "width": ...}.
  nlohmann::json ShapeJson() const override;
  // SaveSlicedLlama.
  absl::Status Save(const std::string& dir, const std::string& tokenizer_model) override;

  torch::Tensor EmbeddingWeight() const override { return embed_tokens->weight; }

  int64_t width() const { return width_; }
  double fraction() const { return fraction_; }

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
  Projection lm_head{nullptr};                  // untied models only
  torch::Tensor embed_Q, head_Q, output_scale;  // tied models only

 private:
  torch::Tensor Head(const torch::Tensor& x);  // the output head on the final norm's stream

  LlamaConfig config_;
  int64_t width_;
  double fraction_;
  torch::Tensor cos_, sin_;
};

// True when `dir` holds a sliced checkpoint (config.json with retort_slicing).
bool IsSlicedLlamaCheckpoint(const std::string& dir);

absl::Status SaveSlicedLlama(SlicedLlamaModel& model, const std::string& dir,
                             const std::string& tokenizer_model = "");

// NOT_FOUND / DATA_LOSS naming the file and tensor, as LoadLlamaCheckpoint.
absl::StatusOr<std::shared_ptr<SlicedLlamaModel>> LoadSlicedLlama(const std::string& dir);

}  // namespace retort::models

#endif  // RETORT_MODELS_SLICED_LLAMA_H_
