// One shard file of the teacher-logit cache: the records of a range of
// global sequence indices, each found by its sequence's row key
// (teacher::RowKey of its token ids).
//
// Layout (little endian):
//   header, 64 bytes: "RTTCACHE" | u32 version (1) | u32 encoding (1 top-k,
//     2 sampled) | u32 vocab | u32 positions per sequence | u32 top_k |
//     u32 exact | u32 value_bits | u32 samples | u64 first sequence |
//     u64 sequences | u32 CRC-32 of the 56 bytes before it | u32 zero
//   index, 24 bytes per sequence: u64 row key | u64 record offset (from the
//     first record byte) | u32 record bytes | u32 CRC-32 of the record
//   records, back to back
// The file ends exactly after the last record. Open checks the header, that
// every record lies inside the file in order, and nothing else; a record's
// CRC is checked each time it is read, so a flipped bit is an error naming
// the shard and the sequence, never wrong targets.
#ifndef RETORT_CACHE_CACHE_SHARD_H_
#define RETORT_CACHE_CACHE_SHARD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/encoding_options.h"
#include "cache/record_decoder.h"
#include "common/mapped_file.h"

namespace retort::cache {

struct ShardParams {
  EncodingOptions encoding;
  int64_t vocab = 0;
  int64_t positions = 0;  // per sequence
  int64_t first_sequence = 0;
};

// Builds a shard's bytes in memory; the caller writes them atomically.
class ShardBuilder {
 public:
  explicit ShardBuilder(ShardParams params) : params_(std::move(params)) {}
  // Appends the next sequence (first_sequence + count so far).
  void Add(uint64_t row_key, std::string record);
  int64_t sequences() const { return static_cast<int64_t>(keys_.size()); }
  std::string Finish() const;

 private:
  ShardParams params_;
  std::vector<uint64_t> keys_;
  std::vector<std::string> records_;
};

class CacheShard {
 public:
  // NOT_FOUND when missing; DATA_LOSS naming the file and what is wrong for
  // a file that is not a valid shard (bad magic or header CRC, truncated,
  // records outside the file); FAILED_PRECONDITION for another version.
  static absl::StatusOr<std::unique_ptr<CacheShard>> Open(const std::string& path);
  // Checks and reads a shard already in memory (the fuzz target's entry).
  static absl::StatusOr<std::unique_ptr<CacheShard>> FromBytes(std::string bytes,
                                                               const std::string& name);

  const ShardParams& params() const { return params_; }
  int64_t sequences() const { return sequences_; }
  uint64_t key(int64_t i) const;
  // Sequence i's record (i < sequences()); DATA_LOSS naming the shard and
  // global sequence index when its CRC does not match.
  absl::StatusOr<RecordView> Record(int64_t i) const;
  const std::string& name() const { return name_; }

 private:
  CacheShard() = default;
  absl::Status Parse();

  std::string name_;
  std::shared_ptr<MappedFile> file_;  // or
  std::string bytes_;                 // for FromBytes
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  ShardParams params_;
  int64_t sequences_ = 0;
};

}  // namespace retort::cache

#endif  // RETORT_CACHE_CACHE_SHARD_H_
