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
// splits keeps every whole shard and computes only the others: a shard is
// whole when the manifest lists it with its size and SHA-256, or, unlisted
// (a kill between a shard's rename and the manifest's, or another rank's
// shard), when it is a valid shard of these parameters whose every record
// passes its CRC. Damaged or missing shards are rewritten. A manifest of
// anything else is refused with the differences named, unless `overwrite`.
//
// Data-parallel dumps: `world_size` processes (ranks) write the same
// out_dir on a shared filesystem, rank r computing the shards s with
// s % world_size == r. Rank 0 alone writes the manifest (after each of its
// shards, listing the whole shards from the first on, its own and the other
// ranks'), and after the last `barrier` the complete one. `barrier` must
// return once every rank has called it (a Communicator's Barrier); it is
// called twice: after rank 0 has reconciled the directory, and after every
// rank's last shard. Each rank's result counts its own shards, except rank
// 0's, which counts the whole dump (and is written as dump_result.json).
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
  int rank = 0;
  int world_size = 1;
  std::function<absl::Status()> barrier;  // required when world_size > 1
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
