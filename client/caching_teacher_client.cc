#include "client/caching_teacher_client.h"

#include <cstring>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace retort::client {

CachingTeacherClient::CachingTeacherClient(std::shared_ptr<TeacherClient> inner, Options options)
    : inner_(std::move(inner)), options_(options) {}

CachingTeacherClient::Key CachingTeacherClient::RowKey(const char* data, size_t bytes,
                                                       double temperature, uint64_t salt) {
  // Two independent 64-bit hashes: absl's and FNV-1a.
  uint64_t t;
  std::memcpy(&t, &temperature, sizeof(t));
  t ^= salt;
  uint64_t a = absl::Hash<std::pair<absl::string_view, uint64_t>>{}(
      std::make_pair(absl::string_view(data, bytes), t));
  uint64_t b = 0xcbf29ce484222325ULL ^ t;
  for (size_t i = 0; i < bytes; ++i) {
    b ^= static_cast<uint8_t>(data[i]);
    b *= 0x100000001b3ULL;
  }
  return Key{a, b};
}

namespace {

// The cache keeps a dense answer row per input row.
absl::StatusOr<TeacherClient::Targets> RowAnswer(
    const absl::StatusOr<TeacherClient::Targets>& answer) {
  if (!answer.ok()) return answer.status();
  if (answer->sparse()) {
    return absl::FailedPreconditionError(
        "the teacher answered in top-k form, but the per-row teacher cache (--teacher_cache_mb) "
        "holds dense answers: ask for dense output (--teacher_output=dense) or set "
        "--teacher_cache_mb=0");
  }
  return *answer;
}

}  // namespace

int64_t CachingTeacherClient::RowCost(const std::vector<std::string>& hidden_layers) {
  bool sized;
  {
    absl::MutexLock lock(&mu_);
    sized = sized_;
  }
  if (!sized) {
    absl::StatusOr<v1::TeacherFingerprint> fingerprint = inner_->Fingerprint();
    absl::MutexLock lock(&mu_);
    if (fingerprint.ok()) {
      classes_ = std::max<int64_t>(0, fingerprint->num_classes());
      for (const v1::HiddenLayerInfo& layer : fingerprint->hidden_layers()) {
        int64_t values = 1;
        for (int64_t d : layer.shape()) values *= std::max<int64_t>(d, 0);
        layer_values_[layer.name()] = values;
      }
    }
    sized_ = true;
  }
  absl::MutexLock lock(&mu_);
  // float32 values plus bookkeeping.
  int64_t cost = 64 + 4 * classes_;
  for (const std::string& name : hidden_layers) {
    auto it = layer_values_.find(name);
    cost += 64 + 4 * (it == layer_values_.end() ? 0 : it->second);
  }
  return cost;
}

void CachingTeacherClient::Settle(const Key& key, const PendingRow& pending,
                                  const absl::StatusOr<Targets>& answered, int64_t cost) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(key);
  if (it == pending_.end() || it->second.index != pending.index) return;  // settled already
  if (answered.ok()) {
    Targets row{.log_probs = answered->log_probs[pending.index].clone(),
                .top_k = {},
                .hidden = {},
                .query_log_probs = {}};
    for (const auto& [name, values] : answered->hidden) {
      row.hidden[name] = values[pending.index].clone();
    }
    rows_.emplace(key, std::move(row));
  } else {
    bytes_ -= cost;  // not cached after all: the next batch asks again
  }
  pending_.erase(it);
  stats_.entries = static_cast<int64_t>(rows_.size() + pending_.size());
}

TeacherClient::TargetsFuture CachingTeacherClient::SubmitTargets(const Request& request) {
  if (request.query_ids.defined()) return inner_->SubmitTargets(request);
  const torch::Tensor& inputs = request.inputs;
  const double temperature = request.temperature;
  const std::vector<std::string>& hidden_layers = request.hidden_layers;
  const int64_t cost = RowCost(hidden_layers);
  uint64_t salt = 0;
  for (const std::string& name : hidden_layers) {
    salt = absl::HashOf(salt, name);
  }
  torch::Tensor rows = inputs.contiguous();
  const int64_t n = rows.size(0);
  const size_t row_bytes =
      static_cast<size_t>(rows.numel() / std::max<int64_t>(n, 1)) * rows.element_size();
  const char* base = static_cast<const char*>(rows.data_ptr());
  std::vector<Key> keys;
  keys.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    keys.push_back(RowKey(base + i * row_bytes, row_bytes, temperature, salt));

  std::vector<Targets> found(static_cast<size_t>(n));
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
  TargetsFuture inner;
  std::vector<size_t> admitted;  // indices into `missing` this batch will cache
  if (!missing.empty()) {
    torch::Tensor subset = missing.size() == static_cast<size_t>(n)
                               ? rows
                               : rows.index_select(0, torch::tensor(missing, torch::kLong));
    inner = inner_->SubmitTargets({.inputs = subset,
                                   .temperature = temperature,
                                   .hidden_layers = hidden_layers,
                                   .query_ids = {}});
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
  return std::async(std::launch::deferred,
                    [this, cost, keys = std::move(keys), found = std::move(found),
                     from_pending = std::move(from_pending), missing = std::move(missing),
                     admitted = std::move(admitted), inner,
                     hidden_layers]() mutable -> absl::StatusOr<Targets> {
                      auto row_of = [](const Targets& batch, int64_t i) {
                        Targets row{.log_probs = batch.log_probs[i],
                                    .top_k = {},
                                    .hidden = {},
                                    .query_log_probs = {}};
                        for (const auto& [name, values] : batch.hidden)
                          row.hidden[name] = values[i];
                        return row;
                      };
                      if (!missing.empty()) {
                        const absl::StatusOr<Targets> answered = RowAnswer(inner.get());
                        for (size_t j : admitted) {
                          Settle(keys[static_cast<size_t>(missing[j])],
                                 PendingRow{inner, static_cast<int64_t>(j)}, answered, cost);
                        }
                        if (!answered.ok()) return answered.status();
                        for (size_t j = 0; j < missing.size(); ++j) {
                          found[static_cast<size_t>(missing[j])] =
                              row_of(*answered, static_cast<int64_t>(j));
                        }
                      }
                      for (auto& [row, pending] : from_pending) {
                        const absl::StatusOr<Targets> answered = RowAnswer(pending.batch.get());
                        // Settle the entry here too, in case the batch that asked
                        // for it is never waited on.
                        Settle(keys[row], pending, answered, cost);
                        if (!answered.ok()) return answered.status();
                        found[row] = row_of(*answered, pending.index);
                      }
                      Targets out;
                      std::vector<torch::Tensor> parts;
                      for (const Targets& t : found) parts.push_back(t.log_probs);
                      out.log_probs = torch::stack(parts);
                      for (const std::string& name : hidden_layers) {
                        parts.clear();
                        for (const Targets& t : found) {
                          auto it = t.hidden.find(name);
                          if (it == t.hidden.end()) {
                            return absl::InternalError(
                                absl::StrCat("the teacher's answer lacks hidden layer ", name));
                          }
                          parts.push_back(it->second);
                        }
                        out.hidden[name] = torch::stack(parts);
                      }
                      return out;
                    })
      .share();
}

CachingTeacherClient::Stats CachingTeacherClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace retort::client
