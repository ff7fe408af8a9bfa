// A deterministic shuffling batch sampler whose position can be saved and
// restored, so a resumed run sees exactly the batches it would have seen.
//
// Epoch e's order is a pure function of (seed, e). With world_size > 1 each
// rank takes a disjoint, equally sized share of that order. The last partial
// batch of an epoch is dropped so every step has the same batch size.
//
// Not thread-safe: one owner draws batches.
#ifndef RETORT_DATA_SAMPLER_H_
#define RETORT_DATA_SAMPLER_H_

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retort::data {

struct SamplerState {
  int64_t epoch = 0;
  int64_t next_batch = 0;  // batches of `epoch` already handed out

  nlohmann::json ToJson() const;
  static absl::StatusOr<SamplerState> FromJson(const nlohmann::json& json);
  bool operator==(const SamplerState& other) const {
    return epoch == other.epoch && next_batch == other.next_batch;
  }
};

class ShuffleSampler {
 public:
  struct Options {
    int64_t dataset_size = 0;
    int64_t batch_size = 0;
    uint64_t seed = 0;
    int rank = 0;
    int world_size = 1;
  };

  // INVALID_ARGUMENT if the batch size is not positive or the dataset is too
  // small to give every rank one full batch.
  static absl::StatusOr<ShuffleSampler> Create(const Options& options);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  const SamplerState& state() const { return state_; }

  // Continues from a saved state. INVALID_ARGUMENT if it does not fit this
  // sampler (for example a batch index past the end of an epoch).
  absl::Status Restore(const SamplerState& state);

  // Returns the next batch's indices and advances; after the last batch of an
  // epoch the next call starts the following epoch.
  std::vector<int64_t> Next();

 private:
  explicit ShuffleSampler(const Options& options);
  void EnsureOrder();

  Options options_;
  int64_t batches_per_epoch_;
  SamplerState state_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;  // this rank's indices for order_epoch_
};

}  // namespace retort::data

#endif  // RETORT_DATA_SAMPLER_H_
