#include "tokenizer/post_processor.h"
#include "absl/strings/string_view.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/json_fields.h"

namespace retort::tokenizer {
namespace {

using Sequences = std::vector<std::vector<int32_t>>;

bool IsId(const nlohmann::json& value) {
  return value.is_number_integer() && value.get<int64_t>() >= 0 &&
         value.get<int64_t>() <= std::numeric_limits<int32_t>::max();
}

// One template piece: a special token's ids, or sequence 0 (A) or 1 (B).
struct Piece {
  int sequence = -1;         // >= 0 for a Sequence piece
  std::vector<int32_t> ids;  // for a SpecialToken piece
};

class TemplateProcessor : public PostProcessor {
 public:
  TemplateProcessor(std::vector<Piece> single, std::vector<Piece> pair)
      : single_(std::move(single)), pair_(std::move(pair)) {}

  Sequences Process(Sequences sequences, bool add_special_tokens) const override {
    const std::vector<Piece>& pieces = sequences.size() > 1 ? pair_ : single_;
    Sequences out;
    for (const Piece& piece : pieces) {
      if (piece.sequence >= 0) {
        if (static_cast<size_t>(piece.sequence) < sequences.size()) {
          out.push_back(sequences[piece.sequence]);
        }
      } else if (add_special_tokens) {
        out.push_back(piece.ids);
      }
    }
    return out;
  }

  std::optional<int32_t> LeadingSpecialId() const override {
    for (const Piece& piece : single_) {
      if (piece.sequence >= 0) break;
      if (!piece.ids.empty()) return piece.ids.front();
    }
    return std::nullopt;
  }
  std::optional<int32_t> TrailingSpecialId() const override {
    bool after_text = false;
    for (const Piece& piece : single_) {
      if (piece.sequence >= 0) {
        after_text = true;
      } else if (after_text && !piece.ids.empty()) {
        return piece.ids.front();
      }
    }
    return std::nullopt;
  }

 private:
  std::vector<Piece> single_;
  std::vector<Piece> pair_;
};

// Several post-processors in order.
class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}
  Sequences Process(Sequences sequences, bool add_special_tokens) const override {
    for (const auto& step : steps_)
      sequences = step->Process(std::move(sequences), add_special_tokens);
    return sequences;
  }
  std::optional<int32_t> LeadingSpecialId() const override {
    for (const auto& step : steps_) {
      if (auto id = step->LeadingSpecialId()) return id;
    }
    return std::nullopt;
  }
  std::optional<int32_t> TrailingSpecialId() const override {
    for (const auto& step : steps_) {
      if (auto id = step->TrailingSpecialId()) return id;
    }
    return std::nullopt;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

class IdentityProcessor : public PostProcessor {
 public:
  Sequences Process(Sequences sequences, bool) const override { return sequences; }
};

absl::StatusOr<std::vector<Piece>> ParseTemplate(
    const nlohmann::json& config, absl::string_view key, absl::string_view what,
    const absl::flat_hash_map<std::string, std::vector<int32_t>>& special_tokens) {
  RETORT_ASSIGN_OR_RETURN(const nlohmann::json* list, GetArray(config, key, what));
  std::vector<Piece> pieces;
  for (const nlohmann::json& item : *list) {
    const auto bad = [&] {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": bad ", key, " template piece ", item.dump()));
    };
    if (!item.is_object() || item.size() != 1) return bad();
    const auto it = item.begin();
    const nlohmann::json& body = it.value();
    if (!body.is_object() || !body.contains("id") || !body["id"].is_string()) return bad();
    const std::string id = body["id"].get<std::string>();
    Piece piece;
    if (it.key() == "Sequence") {
      if (id == "A") {
        piece.sequence = 0;
      } else if (id == "B") {
        piece.sequence = 1;
      } else {
        return bad();
      }
    } else if (it.key() == "SpecialToken") {
      auto found = special_tokens.find(id);
      if (found == special_tokens.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": template uses special token '", id, "' it does not define"));
      }
      piece.ids = found->second;
    } else {
      return bad();
    }
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

// A ["token", id] pair of BertProcessing / RobertaProcessing.
absl::StatusOr<int32_t> TokenPairId(const nlohmann::json& config, const char* key,
                                    absl::string_view what) {
  const auto it = config.find(key);
  if (it == config.end() || !it->is_array() || it->size() != 2 || !IsId((*it)[1])) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": field '", key, "' must be [token, id]"));
  }
  return static_cast<int32_t>((*it)[1].get<int64_t>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const nlohmann::json& config) {
  RETORT_ASSIGN_OR_RETURN(const std::string type, GetType(config, "post_processor"));
  const std::string what = absl::StrCat("post_processor ", type);
  if (type == "TemplateProcessing") {
    absl::flat_hash_map<std::string, std::vector<int32_t>> special_tokens;
    const auto tokens = config.find("special_tokens");
    if (tokens != config.end() && !tokens->is_null()) {
      if (!tokens->is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": field 'special_tokens' must be an object"));
      }
      for (auto it = tokens->begin(); it != tokens->end(); ++it) {
        const nlohmann::json& ids = it.value().is_object() && it.value().contains("ids")
                                        ? it.value()["ids"]
                                        : nlohmann::json();
        if (!ids.is_array()) {
          return absl::InvalidArgumentError(
              absl::StrCat(what, ": special token '", it.key(), "' has no 'ids' array"));
        }
        std::vector<int32_t>& list = special_tokens[it.key()];
        for (const nlohmann::json& id : ids) {
          if (!IsId(id)) {
            return absl::InvalidArgumentError(
                absl::StrCat(what, ": special token '", it.key(), "' has a bad id"));
          }
          list.push_back(static_cast<int32_t>(id.get<int64_t>()));
        }
      }
    }
    RETORT_ASSIGN_OR_RETURN(std::vector<Piece> single,
                            ParseTemplate(config, "single", what, special_tokens));
    std::vector<Piece> pair;
    if (config.contains("pair") && !config["pair"].is_null()) {
      RETORT_ASSIGN_OR_RETURN(pair, ParseTemplate(config, "pair", what, special_tokens));
    } else {
      pair = {Piece{0, {}}, Piece{1, {}}};
    }
    return std::make_unique<TemplateProcessor>(std::move(single), std::move(pair));
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    RETORT_ASSIGN_OR_RETURN(const int32_t sep, TokenPairId(config, "sep", what));
    RETORT_ASSIGN_OR_RETURN(const int32_t cls, TokenPairId(config, "cls", what));
    std::vector<Piece> single = {Piece{-1, {cls}}, Piece{0, {}}, Piece{-1, {sep}}};
    std::vector<Piece> pair = {Piece{-1, {cls}}, Piece{0, {}}, Piece{-1, {sep}}};
    if (type == "RobertaProcessing") pair.push_back(Piece{-1, {sep}});
    pair.push_back(Piece{1, {}});
    pair.push_back(Piece{-1, {sep}});
    return std::make_unique<TemplateProcessor>(std::move(single), std::move(pair));
  }
  if (type == "ByteLevel") return std::make_unique<IdentityProcessor>();
  if (type == "Sequence") {
    RETORT_ASSIGN_OR_RETURN(const nlohmann::json* list, GetArray(config, "processors", what));
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (const nlohmann::json& item : *list) {
      RETORT_ASSIGN_OR_RETURN(auto step, ParsePostProcessor(item));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  return absl::UnimplementedError(
      absl::StrCat("post_processor type '", type, "' is not supported"));
}

}  // namespace retort::tokenizer
