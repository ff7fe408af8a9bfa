// The vocabulary of a SentencePiece .model file, read without SentencePiece:
// the file is a serialized sentencepiece.ModelProto, and exporters (GGUF)
// need its pieces, scores and piece types in id order.
//
// Only the fields named below are read; everything else is skipped by its
// protobuf wire type, so files from newer SentencePiece versions still read.
#ifndef RETORT_DATA_SENTENCEPIECE_MODEL_H_
#define RETORT_DATA_SENTENCEPIECE_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retort::data {

struct SentencePieceVocabulary {
  // sentencepiece.ModelProto.SentencePiece.Type, which llama.cpp's
  // token types share: 1 normal, 2 unknown, 3 control, 4 user defined,
  // 5 unused, 6 byte.
  struct Piece {
    std::string text;
    float score = 0;
    int32_t type = 1;
  };
  std::vector<Piece> pieces;   // id order
  bool add_dummy_prefix = true;  // NormalizerSpec.add_dummy_prefix

  // The id of the first piece of `type`, or -1.
  int32_t FirstOfType(int32_t type) const;
};

// DATA_LOSS naming `source` for bytes that are not a ModelProto with pieces.
absl::StatusOr<SentencePieceVocabulary> ParseSentencePieceModel(absl::string_view bytes,
                                                                const std::string& source);

}  // namespace retort::data

#endif  // RETORT_DATA_SENTENCEPIECE_MODEL_H_
