// KvCache: what a decoder-only model keeps between incremental forward
// passes, so that generating token n costs one token's work instead of a
// forward pass over all n.
//
// A cache holds, per batch row, the keys and values of every token fed so
// far (per attention layer), each key's position and whether it is a real
// token. Rows may hold prompts of different lengths: they are fed
// left-padded, with the padding marked invalid; invalid tokens take no
// position, are never attended to, and their outputs are meaningless. A real
// token's position is the number of real tokens before it in its row, so a
// padded row computes what the same row computes unpadded.
//
// Usage (CausalLm::Decode does the middle part):
//   KvCache cache(model.config().num_hidden_layers);
//   logits = model.Decode(prompts, valid, &cache);      // [B, T, vocab]
//   logits = model.Decode(next_tokens, ones, &cache);   // [B, 1, vocab]
// Not thread-safe; one cache serves one sequence of Decode calls.
#ifndef RETORT_MODELS_KV_CACHE_H_
#define RETORT_MODELS_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace retort::models {

// One attention layer's cached keys (rotated) and values, [B, kv_heads,
// T_cached, head_dim]; undefined before the first step.
struct LayerKv {
  torch::Tensor keys, values;
};

// What every layer needs for one step of `T` new tokens.
struct DecodeStep {
  // float32 [B, 1, T, head_dim]: the rotary tables at each new token's
  // position.
  torch::Tensor cos, sin;
  // bool [B, 1, T, T_cached + T]: whether new token i may attend to key j
  // (a real key at a position <= its own and, with a sliding window W, >
  // its own - W). An invalid new token sees only itself, so that no row of
  // the softmax is empty.
  torch::Tensor allowed;
};

class KvCache {
 public:
  explicit KvCache(int64_t layers) : layers_(layers) {}

  // Registers `valid` (bool [B, T]) new tokens and returns their step.
  // `cos_table`/`sin_table` are the model's rotary tables [max_positions,
  // head_dim]; `sliding_window` is 0 for none. The caller checks first that
  // no position reaches max_positions (see Positions()).
  DecodeStep Advance(const torch::Tensor& valid, const torch::Tensor& cos_table,
                     const torch::Tensor& sin_table, int64_t sliding_window);

  // Layer i's keys and values.
  LayerKv& layer(int64_t i) { return layers_[i]; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // int64 [B]: how many real tokens each row holds (the position the next
  // real token takes); undefined before the first step.
  const torch::Tensor& lengths() const { return lengths_; }
  // Tokens (real or padding) per row so far.
  int64_t cached() const { return key_valid_.defined() ? key_valid_.size(1) : 0; }

 private:
  std::vector<LayerKv> layers_;
  torch::Tensor key_valid_;     // bool [B, T_cached]
  torch::Tensor key_position_;  // int64 [B, T_cached]
  torch::Tensor lengths_;       // int64 [B]
};

}  // namespace retort::models

#endif  // RETORT_MODELS_KV_CACHE_H_
