// DumpTeacherCache: runs a teacher over a token corpus once and writes its
// soft targets as a teacher-logit cache directory (manifest.json and shards
// of `sequences_per_shard` sequences each; cache/cache_manifest.h,
// cache/cache_shard.h), which any number of later runs, ranks and batch
// sizes read back through CachedTeacherClient instead of the teacher.
//
// The teacher is any TeacherClient: a model in process, or a pool of
// servers (requests for the next `prefetch` batches stay in flight, so a
// pool's teachers work in parallel). Top-k encodings need answers with at
// least top_k entries (dense, or top-k from the pool); the sampled encoding
// needs dense answers, drawn from here with a per-sequence seed.
//
// Resuming: a directory holding a manifest of the same source, encoding and
// splits continues at its first missing shard (shards listed but missing or
// damaged are rewritten from there); one of anything else is refused with
// the differences named, unless `overwrite`.
#ifndef RETORT_CACHE_TEACHER_DUMP_H_
#define RETORT_CACHE_TEACHER_DUMP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "cache/cache_manifest.h"
#include "cache/encoding_options.h"
#include "client/teacher_client.h"
#include "common/clock.h"
#include "data/dataset.h"

namespace retort::cache {

struct DumpOptions {
  std::string out_dir;
  // Token sequence datasets (inputs int64 [B, T]); global sequence indices
  // run through them in order.
  struct Split {
    std::string name;
    std::shared_ptr<const data::Dataset> data;
  };
  std::vector<Split> splits;
  double temperature = 1.0;
  EncodingOptions encoding;
  int64_t sequences_per_shard = 512;
  int64_t batch_size = 16;  // sequences per teacher request
  int64_t prefetch = 4;     // requests in flight
  std::string corpus_sha256;
  std::string tokenizer_sha256;
  bool overwrite = false;
  // Test seam: called after shard `shard` and the manifest listing it are
  // written; an error stops the dump there (as a kill would).
  std::function<absl::Status(int64_t shard)> after_shard_written;
  const Clock* clock = Clock::Real();
  bool progress = true;
};

struct DumpResult {
  int64_t sequences = 0;         // in the cache
  int64_t tokens = 0;            // positions in the cache
  int64_t shards_written = 0;    // by this call
  int64_t shards_reused = 0;     // found complete
  int64_t bytes = 0;             // of all shards
  double seconds = 0;            // of this call
  double tokens_per_second = 0;  // positions dumped by this call / seconds
  double bytes_per_token = 0;
  nlohmann::json ToJson() const;
};

absl::StatusOr<DumpResult> DumpTeacherCache(const DumpOptions& options,
                                            client::TeacherClient& teacher);

}  // namespace retort::cache

#endif  // RETORT_CACHE_TEACHER_DUMP_H_
