#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <limits>
#include <queue>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/json_fields.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

constexpr char kWhat[] = "model BPE";
// As Hugging Face: words of 256 bytes or more are not cached, and the cache
// stops growing at 10000 words.
constexpr size_t kMaxCachedWordLength = 256;
constexpr size_t kCacheCapacity = 10000;

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct MergeValue {
  uint32_t rank;
  int32_t new_id;
};

struct Symbol {
  int32_t id;
  int prev;
  int next;
  size_t len;  // bytes; 0 marks a symbol merged into its left neighbour
};

// A candidate merge of the symbol at `pos` with its right neighbour.
struct Candidate {
  uint32_t rank;
  int pos;
  int32_t new_id;
};

// Orders the queue so that its top is the lowest rank, then the leftmost.
struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.pos > b.pos;
  }
};

}  // namespace

class BpeModel::Impl {
 public:
  absl::flat_hash_map<std::string, int32_t> vocab;
  absl::flat_hash_map<int32_t, std::string> vocab_r;
  absl::flat_hash_map<uint64_t, MergeValue> merges;
  std::optional<std::string> unk_token;
  int32_t unk_id = -1;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  int32_t id_bound = 0;
  std::vector<int32_t> byte_ids;  // the id of <0xXX> for each byte, or -1

  mutable absl::Mutex mu;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache ABSL_GUARDED_BY(mu);

  std::vector<int32_t> MergeWord(absl::string_view word) const;
  void MergeAll(std::vector<Symbol>* symbols) const;
};

void BpeModel::Impl::MergeAll(std::vector<Symbol>* symbols_ptr) const {
  std::vector<Symbol>& symbols = *symbols_ptr;
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateAfter> queue;
  auto lookup = [this](int32_t a, int32_t b) -> const MergeValue* {
    auto it = merges.find(PairKey(a, b));
    return it == merges.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeValue* m = lookup(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, static_cast<int>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (current.len == 0 || current.next == -1) continue;
    const int next_pos = current.next;
    const Symbol right = symbols[next_pos];
    // Skip an entry made stale by an earlier merge.
    const MergeValue* still = lookup(current.id, right.id);
    if (still == nullptr || still->new_id != top.new_id) continue;
    current.id = top.new_id;
    current.len += right.len;
    current.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next > -1 && static_cast<size_t>(right.next) < symbols.size()) {
      symbols[right.next].prev = top.pos;
    }
    if (current.prev >= 0) {
      if (const MergeValue* m = lookup(symbols[current.prev].id, current.id)) {
        queue.push({m->rank, current.prev, m->new_id});
      }
    }
    if (current.next >= 0 && static_cast<size_t>(current.next) < symbols.size()) {
      if (const MergeValue* m = lookup(current.id, symbols[current.next].id)) {
        queue.push({m->rank, top.pos, m->new_id});
      }
    }
  }
}

std::vector<int32_t> BpeModel::Impl::MergeWord(absl::string_view word) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id, size_t len) {
    const int index = static_cast<int>(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, len});
  };
  // A pending unknown character's byte length (0: none), emitted lazily so
  // that consecutive ones can be fused.
  size_t pending_unk = 0;
  std::string key;
  for (size_t pos = 0; pos < word.size();) {
    const size_t start = pos;
    NextCodePoint(word, &pos);
    const size_t byte_len = pos - start;
    key.clear();
    if (start != 0) key += continuing_subword_prefix;
    key.append(word.data() + start, byte_len);
    if (pos == word.size()) key += end_of_word_suffix;
    if (auto it = vocab.find(key); it != vocab.end()) {
      if (pending_unk > 0) {
        add(unk_id, pending_unk);
        pending_unk = 0;
      }
      add(it->second, byte_len);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (const char b : key) all = all && byte_ids[static_cast<unsigned char>(b)] >= 0;
      if (all) {
        for (const char b : key) add(byte_ids[static_cast<unsigned char>(b)], 1);
        continue;
      }
    }
    if (unk_token.has_value()) {
      if (pending_unk > 0 && fuse_unk) {
        pending_unk += byte_len;
      } else {
        if (pending_unk > 0) add(unk_id, pending_unk);
        pending_unk = byte_len;
      }
    }
  }
  if (pending_unk > 0) add(unk_id, pending_unk);
  MergeAll(&symbols);
  std::vector<int32_t> ids;
  ids.reserve(symbols.size());
  for (const Symbol& s : symbols) {
    if (s.len != 0) ids.push_back(s.id);
  }
  return ids;
}

BpeModel::BpeModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeModel::~BpeModel() = default;

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Parse(const nlohmann::json& config) {
  RETORT_ASSIGN_OR_RETURN(const std::string type, GetType(config, "model"));
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat("model type '", type, "' is not supported"));
  }
  auto impl = std::make_unique<Impl>();
  const auto dropout = config.find("dropout");
  if (dropout != config.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return absl::UnimplementedError(
        absl::StrCat(kWhat, ": dropout ", dropout->dump(), " is not supported (only null)"));
  }
  RETORT_ASSIGN_OR_RETURN(impl->unk_token, GetOptionalString(config, "unk_token", kWhat));
  RETORT_ASSIGN_OR_RETURN(std::optional<std::string> prefix,
                          GetOptionalString(config, "continuing_subword_prefix", kWhat));
  RETORT_ASSIGN_OR_RETURN(std::optional<std::string> suffix,
                          GetOptionalString(config, "end_of_word_suffix", kWhat));
  impl->continuing_subword_prefix = prefix.value_or("");
  impl->end_of_word_suffix = suffix.value_or("");
  RETORT_ASSIGN_OR_RETURN(impl->fuse_unk, GetBool(config, "fuse_unk", false, kWhat));
  RETORT_ASSIGN_OR_RETURN(impl->byte_fallback, GetBool(config, "byte_fallback", false, kWhat));
  RETORT_ASSIGN_OR_RETURN(impl->ignore_merges, GetBool(config, "ignore_merges", false, kWhat));

  const auto vocab = config.find("vocab");
  if (vocab == config.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(kWhat, ": field 'vocab' must be an object"));
  }
  impl->vocab.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kWhat, ": vocab entry '", it.key(), "' must map to an id in [0, 2^31)"));
    }
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    impl->vocab[it.key()] = id;
    impl->vocab_r[id] = it.key();
    impl->id_bound = std::max(impl->id_bound, id + 1);
  }
  if (impl->unk_token.has_value()) {
    auto it = impl->vocab.find(*impl->unk_token);
    if (it == impl->vocab.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kWhat, ": unk_token '", *impl->unk_token, "' is not in the vocabulary"));
    }
    impl->unk_id = it->second;
  }
  impl->byte_ids.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    if (auto it = impl->vocab.find(absl::StrFormat("<0x%02X>", b)); it != impl->vocab.end()) {
      impl->byte_ids[b] = it->second;
    }
  }

  RETORT_ASSIGN_OR_RETURN(const nlohmann::json* merges, GetArray(config, "merges", kWhat));
  impl->merges.reserve(merges->size());
  uint32_t rank = 0;
  const size_t prefix_len = impl->continuing_subword_prefix.size();
  for (const nlohmann::json& merge : *merges) {
    std::string a, b;
    if (merge.is_string()) {
      const std::string& line = merge.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() != 2) {
        return absl::InvalidArgumentError(
            absl::StrCat(kWhat, ": merge ", rank + 1, " '", line, "' is not two tokens"));
      }
      a = std::move(parts[0]);
      b = std::move(parts[1]);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      a = merge[0].get<std::string>();
      b = merge[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          kWhat, ": merge ", rank + 1, " must be \"a b\" or [\"a\", \"b\"], not ", merge.dump()));
    }
    auto a_it = impl->vocab.find(a);
    auto b_it = impl->vocab.find(b);
    if (a_it == impl->vocab.end() || b_it == impl->vocab.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kWhat, ": merge ", rank + 1, " refers to token '",
                       a_it == impl->vocab.end() ? a : b, "' that is not in the vocabulary"));
    }
    if (b.size() < prefix_len) {
      return absl::InvalidArgumentError(absl::StrCat(kWhat, ": merge ", rank + 1, " token '", b,
                                                     "' is shorter than the subword prefix"));
    }
    const std::string merged = a + b.substr(prefix_len);
    auto merged_it = impl->vocab.find(merged);
    if (merged_it == impl->vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat(kWhat, ": merge ", rank + 1, " yields '",
                                                     merged, "' that is not in the vocabulary"));
    }
    // A repeated pair keeps its last rank, as Hugging Face's map does.
    impl->merges[PairKey(a_it->second, b_it->second)] = {rank, merged_it->second};
    ++rank;
  }
  return std::unique_ptr<BpeModel>(new BpeModel(std::move(impl)));
}

void BpeModel::Tokenize(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  const Impl& m = *impl_;
  if (m.ignore_merges) {
    if (auto it = m.vocab.find(word); it != m.vocab.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordLength;
  if (cacheable) {
    absl::ReaderMutexLock lock(&m.mu);
    if (auto it = m.cache.find(word); it != m.cache.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> merged = m.MergeWord(word);
  ids->insert(ids->end(), merged.begin(), merged.end());
  if (cacheable) {
    absl::MutexLock lock(&m.mu);
    if (m.cache.size() < kCacheCapacity) m.cache.emplace(std::string(word), std::move(merged));
  }
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = impl_->vocab.find(token);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  auto it = impl_->vocab_r.find(id);
  return it == impl_->vocab_r.end() ? nullptr : &it->second;
}

int BpeModel::vocab_size() const { return static_cast<int>(impl_->vocab.size()); }

int32_t BpeModel::id_bound() const { return impl_->id_bound; }

}  // namespace retort::tokenizer
