#include "models/named_shapes.h"

#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace retort::models {
namespace {

LlamaConfig Llama32_1B() {  // meta-llama/Llama-3.2-1B config.json
  LlamaConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.max_position_embeddings = 131072;
  c.rope_theta = 500000.0;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.bos_token_id = 128000;
  c.eos_token_id = 128001;
  c.rope_scaling = {.factor = 32.0,
                    .low_freq_factor = 1.0,
                    .high_freq_factor = 4.0,
                    .original_max_position_embeddings = 8192};
  return c;
}

LlamaConfig Qwen3_06B() {  // Qwen/Qwen3-0.6B config.json
  LlamaConfig c;
  c.model_type = "qwen3";
  c.qk_norm = true;
  c.vocab_size = 151936;
  c.hidden_size = 1024;
  c.intermediate_size = 3072;
  c.num_hidden_layers = 28;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 8;
  c.attention_head_dim = 128;
  c.max_position_embeddings = 40960;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  c.bos_token_id = 151643;
  c.eos_token_id = 151645;
  return c;
}

LlamaConfig Qwen25_05B() {  // Qwen/Qwen2.5-0.5B config.json
  LlamaConfig c;
  c.model_type = "qwen2";
  c.qkv_bias = true;
  c.vocab_size = 151936;
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 14;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32768;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  c.bos_token_id = 151643;
  c.eos_token_id = 151643;
  return c;
}

LlamaConfig Mistral7B() {  // mistralai/Mistral-7B-v0.1 config.json
  LlamaConfig c;
  c.model_type = "mistral";
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.max_position_embeddings = 32768;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.sliding_window = 4096;
  return c;
}

// Each family's features at a size the tests run in milliseconds.
LlamaConfig Tiny(LlamaConfig c) {
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  if (c.attention_head_dim > 0) c.attention_head_dim = 24;  // wider than hidden / heads, as Qwen3
  if (c.sliding_window > 0) c.sliding_window = 5;           // shorter than the test sequences
  if (c.rope_scaling.factor > 0) c.rope_scaling.original_max_position_embeddings = 16;
  return c;
}

const std::map<std::string, std::function<LlamaConfig()>>& Shapes() {
  static const auto* shapes = new std::map<std::string, std::function<LlamaConfig()>>{
      {"llama-3.2-1b", Llama32_1B},
      {"qwen3-0.6b", Qwen3_06B},
      {"qwen2.5-0.5b", Qwen25_05B},
      {"mistral-7b-v0.1", Mistral7B},
      {"tiny-llama3", [] { return Tiny(Llama32_1B()); }},
      {"tiny-qwen3", [] { return Tiny(Qwen3_06B()); }},
      {"tiny-qwen2", [] { return Tiny(Qwen25_05B()); }},
      {"tiny-mistral", [] { return Tiny(Mistral7B()); }},
  };
  return *shapes;
}

}  // namespace

absl::StatusOr<LlamaConfig> NamedShape(const std::string& name) {
  auto it = Shapes().find(name);
  if (it == Shapes().end()) {
    return absl::InvalidArgumentError(absl::StrCat("no shape named '", name, "'; the shapes are ",
                                                   absl::StrJoin(NamedShapeNames(), ", ")));
  }
  return it->second();
}

std::vector<std::string> NamedShapeNames() {
  std::vector<std::string> names;
  for (const auto& [name, make] : Shapes()) names.push_back(name);
  return names;
}

}  // namespace retort::models
