// A small but complete tokenizer.json for tests outside tokenizer/ (data
// preparation, the CLI): BPE with byte fallback in the Llama 2 style, ids
// <unk> 0, <s> 1, </s> 2, the 256 byte tokens <0x00>..<0xFF> 3..258, then
// the printable ASCII characters and a few merges, padded with unused tokens
// to `vocab_size` ids (the base vocabulary is 361). Every UTF-8 string
// encodes and decodes back.
#ifndef RETORT_TESTS_TOKENIZER_SMALL_TOKENIZER_JSON_H_
#define RETORT_TESTS_TOKENIZER_SMALL_TOKENIZER_JSON_H_

#include <string>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/test_json.h"

namespace retort::tokenizer::testing {

inline std::string SmallByteFallbackTokenizerJson(int vocab_size = 400) {
  nlohmann::json vocab = nlohmann::json::object();
  int next = 0;
  for (const char* special : {"<unk>", "<s>", "</s>"}) vocab[special] = next++;
  for (int b = 0; b < 256; ++b) vocab[absl::StrFormat("<0x%02X>", b)] = next++;
  for (char c = 33; c < 127; ++c) vocab[std::string(1, c)] = next++;
  vocab["\xe2\x96\x81"] = next++;  // ▁, the space
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : {std::pair{"t", "h"},
                             {"th", "e"},
                             {"\xe2\x96\x81", "the"},
                             {"a", "n"},
                             {"an", "d"},
                             {"i", "n"},
                             {"o", "n"}}) {
    vocab[std::string(a) + b] = next++;
    merges.push_back(nlohmann::json::array({a, b}));
  }
  while (next < vocab_size) vocab[absl::StrFormat("<unused%d>", next)] = next++;
  const nlohmann::json model = BpeModelJson(
      vocab, merges, {{"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}});
  nlohmann::json added = nlohmann::json::array();
  for (int id = 0; id < 3; ++id) {
    added.push_back({{"id", id},
                     {"content", id == 0   ? "<unk>"
                                 : id == 1 ? "<s>"
                                           : "</s>"},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const nlohmann::json extra = {
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}}}}}}};
  return TokenizerJson(model, extra);
}

}  // namespace retort::tokenizer::testing

#endif  // RETORT_TESTS_TOKENIZER_SMALL_TOKENIZER_JSON_H_
