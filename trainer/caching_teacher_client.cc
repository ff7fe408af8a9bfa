#include "trainer/caching_teacher_client.h"

#include <cstring>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace retort::trainer {

CachingTeacherClient::CachingTeacherClient(std::shared_ptr<TeacherClient> inner, Options options)
    : inner_(std::move(inner)), options_(options) {}

CachingTeacherClient::Key CachingTeacherClient::RowKey(const char* data, size_t bytes,
                                                       double temperature) {
  // Two independent 64-bit hashes: absl's and FNV-1a.
  uint64_t t;
  std::memcpy(&t, &temperature, sizeof(t));
  uint64_t a = absl::Hash<std::pair<absl::string_view, uint64_t>>{}(
      std::make_pair(absl::string_view(data, bytes), t));
  uint64_t b = 0xcbf29ce484222325ULL ^ t;
  for (size_t i = 0; i < bytes; ++i) {
    b ^= static_cast<uint8_t>(data[i]);
    b *= 0x100000001b3ULL;
  }
  return Key{a, b};
}

absl::StatusOr<torch::Tensor> CachingTeacherClient::LogProbs(const torch::Tensor& inputs,
                                                             double temperature) {
  return Submit(inputs, temperature).get();
}

int64_t CachingTeacherClient::RowCost() {
  {
    absl::MutexLock lock(&mu_);
    if (row_cost_ >= 0) return row_cost_;
  }
  // float32 log-probabilities per class, plus bookkeeping.
  absl::StatusOr<v1::TeacherFingerprint> fingerprint = inner_->Fingerprint();
  const int64_t classes = fingerprint.ok() ? std::max<int64_t>(0, fingerprint->num_classes()) : 0;
  absl::MutexLock lock(&mu_);
  row_cost_ = 64 + 4 * classes;
  return row_cost_;
}

void CachingTeacherClient::Settle(const Key& key, const PendingRow& pending,
                                  const absl::StatusOr<torch::Tensor>& answered, int64_t cost) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(key);
  if (it == pending_.end() || it->second.index != pending.index) return;  // settled already
  if (answered.ok()) {
    rows_.emplace(key, (*answered)[pending.index].clone());
  } else {
    bytes_ -= cost;  // not cached after all: the next batch asks again
  }
  pending_.erase(it);
  stats_.entries = static_cast<int64_t>(rows_.size() + pending_.size());
}

TeacherClient::LogProbsFuture CachingTeacherClient::Submit(const torch::Tensor& inputs,
                                                           double temperature) {
  const int64_t cost = RowCost();
  torch::Tensor rows = inputs.contiguous();
  const int64_t n = rows.size(0);
  const size_t row_bytes =
      static_cast<size_t>(rows.numel() / std::max<int64_t>(n, 1)) * rows.element_size();
  const char* base = static_cast<const char*>(rows.data_ptr());
  std::vector<Key> keys;
  keys.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    keys.push_back(RowKey(base + i * row_bytes, row_bytes, temperature));

  std::vector<torch::Tensor> found(static_cast<size_t>(n));
  std::vector<std::pair<size_t, PendingRow>> from_pending;  // (row, where its answer comes)
  std::vector<int64_t> missing;
  {
    absl::MutexLock lock(&mu_);
    for (int64_t i = 0; i < n; ++i) {
      const Key& key = keys[static_cast<size_t>(i)];
      if (auto it = rows_.find(key); it != rows_.end()) {
        found[static_cast<size_t>(i)] = it->second;
      } else if (auto p = pending_.find(key); p != pending_.end()) {
        from_pending.emplace_back(static_cast<size_t>(i), p->second);
      } else {
        missing.push_back(i);
      }
    }
    stats_.hits += n - static_cast<int64_t>(missing.size());
    stats_.misses += static_cast<int64_t>(missing.size());
  }
  LogProbsFuture inner;
  std::vector<size_t> admitted;  // indices into `missing` this batch will cache
  if (!missing.empty()) {
    torch::Tensor subset = missing.size() == static_cast<size_t>(n)
                               ? rows
                               : rows.index_select(0, torch::tensor(missing, torch::kLong));
    inner = inner_->Submit(subset, temperature);
    // Rows asked for now count as cached from now on (answered when this
    // batch's answer is there), so the hit pattern, and with it every
    // request, is the same however far ahead the caller submits.
    absl::MutexLock lock(&mu_);
    for (size_t j = 0; j < missing.size(); ++j) {
      const Key& key = keys[static_cast<size_t>(missing[j])];
      if (bytes_ + cost > options_.capacity_bytes || rows_.count(key) > 0 ||
          pending_.count(key) > 0) {
        continue;
      }
      pending_.emplace(key, PendingRow{inner, static_cast<int64_t>(j)});
      bytes_ += cost;
      admitted.push_back(j);
    }
    stats_.entries = static_cast<int64_t>(rows_.size() + pending_.size());
  }
  // Joining the answers with the hits happens in the caller's wait.
  return std::async(
             std::launch::deferred,
             [this, cost, keys = std::move(keys), found = std::move(found),
              from_pending = std::move(from_pending), missing = std::move(missing),
              admitted = std::move(admitted), inner]() mutable -> absl::StatusOr<torch::Tensor> {
               if (!missing.empty()) {
                 const absl::StatusOr<torch::Tensor>& answered = inner.get();
                 for (size_t j : admitted) {
                   Settle(keys[static_cast<size_t>(missing[j])],
                          PendingRow{inner, static_cast<int64_t>(j)}, answered, cost);
                 }
                 if (!answered.ok()) return answered.status();
                 for (size_t j = 0; j < missing.size(); ++j) {
                   found[static_cast<size_t>(missing[j])] = (*answered)[static_cast<int64_t>(j)];
                 }
               }
               for (auto& [row, pending] : from_pending) {
                 const absl::StatusOr<torch::Tensor>& answered = pending.batch.get();
                 // Settle the entry here too, in case the batch that asked
                 // for it is never waited on.
                 Settle(keys[row], pending, answered, cost);
                 if (!answered.ok()) return answered.status();
                 found[row] = (*answered)[pending.index];
               }
               return torch::stack(found);
             })
      .share();
}

CachingTeacherClient::Stats CachingTeacherClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace retort::trainer
