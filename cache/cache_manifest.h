// The teacher-logit cache's manifest (DIR/manifest.json): what the cache was
// computed from (the teacher's fingerprint, the corpus and tokenizer hashes,
// the sequence length and temperature), how it is encoded, and the shards
// written so far with their sizes and SHA-256. Rewritten atomically after
// every shard (the checkpoints' protocol: a shard is written to a temporary
// file, synced and renamed, then the manifest that lists it), so a dump
// killed at any moment leaves a manifest naming only whole shards.
#ifndef RETORT_CACHE_CACHE_MANIFEST_H_
#define RETORT_CACHE_CACHE_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/encoding_options.h"
#include "retort/v1/teacher.pb.h"

namespace retort::cache {

// What a cache's targets depend on; a run reading the cache must match it.
struct CacheSource {
  v1::TeacherFingerprint teacher;
  std::string corpus_sha256;     // of the token shards dumped, in order
  std::string tokenizer_sha256;  // of the corpus's tokenizer
  int64_t seq_len = 0;
  double temperature = 0;  // 0: unset (as an expectation)

  nlohmann::json ToJson() const;
  static absl::StatusOr<CacheSource> FromJson(const nlohmann::json& json);
  // "temperature: cache 1, run 2"-style lines for each field of `run` that
  // is set (non-empty, non-zero) and differs; the teacher is compared by
  // weights and tokenizer.
  std::vector<std::string> Differences(const CacheSource& run) const;
};

struct CacheSplit {
  std::string name;  // "train", "validation"
  int64_t sequences = 0;
};

struct CacheShardEntry {
  std::string file;  // relative to the cache directory
  int64_t first_sequence = 0;
  int64_t sequences = 0;
  int64_t bytes = 0;
  std::string sha256;
};

struct CacheManifest {
  CacheSource source;
  EncodingOptions encoding;
  std::vector<CacheSplit> splits;  // global sequence indices run through them in order
  int64_t sequences_per_shard = 0;
  std::vector<CacheShardEntry> shards;  // whole shards, in order

  int64_t total_sequences() const;
  int64_t shard_count() const;  // shards the whole cache has
  bool complete() const { return static_cast<int64_t>(shards.size()) == shard_count(); }
  static std::string ShardFileName(int64_t shard);  // "shard-00003.rtc"

  nlohmann::json ToJson() const;
  // NOT_FOUND when DIR/manifest.json is missing; DATA_LOSS naming the file
  // when it is not a valid manifest.
  static absl::StatusOr<CacheManifest> Read(const std::string& dir);
  absl::Status Write(const std::string& dir) const;  // atomically
};

}  // namespace retort::cache

#endif  // RETORT_CACHE_CACHE_MANIFEST_H_
