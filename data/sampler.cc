#include "data/sampler.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "data/shuffle.h"

namespace retort::data {

nlohmann::json SamplerState::ToJson() const {
  return {{"epoch", epoch}, {"next_batch", next_batch}};
}

absl::StatusOr<SamplerState> SamplerState::FromJson(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("epoch") || !json.contains("next_batch") ||
      !json["epoch"].is_number_integer() || !json["next_batch"].is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler state must be {\"epoch\": int, \"next_batch\": int}, got ", json.dump()));
  }
  return SamplerState{json["epoch"].get<int64_t>(), json["next_batch"].get<int64_t>()};
}

absl::StatusOr<ShuffleSampler> ShuffleSampler::Create(const Options& options) {
  if (options.batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size must be positive, got ", options.batch_size));
  }
  if (options.world_size <= 0 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is not in a world of size ", options.world_size));
  }
  int64_t per_rank = options.dataset_size / options.world_size;
  if (per_rank < options.batch_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the dataset has ", options.dataset_size, " examples, too few for one batch of ",
        options.batch_size, " on each of ", options.world_size, " rank(s); lower the batch size"));
  }
  return ShuffleSampler(options);
}

ShuffleSampler::ShuffleSampler(const Options& options)
    : options_(options),
      batches_per_epoch_(options.dataset_size / options.world_size / options.batch_size) {}

absl::Status ShuffleSampler::Restore(const SamplerState& state) {
  if (state.epoch < 0 || state.next_batch < 0 || state.next_batch > batches_per_epoch_) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler state (epoch ", state.epoch, ", batch ", state.next_batch,
                     ") does not fit a sampler with ", batches_per_epoch_,
                     " batches an epoch; was the checkpoint written with another batch size or "
                     "dataset?"));
  }
  state_ = state;
  if (state_.next_batch == batches_per_epoch_) {
    ++state_.epoch;
    state_.next_batch = 0;
  }
  return absl::OkStatus();
}

void ShuffleSampler::EnsureOrder() {
  if (order_epoch_ == state_.epoch) return;
  std::vector<int64_t> all(static_cast<size_t>(options_.dataset_size));
  std::iota(all.begin(), all.end(), 0);
  ShuffleInPlace(all, options_.seed, static_cast<uint64_t>(state_.epoch));
  order_.clear();
  int64_t per_rank = batches_per_epoch_ * options_.batch_size;
  order_.reserve(static_cast<size_t>(per_rank));
  for (int64_t i = 0; i < per_rank; ++i) {
    order_.push_back(all[static_cast<size_t>(i * options_.world_size + options_.rank)]);
  }
  order_epoch_ = state_.epoch;
}

std::vector<int64_t> ShuffleSampler::Next() {
  EnsureOrder();
  auto begin = order_.begin() + state_.next_batch * options_.batch_size;
  std::vector<int64_t> batch(begin, begin + options_.batch_size);
  if (++state_.next_batch == batches_per_epoch_) {
    ++state_.epoch;
    state_.next_batch = 0;
  }
  return batch;
}

}  // namespace retort::data
