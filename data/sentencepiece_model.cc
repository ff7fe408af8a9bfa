#include "data/sentencepiece_model.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace retort::data {
namespace {

// A protobuf wire-format cursor over one message's bytes.
class Wire {
 public:
  explicit Wire(absl::string_view bytes) : bytes_(bytes) {}
  bool done() const { return pos_ >= bytes_.size(); }

  bool Varint(uint64_t* out) {
    *out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) return false;
      const uint8_t b = static_cast<uint8_t>(bytes_[pos_++]);
      *out |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Fixed32(uint32_t* out) {
    if (bytes_.size() - pos_ < 4) return false;
    std::memcpy(out, bytes_.data() + pos_, 4);
    pos_ += 4;
    return true;
  }
  bool Bytes(absl::string_view* out) {
    uint64_t n = 0;
    if (!Varint(&n) || n > bytes_.size() - pos_) return false;
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // Skips a field of `wire_type` whose tag was read.
  bool Skip(uint64_t wire_type) {
    uint64_t v = 0;
    absl::string_view s;
    switch (wire_type) {
      case 0:
        return Varint(&v);
      case 1:
        if (bytes_.size() - pos_ < 8) return false;
        pos_ += 8;
        return true;
      case 2:
        return Bytes(&s);
      case 5:
        if (bytes_.size() - pos_ < 4) return false;
        pos_ += 4;
        return true;
      default:
        return false;
    }
  }

 private:
  absl::string_view bytes_;
  size_t pos_ = 0;
};

bool ParsePiece(absl::string_view bytes, SentencePieceVocabulary::Piece* piece) {
  Wire w(bytes);
  while (!w.done()) {
    uint64_t tag = 0;
    if (!w.Varint(&tag)) return false;
    const uint64_t field = tag >> 3, type = tag & 7;
    if (field == 1 && type == 2) {
      absl::string_view text;
      if (!w.Bytes(&text)) return false;
      piece->text = std::string(text);
    } else if (field == 2 && type == 5) {
      uint32_t raw = 0;
      if (!w.Fixed32(&raw)) return false;
      std::memcpy(&piece->score, &raw, 4);
    } else if (field == 3 && type == 0) {
      uint64_t v = 0;
      if (!w.Varint(&v)) return false;
      piece->type = static_cast<int32_t>(v);
    } else if (!w.Skip(type)) {
      return false;
    }
  }
  return true;
}

bool ParseNormalizer(absl::string_view bytes, bool* add_dummy_prefix) {
  Wire w(bytes);
  while (!w.done()) {
    uint64_t tag = 0;
    if (!w.Varint(&tag)) return false;
    if ((tag >> 3) == 3 && (tag & 7) == 0) {
      uint64_t v = 0;
      if (!w.Varint(&v)) return false;
      *add_dummy_prefix = v != 0;
    } else if (!w.Skip(tag & 7)) {
      return false;
    }
  }
  return true;
}

}  // namespace

int32_t SentencePieceVocabulary::FirstOfType(int32_t type) const {
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].type == type) return static_cast<int32_t>(i);
  }
  return -1;
}

absl::StatusOr<SentencePieceVocabulary> ParseSentencePieceModel(absl::string_view bytes,
                                                                const std::string& source) {
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(source, ": not a SentencePiece model (", what, ")"));
  };
  SentencePieceVocabulary vocab;
  Wire w(bytes);
  while (!w.done()) {
    uint64_t tag = 0;
    if (!w.Varint(&tag)) return bad("a truncated field tag");
    const uint64_t field = tag >> 3, type = tag & 7;
    if ((field == 1 || field == 3) && type == 2) {
      absl::string_view message;
      if (!w.Bytes(&message)) return bad("a truncated message");
      if (field == 1) {
        SentencePieceVocabulary::Piece piece;
        if (!ParsePiece(message, &piece)) {
          return bad(absl::StrCat("piece ", vocab.pieces.size(), " is malformed"));
        }
        vocab.pieces.push_back(std::move(piece));
      } else if (!ParseNormalizer(message, &vocab.add_dummy_prefix)) {
        return bad("a malformed normalizer spec");
      }
    } else if (!w.Skip(type)) {
      return bad(absl::StrCat("field ", field, " of wire type ", type, " does not parse"));
    }
  }
  if (vocab.pieces.empty()) return bad("it has no pieces");
  return vocab;
}

}  // namespace retort::data
