// Decoding the teacher-logit cache's records (layouts in
// cache/target_encoding.h) into plain arrays, torch-free so that the fuzz
// target runs it. Every field read is bounds-checked; a malformed record is
// DATA_LOSS, never a read outside it.
#ifndef RETORT_CACHE_RECORD_DECODER_H_
#define RETORT_CACHE_RECORD_DECODER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/encoding_options.h"

namespace retort::cache {

// One sequence's record.
struct RecordView {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

// Names record i in errors ("shard-00003.rtc: sequence 1234").
using RecordNamer = std::function<std::string(size_t)>;

// Entries per position the decoded batch needs: top_k (kTopK), or the most
// distinct ids of any position (kSampled). Checks every record's structure
// (length, counts) and is DATA_LOSS naming the record otherwise.
absl::StatusOr<int64_t> DecodedWidth(const std::vector<RecordView>& records, int64_t positions,
                                     const EncodingOptions& options, int64_t vocab,
                                     const RecordNamer& what);

// Decodes `records` (of `positions` positions each) into row-major arrays of
// records.size() * positions rows: ids[row * width + i], values (log-
// probabilities), tail[row] (log mass outside the row's ids). A top-k row is
// renormalised so its k values and tail sum to one; a sampled row holds
// log(count / N) for its distinct ids, then padding (id 0, value -inf), and
// tail -inf. `width` from DecodedWidth.
absl::Status DecodeRecordsInto(const std::vector<RecordView>& records, int64_t positions,
                               const EncodingOptions& options, int64_t vocab,
                               const RecordNamer& what, int64_t width, int64_t* ids, float* values,
                               float* tail);

}  // namespace retort::cache

#endif  // RETORT_CACHE_RECORD_DECODER_H_
