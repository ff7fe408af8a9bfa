#include "cache/cached_teacher_client.h"

#include <cmath>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cache/target_encoding.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "teacher/sampled_targets.h"

namespace retort::cache {

absl::StatusOr<std::unique_ptr<CachedTeacherClient>> CachedTeacherClient::Open(
    const Options& options) {
  RETORT_ASSIGN_OR_RETURN(CacheManifest manifest, CacheManifest::Read(options.dir));
  if (!manifest.complete()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the teacher cache ", options.dir, " is unfinished (", manifest.shards.size(),
                     " of ", manifest.shard_count(),
                     " shards); rerun `retort teacher dump` with the same flags to "
                     "finish it"));
  }
  const std::vector<std::string> diff = manifest.source.Differences(options.expected);
  if (!diff.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the teacher cache ", options.dir, " does not match this run: ", absl::StrJoin(diff, "; "),
        "; dump a cache for this run with `retort teacher dump`"));
  }
  std::unique_ptr<CachedTeacherClient> client(new CachedTeacherClient());
  for (size_t s = 0; s < manifest.shards.size(); ++s) {
    const CacheShardEntry& e = manifest.shards[s];
    const std::string path = options.dir + "/" + e.file;
    if (options.verify) {
      absl::StatusOr<std::string> sha = FileSha256Hex(path);
      if (!sha.ok()) {
        return absl::DataLossError(
            absl::StrCat("teacher cache shard ", path, " is missing: ", sha.status().message()));
      }
      if (*sha != e.sha256) {
        return absl::DataLossError(absl::StrCat("teacher cache shard ", path,
                                                " is damaged (its SHA-256 is not the manifest's); "
                                                "rerun `retort teacher dump` to rewrite it"));
      }
    }
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<CacheShard> shard, CacheShard::Open(path));
    const ShardParams& p = shard->params();
    if (p.first_sequence != e.first_sequence || shard->sequences() != e.sequences ||
        !(p.encoding == manifest.encoding) || p.positions != manifest.source.seq_len ||
        p.vocab != manifest.source.teacher.num_classes()) {
      return absl::DataLossError(
          absl::StrCat("teacher cache shard ", path, " does not hold what the manifest lists"));
    }
    for (int64_t i = 0; i < shard->sequences(); ++i) {
      client->index_.emplace(shard->key(i), Location{static_cast<int32_t>(s), i});
    }
    client->shards_.push_back(std::move(shard));
  }
  client->manifest_ = std::move(manifest);
  return client;
}

absl::StatusOr<v1::TeacherFingerprint> CachedTeacherClient::Fingerprint() {
  return manifest_.source.teacher;
}

client::TeacherClient::TargetsFuture CachedTeacherClient::SubmitTargets(const Request& request) {
  const torch::Tensor& inputs = request.inputs;
  const double temperature = request.temperature;
  const std::vector<std::string>& hidden_layers = request.hidden_layers;
  auto ready = [](absl::StatusOr<Targets> value) {
    std::promise<absl::StatusOr<Targets>> p;
    p.set_value(std::move(value));
    return p.get_future().share();
  };
  if (request.query_ids.defined()) {
    return ready(absl::FailedPreconditionError(
        "the teacher cache holds no log-probabilities at the student's own tokens; on-policy "
        "training needs a live teacher (--teacher_checkpoint or --teachers), not --teacher_cache"));
  }
  if (!hidden_layers.empty()) {
    return ready(absl::UnimplementedError(
        "the teacher cache holds no hidden states; feature matching needs a live teacher "
        "(--teacher or --teachers)"));
  }
  if (std::abs(temperature - manifest_.source.temperature) > 1e-9) {
    return ready(absl::InvalidArgumentError(
        absl::StrFormat("the teacher cache holds targets at temperature %g, not %g; dump one at "
                        "this temperature",
                        manifest_.source.temperature, temperature)));
  }
  if (inputs.dim() != 2 || inputs.scalar_type() != torch::kInt64 ||
      inputs.size(1) != manifest_.source.seq_len) {
    return ready(absl::InvalidArgumentError(absl::StrCat(
        "the teacher cache answers int64 token sequences of ", manifest_.source.seq_len,
        " positions, not ", c10::toString(inputs.scalar_type()), " ", c10::str(inputs.sizes()))));
  }
  return std::async(std::launch::async, [this, inputs] { return Lookup(inputs); }).share();
}

absl::StatusOr<client::TeacherClient::Targets> CachedTeacherClient::Lookup(
    const torch::Tensor& inputs) const {
  const torch::Tensor rows = inputs.contiguous().cpu();
  std::vector<RecordView> records;
  std::vector<Location> where;
  records.reserve(rows.size(0));
  for (int64_t r = 0; r < rows.size(0); ++r) {
    auto it = index_.find(teacher::RowKey(rows[r]));
    if (it == index_.end()) {
      return absl::NotFoundError(
          absl::StrCat("row ", r,
                       " of this batch is not in the teacher cache: it holds the sequences of the "
                       "corpus it was dumped from (",
                       manifest_.source.corpus_sha256.substr(0, 12), ") at ",
                       manifest_.source.seq_len, " tokens"));
    }
    RETORT_ASSIGN_OR_RETURN(RecordView view, shards_[it->second.shard]->Record(it->second.index));
    records.push_back(view);
    where.push_back(it->second);
  }
  Targets out;
  absl::StatusOr<teacher::TopKLogProbs> decoded;
  RETORT_RETURN_IF_ERROR(TorchCall("decoding cached targets", [&] {
    decoded = DecodeRecords(records, manifest_.source.seq_len, manifest_.encoding,
                            manifest_.source.teacher.num_classes(), [&](size_t i) {
                              const CacheShard& s = *shards_[where[i].shard];
                              return absl::StrCat(s.name(), ": sequence ",
                                                  s.params().first_sequence + where[i].index);
                            });
  }));
  RETORT_RETURN_IF_ERROR(decoded.status());
  out.top_k = *std::move(decoded);
  return out;
}

}  // namespace retort::cache
