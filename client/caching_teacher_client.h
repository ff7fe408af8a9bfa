// A TeacherClient that remembers the teacher's answer for each input row, so
// epochs after the first cost no teacher forward passes (offline distillation
// without a separate precompute step).
//
// Rows are keyed by a 128-bit hash of their bytes, the temperature and the
// hidden layers asked for (feature matching: a row's hidden activations are
// cached beside its log-probabilities, and charged to the capacity). Misses
// in a batch are sent to the wrapped client as one smaller batch. A row asked
// for counts as cached from the moment it is asked (a later batch with the
// same row waits for that answer), so the hit pattern does not depend on how
// far ahead the trainer submits. When the cache reaches its capacity it stops
// adding entries (it never evicts, so a run's hit pattern is deterministic).
//
// Caveat: a row answered from the cache was computed inside another batch
// than it would be otherwise; on CPU kernels that can change the last bits.
// Runs that must resume bit-for-bit should not use the cache. It holds
// dense answers of a row per input (classifiers); a top-k answer fails the
// request with FAILED_PRECONDITION.
//
// Thread-safe.
#ifndef RETORT_CLIENT_CACHING_TEACHER_CLIENT_H_
#define RETORT_CLIENT_CACHING_TEACHER_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "client/teacher_client.h"

namespace retort::client {

class CachingTeacherClient : public TeacherClient {
 public:
  struct Options {
    int64_t capacity_bytes = int64_t{256} << 20;
  };
  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t entries = 0;
  };

  CachingTeacherClient(std::shared_ptr<TeacherClient> inner, Options options);

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return inner_->Fingerprint(); }
  // Looks the rows up now and asks the wrapped client for the misses at
  // once; the answer is assembled when the future is waited on. The future
  // must not outlive this client. Requests with query ids (answers that
  // depend on more than the row) pass through uncached.
  TargetsFuture SubmitTargets(const Request& request) override;
  Stats stats() const;

 private:
  struct Key {
    uint64_t a, b;
    bool operator==(const Key& o) const { return a == o.a && b == o.b; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.a ^ (k.b * 31)); }
  };
  struct PendingRow {
    TargetsFuture batch;  // the answer to the batch that asked for the row
    int64_t index;        // the row's place in it
  };
  // `salt` distinguishes requests for different hidden layers.
  static Key RowKey(const char* data, size_t bytes, double temperature, uint64_t salt);
  // Bytes one cached row is charged: float32 log-probabilities per class and
  // the hidden layers' values, from the teacher's fingerprint.
  int64_t RowCost(const std::vector<std::string>& hidden_layers);
  // Moves a pending row into the cache (or drops it if its batch failed),
  // unless that was done already.
  void Settle(const Key& key, const PendingRow& pending, const absl::StatusOr<Targets>& answered,
              int64_t cost);

  std::shared_ptr<TeacherClient> inner_;
  Options options_;
  mutable absl::Mutex mu_;
  std::unordered_map<Key, Targets, KeyHash> rows_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<Key, PendingRow, KeyHash> pending_ ABSL_GUARDED_BY(mu_);
  // The fingerprint's class count and hidden-layer sizes (values per row),
  // read by the first request.
  bool sized_ ABSL_GUARDED_BY(mu_) = false;
  int64_t classes_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> layer_values_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace retort::client

#endif  // RETORT_CLIENT_CACHING_TEACHER_CLIENT_H_
