// Post-processors of tokenizer.json ("post_processor"), for ids only:
// TemplateProcessing (single and pair templates of SpecialToken and Sequence
// pieces), BertProcessing, RobertaProcessing, ByteLevel (no change to ids)
// and Sequence.
#ifndef RETORT_TOKENIZER_POST_PROCESSOR_H_
#define RETORT_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace retort::tokenizer {

// Immutable after construction; Process may run on several threads.
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Turns the encoded sequences (one, or two for a pair) into the sequences
  // that follow; the final ids are their concatenation.
  virtual std::vector<std::vector<int32_t>> Process(std::vector<std::vector<int32_t>> sequences,
                                                    bool add_special_tokens) const = 0;
  // The first special token ids the single-sequence template puts before
  // the text and after it (for bos_id / eos_id); nullopt when none.
  virtual std::optional<int32_t> LeadingSpecialId() const { return std::nullopt; }
  virtual std::optional<int32_t> TrailingSpecialId() const { return std::nullopt; }
};

// Builds the post-processor a non-null "post_processor" object describes.
// UnimplementedError naming the type for other types; InvalidArgumentError
// for malformed fields or a template naming a special token it does not
// define.
absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const nlohmann::json& config);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_POST_PROCESSOR_H_
