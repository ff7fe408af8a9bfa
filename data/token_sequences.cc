#include "data/token_sequences.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace retort::data {

absl::StatusOr<std::shared_ptr<TokenSequenceDataset>> TokenSequenceDataset::Open(
    const std::string& shard_path, int64_t sequence_length) {
  if (sequence_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence length must be >= 1, not ", sequence_length));
  }
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TokenShard> shard, TokenShard::Open(shard_path));
  if (shard->size() < static_cast<uint64_t>(sequence_length) + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token shard ", shard_path, " holds ", shard->size(), " tokens; sequences of length ",
        sequence_length, " need at least ", sequence_length + 1,
        " (inputs plus the next token). Use a shorter sequence length or more text"));
  }
  return std::shared_ptr<TokenSequenceDataset>(
      new TokenSequenceDataset(std::move(shard), sequence_length));
}

TokenSequenceDataset::TokenSequenceDataset(std::unique_ptr<TokenShard> shard,
                                           int64_t sequence_length)
    : shard_(std::move(shard)),
      sequence_length_(sequence_length),
      size_(static_cast<int64_t>((shard_->size() - 1) / static_cast<uint64_t>(sequence_length))) {}

Batch TokenSequenceDataset::GetBatch(const std::vector<int64_t>& indices) const {
  const int64_t batch = static_cast<int64_t>(indices.size());
  const int64_t t_len = sequence_length_;
  torch::Tensor inputs = torch::empty({batch, t_len}, torch::kLong);
  torch::Tensor labels = torch::empty({batch, t_len}, torch::kLong);
  int64_t* in = inputs.data_ptr<int64_t>();
  int64_t* out = labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t index = indices[static_cast<size_t>(b)];
    TORCH_CHECK(index >= 0 && index < size_, "sequence index ", index, " is outside [0, ", size_,
                ") of ", shard_->path());
    const uint64_t start = static_cast<uint64_t>(index * t_len);
    int64_t previous = shard_->at(start);
    for (int64_t t = 0; t < t_len; ++t) {
      const int64_t next = shard_->at(start + static_cast<uint64_t>(t) + 1);
      in[b * t_len + t] = previous;
      out[b * t_len + t] = next;
      previous = next;
    }
  }
  return Batch{inputs, labels};
}

}  // namespace retort::data
