#include "cache/teacher_dump.h"

#include <deque>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cache/cache_shard.h"
#include "cache/target_encoding.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "teacher/sampled_targets.h"

namespace retort::cache {
namespace {

// The global sequence range [begin, end) as dataset batches of at most
// `batch` sequences (a batch never spans two splits).
struct Piece {
  const data::Dataset* data;
  std::vector<int64_t> indices;
};

std::vector<Piece> Pieces(const DumpOptions& o, int64_t begin, int64_t end) {
  std::vector<Piece> out;
  int64_t split_begin = 0;
  for (const DumpOptions::Split& s : o.splits) {
    const int64_t split_end = split_begin + s.data->size();
    for (int64_t g = std::max(begin, split_begin); g < std::min(end, split_end);) {
      Piece p{s.data.get(), {}};
      while (g < std::min(end, split_end) &&
             static_cast<int64_t>(p.indices.size()) < o.batch_size) {
        p.indices.push_back(g - split_begin);
        ++g;
      }
      out.push_back(std::move(p));
    }
    split_begin = split_end;
  }
  return out;
}

// Appends one record per row of `inputs` [rows, T] from the teacher's
// answer.
absl::Status EncodeAnswer(const torch::Tensor& inputs, const client::TeacherClient::Targets& answer,
                          const EncodingOptions& e, int64_t vocab, ShardBuilder& shard) {
  const int64_t rows = inputs.size(0), positions = inputs.size(1);
  const std::vector<uint64_t> keys = teacher::RowKeys(inputs);
  if (e.kind == EncodingOptions::Kind::kSampled) {
    if (answer.sparse()) {
      return absl::InvalidArgumentError(
          "the sampled encoding draws from the teacher's whole distribution; ask the teacher "
          "for dense answers (--top_k=0)");
    }
    teacher::SampledTargets all = teacher::SampleTargets(answer.log_probs, e.samples, keys);
    for (int64_t r = 0; r < rows; ++r) {
      teacher::SampledTargets row{all.ids.narrow(0, r * positions, positions),
                                  all.counts.narrow(0, r * positions, positions), all.samples};
      std::string record;
      RETORT_RETURN_IF_ERROR(EncodeSampledRecord(row, e, vocab, &record));
      shard.Add(keys[r], std::move(record));
    }
    return absl::OkStatus();
  }
  teacher::TopKLogProbs top;
  if (answer.sparse()) {
    top = answer.top_k;
    if (top.indices.size(1) < e.top_k) {
      return absl::InvalidArgumentError(
          absl::StrCat("the teacher answers top-", top.indices.size(1), " but the cache keeps top-",
                       e.top_k, "; ask it for --top_k >= ", e.top_k, " or dense answers"));
    }
  } else {
    top = teacher::TopK(answer.log_probs, e.top_k);
  }
  for (int64_t r = 0; r < rows; ++r) {
    teacher::TopKLogProbs row{top.indices.narrow(0, r * positions, positions),
                              top.values.narrow(0, r * positions, positions),
                              top.tail_log_mass.narrow(0, r * positions, positions)};
    std::string record;
    RETORT_RETURN_IF_ERROR(EncodeTopKRecord(row, e, vocab, &record));
    shard.Add(keys[r], std::move(record));
  }
  return absl::OkStatus();
}

// Whether shard `e` in `dir` is whole: its size and SHA-256 as listed.
bool ShardIntact(const std::string& dir, const CacheShardEntry& e) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(dir + "/" + e.file, ec);
  if (ec || static_cast<int64_t>(size) != e.bytes) return false;
  absl::StatusOr<std::string> sha = FileSha256Hex(dir + "/" + e.file);
  return sha.ok() && *sha == e.sha256;
}

}  // namespace

nlohmann::json DumpResult::ToJson() const {
  return {{"sequences", sequences},
          {"tokens", tokens},
          {"shards_written", shards_written},
          {"shards_reused", shards_reused},
          {"bytes", bytes},
          {"seconds", seconds},
          {"tokens_per_second", tokens_per_second},
          {"bytes_per_token", bytes_per_token}};
}

absl::StatusOr<DumpResult> DumpTeacherCache(const DumpOptions& o, client::TeacherClient& teacher) {
  RETORT_RETURN_IF_ERROR(o.encoding.Validate());
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out_dir is required");
  if (o.splits.empty()) return absl::InvalidArgumentError("no token data to dump");
  if (o.sequences_per_shard < 1 || o.batch_size < 1 || o.prefetch < 1) {
    return absl::InvalidArgumentError(
        "--cache_shard_sequences, --batch_size and --teacher_prefetch must be >= 1");
  }
  if (!(o.temperature > 0)) return absl::InvalidArgumentError("--temperature must be > 0");
  const int64_t seq_len = o.splits.front().data->example_shape().at(0);
  for (const DumpOptions::Split& s : o.splits) {
    if (s.data->example_shape() != std::vector<int64_t>{seq_len}) {
      return absl::InvalidArgumentError(
          absl::StrCat("split ", s.name, " holds sequences of another length"));
    }
  }
  RETORT_ASSIGN_OR_RETURN(v1::TeacherFingerprint fingerprint, teacher.Fingerprint());
  const int64_t vocab = fingerprint.num_classes();
  if (o.encoding.kind == EncodingOptions::Kind::kTopK && o.encoding.top_k > vocab) {
    return absl::InvalidArgumentError(absl::StrCat("--cache_top_k ", o.encoding.top_k,
                                                   " exceeds the teacher's vocabulary of ", vocab));
  }

  CacheManifest want;
  want.source = {fingerprint, o.corpus_sha256, o.tokenizer_sha256, seq_len, o.temperature};
  want.encoding = o.encoding;
  for (const DumpOptions::Split& s : o.splits) want.splits.push_back({s.name, s.data->size()});
  want.sequences_per_shard = o.sequences_per_shard;

  RETORT_RETURN_IF_ERROR(MakeDirs(o.out_dir));
  CacheManifest manifest = want;
  DumpResult result;
  absl::StatusOr<CacheManifest> existing = CacheManifest::Read(o.out_dir);
  if (existing.ok() && !o.overwrite) {
    std::vector<std::string> diff = existing->source.Differences(want.source);
    if (existing->source.teacher.weights_sha256() != fingerprint.weights_sha256() && diff.empty()) {
      diff.push_back("teacher weights");
    }
    if (!(existing->encoding == want.encoding)) {
      diff.push_back(absl::StrCat("encoding: cache ", existing->encoding.Describe(), ", run ",
                                  want.encoding.Describe()));
    }
    if (existing->sequences_per_shard != want.sequences_per_shard ||
        existing->total_sequences() != want.total_sequences()) {
      diff.push_back(absl::StrCat("layout: cache ", existing->total_sequences(), " sequences in ",
                                  existing->sequences_per_shard, "-sequence shards, run ",
                                  want.total_sequences(), " in ", want.sequences_per_shard));
    }
    if (!diff.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          o.out_dir, " holds a teacher cache of something else (", absl::StrJoin(diff, "; "),
          "); use another --out_dir or --overwrite to replace it"));
    }
    // Keep the whole shards the manifest lists, up to the first that is not.
    for (const CacheShardEntry& e : existing->shards) {
      if (!ShardIntact(o.out_dir, e)) break;
      manifest.shards.push_back(e);
    }
    result.shards_reused = static_cast<int64_t>(manifest.shards.size());
  } else if (!existing.ok() && !absl::IsNotFound(existing.status()) && !o.overwrite) {
    return existing.status();
  }
  RETORT_RETURN_IF_ERROR(manifest.Write(o.out_dir));

  const int64_t total = manifest.total_sequences();
  const int64_t shard_count = manifest.shard_count();
  const int64_t todo_sequences =
      total - static_cast<int64_t>(manifest.shards.size()) * o.sequences_per_shard;
  std::optional<ProgressLine> progress;
  if (o.progress) {
    progress.emplace(ProgressLine::Options{.label = "dump",
                                           .total_units = std::max<int64_t>(todo_sequences, 0),
                                           .clock = o.clock,
                                           .rate_unit = "tokens"});
  }
  const absl::Time start = o.clock->Now();
  int64_t done_sequences = 0;
  for (int64_t s = static_cast<int64_t>(manifest.shards.size()); s < shard_count; ++s) {
    const int64_t first = s * o.sequences_per_shard;
    const int64_t end = std::min(total, first + o.sequences_per_shard);
    ShardBuilder builder({o.encoding, vocab, seq_len, first});
    std::vector<Piece> pieces = Pieces(o, first, end);
    struct InFlight {
      torch::Tensor inputs;
      client::TeacherClient::TargetsFuture answer;
    };
    std::deque<InFlight> queue;
    size_t next = 0;
    while (next < pieces.size() || !queue.empty()) {
      while (next < pieces.size() && static_cast<int64_t>(queue.size()) < o.prefetch) {
        InFlight f;
        RETORT_RETURN_IF_ERROR(TorchCall("reading token sequences", [&] {
          f.inputs = pieces[next].data->GetBatch(pieces[next].indices).inputs.contiguous();
        }));
        f.answer = teacher.SubmitTargets({.inputs = f.inputs,
                                          .temperature = o.temperature,
                                          .hidden_layers = {},
                                          .query_ids = {}});
        queue.push_back(std::move(f));
        ++next;
      }
      InFlight f = std::move(queue.front());
      queue.pop_front();
      const absl::StatusOr<client::TeacherClient::Targets>& answer = f.answer.get();
      RETORT_RETURN_IF_ERROR(answer.status());
      absl::Status encoded;
      RETORT_RETURN_IF_ERROR(TorchCall("encoding the teacher's answer", [&] {
        encoded = EncodeAnswer(f.inputs, *answer, o.encoding, vocab, builder);
      }));
      RETORT_RETURN_IF_ERROR(encoded);
      done_sequences += f.inputs.size(0);
      if (progress) {
        progress->Update(done_sequences, done_sequences * seq_len,
                         absl::StrFormat("shard %d/%d", s + 1, shard_count));
      }
    }
    const std::string bytes = builder.Finish();
    CacheShardEntry entry{CacheManifest::ShardFileName(s), first, end - first,
                          static_cast<int64_t>(bytes.size()), Sha256Hex(bytes)};
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(o.out_dir + "/" + entry.file, bytes));
    manifest.shards.push_back(std::move(entry));
    RETORT_RETURN_IF_ERROR(manifest.Write(o.out_dir));
    ++result.shards_written;
    if (o.after_shard_written) RETORT_RETURN_IF_ERROR(o.after_shard_written(s));
  }
  if (progress) {
    progress->Update(done_sequences, done_sequences * seq_len, "done", /*force=*/true);
    progress->Finish();
  }
  result.seconds = absl::ToDoubleSeconds(o.clock->Now() - start);
  result.sequences = total;
  result.tokens = total * seq_len;
  for (const CacheShardEntry& e : manifest.shards) result.bytes += e.bytes;
  result.tokens_per_second =
      result.seconds > 0 ? static_cast<double>(done_sequences * seq_len) / result.seconds : 0;
  result.bytes_per_token =
      result.tokens > 0 ? static_cast<double>(result.bytes) / static_cast<double>(result.tokens)
                        : 0;
  RETORT_RETURN_IF_ERROR(
      WriteFileAtomically(o.out_dir + "/dump_result.json", result.ToJson().dump(2) + "\n"));
  return result;
}

}  // namespace retort::cache
