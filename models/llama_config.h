// LlamaConfig: the shape of a decoder-only transformer in the Llama family
// (RMSNorm, rotary position embeddings, SwiGLU MLP, grouped-query attention,
// optionally tied input and output embeddings), stored as the config.json of
// Hugging Face's LlamaForCausalLM so our checkpoints and theirs describe
// themselves the same way. The same block with small changes is Qwen2 /
// Qwen2.5 (q/k/v biases), Qwen3 (per-head q/k RMSNorm, explicit head_dim),
// Mistral (sliding-window attention) and Llama 3 (rope_scaling "llama3"):
// `model_type` and the feature fields below say which.
#ifndef RETORT_MODELS_LLAMA_CONFIG_H_
#define RETORT_MODELS_LLAMA_CONFIG_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retort::models {

struct LlamaConfig {
  int64_t vocab_size = 4096;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 688;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 4;  // < num_attention_heads: grouped-query attention
  // Width of one attention head; 0: hidden_size / num_attention_heads.
  // Transformers calls it "head_dim"; models whose heads were pruned keep
  // their head width with fewer heads, so heads * head_dim < hidden_size.
  int64_t attention_head_dim = 0;
  int64_t max_position_embeddings = 512;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  // config.json's model_type: "llama", "qwen2", "qwen3" or "mistral".
  std::string model_type = "llama";
  bool qkv_bias = false;       // q_proj, k_proj, v_proj have biases (Qwen2)
  bool qk_norm = false;        // RMSNorm over each head of q and k before RoPE (Qwen3)
  int64_t sliding_window = 0;  // each position sees the last this many (Mistral); 0: all
  // rope_scaling of type "llama3" (Llama 3.1/3.2); factor 0: none.
  struct RopeScaling {
    double factor = 0;
    double low_freq_factor = 1;
    double high_freq_factor = 4;
    int64_t original_max_position_embeddings = 8192;
    bool operator==(const RopeScaling& o) const {
      return factor == o.factor && low_freq_factor == o.low_freq_factor &&
             high_freq_factor == o.high_freq_factor &&
             original_max_position_embeddings == o.original_max_position_embeddings;
    }
  };
  RopeScaling rope_scaling;

  // A model_type "llama" without any of the features above.
  bool IsPlainLlama() const {
    return model_type == "llama" && !qkv_bias && !qk_norm && sliding_window == 0 &&
           rope_scaling.factor == 0;
  }

  int64_t head_dim() const {
    return attention_head_dim > 0 ? attention_head_dim : hidden_size / num_attention_heads;
  }

  // OK, or INVALID_ARGUMENT naming the field and what it must be (positive
  // sizes, heads dividing the width into an even head_dim, query heads a
  // multiple of key/value heads, ...).
  absl::Status Validate() const;

  // Parameters of the model this config builds (tied embeddings counted once).
  int64_t ParameterCount() const;
  // Multiply-accumulate pairs of one token's forward pass, as 2 * FLOPs:
  // the weight matmuls (2 * non-embedding parameters + the output head) plus
  // attention's scores and weighted sum at `context` tokens of context.
  int64_t ForwardFlopsPerToken(int64_t context) const;

  // "llama d256 L4 h4/kv4 ffn688 V4096 (5.3M params)".
  std::string Describe() const;

  // The config.json of Hugging Face transformers' <Family>ForCausalLM.
  nlohmann::json ToHuggingFaceJson() const;
  // Reads such a config.json; INVALID_ARGUMENT for a model type other than
  // those above, a missing size, or a feature we do not implement (an
  // o_proj or MLP bias, a rope_scaling type other than llama3, an
  // activation other than silu, ...), naming the feature.
  static absl::StatusOr<LlamaConfig> FromHuggingFaceJson(const nlohmann::json& json);

  // Parses "d=256,layers=4,heads=4,kv_heads=2,head_dim=64,ffn=688,vocab=4096,ctx=512,tied"
  // (every key optional; defaults from `base`), plus a family word (llama,
  // qwen2, qwen3, mistral) and, for mistral, window=N. For command-line flags.
  static absl::StatusOr<LlamaConfig> Parse(const std::string& text, const LlamaConfig& base);

  bool operator==(const LlamaConfig& other) const;
  bool operator!=(const LlamaConfig& other) const { return !(*this == other); }
};

}  // namespace retort::models

#endif  // RETORT_MODELS_LLAMA_CONFIG_H_
