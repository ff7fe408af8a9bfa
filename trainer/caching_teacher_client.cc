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

TeacherClient::LogProbsFuture CachingTeacherClient::Submit(const torch::Tensor& inputs,
                                                           double temperature) {
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
  std::vector<int64_t> missing;
  {
    absl::MutexLock lock(&mu_);
    for (int64_t i = 0; i < n; ++i) {
      auto it = rows_.find(keys[static_cast<size_t>(i)]);
      if (it != rows_.end()) {
        found[static_cast<size_t>(i)] = it->second;
      } else {
        missing.push_back(i);
      }
    }
    stats_.hits += n - static_cast<int64_t>(missing.size());
    stats_.misses += static_cast<int64_t>(missing.size());
  }
  LogProbsFuture inner;
  if (!missing.empty()) {
    torch::Tensor subset = missing.size() == static_cast<size_t>(n)
                               ? rows
                               : rows.index_select(0, torch::tensor(missing, torch::kLong));
    inner = inner_->Submit(subset, temperature);
  }
  // The misses are asked for now; joining them with the hits (and
  // remembering them) happens in the caller's wait.
  return std::async(std::launch::deferred,
                    [this, keys = std::move(keys), found = std::move(found),
                     missing = std::move(missing),
                     inner]() mutable -> absl::StatusOr<torch::Tensor> {
                      if (!missing.empty()) {
                        const absl::StatusOr<torch::Tensor>& answered = inner.get();
                        if (!answered.ok()) return answered.status();
                        absl::MutexLock lock(&mu_);
                        for (size_t j = 0; j < missing.size(); ++j) {
                          torch::Tensor row = (*answered)[static_cast<int64_t>(j)].clone();
                          found[static_cast<size_t>(missing[j])] = row;
                          const int64_t cost = static_cast<int64_t>(row.nbytes()) + 64;
                          if (bytes_ + cost <= options_.capacity_bytes &&
                              rows_.emplace(keys[static_cast<size_t>(missing[j])], row).second) {
                            bytes_ += cost;
                          }
                        }
                        stats_.entries = static_cast<int64_t>(rows_.size());
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
