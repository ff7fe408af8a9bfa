// CachedTeacherClient: a teacher-logit cache directory (written by
// DumpTeacherCache) as a TeacherClient. Each row of a request is looked up
// by its row key (teacher::RowKey of its token ids), so a sequence gets the
// same targets whatever the rank count, batch size or order; the shards are
// memory-mapped (shared by every rank on a machine through the page cache)
// and each request is decoded on a worker thread, so the training loop's
// prefetch overlaps decoding with training.
//
// Answers are in top-k form (Targets::top_k): the cached top k with the
// tail's mass, or the sampled estimate (tail -inf). Hidden states are not
// cached: feature matching needs a live teacher.
//
// Thread-safe. The client must outlive the futures it returns.
#ifndef RETORT_CACHE_CACHED_TEACHER_CLIENT_H_
#define RETORT_CACHE_CACHED_TEACHER_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "cache/cache_manifest.h"
#include "cache/cache_shard.h"
#include "client/teacher_client.h"

namespace retort::cache {

class CachedTeacherClient : public client::TeacherClient {
 public:
  struct Options {
    std::string dir;
    // What the run reads the cache for; fields left empty (or 0) are not
    // checked. A cache of another teacher, corpus, tokenizer, sequence
    // length or temperature is FAILED_PRECONDITION naming each difference.
    CacheSource expected;
    // Check every shard's size and SHA-256 against the manifest on open
    // (reads the whole cache once).
    bool verify = true;
  };

  // NOT_FOUND for a directory without a manifest; FAILED_PRECONDITION for an
  // unfinished dump or a cache of something else; DATA_LOSS naming the shard
  // for a missing, truncated or corrupt one.
  static absl::StatusOr<std::unique_ptr<CachedTeacherClient>> Open(const Options& options);

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override;
  // inputs: int64 token ids [rows, seq_len] of sequences in the cache, at
  // the cache's temperature. NOT_FOUND naming the row for a sequence the
  // cache does not hold; INVALID_ARGUMENT for another temperature or shape;
  // UNIMPLEMENTED when hidden layers are asked for; FAILED_PRECONDITION for
  // query ids (the cache holds no log-probabilities at arbitrary ids).
  TargetsFuture SubmitTargets(const Request& request) override;

  const CacheManifest& manifest() const { return manifest_; }

 private:
  CachedTeacherClient() = default;
  absl::StatusOr<Targets> Lookup(const torch::Tensor& inputs) const;

  struct Location {
    int32_t shard;
    int64_t index;
  };
  CacheManifest manifest_;
  std::vector<std::unique_ptr<CacheShard>> shards_;
  absl::flat_hash_map<uint64_t, Location> index_;  // by row key; immutable after Open
};

}  // namespace retort::cache

#endif  // RETORT_CACHE_CACHED_TEACHER_CLIENT_H_
