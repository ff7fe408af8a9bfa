// Builds small tokenizer.json texts for the tokenizer unit tests.
#ifndef RETORT_TESTS_TOKENIZER_TEST_JSON_H_
#define RETORT_TESTS_TOKENIZER_TEST_JSON_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "nlohmann/json.hpp"

namespace retort::tokenizer::testing {

// A BPE model over `vocab` (token -> id) and `merges` (["a", "b"] pairs or
// "a b" strings), with `model_extra` fields merged in.
inline nlohmann::json BpeModelJson(const nlohmann::json& vocab, const nlohmann::json& merges,
                                   const nlohmann::json& model_extra = nlohmann::json::object()) {
  nlohmann::json model = {{"type", "BPE"},
                          {"dropout", nullptr},
                          {"unk_token", nullptr},
                          {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr},
                          {"fuse_unk", false},
                          {"byte_fallback", false},
                          {"ignore_merges", false},
                          {"vocab", vocab},
                          {"merges", merges}};
  model.update(model_extra);
  return model;
}

// Merges as ["a", "b"] pairs.
inline nlohmann::json Merges(std::initializer_list<std::pair<const char*, const char*>> pairs) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [a, b] : pairs) out.push_back(nlohmann::json::array({a, b}));
  return out;
}

// A whole tokenizer.json with `model` and the other top-level fields taken
// from `extra` (null when absent).
inline std::string TokenizerJson(const nlohmann::json& model,
                                 const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json root = {{"version", "1.0"},
                         {"truncation", nullptr},
                         {"padding", nullptr},
                         {"added_tokens", nlohmann::json::array()},
                         {"normalizer", nullptr},
                         {"pre_tokenizer", nullptr},
                         {"post_processor", nullptr},
                         {"decoder", nullptr},
                         {"model", model}};
  root.update(extra);
  return root.dump();
}

}  // namespace retort::tokenizer::testing

#endif  // RETORT_TESTS_TOKENIZER_TEST_JSON_H_
