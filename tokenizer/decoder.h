// Decoders of tokenizer.json ("decoder"): ByteLevel, Metaspace, Sequence,
// Replace, ByteFallback, Fuse, Strip and BPEDecoder, with Hugging Face's
// semantics: each maps the list of token strings to a new list, and the
// decoded text is the final list joined.
#ifndef RETORT_TOKENIZER_DECODER_H_
#define RETORT_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace retort::tokenizer {

// Immutable after construction; DecodeChain may run on several threads.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const = 0;
  // DecodeChain, joined.
  std::string Decode(std::vector<std::string> tokens) const;
};

// Builds the decoder a non-null "decoder" object describes. UnimplementedError
// naming the type for types Retort does not implement (WordPiece, CTC, ...);
// InvalidArgumentError for malformed fields.
absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& config);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_DECODER_H_
