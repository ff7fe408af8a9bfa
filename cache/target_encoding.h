// How the teacher-logit cache stores one sequence's soft targets: a record of
// bit-packed fields, one position after another. Two encodings (docs/
// protocol.md, "The teacher-logit cache"):
//
//   top-k   the k largest log-probabilities with their ids and the log of
//           the mass outside them (the wire's top-k, quantized). Per
//           position: k ids at BitsFor(V) bits; the `exact` largest
//           log-probabilities as float16; the other k - exact as `value_bits`
//           codes c = round((v_exact - v) / scale) below the last exact one,
//           with scale = (v_exact - v_k) / (2^value_bits - 1) stored as
//           float16; the tail's log mass as float16. Decoding renormalises
//           the k + 1 buckets to sum to one. Error: the float16 rounding of
//           the exact values (relative 2^-11) and at most scale / 2 in log
//           space for the coded ones.
//   sampled N draws from the teacher's distribution (teacher/
//           sampled_targets.h): per position the number m of distinct ids
//           at BitsFor(N + 1) bits, then m (id, count - 1) pairs at
//           BitsFor(V) and BitsFor(N) bits. Exact: an unbiased estimate.
//
// A record is a whole number of bytes (the last position padded with zero
// bits).
#ifndef RETORT_CACHE_TARGET_ENCODING_H_
#define RETORT_CACHE_TARGET_ENCODING_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/encoding_options.h"
#include "cache/record_decoder.h"
#include "teacher/sampled_targets.h"
#include "teacher/top_k.h"

namespace retort::cache {

// Appends one sequence's record to `out`. kTopK takes `top_k` answers with
// at least options.top_k entries per position, sorted by decreasing value
// (teacher::TopK's order; the first options.top_k are kept); kSampled takes
// `sampled`. Rows: the sequence's positions. INVALID_ARGUMENT for shapes
// that do not fit the options or ids outside [0, vocab).
absl::Status EncodeTopKRecord(const teacher::TopKLogProbs& top_k, const EncodingOptions& options,
                              int64_t vocab, std::string* out);
absl::Status EncodeSampledRecord(const teacher::SampledTargets& sampled,
                                 const EncodingOptions& options, int64_t vocab, std::string* out);

// DecodedWidth + DecodeRecordsInto (cache/record_decoder.h) into the top-k
// form every student loss takes: indices int64 [R * positions, width],
// values float32, tail float32. DATA_LOSS naming `what(i)` for a malformed
// record i.
absl::StatusOr<teacher::TopKLogProbs> DecodeRecords(const std::vector<RecordView>& records,
                                                    int64_t positions,
                                                    const EncodingOptions& options, int64_t vocab,
                                                    const RecordNamer& what);

}  // namespace retort::cache

#endif  // RETORT_CACHE_TARGET_ENCODING_H_
