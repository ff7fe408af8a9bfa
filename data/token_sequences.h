// A language-model dataset over a token shard: fixed-length packing.
//
// With T = sequence_length, sequence i covers tokens [i*T, i*T + T]: T + 1
// tokens, of which the first T are the inputs and the last T the targets
// (the inputs shifted by one). Sequences overlap by that one token, so
// size() = (tokens - 1) / T and every token but the first is a target once.
// Documents (lines ending in </s>) are packed across sequence boundaries.
//
// Immutable after Open and safe to read from several threads.
#ifndef RETORT_DATA_TOKEN_SEQUENCES_H_
#define RETORT_DATA_TOKEN_SEQUENCES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/dataset.h"
#include "data/token_shard.h"

namespace retort::data {

class TokenSequenceDataset : public Dataset {
 public:
  // Opens (and validates) the shard. INVALID_ARGUMENT for sequence_length <
  // 1; FAILED_PRECONDITION, naming the shard, when it holds fewer than
  // sequence_length + 1 tokens; TokenShard::Open's errors otherwise.
  static absl::StatusOr<std::shared_ptr<TokenSequenceDataset>> Open(const std::string& shard_path,
                                                                    int64_t sequence_length);

  int64_t size() const override { return size_; }
  std::vector<int64_t> example_shape() const override { return {sequence_length_}; }
  // The shard's vocabulary size.
  int64_t num_classes() const override { return shard_->vocab_size(); }
  // inputs and labels are int64 [B, T]; labels[b][t] == the token after
  // inputs[b][t]. Throws c10::Error for an index outside [0, size()).
  Batch GetBatch(const std::vector<int64_t>& indices) const override;

  int64_t sequence_length() const { return sequence_length_; }
  const TokenShard& shard() const { return *shard_; }

 private:
  TokenSequenceDataset(std::unique_ptr<TokenShard> shard, int64_t sequence_length);

  std::unique_ptr<TokenShard> shard_;
  int64_t sequence_length_;
  int64_t size_;
};

}  // namespace retort::data

#endif  // RETORT_DATA_TOKEN_SEQUENCES_H_
