#include "cache/teacher_dump.h"

#include <deque>
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
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

// Shard `s`'s entry when `dir` holds it whole though no manifest lists it:
// a valid shard of `want`'s parameters and `sequences` sequences whose
// every record passes its CRC (shards are renamed into place whole, so
// this finds another rank's shards and those written before a kill that
// came before the manifest's rewrite).
std::optional<CacheShardEntry> UnlistedWholeShard(const std::string& dir, int64_t s,
                                                  const ShardParams& want, int64_t sequences) {
  const std::string file = CacheManifest::ShardFileName(s);
  absl::StatusOr<std::unique_ptr<CacheShard>> shard = CacheShard::Open(dir + "/" + file);
  if (!shard.ok()) return std::nullopt;
  const ShardParams& p = (*shard)->params();
  if (!(p.encoding == want.encoding) || p.vocab != want.vocab || p.positions != want.positions ||
      p.first_sequence != want.first_sequence || (*shard)->sequences() != sequences) {
    return std::nullopt;
  }
  for (int64_t i = 0; i < sequences; ++i) {
    if (!(*shard)->Record(i).ok()) return std::nullopt;
  }
  std::error_code ec;
  const auto size = std::filesystem::file_size(dir + "/" + file, ec);
  absl::StatusOr<std::string> sha = FileSha256Hex(dir + "/" + file);
  if (ec || !sha.ok()) return std::nullopt;
  return CacheShardEntry{file, want.first_sequence, sequences, static_cast<int64_t>(size), *sha};
}

// Removes every shard file (and temporary) in `dir`.
absl::Status RemoveShardFiles(const std::string& dir) {
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = f.path().filename().string();
    if (absl::StartsWith(name, "shard-") &&
        (absl::EndsWith(name, ".rtc") || absl::EndsWith(name, ".rtc.tmp"))) {
      std::filesystem::remove(f.path(), ec);
      if (ec) {
        return absl::InternalError(
            absl::StrCat("cannot remove ", f.path().string(), ": ", ec.message()));
      }
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

// The dump's layout and the shards found whole in its directory.
class ShardTable {
 public:
  ShardTable(const CacheManifest& manifest, int64_t vocab, int64_t seq_len)
      : manifest_(manifest),
        vocab_(vocab),
        seq_len_(seq_len),
        whole_(static_cast<size_t>(manifest.shard_count())) {}

  int64_t count() const { return manifest_.shard_count(); }
  int64_t first(int64_t s) const { return s * manifest_.sequences_per_shard; }
  int64_t end(int64_t s) const {
    return std::min(manifest_.total_sequences(), first(s) + manifest_.sequences_per_shard);
  }
  ShardParams params(int64_t s) const { return {manifest_.encoding, vocab_, seq_len_, first(s)}; }
  bool whole(int64_t s) const { return whole_[static_cast<size_t>(s)].has_value(); }
  const CacheShardEntry& entry(int64_t s) const { return *whole_[static_cast<size_t>(s)]; }
  void Set(int64_t s, CacheShardEntry e) { whole_[static_cast<size_t>(s)] = std::move(e); }

  // Looks for shard s in `dir`: as `listed` says (when given), else as an
  // unlisted whole shard.
  void Find(const std::string& dir, int64_t s, const CacheShardEntry* listed) {
    if (whole(s)) return;
    if (listed != nullptr && ShardIntact(dir, *listed)) {
      Set(s, *listed);
    } else if (std::optional<CacheShardEntry> e =
                   UnlistedWholeShard(dir, s, params(s), end(s) - first(s))) {
      Set(s, *std::move(e));
    }
  }

  // `base` listing the whole shards from the first up to the first gap.
  CacheManifest Prefix(const CacheManifest& base) const {
    CacheManifest m = base;
    m.shards.clear();
    for (const std::optional<CacheShardEntry>& e : whole_) {
      if (!e.has_value()) break;
      m.shards.push_back(*e);
    }
    return m;
  }

 private:
  const CacheManifest& manifest_;
  int64_t vocab_, seq_len_;
  std::vector<std::optional<CacheShardEntry>> whole_;
};

// Finds in o.out_dir the whole shards of the dump `want` describes: those
// an existing manifest of the same dump lists or that were written under
// it. A manifest of anything else is FAILED_PRECONDITION naming each
// difference (unless --overwrite); for a new dump (or --overwrite) every
// shard file already there is removed, so none is taken for this dump's.
absl::Status Reconcile(const DumpOptions& o, const CacheManifest& want, ShardTable& table) {
  RETORT_RETURN_IF_ERROR(MakeDirs(o.out_dir));
  absl::StatusOr<CacheManifest> existing = CacheManifest::Read(o.out_dir);
  if (!existing.ok() || o.overwrite) {
    if (!existing.ok() && !absl::IsNotFound(existing.status()) && !o.overwrite) {
      return existing.status();
    }
    return RemoveShardFiles(o.out_dir);
  }
  std::vector<std::string> diff = existing->source.Differences(want.source);
  if (existing->source.teacher.weights_sha256() != want.source.teacher.weights_sha256() &&
      diff.empty()) {
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
  for (size_t s = 0; s < existing->shards.size(); ++s) {
    table.Find(o.out_dir, static_cast<int64_t>(s), &existing->shards[s]);
  }
  // Shards written under this manifest that it does not list yet.
  for (int64_t s = 0; s < table.count(); ++s) table.Find(o.out_dir, s, nullptr);
  return absl::OkStatus();
}

// Computes shard s's records with `teacher` and writes it atomically.
absl::StatusOr<CacheShardEntry> DumpShard(const DumpOptions& o, const ShardTable& table, int64_t s,
                                          int64_t vocab, client::TeacherClient& teacher,
                                          const std::function<void(int64_t)>& on_sequences) {
  const int64_t first = table.first(s), end = table.end(s);
  ShardBuilder builder(table.params(s));
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
      f.answer = teacher.SubmitTargets(
          {.inputs = f.inputs, .temperature = o.temperature, .hidden_layers = {}, .query_ids = {}});
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
    on_sequences(f.inputs.size(0));
  }
  const std::string bytes = builder.Finish();
  CacheShardEntry entry{CacheManifest::ShardFileName(s), first, end - first,
                        static_cast<int64_t>(bytes.size()), Sha256Hex(bytes)};
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(o.out_dir + "/" + entry.file, bytes));
  return entry;
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
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size ||
      (o.world_size > 1 && !o.barrier)) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", o.rank, " of ", o.world_size,
                                                   " is not a dump rank (a barrier is needed "
                                                   "for more than one)"));
  }
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
  ShardTable table(want, vocab, seq_len);
  const auto barrier = [&]() -> absl::Status {
    return o.world_size > 1 ? o.barrier() : absl::OkStatus();
  };

  // Rank 0 reconciles the directory with this dump and writes the manifest;
  // the others read it after the barrier.
  if (o.rank == 0) {
    RETORT_RETURN_IF_ERROR(Reconcile(o, want, table));
    RETORT_RETURN_IF_ERROR(table.Prefix(want).Write(o.out_dir));
  }
  RETORT_RETURN_IF_ERROR(barrier());
  if (o.rank != 0) {
    RETORT_ASSIGN_OR_RETURN(CacheManifest m, CacheManifest::Read(o.out_dir));
    for (size_t s = 0; s < m.shards.size(); ++s) table.Set(static_cast<int64_t>(s), m.shards[s]);
    for (int64_t s = static_cast<int64_t>(m.shards.size()); s < table.count(); ++s) {
      if (s % o.world_size == o.rank) table.Find(o.out_dir, s, nullptr);
    }
  }

  DumpResult result;
  std::vector<int64_t> mine;
  std::vector<bool> reused(static_cast<size_t>(table.count()));
  int64_t todo_sequences = 0;
  for (int64_t s = 0; s < table.count(); ++s) {
    if (table.whole(s)) {
      reused[static_cast<size_t>(s)] = true;
      ++result.shards_reused;
    } else if (s % o.world_size == o.rank) {
      mine.push_back(s);
      todo_sequences += table.end(s) - table.first(s);
    }
  }
  std::optional<ProgressLine> progress;
  if (o.progress) {
    progress.emplace(ProgressLine::Options{
        .label = o.world_size > 1 ? absl::StrCat("dump rank ", o.rank) : std::string("dump"),
        .total_units = todo_sequences,
        .clock = o.clock,
        .rate_unit = "tokens"});
  }
  const absl::Time start = o.clock->Now();
  int64_t done_sequences = 0;
  for (int64_t s : mine) {
    RETORT_ASSIGN_OR_RETURN(
        CacheShardEntry entry, DumpShard(o, table, s, vocab, teacher, [&](int64_t sequences) {
          done_sequences += sequences;
          if (progress) {
            progress->Update(done_sequences, done_sequences * seq_len,
                             absl::StrFormat("shard %d/%d", s + 1, table.count()));
          }
        }));
    table.Set(s, std::move(entry));
    ++result.shards_written;
    if (o.rank == 0) {
      // Whatever the other ranks have finished joins the manifest too.
      if (o.world_size > 1) {
        for (int64_t t = 0; t < table.count(); ++t) table.Find(o.out_dir, t, nullptr);
      }
      RETORT_RETURN_IF_ERROR(table.Prefix(want).Write(o.out_dir));
    }
    if (o.after_shard_written) RETORT_RETURN_IF_ERROR(o.after_shard_written(s));
  }
  if (progress) {
    progress->Update(done_sequences, done_sequences * seq_len, "done", /*force=*/true);
    progress->Finish();
  }
  RETORT_RETURN_IF_ERROR(barrier());
  int64_t dumped_sequences = done_sequences;
  if (o.rank == 0 && o.world_size > 1) {
    // Every rank has finished: the whole dump is rank 0's to report.
    for (int64_t s = 0; s < table.count(); ++s) {
      table.Find(o.out_dir, s, nullptr);
      if (!table.whole(s)) {
        return absl::DataLossError(absl::StrCat(
            "shard ", s, " (", CacheManifest::ShardFileName(s), ") of ", o.out_dir,
            " is missing or damaged after every rank finished; run the dump again to redo it"));
      }
    }
    RETORT_RETURN_IF_ERROR(table.Prefix(want).Write(o.out_dir));
    result.shards_written = table.count() - result.shards_reused;
    dumped_sequences = 0;
    for (int64_t s = 0; s < table.count(); ++s) {
      if (!reused[static_cast<size_t>(s)]) dumped_sequences += table.end(s) - table.first(s);
    }
  }
  result.seconds = absl::ToDoubleSeconds(o.clock->Now() - start);
  result.sequences = want.total_sequences();
  result.tokens = result.sequences * seq_len;
  for (int64_t s = 0; s < table.count(); ++s) {
    if (table.whole(s)) result.bytes += table.entry(s).bytes;
  }
  result.tokens_per_second =
      result.seconds > 0 ? static_cast<double>(dumped_sequences * seq_len) / result.seconds : 0;
  result.bytes_per_token =
      result.tokens > 0 ? static_cast<double>(result.bytes) / static_cast<double>(result.tokens)
                        : 0;
  if (o.rank == 0) {
    RETORT_RETURN_IF_ERROR(
        WriteFileAtomically(o.out_dir + "/dump_result.json", result.ToJson().dump(2) + "\n"));
  }
  return result;
}

}  // namespace retort::cache
