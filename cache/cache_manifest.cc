#include "cache/cache_manifest.h"

#include <cmath>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort::cache {
namespace {

constexpr char kFormat[] = "retort-teacher-cache";
constexpr int kVersion = 1;

std::string Short(const std::string& sha) { return sha.empty() ? "(none)" : sha.substr(0, 12); }

}  // namespace

nlohmann::json CacheSource::ToJson() const {
  std::string fingerprint;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(teacher, &fingerprint, o);
  return {{"teacher", nlohmann::json::parse(fingerprint.empty() ? "{}" : fingerprint)},
          {"corpus_sha256", corpus_sha256},
          {"tokenizer_sha256", tokenizer_sha256},
          {"seq_len", seq_len},
          {"temperature", temperature}};
}

absl::StatusOr<CacheSource> CacheSource::FromJson(const nlohmann::json& json) {
  CacheSource s;
  try {
    const google::protobuf::util::Status parsed =
        google::protobuf::util::JsonStringToMessage(json.at("teacher").dump(), &s.teacher);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("teacher: ", parsed.ToString()));
    }
    s.corpus_sha256 = json.at("corpus_sha256").get<std::string>();
    s.tokenizer_sha256 = json.at("tokenizer_sha256").get<std::string>();
    s.seq_len = json.at("seq_len").get<int64_t>();
    s.temperature = json.at("temperature").get<double>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return s;
}

std::vector<std::string> CacheSource::Differences(const CacheSource& run) const {
  std::vector<std::string> out;
  if (!run.teacher.weights_sha256().empty() &&
      run.teacher.weights_sha256() != teacher.weights_sha256()) {
    out.push_back(absl::StrCat("teacher weights: cache ", Short(teacher.weights_sha256()), ", run ",
                               Short(run.teacher.weights_sha256())));
  }
  if (!run.corpus_sha256.empty() && run.corpus_sha256 != corpus_sha256) {
    out.push_back(
        absl::StrCat("corpus: cache ", Short(corpus_sha256), ", run ", Short(run.corpus_sha256)));
  }
  if (!run.tokenizer_sha256.empty() && run.tokenizer_sha256 != tokenizer_sha256) {
    out.push_back(absl::StrCat("tokenizer: cache ", Short(tokenizer_sha256), ", run ",
                               Short(run.tokenizer_sha256)));
  }
  if (run.seq_len != 0 && run.seq_len != seq_len) {
    out.push_back(absl::StrCat("sequence length: cache ", seq_len, ", run ", run.seq_len));
  }
  if (run.temperature != 0 && std::abs(run.temperature - temperature) > 1e-9) {
    out.push_back(absl::StrFormat("temperature: cache %g, run %g", temperature, run.temperature));
  }
  return out;
}

int64_t CacheManifest::total_sequences() const {
  int64_t n = 0;
  for (const CacheSplit& s : splits) n += s.sequences;
  return n;
}

int64_t CacheManifest::shard_count() const {
  if (sequences_per_shard <= 0) return 0;
  return (total_sequences() + sequences_per_shard - 1) / sequences_per_shard;
}

std::string CacheManifest::ShardFileName(int64_t shard) {
  return absl::StrFormat("shard-%05d.rtc", shard);
}

nlohmann::json CacheManifest::ToJson() const {
  nlohmann::json s = nlohmann::json::array();
  for (const CacheSplit& split : splits) {
    s.push_back({{"name", split.name}, {"sequences", split.sequences}});
  }
  nlohmann::json shard_list = nlohmann::json::array();
  for (const CacheShardEntry& e : shards) {
    shard_list.push_back({{"file", e.file},
                          {"first_sequence", e.first_sequence},
                          {"sequences", e.sequences},
                          {"bytes", e.bytes},
                          {"sha256", e.sha256}});
  }
  return {{"format", kFormat},
          {"version", kVersion},
          {"source", source.ToJson()},
          {"encoding", encoding.ToJson()},
          {"splits", s},
          {"sequences_per_shard", sequences_per_shard},
          {"complete", complete()},
          {"shards", shard_list}};
}

absl::StatusOr<CacheManifest> CacheManifest::Read(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(absl::StrCat(
          dir, " is not a teacher cache (no manifest.json); write one with `retort teacher dump`"));
    }
    return text.status();
  }
  auto bad = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid teacher cache manifest: ", why));
  };
  CacheManifest m;
  try {
    const nlohmann::json j = nlohmann::json::parse(*text);
    if (j.at("format").get<std::string>() != kFormat) return bad("wrong format");
    if (j.at("version").get<int>() != kVersion) {
      return absl::FailedPreconditionError(absl::StrCat(path, ": teacher cache version ",
                                                        j.at("version").get<int>(),
                                                        ", this build reads ", kVersion));
    }
    absl::StatusOr<CacheSource> source = CacheSource::FromJson(j.at("source"));
    if (!source.ok()) return bad(std::string(source.status().message()));
    m.source = *std::move(source);
    absl::StatusOr<EncodingOptions> encoding = EncodingOptions::FromJson(j.at("encoding"));
    if (!encoding.ok()) return bad(std::string(encoding.status().message()));
    m.encoding = *encoding;
    for (const auto& s : j.at("splits")) {
      m.splits.push_back({s.at("name").get<std::string>(), s.at("sequences").get<int64_t>()});
      if (m.splits.back().sequences < 0) return bad("negative split size");
    }
    m.sequences_per_shard = j.at("sequences_per_shard").get<int64_t>();
    if (m.sequences_per_shard < 1) return bad("sequences_per_shard < 1");
    int64_t next = 0;
    for (const auto& s : j.at("shards")) {
      CacheShardEntry e{s.at("file").get<std::string>(), s.at("first_sequence").get<int64_t>(),
                        s.at("sequences").get<int64_t>(), s.at("bytes").get<int64_t>(),
                        s.at("sha256").get<std::string>()};
      const int64_t index = static_cast<int64_t>(m.shards.size());
      if (e.file != ShardFileName(index) || e.first_sequence != next ||
          e.sequences != std::min(m.sequences_per_shard, m.total_sequences() - next) ||
          e.sequences < 1) {
        return bad(absl::StrCat("shard entry ", index, " (", e.file, ") is out of order"));
      }
      next += e.sequences;
      m.shards.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
  return m;
}

absl::Status CacheManifest::Write(const std::string& dir) const {
  return WriteFileAtomically(dir + "/manifest.json", ToJson().dump(2) + "\n");
}

}  // namespace retort::cache
