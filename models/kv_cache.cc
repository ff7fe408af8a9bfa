#include "models/kv_cache.h"

namespace retort::models {

DecodeStep KvCache::Advance(const torch::Tensor& valid, const torch::Tensor& cos_table,
                            const torch::Tensor& sin_table, int64_t sliding_window) {
  const int64_t b = valid.size(0), t = valid.size(1);
  const torch::Tensor real = valid.to(torch::kBool);
  if (!lengths_.defined()) {
    lengths_ = torch::zeros({b}, torch::kInt64);
    key_valid_ = torch::zeros({b, 0}, torch::kBool);
    key_position_ = torch::zeros({b, 0}, torch::kInt64);
  }
  // A real token's position: the real tokens before it in its row. Padding
  // takes the position of the next real token (harmless: it is masked).
  const torch::Tensor counts = real.to(torch::kInt64).cumsum(1);
  const torch::Tensor position = lengths_.unsqueeze(1) + counts - real.to(torch::kInt64);
  lengths_ = lengths_ + counts.select(1, t - 1);

  key_valid_ = torch::cat({key_valid_, real}, 1);
  key_position_ = torch::cat({key_position_, position}, 1);
  const int64_t keys = key_valid_.size(1);

  DecodeStep step;
  const torch::Tensor flat = position.reshape({-1});
  const int64_t d = cos_table.size(1);
  step.cos = cos_table.index_select(0, flat).view({b, 1, t, d});
  step.sin = sin_table.index_select(0, flat).view({b, 1, t, d});

  const torch::Tensor query_pos = position.unsqueeze(2);     // [B, T, 1]
  const torch::Tensor key_pos = key_position_.unsqueeze(1);  // [B, 1, K]
  torch::Tensor allowed = key_valid_.unsqueeze(1).logical_and(key_pos <= query_pos);
  // Causality among the new tokens themselves: key j (new index j - cached)
  // is visible to new token i only when j - cached <= i. Positions already
  // order real tokens; this orders padding too.
  const int64_t cached_before = keys - t;
  const torch::Tensor key_index = torch::arange(keys, torch::kInt64).view({1, 1, keys});
  const torch::Tensor query_index =
      (torch::arange(t, torch::kInt64) + cached_before).view({1, t, 1});
  allowed = allowed.logical_and(key_index <= query_index);
  if (sliding_window > 0) {
    allowed = allowed.logical_and(key_pos > query_pos - sliding_window);
  }
  allowed = allowed.logical_or(key_index == query_index);  // padding sees itself
  step.allowed = allowed.unsqueeze(1);
  return step;
}

}  // namespace retort::models
