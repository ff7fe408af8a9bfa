#include "tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_model.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

constexpr char kWhat[] = "added_tokens";

// The code point that ends at byte `end` of `text`.
char32_t LastCodePoint(absl::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return NextCodePoint(text, &start);
}

// Rust regex `\w$` on text[..end].
bool EndsWithWord(absl::string_view text, size_t end) {
  return end > 0 && IsWordChar(LastCodePoint(text, end));
}

// Rust regex `^\w` on text[begin..].
bool StartsWithWord(absl::string_view text, size_t begin) {
  if (begin >= text.size()) return false;
  return IsWordChar(NextCodePoint(text, &begin));
}

// Where the whitespace run that ends text[..end] begins.
size_t TrailingSpaceStart(absl::string_view text, size_t end) {
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!IsWhitespace(NextCodePoint(text, &pos))) break;
    end = start;
  }
  return end;
}

// Where the whitespace run that starts text[begin..] ends.
size_t LeadingSpaceEnd(absl::string_view text, size_t begin) {
  while (begin < text.size()) {
    size_t pos = begin;
    if (!IsWhitespace(NextCodePoint(text, &pos))) break;
    begin = pos;
  }
  return begin;
}

bool SameToken(const AddedToken& a, const AddedToken& b) {
  return a.content == b.content && a.single_word == b.single_word && a.lstrip == b.lstrip &&
         a.rstrip == b.rstrip && a.normalized == b.normalized && a.special == b.special;
}

}  // namespace

void AddedVocabulary::Trie::Insert(absl::string_view pattern, int32_t id) {
  int node = 0;
  for (const char c : pattern) {
    const auto byte = static_cast<unsigned char>(c);
    auto it = nodes[node].children.find(byte);
    if (it == nodes[node].children.end()) {
      nodes.emplace_back();
      const int child = static_cast<int>(nodes.size()) - 1;
      nodes[node].children[byte] = child;
      node = child;
    } else {
      node = it->second;
    }
  }
  nodes[node].id = id;
}

std::pair<int32_t, size_t> AddedVocabulary::Trie::LongestAt(absl::string_view text,
                                                            size_t pos) const {
  std::pair<int32_t, size_t> best{-1, 0};
  int node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = nodes[node].children.find(static_cast<unsigned char>(text[i]));
    if (it == nodes[node].children.end()) break;
    node = it->second;
    if (nodes[node].id >= 0) best = {nodes[node].id, i + 1 - pos};
  }
  return best;
}

absl::StatusOr<std::unique_ptr<AddedVocabulary>> AddedVocabulary::Create(
    const nlohmann::json& added_tokens, const BpeModel& model, const Normalizer* normalizer) {
  std::unique_ptr<AddedVocabulary> vocab(new AddedVocabulary());
  if (added_tokens.is_null()) return vocab;
  if (!added_tokens.is_array()) {
    return absl::InvalidArgumentError("added_tokens must be an array");
  }
  int32_t next_id = model.vocab_size();
  for (const nlohmann::json& item : added_tokens) {
    if (!item.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kWhat, ": every entry must be an object, not ", item.dump()));
    }
    AddedToken token;
    RETORT_ASSIGN_OR_RETURN(token.content, GetString(item, "content", kWhat));
    RETORT_ASSIGN_OR_RETURN(token.single_word, GetBool(item, "single_word", false, kWhat));
    RETORT_ASSIGN_OR_RETURN(token.lstrip, GetBool(item, "lstrip", false, kWhat));
    RETORT_ASSIGN_OR_RETURN(token.rstrip, GetBool(item, "rstrip", false, kWhat));
    RETORT_ASSIGN_OR_RETURN(token.normalized, GetBool(item, "normalized", true, kWhat));
    RETORT_ASSIGN_OR_RETURN(token.special, GetBool(item, "special", false, kWhat));
    if (token.content.empty()) continue;
    if (!IsValidUtf8(token.content)) {
      return absl::InvalidArgumentError(absl::StrCat(kWhat, ": content is not valid UTF-8"));
    }
    int32_t id;
    if (auto known = vocab->by_content_.find(token.content); known != vocab->by_content_.end()) {
      auto existing = vocab->by_id_.find(known->second);
      if (existing != vocab->by_id_.end() && SameToken(existing->second, token)) continue;
      id = known->second;
    } else if (auto model_id = model.TokenToId(token.content)) {
      id = *model_id;
    } else {
      id = next_id++;
    }
    if (token.normalized && normalizer != nullptr) {
      std::string normalized = token.content;
      normalizer->Normalize(&normalized);
      if (normalized != token.content) vocab->normalized_form_[id] = std::move(normalized);
    }
    vocab->by_content_[token.content] = id;
    if (token.special) vocab->special_.insert(token.content);
    vocab->by_id_[id] = std::move(token);
    vocab->id_bound_ = std::max(vocab->id_bound_, id + 1);
  }
  // Ids in increasing order so that two tokens with one pattern resolve the
  // same way on every run.
  std::vector<int32_t> ids;
  for (const auto& [id, token] : vocab->by_id_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (const int32_t id : ids) {
    const AddedToken& token = vocab->by_id_[id];
    if (token.normalized) {
      auto form = vocab->normalized_form_.find(id);
      const std::string& pattern =
          form == vocab->normalized_form_.end() ? token.content : form->second;
      if (pattern.empty()) continue;
      vocab->normalized_trie_.Insert(pattern, id);
      vocab->has_normalized_ = true;
    } else {
      vocab->raw_trie_.Insert(token.content, id);
      vocab->has_raw_ = true;
    }
  }
  return vocab;
}

void AddedVocabulary::Split(const PreToken& piece, const Trie& trie,
                            std::vector<PreToken>* out) const {
  const std::string& text = piece.text;
  size_t start_offset = 0;
  auto emit = [&](size_t begin, size_t end, int32_t id) {
    if (begin >= end) return;  // empty pieces are dropped
    out->push_back({text.substr(begin, end - begin), piece.at_input_start && begin == 0, id});
  };
  size_t search = 0;
  while (search < text.size()) {
    auto [id, length] = trie.LongestAt(text, search);
    if (id < 0) {
      ++search;
      continue;
    }
    size_t start = search;
    size_t stop = search + length;
    search = stop;  // matches never overlap, even a rejected one
    const AddedToken& token = by_id_.at(id);
    if (token.single_word) {
      const bool start_space = start == 0 || !EndsWithWord(text, start);
      const bool stop_space = stop == text.size() || !StartsWithWord(text, stop);
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(TrailingSpaceStart(text, start), start_offset);
    if (token.rstrip) stop = LeadingSpaceEnd(text, stop);
    if (start_offset < start) emit(start_offset, start, -1);
    emit(start, stop, id);
    start_offset = stop;
  }
  if (start_offset < text.size()) emit(start_offset, text.size(), -1);
}

std::vector<PreToken> AddedVocabulary::ExtractAndNormalize(absl::string_view text,
                                                           const Normalizer* normalizer) const {
  std::vector<PreToken> pieces;
  const PreToken whole{std::string(text), true, -1};
  if (whole.text.empty()) return pieces;
  if (has_raw_) {
    Split(whole, raw_trie_, &pieces);
  } else {
    pieces.push_back(whole);
  }
  std::vector<PreToken> out;
  out.reserve(pieces.size());
  for (PreToken& piece : pieces) {
    if (piece.added_token_id >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    if (normalizer != nullptr) normalizer->Normalize(&piece.text);
    if (piece.text.empty()) continue;
    if (has_normalized_) {
      Split(piece, normalized_trie_, &out);
    } else {
      out.push_back(std::move(piece));
    }
  }
  return out;
}

std::optional<int32_t> AddedVocabulary::TokenToId(absl::string_view content) const {
  auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const std::string* AddedVocabulary::IdToToken(int32_t id) const {
  if (auto form = normalized_form_.find(id); form != normalized_form_.end()) return &form->second;
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second.content;
}

}  // namespace retort::tokenizer
